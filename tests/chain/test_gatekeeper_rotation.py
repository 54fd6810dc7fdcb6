"""Gatekeeper pallet: master key rotation. Root requests it, the chain keeps the first valid
batch a gatekeeper sends, and gatekeeper-origin messages are then checked against the new key.

Every refusal is asserted by its error (pallet index and code)."""

from __future__ import annotations

from dataclasses import replace

from phala.chain.node import Node
from phala.chain.runtime import gatekeeper, mq, registry
from phala.chain.runtime.frame import BadOrigin
from phala.core import gatekeeper as payloads
from phala.core.codec import encode
from phala.core.gatekeeper import (
    BEACON_REQUEST_TOPIC,
    MASTER_KEY_TOPIC,
    MASTER_PUBKEY_TOPIC,
    ROTATED_TOPIC,
    ROTATION_BATCH_TOPIC,
    ROTATION_REQUEST_TOPIC,
    MasterPubkeyAnnounce,
    RotationBatch,
    RotationEnvelope,
    RotationRequest,
    WorkerKeys,
)
from phala.core.keys import Keypair
from phala.core.mq import GatekeeperOrigin, Message, PalletOrigin, WorkerOrigin

from .harness import (
    BOB,
    error_info,
    events_of,
    expect_invalid,
    failures,
    message_failures,
    outbound,
    read,
    register_sim_worker,
    root,
    run_in_block,
    sign,
    submit_and_produce,
    synced,
)

GK1 = Keypair.from_uri("//RotationTestGatekeeper1")
GK2 = Keypair.from_uri("//RotationTestGatekeeper2")
GK3 = Keypair.from_uri("//RotationTestGatekeeper3")
OTHER = Keypair.from_uri("//RotationTestOtherWorker")
ECDH = {GK1: b"\x01" * 32, GK2: b"\x02" * 32, GK3: b"\x03" * 32, OTHER: b"\x04" * 32}
# Master keys by rotation id: the gatekeeper origin signs with them.
MASTERS = [Keypair.from_uri(f"//RotationTestMaster{i}") for i in range(3)]
ORIGIN = PalletOrigin(b"Gatekeeper")

# -- helpers ----------------------------------------------------------------------------------


class Sequences:
    """The next mq sequence of each off-chain sender in a test."""

    def __init__(self) -> None:
        self.next: dict[bytes, int] = {}

    def take(self, sender: Keypair | bytes) -> int:
        """The next sequence of a worker (its keypair) or of another sender (any name)."""
        name = sender.public_key if isinstance(sender, Keypair) else sender
        seq = self.next.get(name, 0)
        self.next[name] = seq + 1
        return seq


def sent(node: Node) -> list[Message]:
    """The head block's outbound messages but the beacon requests (every 10th block has one)."""
    return [m for m in outbound(node) if m.topic != BEACON_REQUEST_TOPIC]


def ecdh_of(master: Keypair) -> bytes:
    """A stand-in X25519 public key of a master key (the chain only stores it)."""
    return bytes(b ^ 0xFF for b in master.public_key)


def make_gatekeeper(node: Node, worker: Keypair) -> None:
    register_sim_worker(node, worker, ECDH[worker])
    root(node, gatekeeper.register_gatekeeper(worker.public_key))


def launch(node: Node, seq: Sequences, *gatekeepers: Keypair) -> None:
    """Make ``gatekeepers`` gatekeepers; the first publishes ``MASTERS[0]``."""
    for gk in gatekeepers:
        make_gatekeeper(node, gk)
    announce = MasterPubkeyAnnounce(MASTERS[0].public_key, ecdh_of(MASTERS[0]))
    first = gatekeepers[0]
    submit_and_produce(node, synced(first, MASTER_PUBKEY_TOPIC, encode(announce), seq.take(first)))
    assert message_failures(node) == []


def batch_for(rotation_id: int, master: Keypair, recipients: list[Keypair]) -> RotationBatch:
    envelopes = [RotationEnvelope(r.public_key, b"sealed to " + r.public_key) for r in recipients]
    return RotationBatch(rotation_id, master.public_key, ecdh_of(master), envelopes)


def send_batch(node: Node, seq: Sequences, sender: Keypair, batch: RotationBatch) -> None:
    raw = synced(sender, ROTATION_BATCH_TOPIC, encode(batch), seq.take(sender))
    submit_and_produce(node, raw)
    assert failures(node.chain) == []


def refused(node: Node, sender: Keypair, error: type) -> None:
    """The head block accepted ``sender``'s message and its handler refused it with ``error``."""
    assert message_failures(node) == [(WorkerOrigin(sender.public_key), error_info(error))]
    assert events_of(node.chain, gatekeeper.MasterKeyRotated) == []
    assert sent(node) == []


