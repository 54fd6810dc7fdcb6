"""Master key rotation, in process: root asks, every gatekeeper proposes a fresh key sealed to
all of them, the chain keeps the first batch and every gatekeeper adopts it; the history
stays, so a later gatekeeper receives every key and old derivations still work."""

from __future__ import annotations

from pathlib import Path

from phala.chain.runtime import gatekeeper, sudo
from phala.core.codec import decode
from phala.core.gatekeeper import MASTER_KEY_TOPIC, ROTATION_BATCH_TOPIC, RotationBatch
from phala.devnet.inprocess import Network
from phala.pruntime.service import attach_roles


def test_every_gatekeeper_adopts_the_kept_batch(tmp_path: Path):
    net = Network(tmp_path, [b"gk1", b"gk2", b"gk3"])
    net.launch(gatekeepers=3)
    old = net.members[0].role.master
    net.block(sudo.sudo(gatekeeper.rotate_master_key()))
    batches = [m.worker.egress_messages() for m in net.members]
    assert all(len(b) == 1 and b[0].message.topic == ROTATION_BATCH_TOPIC for b in batches)
    proposals = {decode(RotationBatch, b[0].message.payload).master_pubkey for b in batches}
    assert len(proposals) == 3  # each drew its own key
    net.settle()

    new = net.members[0].role.master
    assert new != old
    assert all(m.role.master == new for m in net.members)
    assert new.sr25519().public_key in proposals
    assert net.read(gatekeeper.MasterPubkey) == new.sr25519().public_key
    assert net.read(gatekeeper.RotationCounter) == 1
    assert net.read(gatekeeper.RotationLock) is None
    assert net.read(gatekeeper.MasterPubkeyHistory) == [old.sr25519().public_key, new.sr25519().public_key]
    for m in net.members:  # the history is kept and sealed
        assert [k for k in m.role.keys.history()] == [old, new]
        reloaded = attach_roles(m.worker, tmp_path / m.name.decode(), m.enclave.seal, m.enclave.unseal)
        assert reloaded.gatekeeper.keys.history() == [old, new]


def test_a_later_gatekeeper_receives_the_whole_history(tmp_path: Path):
    net = Network(tmp_path, [b"gk1", b"gk2"])
    net.launch(gatekeepers=1)
    first, second = net.members
    net.sudo(gatekeeper.rotate_master_key())
    net.sudo(gatekeeper.rotate_master_key())
    assert net.read(gatekeeper.RotationCounter) == 2
    net.sudo(gatekeeper.register_gatekeeper(second.identity))
    assert second.role.keys.history() == first.role.keys.history()
    assert len(second.role.keys.history()) == 3


def test_the_gatekeeper_origin_signs_with_the_new_key(tmp_path: Path):
    """After a rotation the chain checks gatekeeper-origin messages against the new key: a
    later handover (signed with it) lands."""
    net = Network(tmp_path, [b"gk1", b"gk2"])
    net.launch(gatekeepers=1)
    first, second = net.members
    net.sudo(gatekeeper.rotate_master_key())
    net.sudo(gatekeeper.register_gatekeeper(second.identity))
    assert second.role.master == first.role.master
    assert first.role.keys.rotation == 1


def test_a_rotation_racing_a_handover(tmp_path: Path):
    """A gatekeeper registered just before a rotation may learn the new key (its envelope in
    the batch) before the handover of the old ones reaches it; it acts only once it holds
    them all. The held-back handover, signed with the old key, is signed again with the new
    one when the sender adopts it, and still lands."""
    net = Network(tmp_path, [b"gk1", b"gk2"])
    net.launch(gatekeepers=1)
    first, second = net.members
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(second.identity)))
    assert [m.message.topic for m in first.worker.egress_messages()] == [MASTER_KEY_TOPIC]
    net.block(sudo.sudo(gatekeeper.rotate_master_key()))
    while net.read(gatekeeper.RotationLock) is not None:
        net.relay(keep_back={MASTER_KEY_TOPIC})  # a slow relayer: the handover waits
    assert second.role.keys.slots[0] is None and second.role.keys.get(1) == first.role.master
    assert second.role.master is None and not second.role.active
    net.settle()
    assert second.role.keys.history() == first.role.keys.history()


def test_a_gatekeeper_resumed_from_an_old_checkpoint_acts_as_it_did(tmp_path: Path):
    """gk1 queues a handover for gk2, adopts a rotation, and crashes before its relayer sent
    the handover. Resumed from a checkpoint older than both, it replays the blocks: in the
    registration block it acts with that block's master key (not its newest one) and sends
    the same handover again; gk2 ends with the whole history."""
    net = Network(tmp_path, [b"gk1", b"gk2"])
    net.launch(gatekeepers=1)
    gk1, gk2 = net.members
    gk1.checkpoint()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(gk2.identity)))
    [lost] = gk1.worker.egress_messages()
    net.block(sudo.sudo(gatekeeper.rotate_master_key()))
    while net.read(gatekeeper.RotationLock) is not None:
        net.relay(keep_back={MASTER_KEY_TOPIC})
    assert gk1.role.keys.rotation == 1 and gk2.role.master is None

    gk1.restart(net)
    assert gk1.role.keys.rotation == 1  # the sealed keys survive; the checkpoint is older
    net.sync()
    resent = [m for m in gk1.worker.egress_messages() if m.message.topic == MASTER_KEY_TOPIC]
    assert [(m.message, m.sequence) for m in resent] == [(lost.message, lost.sequence)]
    net.settle()
    assert gk2.role.keys.history() == gk1.role.keys.history()
    assert len(gk2.role.keys.history()) == 2
