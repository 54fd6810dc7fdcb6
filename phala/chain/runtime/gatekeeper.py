"""Gatekeeper pallet: which workers are gatekeepers, the master public key and its rotations.

Gatekeepers are pRuntimes that create and guard the master key every contract's keys derive
from (``../shared/DESIGN.md`` section 7). This pallet covers their role, launch and rotation:

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
* root rotates the master key with :class:`rotate_master_key`: the pallet takes the rotation
  lock (``RotationLock`` = the rotation id, ``RotationCounter + 1``) and sends
  ``phala/gatekeeper/rotation_request`` (:class:`phala.core.gatekeeper.RotationRequest`)
  naming every gatekeeper with its ECDH key. Each gatekeeper answers with a new master key
  sealed to all of them, a :class:`phala.core.gatekeeper.RotationBatch` on the chain-only
  ``^phala/gatekeeper/rotation_batch`` sent as its ``WorkerOrigin``. The chain keeps the
  first valid batch: it replaces the master public keys, appends the new one to
  ``MasterPubkeyHistory``, sets ``RotationCounter`` to the rotation id, releases the lock,
  emits ``MasterKeyRotated`` and sends the batch on ``phala/gatekeeper/rotated``; any later
  batch finds no rotation in progress and is refused. While the lock is held, gatekeepers
  can be neither registered nor unregistered: the batch must seal the key to exactly the
  gatekeepers the request named. From then on the mq pallet checks gatekeeper-origin
  signatures against the new master key.

``MasterPubkeyHistory`` lists the master public key of every rotation (index = rotation id,
0 being the key the first gatekeeper published); the current key is the last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phala.core import gatekeeper as payloads
from phala.core.attestation import WorkerInfo
from phala.core.codec import H256, AccountId, DecodeError, decode, encode, u64
from phala.core.gatekeeper import (
    BEACON_INTERVAL,
    BEACON_REQUEST_TOPIC,
    BEACON_TOPIC,
    GATEKEEPER_REGISTERED_TOPIC,
    MASTER_PUBKEY_TOPIC,
    ROTATED_TOPIC,
    ROTATION_BATCH_TOPIC,
    ROTATION_REQUEST_TOPIC,
    MasterPubkeyAnnounce,
    RotationBatch,
    RotationRequest,
    WorkerKeys,
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
# Master key rotations completed: the rotation id of the current master key.
RotationCounter: StorageValue[int] = StorageValue(NAME, "RotationCounter", u64, 0)
# The id of the rotation in progress (RotationCounter + 1); absent when none is.
RotationLock: StorageValue[int | None] = StorageValue(NAME, "RotationLock", u64, None)
# The master key's sr25519 public key of every rotation, by rotation id; the current one last.
MasterPubkeyHistory: StorageValue[list[bytes]] = StorageValue(
    NAME, "MasterPubkeyHistory", list[H256], []
)
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


@dataclass(frozen=True)
class MasterKeyRotationRequested(Event, index=4):
    """Root started a rotation; these gatekeepers are to seal the new key to each other."""

    rotation_id: u64
    gatekeepers: list[AccountId]


@dataclass(frozen=True)
class MasterKeyRotated(Event, index=5):
    """The chain kept ``proposer``'s batch: the master key of ``rotation_id`` is current."""

    rotation_id: u64
    master_pubkey: H256
    proposer: AccountId


@dataclass(frozen=True)
class MasterKeyRotationCancelled(Event, index=6):
    rotation_id: u64


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


class NoMasterKey(Error):
    """No master key exists yet: the first gatekeeper has not published it."""

    code = 9


class RotationInProgress(Error):
    """A master key rotation is in progress: it must complete first."""

    code = 10


class NoRotationInProgress(Error):
    """There is no master key rotation to cancel."""

    code = 12


class BadRotationBatch(Error):
    """A rotation batch for no rotation in progress, for another rotation, not sealing the key
    to exactly the current gatekeepers in order, or proposing a master key used before."""

    code = 11


# -- helpers: the interface other pallets use -------------------------------------------------


def gatekeepers(env: Env) -> list[bytes]:
    """Identities of the gatekeepers, in registration order."""
    return Gatekeepers.get(env.state)


def is_gatekeeper(env: Env, identity: bytes) -> bool:
    return identity in Gatekeepers.get(env.state)