def rotate(node: Node, seq: Sequences, proposer: Keypair, gatekeepers: list[Keypair]) -> int:
    """A whole rotation to the next key of :data:`MASTERS`; its rotation id."""
    root(node, gatekeeper.rotate_master_key())
    rotation_id = read(node.chain, gatekeeper.RotationLock.get)
    send_batch(node, seq, proposer, batch_for(rotation_id, MASTERS[rotation_id], gatekeepers))
    assert message_failures(node) == []
    return rotation_id


def state(node: Node) -> tuple:
    """(master keys, history, counter, lock)."""
    return (
        read(node.chain, gatekeeper.MasterPubkey.get),
        read(node.chain, gatekeeper.MasterEcdhPubkey.get),
        read(node.chain, gatekeeper.MasterPubkeyHistory.get),
        read(node.chain, gatekeeper.RotationCounter.get),
        read(node.chain, gatekeeper.RotationLock.get),
    )


def at_rotation(rotation_id: int, lock: int | None = None) -> tuple:
    master = MASTERS[rotation_id]
    history = [m.public_key for m in MASTERS[: rotation_id + 1]]
    return (master.public_key, ecdh_of(master), history, rotation_id, lock)


def request_message(rotation_id: int, gatekeepers: list[Keypair]) -> Message:
    keys = [WorkerKeys(g.public_key, ECDH[g]) for g in gatekeepers]
    return Message(ORIGIN, ROTATION_REQUEST_TOPIC, encode(RotationRequest(rotation_id, keys)))


# -- the pallet -------------------------------------------------------------------------------


def test_rotation_in_the_pallet():
    assert gatekeeper.Call.__variants__[2] is gatekeeper.rotate_master_key
    assert ROTATION_BATCH_TOPIC in gatekeeper.PALLET.topics
    assert [gatekeeper.Event.__variants__[i] for i in (4, 5)] == [
        gatekeeper.MasterKeyRotationRequested,
        gatekeeper.MasterKeyRotated,
    ]


def test_launch_starts_the_history(node):
    seq = Sequences()
    assert state(node) == (None, None, [], 0, None)
    launch(node, seq, GK1)
    assert state(node) == at_rotation(0)


# -- rotate_master_key ------------------------------------------------------------------------


def test_rotation_requested(node):
    seq = Sequences()
    launch(node, seq, GK1, GK2)
    root(node, gatekeeper.rotate_master_key())
    assert state(node) == at_rotation(0, lock=1)
    assert events_of(node.chain, gatekeeper.MasterKeyRotationRequested) == [
        gatekeeper.MasterKeyRotationRequested(1, [GK1.public_key, GK2.public_key])
    ]
    assert sent(node) == [request_message(1, [GK1, GK2])]


def test_rotation_started_twice_refused(node):
    seq = Sequences()
    launch(node, seq, GK1)
    root(node, gatekeeper.rotate_master_key())
    root(node, gatekeeper.rotate_master_key(), gatekeeper.RotationInProgress)
    assert events_of(node.chain, gatekeeper.MasterKeyRotationRequested) == []
    assert sent(node) == []
    assert state(node) == at_rotation(0, lock=1)


def test_rotation_without_master_key_refused(node):
    make_gatekeeper(node, GK1)
    root(node, gatekeeper.rotate_master_key(), gatekeeper.NoMasterKey)
    assert state(node) == (None, None, [], 0, None)
    assert sent(node) == []


def test_rotation_needs_root(node):
    seq = Sequences()
    launch(node, seq, GK1)
    call = gatekeeper.rotate_master_key()
    submit_and_produce(node, sign(BOB, call, node.account_next_index(BOB.public_key)))
    assert failures(node.chain) == [(0, error_info(BadOrigin))]
    assert state(node) == at_rotation(0)


def test_rotation_refused_while_a_gatekeeper_may_not_receive_the_key(node, monkeypatch):
    """The new key is sealed to every gatekeeper: an inactive one, or a sim-attested one on
    a chain that stopped accepting sim attestation, must be unregistered first."""
    seq = Sequences()
    launch(node, seq, GK1, GK2)

    def deactivate(env):
        record = registry.Workers.get(env.state, GK2.public_key)
        if record.active:
            registry.Workers.put(env.state, GK2.public_key, replace(record, active=False))

    run_in_block(monkeypatch, node, deactivate)
    root(node, gatekeeper.rotate_master_key(), gatekeeper.WorkerNotActive)
    root(node, gatekeeper.unregister_gatekeeper(GK2.public_key))
    root(node, registry.set_allow_sim(False))
    root(node, gatekeeper.rotate_master_key(), gatekeeper.SimWorkerNotAllowed)
    assert state(node) == at_rotation(0)
    root(node, registry.set_allow_sim(True))
    root(node, gatekeeper.rotate_master_key())
    assert sent(node) == [request_message(1, [GK1])]


