"""The first gatekeeper's launch, in process: a registered worker is made a gatekeeper by
sudo, generates the master key inside its enclave, seals it, and publishes the master public
keys through the message queue; the chain stores them."""

from __future__ import annotations

from pathlib import Path

import pytest

from phala.chain.runtime import gatekeeper, mq, registry, sudo
from phala.chain.runtime.executive import InvalidTransaction
from phala.chain.runtime.frame import RuntimeCall
from phala.core.codec import encode
from phala.core.derivation import random_number
from phala.core.gatekeeper import BEACON_INTERVAL, BEACON_TOPIC, BeaconValue
from phala.core.mq import GatekeeperOrigin, Message, sign_message
from phala.core.types import UnsignedExtrinsic
from phala.devnet.inprocess import ALICE, Member, Network
from phala.gatekeeper.role import MASTER_KEY_FILE, GatekeeperRole


def test_first_gatekeeper_generates_seals_and_publishes_the_master_key(tmp_path: Path):
    net = Network(tmp_path, [b"gk-1"])
    gk = net.members[0]
    reg = gk.registration
    net.block(registry.register_worker(reg.info, reg.attestation))
    assert gk.worker.registered
    net.relay()  # worker_online
    assert gk.worker.egress_messages() == []
    assert not gk.role.is_gatekeeper and gk.role.master is None

    identity = gk.worker.identity.public_key
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(identity)))
    assert gk.role.is_gatekeeper
    assert gk.role.master is not None
    assert (tmp_path / "gk-1" / MASTER_KEY_FILE).exists()
    assert net.read(gatekeeper.MasterPubkey) is None  # announced, not yet on chain
    [announce] = gk.worker.egress_messages()
    net.relay()

    expected = gk.role.announcement()
    assert net.read(gatekeeper.MasterPubkey) == expected.master_pubkey
    assert gk.worker.egress_messages() == []
    assert gk.worker.info()["role"] == "gatekeeper"
    # The sealed master key survives a restart of the worker (same enclave, same identity).
    again = GatekeeperRole(gk.worker, tmp_path / "gk-1", gk.enclave.seal, gk.enclave.unseal)
    assert again.announcement() == expected
    # The sealed file holds no plaintext key material.
    assert gk.role.master.secret not in (tmp_path / "gk-1" / MASTER_KEY_FILE).read_bytes()
    assert announce.message.topic.startswith(b"^")


def launched(tmp_path: Path) -> tuple[Network, Member]:
    net = Network(tmp_path, [b"gk-1"])
    gk = net.members[0]
    net.block(registry.register_worker(gk.registration.info, gk.registration.attestation))
    net.relay()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(gk.worker.identity.public_key)))
    net.relay()
    assert net.read(gatekeeper.MasterPubkey) is not None
    return net, gk


def until_beacon_request(net: Network) -> None:
    while net.chain.head.number % BEACON_INTERVAL:
        net.block()


def test_beacon_rounds_link_and_come_from_the_master_key(tmp_path: Path):
    net, gk = launched(tmp_path)
    until_beacon_request(net)
    assert net.read(gatekeeper.BeaconRequested) == 1
    [signed] = gk.worker.egress_messages()
    assert signed.message.sender == GatekeeperOrigin()
    net.relay()
    first = net.read(gatekeeper.Beacon)
    assert first.round == 1 and first.previous == bytes(32)
    assert first.value == random_number(gk.role.master, 1, bytes(32))
    until_beacon_request(net)
    net.relay()
    second = net.read(gatekeeper.Beacon)
    assert (second.round, second.previous) == (2, first.value)
    assert second.value == random_number(gk.role.master, 2, first.value)
    assert gk.worker.egress_messages() == []


def test_gatekeeper_origin_with_a_wrong_key_or_a_broken_link_is_refused(tmp_path: Path):
    net, gk = launched(tmp_path)
    until_beacon_request(net)
    gk.worker.egress.clear()  # drop the honest answer: the test sends its own
    seq = gk.worker.chain.mq_next_sequence(GatekeeperOrigin())
    good = BeaconValue(1, bytes(32), random_number(gk.role.master, 1, bytes(32)))
    message = Message(GatekeeperOrigin(), BEACON_TOPIC, encode(good))
    # Claiming the gatekeeper origin without the master key.
    forged = sign_message(ALICE, net.chain.genesis_hash, message, seq)
    with pytest.raises(InvalidTransaction) as info:
        net.node.submit(UnsignedExtrinsic(encode(mq.sync_offchain_message(forged), RuntimeCall)).encode())
    assert info.value.kind == "BadProof"
    # With the master key but not linked to the previous value: accepted by mq, refused by
    # the pallet (the sequence is used up, the beacon unchanged).
    broken = BeaconValue(1, b"\x01" * 32, good.value)
    signed = sign_message(gk.role.master.sr25519(), net.chain.genesis_hash,
                          Message(GatekeeperOrigin(), BEACON_TOPIC, encode(broken)), seq)
    net.block(unsigned=(mq.sync_offchain_message(signed),))
    assert net.read(gatekeeper.Beacon) is None
    assert net.read(gatekeeper.BeaconRequested) == 1
