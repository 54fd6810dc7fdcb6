"""Clusters and their keys, in process: root creates a cluster of workers; the gatekeepers
publish its public keys and send each member the cluster key; adding a worker sends it the
key history; removing one starts a new epoch that only the remaining workers receive."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from phala.chain.runtime import cluster, registry
from phala.core.cluster import CLUSTER_KEY_TOPIC, ClusterKeyDistribution, cluster_id
from phala.core.codec import encode
from phala.core.derivation import cluster_epoch_key, contract_key
from phala.devnet.inprocess import Member, Network

CID = cluster_id(0)


def network(tmp_path: Path, names: list[bytes]) -> Network:
    net = Network(tmp_path, [b"gk1", *names])
    net.launch(gatekeepers=1)
    return net


def sent_keys(net: Network) -> list[ClusterKeyDistribution]:
    """Every cluster key message the chain has delivered."""
    return net.sent(CLUSTER_KEY_TOPIC, ClusterKeyDistribution)


def try_to_open(member: Member, dist: ClusterKeyDistribution) -> None:
    """What a worker can do with a distribution it sees on chain: readdress it to itself."""
    forged = dataclasses.replace(dist, recipient=member.identity)
    member.cluster_keys.on_distribution(member.worker.chain.dispatched, None, forged)


def test_members_receive_the_cluster_key_and_derive_contract_keys(tmp_path: Path):
    net = network(tmp_path, [b"wk1", b"wk2", b"out"])
    gk, wk1, wk2, out = net.members
    net.sudo(cluster.create_cluster([wk1.identity, wk2.identity]))
    expected = cluster_epoch_key(gk.role.master, CID, 0)
    assert wk1.cluster_keys.key(CID) == expected == wk2.cluster_keys.key(CID)
    [published] = net.read_map(cluster.ClusterPubkeys, CID)
    assert published.pubkey == expected.sr25519().public_key
    assert published.ecdh == expected.x25519().public
    # Both derive the same contract keys; nobody else holds the cluster key.
    assert contract_key(wk1.cluster_keys.key(CID), b"c" * 32) == contract_key(expected, b"c" * 32)
    assert out.cluster_keys.key(CID) is None and gk.cluster_keys.key(CID) is None


def test_an_outsider_cannot_open_a_members_key(tmp_path: Path):
    net = network(tmp_path, [b"wk1", b"out"])
    gk, wk1, out = net.members
    net.sudo(cluster.create_cluster([wk1.identity]))
    landed = sent_keys(net)
    assert [d.recipient for d in landed] == [wk1.identity]
    try_to_open(out, landed[0])
    assert out.cluster_keys.key(CID) is None
    assert wk1.cluster_keys.key(CID) is not None


def test_an_added_worker_receives_the_key_history(tmp_path: Path):
    net = network(tmp_path, [b"wk1", b"wk2", b"wk3"])
    gk, wk1, wk2, wk3 = net.members
    net.sudo(cluster.create_cluster([wk1.identity, wk2.identity]))
    net.sudo(cluster.remove_worker(CID, wk2.identity))  # epoch 1
    net.sudo(cluster.add_worker(CID, wk3.identity))
    assert wk3.cluster_keys.clusters[CID] == wk1.cluster_keys.clusters[CID]
    assert len(wk3.cluster_keys.clusters[CID]) == 2
    assert len(net.read_map(cluster.ClusterPubkeys, CID)) == 2  # adding starts no epoch


def test_a_removed_worker_cannot_obtain_the_new_epoch(tmp_path: Path):
    net = network(tmp_path, [b"wk1", b"wk2"])
    gk, wk1, wk2 = net.members
    net.sudo(cluster.create_cluster([wk1.identity, wk2.identity]))
    old = wk2.cluster_keys.key(CID)
    net.sudo(cluster.remove_worker(CID, wk2.identity))
    new = wk1.cluster_keys.key(CID, 1)
    assert new is not None and new != old
    assert wk1.cluster_keys.key(CID, 0) == old  # the history stays readable
    # The removed worker still holds what it had, and only that.
    assert wk2.cluster_keys.clusters[CID] == [old]
    for dist in sent_keys(net):
        if dist.epoch == 1:
            assert dist.recipient == wk1.identity
            try_to_open(wk2, dist)
    assert wk2.cluster_keys.clusters[CID] == [old]
    pubkeys = net.read_map(cluster.ClusterPubkeys, CID)
    assert [p.pubkey for p in pubkeys] == [old.sr25519().public_key, new.sr25519().public_key]


def test_no_key_for_a_sim_worker_once_the_chain_refuses_sim_attestation(tmp_path: Path):
    """The chain turns sim attestation off after sim workers joined a cluster; when the
    cluster's key rotates the gatekeepers send nothing to a sim-attested worker."""
    net = network(tmp_path, [b"wk1", b"wk2"])
    gk, wk1, wk2 = net.members
    net.sudo(cluster.create_cluster([wk1.identity, wk2.identity]))
    net.sudo(registry.set_allow_sim(False))
    net.sudo(cluster.remove_worker(CID, wk2.identity))
    assert [d for d in sent_keys(net) if d.epoch == 1] == []
    assert wk1.cluster_keys.key(CID, 1) is None
    # The epoch's public key is still published: the cluster is not stuck.
    assert len(net.read_map(cluster.ClusterPubkeys, CID)) == 2


def test_a_distribution_readdressed_to_another_member_does_not_open(tmp_path: Path):
    """Replaying worker 1's key message to worker 2 (same cluster, same epoch) fails: the
    envelope is sealed to worker 1's key and names it in its associated data."""
    net = network(tmp_path, [b"wk1", b"wk2"])
    gk, wk1, wk2 = net.members
    net.sudo(cluster.create_cluster([wk1.identity]))
    [dist] = sent_keys(net)
    try_to_open(wk2, dist)
    assert wk2.cluster_keys.key(CID) is None
    assert encode(dist)  # the message is public; only its recipient can use it
