"""Cluster pallet: creating clusters and changing their members through sudo, the epochs and
key requests that follow, and the public keys the gatekeepers publish for each epoch.

Every refusal is asserted by its error (pallet index and code)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from phala.chain.node import Node
from phala.chain.runtime import cluster, executive, gatekeeper, mq, registry
from phala.chain.runtime.frame import BadOrigin, RuntimeCall
from phala.core.cluster import (
    CLUSTER_KEY_REQUEST_TOPIC,
    CLUSTER_KEY_TOPIC,
    CLUSTER_PUBKEY_TOPIC,
    ClusterInfo,
    ClusterKeyRequest,
    ClusterPubkey,
    EpochKeys,
    cluster_id,
)
from phala.core.codec import decode, encode
from phala.core.gatekeeper import WorkerKeys
from phala.core.keys import Keypair
from phala.core.mq import GatekeeperOrigin, Message, MessageOrigin, PalletOrigin, WorkerOrigin

from .harness import (
    BOB,
    error_info,
    events_of,
    failures,
    head_env,
    message_failures,
    read,
    register_sim_worker,
    root,
    run_in_block,
    sign,
    submit_and_produce,
    synced,
)
from .test_gatekeeper_rotation import GK1, MASTERS, Sequences, launch, rotate, sent

W1, W2, W3, W4 = (Keypair.from_uri(f"//ClusterTestWorker{i}") for i in range(1, 5))
ECDH = {w: bytes([0x10 + i]) * 32 for i, w in enumerate((W1, W2, W3, W4))}
UNREGISTERED = Keypair.from_uri("//ClusterTestNobody")
ORIGIN = PalletOrigin(b"Cluster")
GATEKEEPER = b"the gatekeeper origin"  # its sequences, in Sequences
C0, C1 = cluster_id(0), cluster_id(1)

# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def seq() -> Sequences:
    return Sequences()


@pytest.fixture
def chain(node, seq) -> Node:
    """A node with a gatekeeper, the master key ``MASTERS[0]``, and W1..W4 registered."""
    launch(node, seq, GK1)
    for w in (W1, W2, W3, W4):
        register_sim_worker(node, w, ECDH[w])
    return node


def ids(*workers: Keypair) -> list[bytes]:
    return [w.public_key for w in workers]


def worker_keys(*workers: Keypair) -> list[WorkerKeys]:
    return [WorkerKeys(w.public_key, ECDH[w]) for w in workers]


def info(node: Node, cid: bytes) -> ClusterInfo | None:
    return read(node.chain, lambda st: cluster.Clusters.get_opt(st, cid))


def cluster_of(node: Node, worker: Keypair) -> bytes | None:
    return read(node.chain, lambda st: cluster.WorkerCluster.get_opt(st, worker.public_key))


def pubkeys(node: Node, cid: bytes) -> list[EpochKeys]:
    return read(node.chain, lambda st: cluster.ClusterPubkeys.get(st, cid))


def requests(node: Node) -> list[ClusterKeyRequest]:
    """The key requests of the head block, all from the pallet's origin."""
    found = [m for m in sent(node) if m.topic == CLUSTER_KEY_REQUEST_TOPIC]
    assert all(m.sender == ORIGIN for m in found)
    return [decode(ClusterKeyRequest, m.payload) for m in found]


def count(node: Node) -> int:
    return read(node.chain, cluster.ClusterCount.get)


def pallet_state(node: Node) -> list[tuple[bytes, bytes]]:
    """Everything the pallet stores (its keys share the prefix twox_128("Cluster"))."""
    return read(node.chain, lambda st: sorted(st.iter_prefix(cluster.ClusterCount.key[:16])))


def refused(node: Node, call: RuntimeCall, error: type) -> None:
    """Root's ``call`` fails with ``error`` and changes nothing the pallet keeps."""
    before = pallet_state(node)
    root(node, call, error)
    assert pallet_state(node) == before
    assert requests(node) == []
    assert events_of(node.chain, cluster.Event) == []


def epoch_keys(epoch: int) -> EpochKeys:
    return EpochKeys(bytes([0xA0 + epoch]) * 32, bytes([0xB0 + epoch]) * 32)


def gatekeeper_synced(node: Node, seq: Sequences, topic: bytes, payload: bytes) -> bytes:
    """A message of the gatekeeper origin, signed by the current master key."""
    master = MASTERS[read(node.chain, gatekeeper.RotationCounter.get)]
    return synced(master, topic, payload, seq.take(GATEKEEPER), sender=GatekeeperOrigin())


def publish(
    node: Node, seq: Sequences, cid: bytes, epoch: int, published: EpochKeys | None = None
) -> None:
    """Publish ``epoch``'s keys (by default :func:`epoch_keys`) as the gatekeeper origin."""
    found = epoch_keys(epoch) if published is None else published
    payload = encode(ClusterPubkey(cid, epoch, found.pubkey, found.ecdh))
    submit_and_produce(node, gatekeeper_synced(node, seq, CLUSTER_PUBKEY_TOPIC, payload))
    assert failures(node.chain) == []


