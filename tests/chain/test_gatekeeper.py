"""Gatekeeper pallet: registering and unregistering gatekeepers through sudo, the message that
tells pRuntimes, and the master public key the first gatekeeper publishes through the mq.

Every refusal is asserted by its error (pallet index and code)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from phala.chain.runtime import executive, gatekeeper, mq, registry, sudo
from phala.chain.runtime.frame import ROOT, BadOrigin, RuntimeCall
from phala.chain.runtime.registry import AttestationConfig
from phala.core import gatekeeper as payloads
from phala.core.attestation import (
    SIM_ATTESTATION_URI,
    WorkerRegistrationInfo,
    report_data,
    sign_sim_quote,
)
from phala.core.codec import encode
from phala.core.gatekeeper import (
    GATEKEEPER_REGISTERED_TOPIC,
    MASTER_PUBKEY_TOPIC,
    MasterPubkeyAnnounce,
)
from phala.core.keys import Keypair
from phala.core.mq import Message, PalletOrigin, WorkerOrigin, sign_message
from phala.core.types import UnsignedExtrinsic

from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    GENESIS,
    error_info,
    events_of,
    failures,
    head_env,
    read,
    run_in_block,
    sign,
    submit_and_produce,
)

SIM_KEY = Keypair.from_uri(SIM_ATTESTATION_URI)
GK1 = Keypair.from_uri("//GatekeeperTest1")
GK2 = Keypair.from_uri("//GatekeeperTest2")
OTHER = Keypair.from_uri("//GatekeeperTestOtherWorker")
ORIGIN = PalletOrigin(b"Gatekeeper")
ANNOUNCE = MasterPubkeyAnnounce(b"\x42" * 32, b"\x43" * 32)

# -- helpers ----------------------------------------------------------------------------------


WORKER_ECDH = b"\x11" * 32


def register_worker(node, worker: Keypair) -> None:
    """Register ``worker`` in the registry with a sim quote (the dev genesis allows them)."""
    info = WorkerRegistrationInfo(1, worker.public_key, WORKER_ECDH, GENESIS, None)
    call = registry.register_worker(info, sign_sim_quote(SIM_KEY, report_data(info)))
    submit_and_produce(node, sign(CHARLIE, call, node.account_next_index(CHARLIE.public_key)))
    assert failures(node.chain) == []


def root(node, call: RuntimeCall, error: type | None = None) -> None:
    """Dispatch ``call`` as root through sudo; ``error`` is the inner error expected."""
    submit_and_produce(node, sign(ALICE, sudo.sudo(call), node.account_next_index(ALICE.public_key)))
    assert failures(node.chain) == []
    expected = None if error is None else error_info(error)
    assert events_of(node.chain, sudo.Sudid) == [sudo.Sudid(expected)]


def make_gatekeeper(node, worker: Keypair) -> None:
    register_worker(node, worker)
    root(node, gatekeeper.register_gatekeeper(worker.public_key))


def synced(key: Keypair, sequence: int, payload: bytes, topic: bytes = MASTER_PUBKEY_TOPIC) -> bytes:
    """An unsigned ``sync_offchain_message`` of ``key``'s worker origin."""
    message = Message(WorkerOrigin(key.public_key), topic, payload)
    signed = sign_message(key, GENESIS, message, sequence)
    return UnsignedExtrinsic(
        encode(mq.sync_offchain_message(signed), executive.RuntimeCall)
    ).encode()


def announce_failed(node, key: Keypair, sequence: int, error: type) -> None:
    """The head block accepted ``key``'s message ``sequence`` and its handler refused it."""
    assert failures(node.chain) == []
    assert events_of(node.chain, mq.OffchainMessageFailed) == [
        mq.OffchainMessageFailed(WorkerOrigin(key.public_key), sequence, error_info(error))
    ]
    assert events_of(node.chain, gatekeeper.MasterPubkeyPublished) == []


def gatekeepers(node) -> list[bytes]:
    return read(node.chain, gatekeeper.Gatekeepers.get)


def master(node) -> tuple[bytes | None, bytes | None]:
    return (
        read(node.chain, gatekeeper.MasterPubkey.get),
        read(node.chain, gatekeeper.MasterEcdhPubkey.get),
    )


def outbound(node) -> list[Message]:
    return read(node.chain, mq.OutboundMessages.get)


def registered_message(worker: Keypair, is_first: bool) -> Message:
    payload = encode(payloads.GatekeeperRegistered(worker.public_key, is_first, WORKER_ECDH))
    return Message(ORIGIN, GATEKEEPER_REGISTERED_TOPIC, payload)


# -- the pallet in the runtime ----------------------------------------------------------------


