"""Handover of the master key to a later gatekeeper, in process: the existing gatekeeper
encrypts the master key to the newcomer's ECDH key and sends it through the chain as the
gatekeeper origin; the newcomer checks it against the master public key on chain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from phala.chain.runtime import gatekeeper, registry, sudo
from phala.core.codec import decode, encode
from phala.core.gatekeeper import MASTER_KEY_TOPIC, MasterKeyHandover
from phala.core.keys import dev_keypair
from phala.devnet.inprocess import Member, Network

ALICE = dev_keypair("Alice")


def test_second_gatekeeper_receives_the_master_key(tmp_path: Path):
    net = Network(tmp_path, [b"gk1", b"gk2", b"wk3"])
    first, second, bystander = net.members
    net.block(*(registry.register_worker(m.registration.info, m.registration.attestation) for m in net.members))
    net.relay()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(first.identity)))
    net.relay()
    assert first.role.master is not None and second.role.master is None

    net.block(sudo.sudo(gatekeeper.register_gatekeeper(second.identity)))
    [handover] = first.worker.egress_messages()
    assert handover.message.topic == MASTER_KEY_TOPIC
    net.relay()
    assert second.role.master == first.role.master
    assert second.role.announcement() == first.role.announcement()
    assert second.role.announcement().master_pubkey == net.read(gatekeeper.MasterPubkey)
    # The bystander saw the same outbound message and learnt nothing.
    assert bystander.role.master is None
    # The handover carried no plaintext key.
    assert first.role.master.secret not in encode(handover)


def test_handover_is_deterministic_and_bound_to_its_recipient(tmp_path: Path):
    """Two holders of the master key produce byte-identical handovers; the same envelope
    replayed to a different worker does not open."""
    net = Network(tmp_path, [b"gk1", b"gk2", b"wk3"])
    first, second, third = net.members
    net.block(*(registry.register_worker(m.registration.info, m.registration.attestation) for m in net.members))
    net.relay()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(first.identity)))
    net.relay()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(second.identity)))
    net.relay()
    # Both are gatekeepers now; the third worker joins and both hand over.
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(third.identity)))
    [a] = first.worker.egress_messages()
    [b] = second.worker.egress_messages()
    assert a.message == b.message and a.sequence == b.sequence  # signatures are randomised
    # The envelope replayed to another worker (readdressed to it) does not open there.
    envelope = decode(MasterKeyHandover, a.message.payload).envelope
    outsider = Member(net, b"out", tmp_path / "outsider")
    net.members.append(outsider)
    net.sync()
    replayed = dataclasses.replace(a.message, payload=encode(MasterKeyHandover(outsider.identity, envelope)))
    outsider.role.on_handover(net.chain.head, replayed, decode(MasterKeyHandover, replayed.payload))
    assert outsider.role.master is None
    net.relay()
    assert third.role.master == first.role.master


def test_two_gatekeepers_registered_before_any_key_share_one(tmp_path: Path):
    """Root makes two workers gatekeepers in one block: only the first generates a master
    key; the second receives it once the key is on chain."""
    net = Network(tmp_path, [b"gk1", b"gk2"])
    first, second = net.members
    net.block(*(registry.register_worker(m.registration.info, m.registration.attestation) for m in net.members))
    net.settle()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(first.identity)),
              sudo.sudo(gatekeeper.register_gatekeeper(second.identity)))
    net.settle()
    assert first.role.master is not None
    assert second.role.keys.history() == first.role.keys.history()
    assert net.read(gatekeeper.MasterPubkeyHistory) == [first.role.announcement().master_pubkey]