def publish_refused(node: Node, origin: MessageOrigin = GatekeeperOrigin()) -> None:  # noqa: B008
    assert message_failures(node) == [(origin, error_info(cluster.BadClusterPubkey))]
    assert events_of(node.chain, cluster.ClusterPubkeyPublished) == []


# -- the pallet in the runtime ----------------------------------------------------------------


def test_pallet_in_the_runtime():
    indices = [p.index for p in executive.PALLETS]
    assert cluster.PALLET in executive.PALLETS and indices.count(8) == 1
    assert executive.PALLETS.index(cluster.PALLET) < executive.PALLETS.index(mq.PALLET)
    assert executive.PALLETS[-1] is mq.PALLET
    assert cluster.PALLET.topics == (CLUSTER_PUBKEY_TOPIC,)
    assert CLUSTER_KEY_TOPIC not in cluster.PALLET.topics  # gatekeepers → workers, outbound
    names = {i: c.__name__ for i, c in cluster.Call.__variants__.items()}
    assert names == {0: "create_cluster", 1: "add_worker", 2: "remove_worker"}


def test_genesis_state(node):
    assert count(node) == 0
    assert info(node, C0) is None
    with head_env(node.chain) as env:
        assert cluster.cluster(env, C0) is None
        assert cluster.cluster_of(env, W1.public_key) is None
        assert cluster.current_pubkeys(env, C0) is None


# -- create_cluster ---------------------------------------------------------------------------


def test_create_cluster(chain):
    root(chain, cluster.create_cluster(ids(W2, W1)))
    assert count(chain) == 1
    assert info(chain, C0) == ClusterInfo(ids(W2, W1), [0])
    assert cluster_of(chain, W1) == cluster_of(chain, W2) == C0
    assert cluster_of(chain, W3) is None
    assert events_of(chain.chain, cluster.ClusterCreated) == [cluster.ClusterCreated(C0, ids(W2, W1))]
    assert requests(chain) == [ClusterKeyRequest(C0, [0], worker_keys(W2, W1), True)]
    # The next cluster gets the next id.
    root(chain, cluster.create_cluster(ids(W3)))
    assert count(chain) == 2
    assert info(chain, C1) == ClusterInfo(ids(W3), [0])
    assert requests(chain) == [ClusterKeyRequest(C1, [0], worker_keys(W3), True)]
    with head_env(chain.chain) as env:
        assert cluster.cluster(env, C1) == ClusterInfo(ids(W3), [0])
        assert cluster.cluster_of(env, W3.public_key) == C1
        assert cluster.current_pubkeys(env, C1) is None  # not published yet


def test_create_cluster_after_a_rotation(chain, seq):
    rotate(chain, seq, GK1, [GK1])
    root(chain, cluster.create_cluster(ids(W1)))
    assert info(chain, C0) == ClusterInfo(ids(W1), [1])
    assert requests(chain) == [ClusterKeyRequest(C0, [1], worker_keys(W1), True)]


def test_create_cluster_refusals(chain, monkeypatch):
    refused(chain, cluster.create_cluster([]), cluster.EmptyCluster)
    too_many = [bytes([i]) * 32 for i in range(cluster.MAX_WORKERS + 1)]
    refused(chain, cluster.create_cluster(too_many), cluster.TooManyWorkers)
    refused(chain, cluster.create_cluster(ids(W1, W2, W1)), cluster.DuplicateWorker)
    unregistered = cluster.create_cluster(ids(W1, UNREGISTERED))
    refused(chain, unregistered, cluster.WorkerNotRegistered)
    root(chain, cluster.create_cluster(ids(W1)))
    refused(chain, cluster.create_cluster(ids(W2, W1)), cluster.AlreadyInCluster)
    refused(chain, cluster.create_cluster(ids(W1)), cluster.AlreadyInCluster)

    def deactivate(env):
        record = registry.Workers.get(env.state, W3.public_key)
        if record.active:
            registry.Workers.put(env.state, W3.public_key, replace(record, active=False))

    run_in_block(monkeypatch, chain, deactivate)
    refused(chain, cluster.create_cluster(ids(W2, W3)), cluster.WorkerNotActive)
    # A test net that graduates: its sim workers are registered, but join no cluster.
    root(chain, registry.set_allow_sim(False))
    refused(chain, cluster.create_cluster(ids(W2)), cluster.SimWorkerNotAllowed)
    root(chain, registry.set_allow_sim(True))
    root(chain, cluster.create_cluster(ids(W2)))
    assert count(chain) == 2


