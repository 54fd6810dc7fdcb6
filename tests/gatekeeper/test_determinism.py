"""What every gatekeeper sends alike, and what must never repeat.

* Three gatekeepers send byte-identical payloads (origin, topic, payload, sequence) for every
  gatekeeper-origin message: a handover, cluster keys, a beacon value. Only the sr25519
  signatures differ (they are randomised).
* Over a long run with rotations, cluster changes and re-sent histories, no AES-GCM
  (key, IV) pair is ever used for two different messages, and no two envelopes the chain
  delivered share a (key, IV) pair.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

import phala.core.envelope as envelope_module
from phala.chain.runtime import cluster, gatekeeper, sudo
from phala.core.cluster import (
    CLUSTER_KEY_TOPIC,
    DISTRIBUTION_INFO,
    ClusterKeyDistribution,
    cluster_id,
)
from phala.core.codec import encode
from phala.core.envelope import Envelope
from phala.core.gatekeeper import (
    BEACON_INTERVAL,
    HANDOVER_INFO,
    MASTER_KEY_TOPIC,
    ROTATED_TOPIC,
    ROTATION_INFO,
    MasterKeyHandover,
    MasterKeyRotated,
)
from phala.core.mq import GatekeeperOrigin
from phala.devnet.inprocess import Member, Network


def gatekeeper_payloads(member: Member) -> list[tuple[bytes, int]]:
    return [(encode(m.message), m.sequence) for m in member.worker.egress_messages() if m.message.sender == GatekeeperOrigin()]


def assert_identical(gatekeepers: list[Member]) -> None:
    sent = [gatekeeper_payloads(g) for g in gatekeepers]
    assert sent[0], "nothing was sent"
    assert all(s == sent[0] for s in sent)
    signatures = {m.signature for g in gatekeepers for m in g.worker.egress_messages()}
    assert len(signatures) > len(sent[0])  # randomised: the same payload, other signatures


def test_three_gatekeepers_send_byte_identical_payloads(tmp_path: Path):
    net = Network(tmp_path, [b"gk1", b"gk2", b"gk3", b"gk4", b"wk1", b"wk2"])
    net.launch(gatekeepers=3)
    gks, gk4, wk1, wk2 = net.members[:3], net.members[3], net.members[4], net.members[5]
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(gk4.identity)))
    assert_identical(gks)  # the handover
    net.settle()
    net.block(sudo.sudo(cluster.create_cluster([wk1.identity, wk2.identity])))
    assert_identical([*gks, gk4])  # the cluster's public keys, then one key message per worker
    net.settle()
    while net.chain.head.number % BEACON_INTERVAL:
        net.block()
    assert_identical([*gks, gk4])  # the beacon value
    net.settle()
    assert net.read(gatekeeper.Beacon) is not None


class Recorder:
    """Stands in for AESGCM and records every encryption: (key, IV) -> {(plaintext, aad)}."""

    uses: dict[tuple[bytes, bytes], set[tuple[bytes, bytes]]] = defaultdict(set)
    real = envelope_module.AESGCM

    def __init__(self, key: bytes):
        self.key = bytes(key)
        self.inner = Recorder.real(key)

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        Recorder.uses[(self.key, bytes(nonce))].add((bytes(data), bytes(aad or b"")))
        return self.inner.encrypt(nonce, data, aad)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        return self.inner.decrypt(nonce, data, aad)


@pytest.fixture
def recorder(monkeypatch):
    Recorder.uses = defaultdict(set)
    monkeypatch.setattr(envelope_module, "AESGCM", Recorder)
    return Recorder


def envelope_key_iv(recipient: Member, raw: bytes, info: bytes) -> tuple[bytes, bytes]:
    """The AES key and IV of a delivered envelope, as its recipient computes them."""
    env = Envelope.from_bytes(raw)
    ecdh = recipient.worker.identity.ecdh
    shared = ecdh.agree(env.ephemeral_public)
    return envelope_module._envelope_key(shared, info, env.ephemeral_public, ecdh.public), env.nonce


def test_no_key_and_iv_pair_is_used_twice_over_a_long_run(tmp_path: Path, recorder):
    net = Network(tmp_path, [b"gk1", b"gk2", b"gk3", b"wk1", b"wk2", b"wk3", b"wk4"])
    net.launch(gatekeepers=3)
    gk1, gk2, gk3 = net.members[:3]
    workers = net.members[3:]
    by_identity = {m.identity: m for m in net.members}
    for round_ in range(3):
        net.sudo(gatekeeper.rotate_master_key())
        cid = cluster_id(round_)
        first, second = workers[round_ % 2], workers[2 + round_ % 2]
        net.sudo(cluster.create_cluster([first.identity]))
        net.sudo(cluster.add_worker(cid, second.identity))
        net.sudo(cluster.remove_worker(cid, first.identity))
        net.sudo(cluster.add_worker(cid, first.identity))  # back again: the history re-sent
        for worker in (first, second):  # free both for the next round's cluster
            net.sudo(cluster.remove_worker(cid, worker.identity))
        # A gatekeeper leaves and comes back: the whole master key history is re-sent.
        net.sudo(gatekeeper.unregister_gatekeeper(gk3.identity))
        net.sudo(gatekeeper.register_gatekeeper(gk3.identity))
        while net.chain.head.number % BEACON_INTERVAL:
            net.block()
        net.settle()
    assert net.read(gatekeeper.RotationCounter) == 3
    assert gk1.role.master == gk2.role.master == gk3.role.master
    for r in range(3):  # created, a worker removed three times: epochs 0..3, all published
        assert len(net.read_map(cluster.ClusterPubkeys, cluster_id(r))) == 4

    # 1. No (key, IV) pair ever encrypted two different (plaintext, aad): identical copies
    #    from several gatekeepers are the same use.
    reused = {k: v for k, v in recorder.uses.items() if len(v) > 1}
    assert reused == {}

    # 2. Every envelope the chain delivered has its own (key, IV).
    delivered = []
    for h in net.sent(MASTER_KEY_TOPIC, MasterKeyHandover):
        delivered.append(envelope_key_iv(by_identity[h.recipient], h.envelope, HANDOVER_INFO))
    for d in net.sent(CLUSTER_KEY_TOPIC, ClusterKeyDistribution):
        delivered.append(envelope_key_iv(by_identity[d.recipient], d.envelope, DISTRIBUTION_INFO))
    for r in net.sent(ROTATED_TOPIC, MasterKeyRotated):
        for e in r.batch.envelopes:
            delivered.append(envelope_key_iv(by_identity[e.recipient], e.envelope, ROTATION_INFO))
    handovers = len(net.sent(MASTER_KEY_TOPIC, MasterKeyHandover))
    assert handovers == 2 + 3  # to gk2 and gk3 at launch, then gk3 once per round
    assert len(net.sent(CLUSTER_KEY_TOPIC, ClusterKeyDistribution)) >= 3 * 4
    assert len(delivered) == len(set(delivered))