def master_pubkey(env: Env) -> bytes | None:
    """The master key's sr25519 public key, or ``None`` before the first gatekeeper published it."""
    return MasterPubkey.get(env.state)


def master_ecdh_pubkey(env: Env) -> bytes | None:
    """The master key's X25519 public key, or ``None`` before the first gatekeeper published it."""
    return MasterEcdhPubkey.get(env.state)


def master_pubkey_history(env: Env) -> list[bytes]:
    """The master key's sr25519 public key of every rotation, by rotation id."""
    return MasterPubkeyHistory.get(env.state)


def rotation_counter(env: Env) -> int:
    """Master key rotations completed: the rotation id of the current master key."""
    return RotationCounter.get(env.state)


def rotation_in_progress(env: Env) -> int | None:
    """The id of the rotation in progress, or ``None``."""
    return RotationLock.get(env.state)


def check_key_recipient(env: Env, identity: bytes) -> WorkerInfo:
    """The record of ``identity`` if a secret may be sealed to it (``registry.key_recipient``).
    Raises :class:`WorkerNotRegistered`, :class:`WorkerNotActive` or :class:`SimWorkerNotAllowed`."""
    try:
        return registry.key_recipient(env, identity)
    except registry.KeyRecipientRefused as refused:
        raise _REFUSALS[refused.kind](str(refused)) from None


_REFUSALS: dict[str, type[Error]] = {
    "not_registered": WorkerNotRegistered,
    "not_active": WorkerNotActive,
    "sim_not_allowed": SimWorkerNotAllowed,
}


def _ensure_no_rotation(env: Env) -> None:
    locked = RotationLock.get(env.state)
    if locked is not None:
        raise RotationInProgress(f"master key rotation {locked} is in progress")


# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class register_gatekeeper(Call, index=0):  # noqa: N801
    """Root: make the active registered worker ``identity`` a gatekeeper.

    Checks in order: root, no rotation in progress (:class:`RotationInProgress`), registered,
    active, sim attestation accepted by this chain (for a sim worker), not already a
    gatekeeper. Appends it to ``Gatekeepers``, emits ``GatekeeperRegistered`` and sends the
    pRuntimes ``phala/gatekeeper/registered``.
    """

    identity: AccountId

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        _ensure_no_rotation(env)
        check_key_recipient(env, self.identity)
        current = Gatekeepers.get(env.state)
        if self.identity in current:
            raise AlreadyGatekeeper("the worker is already a gatekeeper")
        Gatekeepers.put(env.state, [*current, self.identity])
        env.deposit_event(GatekeeperRegistered(self.identity))
        # Only one gatekeeper ever generates the master key: the first one registered. Any
        # other waits for the key from it, even if it is registered before the key exists.
        is_first = not current and not MasterPubkey.exists(env.state)
        _announce_registration(env, self.identity, is_first)


@dataclass(frozen=True)
class unregister_gatekeeper(Call, index=1):  # noqa: N801
    """Root: remove the gatekeeper ``identity`` (never the last one). Its worker record stays.
    If it was to generate the master key and has not published it yet, the next gatekeeper
    is told to generate it (``phala/gatekeeper/registered`` with ``is_first``).

    Checks in order: root, no rotation in progress (:class:`RotationInProgress`), a gatekeeper
    (:class:`NotAGatekeeper`), not the last one (:class:`CannotRemoveLastGatekeeper`).
    """

    identity: AccountId

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        _ensure_no_rotation(env)
        current = Gatekeepers.get(env.state)
        if self.identity not in current:
            raise NotAGatekeeper("this identity is not a gatekeeper")
        if len(current) == 1:
            raise CannotRemoveLastGatekeeper("the last gatekeeper cannot be unregistered")
        remaining = [g for g in current if g != self.identity]
        Gatekeepers.put(env.state, remaining)
        env.deposit_event(GatekeeperUnregistered(self.identity))
        if current[0] == self.identity and not MasterPubkey.exists(env.state):
            # The one meant to generate the master key left before publishing it: the next
            # in line generates it instead.
            _announce_registration(env, remaining[0], True)