def test_create_cluster_without_master_key_refused(node):
    register_sim_worker(node, W1, ECDH[W1])
    refused(node, cluster.create_cluster(ids(W1)), cluster.NoMasterKey)
    assert count(node) == 0 and cluster_of(node, W1) is None


def test_calls_need_root(chain):
    root(chain, cluster.create_cluster(ids(W1, W2)))
    for call in (
        cluster.create_cluster(ids(W3)),
        cluster.add_worker(C0, W3.public_key),
        cluster.remove_worker(C0, W1.public_key),
    ):
        submit_and_produce(chain, sign(BOB, call, chain.account_next_index(BOB.public_key)))
        assert failures(chain.chain) == [(0, error_info(BadOrigin))]
    assert info(chain, C0) == ClusterInfo(ids(W1, W2), [0])
    assert count(chain) == 1


# -- add_worker -------------------------------------------------------------------------------


def test_add_worker(chain, seq):
    root(chain, cluster.create_cluster(ids(W1)))
    rotate(chain, seq, GK1, [GK1])  # a rotation does not start an epoch
    root(chain, cluster.add_worker(C0, W2.public_key))
    assert info(chain, C0) == ClusterInfo(ids(W1, W2), [0])
    assert cluster_of(chain, W2) == C0
    assert events_of(chain.chain, cluster.WorkerAdded) == [cluster.WorkerAdded(C0, W2.public_key)]
    # Only the newcomer, the whole history, nothing to publish.
    assert requests(chain) == [ClusterKeyRequest(C0, [0], worker_keys(W2), False)]


def test_add_worker_refusals(chain, monkeypatch):
    root(chain, cluster.create_cluster(ids(W1)))
    root(chain, cluster.create_cluster(ids(W2)))
    refused(chain, cluster.add_worker(cluster_id(7), W3.public_key), cluster.ClusterNotFound)
    refused(chain, cluster.add_worker(C0, UNREGISTERED.public_key), cluster.WorkerNotRegistered)
    refused(chain, cluster.add_worker(C0, W1.public_key), cluster.AlreadyInCluster)
    refused(chain, cluster.add_worker(C0, W2.public_key), cluster.AlreadyInCluster)
    root(chain, registry.set_allow_sim(False))
    refused(chain, cluster.add_worker(C0, W3.public_key), cluster.SimWorkerNotAllowed)
    root(chain, registry.set_allow_sim(True))

    def deactivate(env):
        record = registry.Workers.get(env.state, W3.public_key)
        if record.active:
            registry.Workers.put(env.state, W3.public_key, replace(record, active=False))

    run_in_block(monkeypatch, chain, deactivate)
    refused(chain, cluster.add_worker(C0, W3.public_key), cluster.WorkerNotActive)
    assert info(chain, C0) == ClusterInfo(ids(W1), [0])
    # A full cluster takes no one more.
    monkeypatch.setattr(cluster, "MAX_WORKERS", 1)
    refused(chain, cluster.add_worker(C0, W3.public_key), cluster.TooManyWorkers)


# -- remove_worker ----------------------------------------------------------------------------


def test_remove_worker_starts_an_epoch(chain, seq):
    root(chain, cluster.create_cluster(ids(W1, W2, W3)))
    rotate(chain, seq, GK1, [GK1])
    root(chain, cluster.remove_worker(C0, W2.public_key))
    # The new epoch derives from the master key of rotation 1.
    assert info(chain, C0) == ClusterInfo(ids(W1, W3), [0, 1])
    assert cluster_of(chain, W2) is None
    assert events_of(chain.chain, cluster.WorkerRemoved) == [
        cluster.WorkerRemoved(C0, W2.public_key, 1)
    ]
    assert requests(chain) == [ClusterKeyRequest(C0, [0, 1], worker_keys(W1, W3), True)]
    # The removed worker may join another cluster.
    root(chain, cluster.create_cluster(ids(W2)))
    assert cluster_of(chain, W2) == C1


def test_remove_the_last_worker(chain):
    root(chain, cluster.create_cluster(ids(W1)))
    root(chain, cluster.remove_worker(C0, W1.public_key))
    assert info(chain, C0) == ClusterInfo([], [0, 0])
    # Nobody to send the key to, but its public keys are still published.
    assert requests(chain) == [ClusterKeyRequest(C0, [0, 0], [], True)]
    root(chain, cluster.add_worker(C0, W1.public_key))
    assert requests(chain) == [ClusterKeyRequest(C0, [0, 0], worker_keys(W1), False)]