# -- the rotation batch -----------------------------------------------------------------------


def test_first_valid_batch_wins(node):
    seq = Sequences()
    launch(node, seq, GK1, GK2)
    root(node, gatekeeper.rotate_master_key())
    batch = batch_for(1, MASTERS[1], [GK1, GK2])
    send_batch(node, seq, GK2, batch)
    assert message_failures(node) == []
    assert state(node) == at_rotation(1)
    assert events_of(node.chain, gatekeeper.MasterKeyRotated) == [
        gatekeeper.MasterKeyRotated(1, MASTERS[1].public_key, GK2.public_key)
    ]
    rotated = payloads.MasterKeyRotated(GK2.public_key, batch)
    assert sent(node) == [Message(ORIGIN, ROTATED_TOPIC, encode(rotated))]
    # GK1's batch for the same rotation comes too late: the lock is released.
    send_batch(node, seq, GK1, batch_for(1, MASTERS[2], [GK1, GK2]))
    refused(node, GK1, gatekeeper.BadRotationBatch)
    assert state(node) == at_rotation(1)


def test_batch_from_a_non_gatekeeper_refused(node):
    seq = Sequences()
    launch(node, seq, GK1)
    register_sim_worker(node, OTHER, ECDH[OTHER])
    root(node, gatekeeper.rotate_master_key())
    send_batch(node, seq, OTHER, batch_for(1, MASTERS[1], [GK1]))
    refused(node, OTHER, gatekeeper.NotAGatekeeper)
    assert state(node) == at_rotation(0, lock=1)


def test_batch_without_a_rotation_refused(node):
    seq = Sequences()
    launch(node, seq, GK1)
    send_batch(node, seq, GK1, batch_for(1, MASTERS[1], [GK1]))
    refused(node, GK1, gatekeeper.BadRotationBatch)
    assert state(node) == at_rotation(0)


def test_batch_for_another_rotation_refused(node):
    seq = Sequences()
    launch(node, seq, GK1)
    root(node, gatekeeper.rotate_master_key())
    for rotation_id in (0, 2):
        send_batch(node, seq, GK1, batch_for(rotation_id, MASTERS[1], [GK1]))
        refused(node, GK1, gatekeeper.BadRotationBatch)
    assert state(node) == at_rotation(0, lock=1)


def test_batch_not_for_exactly_the_gatekeepers_refused(node):
    seq = Sequences()
    launch(node, seq, GK1, GK2, GK3)
    register_sim_worker(node, OTHER, ECDH[OTHER])
    root(node, gatekeeper.rotate_master_key())
    wrong = [
        [GK1, GK2],  # one missing
        [GK1, GK3, GK2],  # reordered
        [GK1, GK2, GK3, OTHER],  # one too many
        [GK1, GK2, GK3, GK3],  # one twice
        [],
    ]
    for recipients in wrong:
        send_batch(node, seq, GK1, batch_for(1, MASTERS[1], recipients))
        refused(node, GK1, gatekeeper.BadRotationBatch)
    assert state(node) == at_rotation(0, lock=1)
    send_batch(node, seq, GK1, batch_for(1, MASTERS[1], [GK1, GK2, GK3]))
    assert message_failures(node) == []
    assert state(node) == at_rotation(1)


def test_batch_reusing_an_old_master_key_refused(node):
    seq = Sequences()
    launch(node, seq, GK1)
    root(node, gatekeeper.rotate_master_key())
    send_batch(node, seq, GK1, batch_for(1, MASTERS[0], [GK1]))
    refused(node, GK1, gatekeeper.BadRotationBatch)
    assert state(node) == at_rotation(0, lock=1)


def test_malformed_batch_refused(node):
    seq = Sequences()
    launch(node, seq, GK1)
    root(node, gatekeeper.rotate_master_key())
    good = encode(batch_for(1, MASTERS[1], [GK1]))
    for payload in (good[:-1], good + b"\x00"):
        submit_and_produce(node, synced(GK1, ROTATION_BATCH_TOPIC, payload, seq.take(GK1)))
        refused(node, GK1, gatekeeper.InvalidGatekeeperMessage)
    # From an account, or from the gatekeeper origin: batches come from a gatekeeper's worker.
    call = mq.push_message(ROTATION_BATCH_TOPIC, good)
    submit_and_produce(node, sign(BOB, call, node.account_next_index(BOB.public_key)))
    assert failures(node.chain) == [(0, error_info(gatekeeper.InvalidGatekeeperMessage))]
    raw = synced(MASTERS[0], ROTATION_BATCH_TOPIC, good, 0, sender=GatekeeperOrigin())
    submit_and_produce(node, raw)
    assert message_failures(node) == [
        (GatekeeperOrigin(), error_info(gatekeeper.InvalidGatekeeperMessage))
    ]
    assert state(node) == at_rotation(0, lock=1)


