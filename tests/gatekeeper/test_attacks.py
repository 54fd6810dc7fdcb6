"""Attacks on the gatekeepers' keys, each performed and shown to fail (issue 4).

Outbound topics are open: any account (``Mq.push_message``) or registered worker (a synced
message as its own origin) can put a message on ``phala/gatekeeper/registered`` or
``phala/cluster/key_request``. Such a message reaches every pRuntime, so what keeps keys safe
is that a worker acts only on messages from the pallet or origin that owns the topic, and
that a gatekeeper checks verified chain state before sealing any key to anyone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from phala.chain.runtime import cluster, gatekeeper, mq, sudo
from phala.chain.runtime.executive import InvalidTransaction
from phala.chain.runtime.frame import RuntimeCall
from phala.core.cluster import (
    CLUSTER_KEY_REQUEST_TOPIC,
    CLUSTER_KEY_TOPIC,
    ClusterKeyRequest,
    cluster_id,
)
from phala.core.codec import decode, encode
from phala.core.gatekeeper import (
    GATEKEEPER_REGISTERED_TOPIC,
    MASTER_KEY_TOPIC,
    ROTATION_BATCH_TOPIC,
    GatekeeperRegistered,
    RotationBatch,
    WorkerKeys,
)
from phala.core.mq import GatekeeperOrigin, Message, sign_message
from phala.core.types import UnsignedExtrinsic
from phala.devnet.inprocess import ALICE, Member, Network

CID = cluster_id(0)


def push(net: Network, topic: bytes, payload: bytes) -> None:
    """Alice (any account) puts a message on an outbound topic."""
    net.block(mq.push_message(topic, payload))


def as_worker(net: Network, member: Member, topic: bytes, payload: bytes) -> None:
    """A registered worker sends a message as its own origin, through its relayer."""
    member.worker.send(Message(member.worker.origin, topic, payload))
    net.settle()


def keys_of(member: Member) -> WorkerKeys:
    return WorkerKeys(member.identity, member.worker.identity.ecdh_public)


def test_a_worker_cannot_ask_for_the_master_key(tmp_path: Path):
    """A registered worker that is no gatekeeper, and an account, forge the 'registered'
    message naming the worker: the gatekeeper ignores both (wrong sender); the master key is
    sealed to nobody."""
    net = Network(tmp_path, [b"gk1", b"wk"])
    net.launch(gatekeepers=1)
    gk, wk = net.members
    forged = encode(GatekeeperRegistered(wk.identity, False, wk.worker.identity.ecdh_public))
    as_worker(net, wk, GATEKEEPER_REGISTERED_TOPIC, forged)
    push(net, GATEKEEPER_REGISTERED_TOPIC, forged)
    net.settle()
    assert net.sent(MASTER_KEY_TOPIC) == []
    assert wk.role.master is None
    # Even a message that got past the sender check would be refused: the role hands over
    # only to a gatekeeper the chain lists.
    gk.role.hand_over(wk.identity)
    assert gk.worker.egress_messages() == []


def test_an_unregistered_worker_cannot_send_at_all(tmp_path: Path):
    net = Network(tmp_path, [b"gk1"])
    net.launch(gatekeepers=1)
    stranger = Member(net, b"stranger", tmp_path / "stranger")
    net.members.append(stranger)
    net.sync()
    forged = encode(GatekeeperRegistered(stranger.identity, False, stranger.worker.identity.ecdh_public))
    stranger.worker.send(Message(stranger.worker.origin, GATEKEEPER_REGISTERED_TOPIC, forged))
    [signed] = stranger.worker.egress_messages()
    with pytest.raises(InvalidTransaction) as info:
        net.node.submit(UnsignedExtrinsic(encode(mq.sync_offchain_message(signed), RuntimeCall)).encode())
    assert info.value.kind == "BadSigner"


def test_a_worker_outside_a_cluster_cannot_obtain_its_key(tmp_path: Path):
    net = Network(tmp_path, [b"gk1", b"wk1", b"out"])
    net.launch(gatekeepers=1)
    gk, wk1, out = net.members
    net.sudo(cluster.create_cluster([wk1.identity]))
    before = len(net.sent(CLUSTER_KEY_TOPIC))
    # The outsider forges the pallet's request naming itself, as a worker and as an account.
    request = encode(ClusterKeyRequest(CID, [0], [keys_of(out)], False))
    as_worker(net, out, CLUSTER_KEY_REQUEST_TOPIC, request)
    push(net, CLUSTER_KEY_REQUEST_TOPIC, request)
    net.settle()
    assert len(net.sent(CLUSTER_KEY_TOPIC)) == before
    assert out.cluster_keys.key(CID) is None
    # And if such a request reached the gatekeeper, it checks membership on chain.
    gk_distributor_request(gk, net, ClusterKeyRequest(CID, [0], [keys_of(out)], False))
    assert [m for m in gk.worker.egress_messages() if m.message.topic == CLUSTER_KEY_TOPIC] == []


def gk_distributor_request(gk: Member, net: Network, request: ClusterKeyRequest) -> None:
    [handler] = [s.handler for s in gk.worker.subscribers[CLUSTER_KEY_REQUEST_TOPIC]]
    handler(net.chain.head, None, request)


def test_a_removed_worker_cannot_ask_for_the_new_epoch(tmp_path: Path):
    net = Network(tmp_path, [b"gk1", b"wk1", b"wk2"])
    net.launch(gatekeepers=1)
    gk, wk1, wk2 = net.members
    net.sudo(cluster.create_cluster([wk1.identity, wk2.identity]))
    net.sudo(cluster.remove_worker(CID, wk2.identity))
    request = ClusterKeyRequest(CID, [0, 0], [keys_of(wk2)], False)
    as_worker(net, wk2, CLUSTER_KEY_REQUEST_TOPIC, encode(request))
    gk_distributor_request(gk, net, request)
    net.settle()
    assert wk2.cluster_keys.key(CID, 1) is None
    assert wk1.cluster_keys.key(CID, 1) is not None


def test_a_distribution_replayed_by_someone_else_is_ignored(tmp_path: Path):
    """The key message itself, re-pushed by an account (not the gatekeeper origin), is
    ignored even by its own recipient, and opens for no one else."""
    net = Network(tmp_path, [b"gk1", b"wk1", b"wk2"])
    net.launch(gatekeepers=1)
    gk, wk1, wk2 = net.members
    net.sudo(cluster.create_cluster([wk1.identity]))
    [message] = [m for m in net.delivered if m.topic == CLUSTER_KEY_TOPIC]
    push(net, CLUSTER_KEY_TOPIC, message.payload)
    assert wk2.cluster_keys.key(CID) is None


def test_claiming_the_gatekeeper_origin_with_a_wrong_key(tmp_path: Path):
    """A key message 'from the gatekeeper origin' signed by any other key is refused by the
    message queue before it reaches anyone."""
    net = Network(tmp_path, [b"gk1", b"wk1"])
    net.launch(gatekeepers=1)
    gk, wk1 = net.members
    seq = gk.worker.chain.mq_next_sequence(GatekeeperOrigin())
    for wrong in (ALICE, wk1.worker.identity.keypair, gk.worker.identity.keypair):
        forged = sign_message(wrong, net.chain.genesis_hash, Message(GatekeeperOrigin(), CLUSTER_KEY_TOPIC, b""), seq)
        with pytest.raises(InvalidTransaction) as info:
            net.node.submit(UnsignedExtrinsic(encode(mq.sync_offchain_message(forged), RuntimeCall)).encode())
        assert info.value.kind == "BadProof"


def test_rotation_batches_from_a_non_gatekeeper_or_for_a_wrong_rotation(tmp_path: Path):
    net = Network(tmp_path, [b"gk1", b"gk2", b"wk"])
    net.launch(gatekeepers=2)
    gk1, gk2, wk = net.members
    old = gk1.role.master
    net.block(sudo.sudo(gatekeeper.rotate_master_key()))
    [h1] = gk1.worker.egress_messages()
    [h2] = gk2.worker.egress_messages()
    gk1.worker.egress.clear()  # the test relays by hand from here
    gk2.worker.egress.clear()
    honest = decode(RotationBatch, h1.message.payload)
    # A worker that is no gatekeeper copies an honest batch; a gatekeeper sends one for the
    # wrong rotation id. Both are refused; the lock stays and nobody's key changes.
    as_worker(net, wk, ROTATION_BATCH_TOPIC, encode(honest))
    wrong_id = RotationBatch(5, honest.master_pubkey, honest.ecdh_pubkey, honest.envelopes)
    wrong = sign_message(gk1.worker.identity.keypair, net.chain.genesis_hash,
                         Message(gk1.worker.origin, ROTATION_BATCH_TOPIC, encode(wrong_id)), h1.sequence)
    net.block(unsigned=(mq.sync_offchain_message(wrong),))
    assert net.read(gatekeeper.RotationLock) == 1
    assert net.read(gatekeeper.RotationCounter) == 0
    assert gk1.role.master == old == gk2.role.master
    failed = [e.error for e in net.events if isinstance(e, mq.OffchainMessageFailed)]
    not_gatekeeper, bad_batch = gatekeeper.NotAGatekeeper, gatekeeper.BadRotationBatch
    assert [(f.pallet, f.code) for f in failed] == [
        (gatekeeper.PALLET_INDEX, not_gatekeeper.code), (gatekeeper.PALLET_INDEX, bad_batch.code)]
    # Rotation cannot be started twice while one is in progress.
    seen = len(net.events)
    net.block(sudo.sudo(gatekeeper.rotate_master_key()))
    [sudid] = [e for e in net.events[seen:] if isinstance(e, sudo.Sudid)]
    assert (sudid.error.pallet, sudid.error.code) == (gatekeeper.PALLET_INDEX, gatekeeper.RotationInProgress.code)
    # The other gatekeeper's honest batch completes the rotation; everyone adopts its key.
    net.block(unsigned=(mq.sync_offchain_message(h2),))
    assert net.read(gatekeeper.RotationCounter) == 1
    assert gk1.role.master == gk2.role.master != old
    assert gk1.role.master.sr25519().public_key == decode(RotationBatch, h2.message.payload).master_pubkey