def test_remove_worker_refusals(chain):
    root(chain, cluster.create_cluster(ids(W1, W2)))
    root(chain, cluster.create_cluster(ids(W3)))
    refused(chain, cluster.remove_worker(cluster_id(7), W1.public_key), cluster.ClusterNotFound)
    refused(chain, cluster.remove_worker(C0, W3.public_key), cluster.NotAMember)
    refused(chain, cluster.remove_worker(C0, W4.public_key), cluster.NotAMember)
    refused(chain, cluster.remove_worker(C0, UNREGISTERED.public_key), cluster.NotAMember)
    root(chain, cluster.remove_worker(C0, W1.public_key))
    refused(chain, cluster.remove_worker(C0, W1.public_key), cluster.NotAMember)
    assert info(chain, C0) == ClusterInfo(ids(W2), [0, 0])


# -- the public keys --------------------------------------------------------------------------


def test_publish_epoch_keys(chain, seq):
    root(chain, cluster.create_cluster(ids(W1, W2)))
    publish(chain, seq, C0, 0)
    assert message_failures(chain) == []
    assert pubkeys(chain, C0) == [epoch_keys(0)]
    k = epoch_keys(0)
    assert events_of(chain.chain, cluster.ClusterPubkeyPublished) == [
        cluster.ClusterPubkeyPublished(C0, 0, k.pubkey, k.ecdh)
    ]
    with head_env(chain.chain) as env:
        assert cluster.current_pubkeys(env, C0) == k
    # A removal starts epoch 1: no current keys until they are published.
    root(chain, cluster.remove_worker(C0, W2.public_key))
    with head_env(chain.chain) as env:
        assert cluster.current_pubkeys(env, C0) is None
    publish(chain, seq, C0, 1)
    assert pubkeys(chain, C0) == [epoch_keys(0), epoch_keys(1)]
    with head_env(chain.chain) as env:
        assert cluster.current_pubkeys(env, C0) == epoch_keys(1)


def test_publish_after_a_rotation_uses_the_new_key(chain, seq):
    root(chain, cluster.create_cluster(ids(W1)))
    rotate(chain, seq, GK1, [GK1])
    publish(chain, seq, C0, 0)  # signed by MASTERS[1]
    assert message_failures(chain) == []
    assert pubkeys(chain, C0) == [epoch_keys(0)]


def test_publish_refusals(chain, seq):
    root(chain, cluster.create_cluster(ids(W1, W2, W3)))
    k = epoch_keys(0)
    good = encode(ClusterPubkey(C0, 0, k.pubkey, k.ecdh))
    # From a gatekeeper's own worker origin, not the gatekeeper origin.
    submit_and_produce(chain, synced(GK1, CLUSTER_PUBKEY_TOPIC, good, seq.take(GK1)))
    publish_refused(chain, WorkerOrigin(GK1.public_key))
    # An unknown cluster; an epoch that has not begun.
    publish(chain, seq, cluster_id(7), 0)
    publish_refused(chain)
    publish(chain, seq, C0, 1)
    publish_refused(chain)
    # A malformed payload.
    for payload in (good[:-1], good + b"\x00"):
        submit_and_produce(chain, gatekeeper_synced(chain, seq, CLUSTER_PUBKEY_TOPIC, payload))
        publish_refused(chain)
    assert pubkeys(chain, C0) == []
    # The first copy is kept; a second one for the same epoch is refused.
    publish(chain, seq, C0, 0)
    assert message_failures(chain) == []
    publish(chain, seq, C0, 0, epoch_keys(5))
    publish_refused(chain)
    publish(chain, seq, C0, 1)  # the next unpublished one, but it has not begun
    publish_refused(chain)
    # Epochs are published in order: 2 waits for 1.
    root(chain, cluster.remove_worker(C0, W2.public_key))
    root(chain, cluster.remove_worker(C0, W3.public_key))
    publish(chain, seq, C0, 2)
    publish_refused(chain)
    publish(chain, seq, C0, 1)
    publish(chain, seq, C0, 2)
    assert message_failures(chain) == []
    assert pubkeys(chain, C0) == [epoch_keys(0), epoch_keys(1), epoch_keys(2)]


def test_publish_from_an_account_refused(chain):
    root(chain, cluster.create_cluster(ids(W1)))
    k = epoch_keys(0)
    call = mq.push_message(CLUSTER_PUBKEY_TOPIC, encode(ClusterPubkey(C0, 0, k.pubkey, k.ecdh)))
    submit_and_produce(chain, sign(BOB, call, chain.account_next_index(BOB.public_key)))
    assert failures(chain.chain) == [(0, error_info(cluster.BadClusterPubkey))]
    assert pubkeys(chain, C0) == []


def test_cluster_keys_go_outbound(chain, seq):
    """``phala/cluster/key`` is for workers: the mq pushes it outbound, the chain keeps nothing."""
    submit_and_produce(chain, gatekeeper_synced(chain, seq, CLUSTER_KEY_TOPIC, b"sealed"))
    assert message_failures(chain) == []
    assert sent(chain) == [Message(GatekeeperOrigin(), CLUSTER_KEY_TOPIC, b"sealed")]