def test_pallet_in_the_runtime():
    indices = [p.index for p in executive.PALLETS]
    assert gatekeeper.PALLET in executive.PALLETS
    assert gatekeeper.PALLET_INDEX == 7 and indices.count(7) == 1
    assert executive.PALLETS[-1] is mq.PALLET  # mq's on_finalize still runs last


def test_genesis_state(node):
    assert gatekeepers(node) == []
    assert master(node) == (None, None)
    assert read(node.chain, gatekeeper.RotationCounter.get) == 0


# -- register_gatekeeper ----------------------------------------------------------------------


def test_register_gatekeeper(node):
    register_worker(node, GK1)
    root(node, gatekeeper.register_gatekeeper(GK1.public_key))
    assert gatekeepers(node) == [GK1.public_key]
    assert events_of(node.chain, gatekeeper.GatekeeperRegistered) == [
        gatekeeper.GatekeeperRegistered(GK1.public_key)
    ]
    # The pRuntimes learn it in the same block; the first gatekeeper generates the master key.
    assert outbound(node) == [registered_message(GK1, True)]
    decoded = payloads.GatekeeperRegistered(GK1.public_key, True, WORKER_ECDH)
    assert encode(decoded) == GK1.public_key + b"\x01" + WORKER_ECDH


def test_register_unknown_worker_refused(node):
    root(node, gatekeeper.register_gatekeeper(OTHER.public_key), gatekeeper.WorkerNotRegistered)
    assert gatekeepers(node) == []
    assert outbound(node) == []


def test_register_inactive_worker_refused(node, monkeypatch):
    register_worker(node, GK1)

    def deactivate(env):
        record = registry.Workers.get(env.state, GK1.public_key)
        if record.active:
            registry.Workers.put(env.state, GK1.public_key, replace(record, active=False))

    run_in_block(monkeypatch, node, deactivate)
    root(node, gatekeeper.register_gatekeeper(GK1.public_key), gatekeeper.WorkerNotActive)
    assert gatekeepers(node) == []


def test_register_twice_refused(node):
    make_gatekeeper(node, GK1)
    root(node, gatekeeper.register_gatekeeper(GK1.public_key), gatekeeper.AlreadyGatekeeper)
    assert gatekeepers(node) == [GK1.public_key]
    assert outbound(node) == []  # the failed call's message is reverted with it


def test_register_needs_root(node):
    register_worker(node, GK1)
    call = gatekeeper.register_gatekeeper(GK1.public_key)
    submit_and_produce(node, sign(BOB, call, node.account_next_index(BOB.public_key)))
    assert failures(node.chain) == [(0, error_info(BadOrigin))]
    assert gatekeepers(node) == []


def test_sim_worker_refused_where_sim_is_not_accepted(node):
    """A sim-attested worker (registered while sim was accepted) on a chain that no longer
    accepts sim attestation: AttestationConfig is genesis-only, so this runs against the
    head state with the config changed in place."""
    register_worker(node, GK1)
    with head_env(node.chain) as env:
        config = registry.Config.get(env.state)
        registry.Config.put(env.state, AttestationConfig(False, config.sim_attestation_key))
        with pytest.raises(gatekeeper.SimWorkerNotAllowed):
            gatekeeper.register_gatekeeper(GK1.public_key).dispatch(env, ROOT)
        registry.Config.put(env.state, config)
        gatekeeper.register_gatekeeper(GK1.public_key).dispatch(env, ROOT)
        assert gatekeeper.gatekeepers(env) == [GK1.public_key]


# -- unregister_gatekeeper --------------------------------------------------------------------


def test_unregister_last_gatekeeper_refused(node):
    make_gatekeeper(node, GK1)
    call = gatekeeper.unregister_gatekeeper(GK1.public_key)
    root(node, call, gatekeeper.CannotRemoveLastGatekeeper)
    assert gatekeepers(node) == [GK1.public_key]


def test_unregister_non_gatekeeper_refused(node):
    make_gatekeeper(node, GK1)
    register_worker(node, OTHER)
    root(node, gatekeeper.unregister_gatekeeper(OTHER.public_key), gatekeeper.NotAGatekeeper)
    assert gatekeepers(node) == [GK1.public_key]


def test_unregister_needs_root(node):
    make_gatekeeper(node, GK1)
    make_gatekeeper(node, GK2)
    call = gatekeeper.unregister_gatekeeper(GK1.public_key)
    submit_and_produce(node, sign(BOB, call, node.account_next_index(BOB.public_key)))
    assert failures(node.chain) == [(0, error_info(BadOrigin))]
    assert gatekeepers(node) == [GK1.public_key, GK2.public_key]


