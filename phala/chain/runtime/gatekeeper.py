"""Gatekeeper pallet: which workers are gatekeepers, and the master public key.

Gatekeepers are pRuntimes that create and guard the master key every contract's keys derive
from (``../shared/DESIGN.md`` section 7). This pallet covers their role and launch:

* root (through sudo) makes a registered, active worker a gatekeeper with
  :class:`register_gatekeeper`, and removes one with :class:`unregister_gatekeeper` (never the
  last one). A sim-attested worker can be a gatekeeper only on a chain whose genesis accepts
  sim attestation (a dev chain);
* each registration sends the pRuntimes ``phala/gatekeeper/registered``
  (:class:`phala.core.gatekeeper.GatekeeperRegistered`), telling the new gatekeeper whether it
  is the first (no master public key on chain yet, so it generates the master key);
* the first gatekeeper publishes the master public keys on the chain-only topic
  ``^phala/gatekeeper/master_pubkey`` (:class:`phala.core.gatekeeper.MasterPubkeyAnnounce`),
  sent as ``WorkerOrigin(identity)``; the chain stores them and emits
  ``MasterPubkeyPublished``. Only a registered gatekeeper may publish them, and only while no
  master public key exists: a refused message is reported by the mq pallet's
  ``OffchainMessageFailed`` with this pallet's error.

``RotationCounter`` counts master key rotations (none yet: 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phala.core import gatekeeper as payloads
from phala.core.codec import H256, AccountId, DecodeError, decode, encode, u64
from phala.core.gatekeeper import (
    BEACON_INTERVAL,
    BEACON_REQUEST_TOPIC,
    BEACON_TOPIC,
    GATEKEEPER_REGISTERED_TOPIC,
    MASTER_PUBKEY_TOPIC,
    MasterPubkeyAnnounce,
)
from phala.core.mq import GatekeeperOrigin, Message, PalletOrigin, WorkerOrigin

from . import mq, registry
from .frame import (
    Env,
    ModuleError,
    Origin,
    Pallet,
    RuntimeCall,
    RuntimeEvent,
    StorageValue,
    ensure_root,
)

PALLET_INDEX = 7
NAME = "Gatekeeper"

MESSAGE_ORIGIN = PalletOrigin(NAME.encode())

# -- storage ----------------------------------------------------------------------------------

# Identities of the gatekeepers (registered workers), in registration order.
Gatekeepers: StorageValue[list[bytes]] = StorageValue(NAME, "Gatekeepers", list[AccountId], [])
# The master key's sr25519 public key; absent until the first gatekeeper publishes it.
MasterPubkey: StorageValue[bytes | None] = StorageValue(NAME, "MasterPubkey", H256, None)
# The master key's X25519 public key; written together with MasterPubkey.
MasterEcdhPubkey: StorageValue[bytes | None] = StorageValue(NAME, "MasterEcdhPubkey", H256, None)
# Master key rotations completed (none until rotation exists).
RotationCounter: StorageValue[int] = StorageValue(NAME, "RotationCounter", u64, 0)
# The last beacon value published, and the round the pallet has asked for (if any).
Beacon: StorageValue[payloads.BeaconValue | None] = StorageValue(NAME, "Beacon", payloads.BeaconValue, None)
BeaconRequested: StorageValue[int | None] = StorageValue(NAME, "BeaconRequested", u64, None)

# -- events -----------------------------------------------------------------------------------


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class GatekeeperRegistered(Event, index=0):
    identity: AccountId


@dataclass(frozen=True)
class GatekeeperUnregistered(Event, index=1):
    identity: AccountId


@dataclass(frozen=True)
class MasterPubkeyPublished(Event, index=2):
    """The first gatekeeper published the master public keys."""

    master_pubkey: H256
    ecdh_pubkey: H256
    publisher: AccountId


@dataclass(frozen=True)
class BeaconPublished(Event, index=3):
    round: u64
    value: H256


# -- errors -----------------------------------------------------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class WorkerNotRegistered(Error):
    """No worker is registered with this identity."""

    code = 0


class WorkerNotActive(Error):
    """The worker is registered but not active (its measurement is no longer allowed)."""

    code = 1


class SimWorkerNotAllowed(Error):
    """The worker is sim-attested and this chain does not accept sim attestation."""

    code = 2


class AlreadyGatekeeper(Error):
    """The worker is already a gatekeeper."""

    code = 3


class NotAGatekeeper(Error):
    """The identity (or the message's sender) is not a gatekeeper."""

    code = 4


class CannotRemoveLastGatekeeper(Error):
    """The last gatekeeper cannot be unregistered: the master key would have no guardian."""

    code = 5


class MasterKeyAlreadyExists(Error):
    """The master public key is already on chain: only the first gatekeeper publishes it."""

    code = 6


class InvalidGatekeeperMessage(Error):
    """A message on a gatekeeper topic is malformed (topic, sender kind or payload)."""

    code = 7


class BadBeacon(Error):
    """A beacon value that is not from the gatekeeper origin, not for the requested round, or
    not linked to the previous value."""

    code = 8


# -- helpers: the interface other pallets use -------------------------------------------------


def gatekeepers(env: Env) -> list[bytes]:
    """Identities of the gatekeepers, in registration order."""
    return Gatekeepers.get(env.state)


def is_gatekeeper(env: Env, identity: bytes) -> bool:
    return identity in Gatekeepers.get(env.state)


def master_pubkey(env: Env) -> bytes | None:
    """The master key's sr25519 public key, or ``None`` before the first gatekeeper published it."""
    return MasterPubkey.get(env.state)


# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class register_gatekeeper(Call, index=0):  # noqa: N801
    """Root: make the active registered worker ``identity`` a gatekeeper.

    Checks in order: root, registered, active, sim attestation accepted by this chain (for a
    sim worker), not already a gatekeeper. Appends it to ``Gatekeepers``, emits
    ``GatekeeperRegistered`` and sends the pRuntimes ``phala/gatekeeper/registered``.
    """

    identity: AccountId

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        record = registry.worker(env, self.identity)
        if record is None:
            raise WorkerNotRegistered("no worker is registered with this identity")
        if not record.active:
            raise WorkerNotActive("the worker is not active")
        sim = record.kind == registry.AttestationKind.SIM
        if sim and not registry.attestation_config(env).allow_sim:
            raise SimWorkerNotAllowed("this chain does not accept sim-attested gatekeepers")
        current = Gatekeepers.get(env.state)
        if self.identity in current:
            raise AlreadyGatekeeper("the worker is already a gatekeeper")
        Gatekeepers.put(env.state, [*current, self.identity])
        env.deposit_event(GatekeeperRegistered(self.identity))
        is_first = not MasterPubkey.exists(env.state)
        payload = encode(payloads.GatekeeperRegistered(self.identity, is_first, record.info.ecdh))
        mq.push_outbound(env, Message(MESSAGE_ORIGIN, GATEKEEPER_REGISTERED_TOPIC, payload))


@dataclass(frozen=True)
class unregister_gatekeeper(Call, index=1):  # noqa: N801
    """Root: remove the gatekeeper ``identity`` (never the last one). Its worker record stays."""

    identity: AccountId

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        current = Gatekeepers.get(env.state)
        if self.identity not in current:
            raise NotAGatekeeper("this identity is not a gatekeeper")
        if len(current) == 1:
            raise CannotRemoveLastGatekeeper("the last gatekeeper cannot be unregistered")
        Gatekeepers.put(env.state, [g for g in current if g != self.identity])
        env.deposit_event(GatekeeperUnregistered(self.identity))


# -- mq ---------------------------------------------------------------------------------------


def on_message(env: Env, message: Any) -> None:
    """A chain-only message the mq pallet accepted on one of this pallet's topics.

    ``^phala/gatekeeper/master_pubkey`` from ``WorkerOrigin(identity)`` of a gatekeeper,
    payload ``encode(MasterPubkeyAnnounce)``: stores the master public keys and emits
    ``MasterPubkeyPublished``. Raises :class:`InvalidGatekeeperMessage` for another topic,
    sender kind or payload, :class:`NotAGatekeeper` if the sender is not a gatekeeper, and
    :class:`MasterKeyAlreadyExists` once a master public key is on chain.
    """
    if message.topic == BEACON_TOPIC:
        _on_beacon(env, message)
        return
    if message.topic != MASTER_PUBKEY_TOPIC:
        raise InvalidGatekeeperMessage(
            f"the gatekeeper pallet handles no topic {message.topic[:80]!r}"
        )
    sender = message.sender
    if not isinstance(sender, WorkerOrigin):
        raise InvalidGatekeeperMessage("master_pubkey must come from a gatekeeper's worker origin")
    try:
        announce = decode(MasterPubkeyAnnounce, message.payload)
    except DecodeError as exc:
        raise InvalidGatekeeperMessage(
            f"master_pubkey payload must be a MasterPubkeyAnnounce: {exc}"
        ) from exc
    if not is_gatekeeper(env, sender.identity):
        raise NotAGatekeeper("master_pubkey from a worker that is not a gatekeeper")
    if MasterPubkey.exists(env.state):
        raise MasterKeyAlreadyExists("the master public key is already published")
    MasterPubkey.put(env.state, announce.master_pubkey)
    MasterEcdhPubkey.put(env.state, announce.ecdh_pubkey)
    env.deposit_event(
        MasterPubkeyPublished(announce.master_pubkey, announce.ecdh_pubkey, sender.identity)
    )


def _on_beacon(env: Env, message: Any) -> None:
    """A beacon round from the gatekeeper origin (the mq pallet checked the master key's
    signature): it must answer the requested round and link to the previous value."""
    if not isinstance(message.sender, GatekeeperOrigin):
        raise BadBeacon("beacon values come only from the gatekeeper origin")
    try:
        beacon = decode(payloads.BeaconValue, message.payload)
    except DecodeError as exc:
        raise BadBeacon(f"beacon payload must be a BeaconValue: {exc}") from exc
    requested = BeaconRequested.get(env.state)
    last = Beacon.get(env.state)
    previous = bytes(32) if last is None else last.value
    if requested is None or beacon.round != requested:
        raise BadBeacon(f"round {beacon.round} was not requested")
    if beacon.previous != previous:
        raise BadBeacon("the value does not link to the previous one")
    Beacon.put(env.state, beacon)
    BeaconRequested.kill(env.state)
    env.deposit_event(BeaconPublished(beacon.round, beacon.value))


def on_finalize(env: Env) -> None:
    """Every BEACON_INTERVAL blocks, once a master key exists, ask for the next round."""
    if env.block.number % BEACON_INTERVAL or not MasterPubkey.exists(env.state):
        return
    if BeaconRequested.exists(env.state):
        return  # the last request is still unanswered: ask again only after it is
    last = Beacon.get(env.state)
    request = payloads.BeaconRequest(1 if last is None else last.round + 1, bytes(32) if last is None else last.value)
    BeaconRequested.put(env.state, request.round)
    mq.push_outbound(env, Message(MESSAGE_ORIGIN, BEACON_REQUEST_TOPIC, encode(request)))


PALLET = Pallet(
    name=NAME,
    index=PALLET_INDEX,
    call=Call,
    event=Event,
    error=Error,
    topics=(MASTER_PUBKEY_TOPIC, BEACON_TOPIC),
    on_finalize=on_finalize,
    on_message=on_message,
)