def _announce_registration(env: Env, identity: bytes, is_first: bool) -> None:
    ecdh = registry.worker(env, identity).info.ecdh
    payload = encode(payloads.GatekeeperRegistered(identity, is_first, ecdh))
    mq.push_outbound(env, Message(MESSAGE_ORIGIN, GATEKEEPER_REGISTERED_TOPIC, payload))


@dataclass(frozen=True)
class rotate_master_key(Call, index=2):  # noqa: N801
    """Root: ask the gatekeepers for a new master key.

    Checks in order: root, a master key exists (:class:`NoMasterKey`), no rotation in progress
    (:class:`RotationInProgress`: a rotation is never started twice), and every gatekeeper may
    receive the new key, as :func:`check_key_recipient` says (:class:`WorkerNotActive`,
    :class:`SimWorkerNotAllowed`: unregister such a gatekeeper first). Takes the lock with the
    rotation id ``RotationCounter + 1``, emits ``MasterKeyRotationRequested`` and sends the
    gatekeepers ``phala/gatekeeper/rotation_request`` naming each of them, in registration
    order, with its ECDH key.
    """

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        if not MasterPubkey.exists(env.state):
            raise NoMasterKey("there is no master key to rotate yet")
        _ensure_no_rotation(env)
        current = Gatekeepers.get(env.state)
        keys = [WorkerKeys(g, check_key_recipient(env, g).info.ecdh) for g in current]
        rotation_id = RotationCounter.get(env.state) + 1
        RotationLock.put(env.state, rotation_id)
        env.deposit_event(MasterKeyRotationRequested(rotation_id, current))
        payload = encode(RotationRequest(rotation_id, keys))
        mq.push_outbound(env, Message(MESSAGE_ORIGIN, ROTATION_REQUEST_TOPIC, payload))


@dataclass(frozen=True)
class cancel_rotation(Call, index=3):  # noqa: N801
    """Root: give up the rotation in progress (say, no gatekeeper answers it). Checks root and
    that a rotation is in progress (:class:`NoRotationInProgress`). Releases the lock and emits
    ``MasterKeyRotationCancelled``; the master key and the counter stay as they were, and a
    batch for the cancelled id that arrives later is refused (no rotation in progress). The
    next rotation reuses the id, since the chain never recorded a key for it; a late batch
    then is still a valid one: a fresh key from a gatekeeper, sealed to exactly the current
    gatekeepers (the chain checks the list)."""

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        locked = RotationLock.get(env.state)
        if locked is None:
            raise NoRotationInProgress("no master key rotation is in progress")
        RotationLock.kill(env.state)
        env.deposit_event(MasterKeyRotationCancelled(locked))


# -- mq ---------------------------------------------------------------------------------------


def on_message(env: Env, message: Any) -> None:
    """A chain-only message the mq pallet accepted on one of this pallet's topics:

    * ``^phala/gatekeeper/master_pubkey``: see :func:`_on_master_pubkey`;
    * ``^phala/gatekeeper/beacon``: see :func:`_on_beacon`;
    * ``^phala/gatekeeper/rotation_batch``: see :func:`_on_rotation_batch`.

    Raises :class:`InvalidGatekeeperMessage` for any other topic.
    """
    handler = _HANDLERS.get(message.topic)
    if handler is None:
        raise InvalidGatekeeperMessage(
            f"the gatekeeper pallet handles no topic {message.topic[:80]!r}"
        )
    handler(env, message)


def _from_gatekeeper(env: Env, message: Any, payload_type: type) -> tuple[WorkerOrigin, Any]:
    """The sender and decoded payload of a message a gatekeeper sends as its own worker
    origin. Raises :class:`InvalidGatekeeperMessage` for another sender kind or a payload
    that is not a ``payload_type``, :class:`NotAGatekeeper` for a sender that is not one."""
    topic = message.topic.decode(errors="replace")
    sender = message.sender
    if not isinstance(sender, WorkerOrigin):
        raise InvalidGatekeeperMessage(f"{topic} must come from a gatekeeper's worker origin")
    try:
        payload = decode(payload_type, message.payload)
    except DecodeError as exc:
        raise InvalidGatekeeperMessage(f"{topic} payload must be a {payload_type.__name__}: {exc}") from exc
    if not is_gatekeeper(env, sender.identity):
        raise NotAGatekeeper(f"{topic} from a worker that is not a gatekeeper")
    return sender, payload