def test_two_gatekeepers_unregister_one(node):
    make_gatekeeper(node, GK1)
    make_gatekeeper(node, GK2)
    assert gatekeepers(node) == [GK1.public_key, GK2.public_key]
    # No master key yet, but GK1 generates it: GK2 is told to wait for it.
    assert outbound(node) == [registered_message(GK2, False)]
    root(node, gatekeeper.unregister_gatekeeper(GK1.public_key))
    assert gatekeepers(node) == [GK2.public_key]
    # GK1 left before publishing the master key: GK2 is now the one to generate it.
    assert outbound(node) == [registered_message(GK2, True)]
    assert events_of(node.chain, gatekeeper.GatekeeperUnregistered) == [
        gatekeeper.GatekeeperUnregistered(GK1.public_key)
    ]
    # Now GK2 is the last one.
    call = gatekeeper.unregister_gatekeeper(GK2.public_key)
    root(node, call, gatekeeper.CannotRemoveLastGatekeeper)
    # GK1 can come back, at the end of the list.
    root(node, gatekeeper.register_gatekeeper(GK1.public_key))
    assert gatekeepers(node) == [GK2.public_key, GK1.public_key]


# -- the master public key --------------------------------------------------------------------


def test_master_pubkey_announced_by_the_gatekeeper(node):
    make_gatekeeper(node, GK1)
    submit_and_produce(node, synced(GK1, 0, encode(ANNOUNCE)))
    assert failures(node.chain) == []
    assert events_of(node.chain, mq.OffchainMessageFailed) == []
    assert events_of(node.chain, gatekeeper.MasterPubkeyPublished) == [
        gatekeeper.MasterPubkeyPublished(ANNOUNCE.master_pubkey, ANNOUNCE.ecdh_pubkey, GK1.public_key)
    ]
    assert master(node) == (ANNOUNCE.master_pubkey, ANNOUNCE.ecdh_pubkey)
    assert outbound(node) == []  # chain-only
    # A later gatekeeper is not the first: it waits for the key.
    make_gatekeeper(node, GK2)
    assert outbound(node) == [registered_message(GK2, False)]


def test_master_pubkey_from_a_non_gatekeeper_refused(node):
    make_gatekeeper(node, GK1)
    register_worker(node, OTHER)
    submit_and_produce(node, synced(OTHER, 0, encode(ANNOUNCE)))
    announce_failed(node, OTHER, 0, gatekeeper.NotAGatekeeper)
    assert master(node) == (None, None)
    # The gatekeeper can still publish it.
    submit_and_produce(node, synced(GK1, 0, encode(ANNOUNCE)))
    assert master(node) == (ANNOUNCE.master_pubkey, ANNOUNCE.ecdh_pubkey)


def test_master_pubkey_from_an_unregistered_gatekeeper_refused(node):
    make_gatekeeper(node, GK1)
    make_gatekeeper(node, GK2)
    root(node, gatekeeper.unregister_gatekeeper(GK1.public_key))
    submit_and_produce(node, synced(GK1, 0, encode(ANNOUNCE)))
    announce_failed(node, GK1, 0, gatekeeper.NotAGatekeeper)
    assert master(node) == (None, None)


def test_second_announcement_refused(node):
    make_gatekeeper(node, GK1)
    make_gatekeeper(node, GK2)
    submit_and_produce(node, synced(GK1, 0, encode(ANNOUNCE)))
    other = MasterPubkeyAnnounce(b"\x99" * 32, b"\x98" * 32)
    # Neither another gatekeeper nor the publisher itself can replace it.
    submit_and_produce(node, synced(GK2, 0, encode(other)))
    announce_failed(node, GK2, 0, gatekeeper.MasterKeyAlreadyExists)
    submit_and_produce(node, synced(GK1, 1, encode(other)))
    announce_failed(node, GK1, 1, gatekeeper.MasterKeyAlreadyExists)
    assert master(node) == (ANNOUNCE.master_pubkey, ANNOUNCE.ecdh_pubkey)


def test_malformed_announcement_refused(node):
    make_gatekeeper(node, GK1)
    submit_and_produce(node, synced(GK1, 0, ANNOUNCE.master_pubkey))  # 32 bytes, not 64
    announce_failed(node, GK1, 0, gatekeeper.InvalidGatekeeperMessage)
    submit_and_produce(node, synced(GK1, 1, encode(ANNOUNCE) + b"\x00"))
    announce_failed(node, GK1, 1, gatekeeper.InvalidGatekeeperMessage)
    assert master(node) == (None, None)


def test_announcement_from_an_account_refused(node):
    """The topic is for gatekeepers' worker origins: an account pushing it is refused."""
    call = mq.push_message(MASTER_PUBKEY_TOPIC, encode(ANNOUNCE))
    submit_and_produce(node, sign(BOB, call, node.account_next_index(BOB.public_key)))
    assert failures(node.chain) == [(0, error_info(gatekeeper.InvalidGatekeeperMessage))]
    assert master(node) == (None, None)