def test_gatekeepers_fixed_during_rotation(node):
    seq = Sequences()
    launch(node, seq, GK1, GK2)
    register_sim_worker(node, GK3, ECDH[GK3])
    root(node, gatekeeper.rotate_master_key())
    root(node, gatekeeper.register_gatekeeper(GK3.public_key), gatekeeper.RotationInProgress)
    root(node, gatekeeper.unregister_gatekeeper(GK2.public_key), gatekeeper.RotationInProgress)
    assert read(node.chain, gatekeeper.Gatekeepers.get) == [GK1.public_key, GK2.public_key]
    send_batch(node, seq, GK1, batch_for(1, MASTERS[1], [GK1, GK2]))
    assert state(node) == at_rotation(1)
    # Released with the lock.
    root(node, gatekeeper.register_gatekeeper(GK3.public_key))
    root(node, gatekeeper.unregister_gatekeeper(GK2.public_key))
    assert read(node.chain, gatekeeper.Gatekeepers.get) == [GK1.public_key, GK3.public_key]


def test_rotations_follow_each_other(node):
    seq = Sequences()
    launch(node, seq, GK1, GK2)
    assert rotate(node, seq, GK1, [GK1, GK2]) == 1
    root(node, gatekeeper.rotate_master_key())
    assert sent(node) == [request_message(2, [GK1, GK2])]
    send_batch(node, seq, GK2, batch_for(2, MASTERS[2], [GK1, GK2]))
    assert state(node) == at_rotation(2)


def test_gatekeeper_origin_checked_against_the_new_key(node):
    """The mq pallet checks the gatekeeper origin's signature with the current master key:
    after the rotation the old key no longer speaks for the gatekeepers."""
    seq = Sequences()
    launch(node, seq, GK1)
    message = (MASTER_KEY_TOPIC, b"payload")
    sender = GatekeeperOrigin()
    submit_and_produce(node, synced(MASTERS[0], *message, 0, sender=sender))
    assert sent(node) == [Message(sender, *message)]
    rotate(node, seq, GK1, [GK1])
    expect_invalid(node, synced(MASTERS[0], *message, 1, sender=sender), "BadProof")
    submit_and_produce(node, synced(MASTERS[1], *message, 1, sender=sender))
    assert failures(node.chain) == [] and message_failures(node) == []
    assert sent(node) == [Message(sender, *message)]


# -- cancel_rotation ----------------------------------------------------------------------------


def test_a_rotation_no_gatekeeper_answers_can_be_cancelled(node):
    seq = Sequences()
    launch(node, seq, GK1, GK2)
    root(node, gatekeeper.cancel_rotation(), gatekeeper.NoRotationInProgress)
    root(node, gatekeeper.rotate_master_key())
    assert state(node) == at_rotation(0, lock=1)
    # While it runs, the gatekeepers are fixed; once cancelled they are not.
    root(node, gatekeeper.cancel_rotation())
    assert state(node) == at_rotation(0)  # key and counter as they were
    assert events_of(node.chain, gatekeeper.MasterKeyRotationCancelled) == [
        gatekeeper.MasterKeyRotationCancelled(1)
    ]
    # A batch for the cancelled rotation that arrives late finds no rotation in progress.
    send_batch(node, seq, GK1, batch_for(1, MASTERS[1], [GK1, GK2]))
    refused(node, GK1, gatekeeper.BadRotationBatch)
    assert state(node) == at_rotation(0)
    # A new rotation works as usual.
    root(node, gatekeeper.rotate_master_key())
    send_batch(node, seq, GK2, batch_for(1, MASTERS[1], [GK1, GK2]))
    assert state(node) == at_rotation(1)


def test_cancel_rotation_needs_root(node):
    seq = Sequences()
    launch(node, seq, GK1)
    root(node, gatekeeper.rotate_master_key())
    call = gatekeeper.cancel_rotation()
    submit_and_produce(node, sign(BOB, call, node.account_next_index(BOB.public_key)))
    assert failures(node.chain) == [(0, error_info(BadOrigin))]
    assert state(node) == at_rotation(0, lock=1)