def _on_master_pubkey(env: Env, message: Any) -> None:
    """From ``WorkerOrigin(identity)`` of a gatekeeper, payload ``encode(MasterPubkeyAnnounce)``:
    stores the master public keys, starts ``MasterPubkeyHistory`` with the sr25519 one,
    emits ``MasterPubkeyPublished`` and sends ``phala/gatekeeper/registered`` again for every
    other gatekeeper (they were registered before the key existed and wait for it). Raises
    as :func:`_from_gatekeeper` does, and :class:`MasterKeyAlreadyExists` once a master
    public key is on chain.
    """
    sender, announce = _from_gatekeeper(env, message, MasterPubkeyAnnounce)
    if MasterPubkey.exists(env.state):
        raise MasterKeyAlreadyExists("the master public key is already published")
    MasterPubkey.put(env.state, announce.master_pubkey)
    MasterEcdhPubkey.put(env.state, announce.ecdh_pubkey)
    MasterPubkeyHistory.put(env.state, [announce.master_pubkey])
    env.deposit_event(
        MasterPubkeyPublished(announce.master_pubkey, announce.ecdh_pubkey, sender.identity)
    )
    # Gatekeepers registered before the key existed are waiting for it: ask again now that
    # the publisher can hand it over (the chain checks the gatekeeper origin's key).
    for waiting in Gatekeepers.get(env.state):
        if waiting != sender.identity:
            _announce_registration(env, waiting, False)


def _on_rotation_batch(env: Env, message: Any) -> None:
    """From ``WorkerOrigin(identity)`` of a gatekeeper, payload ``encode(RotationBatch)``.

    Checks in order: a worker origin and a ``RotationBatch`` payload
    (:class:`InvalidGatekeeperMessage`), the sender is a gatekeeper (:class:`NotAGatekeeper`),
    then (:class:`BadRotationBatch`) a rotation is in progress and the batch is for it, the
    envelopes' recipients are exactly the gatekeepers in order, and the new master public
    key is none used before. Then the new keys become the master public keys, the sr25519
    one is appended to ``MasterPubkeyHistory``, ``RotationCounter`` becomes the rotation id,
    the lock is released, ``MasterKeyRotated`` is emitted and the batch is sent on
    ``phala/gatekeeper/rotated``.
    """
    sender, batch = _from_gatekeeper(env, message, RotationBatch)
    expected = RotationLock.get(env.state)
    if expected is None:
        raise BadRotationBatch("no rotation is in progress")
    if batch.rotation_id != expected:
        raise BadRotationBatch(f"rotation id {batch.rotation_id}, expected {expected}")
    recipients = [e.recipient for e in batch.envelopes]
    if recipients != Gatekeepers.get(env.state):
        raise BadRotationBatch("the envelopes are not for exactly the gatekeepers, in order")
    history = MasterPubkeyHistory.get(env.state)
    if batch.master_pubkey in history:
        raise BadRotationBatch("the proposed master key was used before")
    MasterPubkey.put(env.state, batch.master_pubkey)
    MasterEcdhPubkey.put(env.state, batch.ecdh_pubkey)
    MasterPubkeyHistory.put(env.state, [*history, batch.master_pubkey])
    RotationCounter.put(env.state, batch.rotation_id)
    RotationLock.kill(env.state)
    env.deposit_event(MasterKeyRotated(batch.rotation_id, batch.master_pubkey, sender.identity))
    payload = encode(payloads.MasterKeyRotated(sender.identity, batch))
    mq.push_outbound(env, Message(MESSAGE_ORIGIN, ROTATED_TOPIC, payload))


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


_HANDLERS: dict[bytes, Callable[[Env, Any], None]] = {
    MASTER_PUBKEY_TOPIC: _on_master_pubkey,
    BEACON_TOPIC: _on_beacon,
    ROTATION_BATCH_TOPIC: _on_rotation_batch,
}

PALLET = Pallet(
    name=NAME,
    index=PALLET_INDEX,
    call=Call,
    event=Event,
    error=Error,
    topics=(MASTER_PUBKEY_TOPIC, BEACON_TOPIC, ROTATION_BATCH_TOPIC),
    on_finalize=on_finalize,
    on_message=on_message,
)
