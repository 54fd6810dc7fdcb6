"""Message queue pallet: messages between the chain's pallets, accounts and off-chain senders.

* An account pushes a message with ``push_message``, a signed extrinsic; the message's
  sender is ``AccountOrigin(signer)``.
* An off-chain sender (a worker, a cluster or the gatekeeper now; contracts later) sends a
  message it signed with ``sync_offchain_message``, an *unsigned* extrinsic: the message's
  signature (over genesis hash, origin, sequence and message) is its proof, checked with the
  key registered for the origin, and its sequence plays the nonce's part. The chain accepts
  only the sender's next sequence (``OffchainSequence``): an older one is stale, a newer one
  waits in the transaction pool until the gap is filled.
* A pallet sends a message with :func:`push_outbound` (the registry does, when a worker
  registers).

Routing (:func:`route`): a topic that starts with ``^`` is for the chain only and goes to the
pallet that lists it in ``Pallet.topics`` (its ``on_message(env, message)``); any other topic
goes to ``OutboundMessages``, which pRuntimes read after each block. ``OutboundMessages``
(a ``list[Message]``) holds exactly the messages of the block whose state it is in: it is
removed when a block starts and written when the block ends, only if the block sent any.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phala.core.codec import codec_of, encode_compact, u32, u64
from phala.core.mq import (
    CHAIN_ONLY_PREFIX,
    MAX_PAYLOAD,
    MAX_TOPIC,
    AccountOrigin,
    ClusterOrigin,
    ContractOrigin,
    GatekeeperOrigin,
    Message,
    MessageOrigin,
    SignedMessage,
    WorkerOrigin,
    verify_message,
)

from .frame import (
    BadOrigin,
    DispatchError,
    Env,
    ModuleError,
    Origin,
    Pallet,
    RuntimeCall,
    RuntimeEvent,
    StorageMap,
    StorageValue,
    ensure_signed,
)
from .system import DispatchErrorInfo

if TYPE_CHECKING:
    from .executive import UnsignedValidity

PALLET_INDEX = 6
NAME = "Mq"

# The transaction pool's key for an off-chain sender: this prefix, then the encoded origin.
SENDER_PREFIX = b"phala/mq:"
# Blocks a synced message may wait in the pool for the messages before it.
UNSIGNED_LONGEVITY = 256

ORIGIN_CODEC = codec_of(MessageOrigin)
MESSAGE_CODEC = codec_of(Message)

# -- storage ----------------------------------------------------------------------------------

# Next sequence expected from each off-chain sender (0 for one never heard from).
OffchainSequence: StorageMap[MessageOrigin, int] = StorageMap(
    NAME, "OffchainSequence", MessageOrigin, u64, 0
)
# The messages of the current block for pRuntimes; absent in a block that sent none.
OutboundMessages: StorageValue[list[Message]] = StorageValue(
    NAME, "OutboundMessages", list[Message], []
)
# Scratch space while a block runs (always removed by on_finalize, so never in a committed
# state): the block's messages so far. Kept in storage rather than in memory so that a
# failed call's messages are reverted with its other writes.
PendingCount: StorageValue[int] = StorageValue(NAME, "PendingCount", u32, 0)
Pending: StorageMap[int, Message] = StorageMap(NAME, "Pending", u32, Message)

# -- events -----------------------------------------------------------------------------------


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class MessagePushed(Event, index=0):
    """An account's message was routed (to a pallet, or to the outbound messages)."""

    sender: MessageOrigin
    topic: bytes


@dataclass(frozen=True)
class OffchainMessageAccepted(Event, index=1):
    """An off-chain sender's message was accepted: its sequence is used up."""

    sender: MessageOrigin
    sequence: u64
    topic: bytes


@dataclass(frozen=True)
class OffchainMessageFailed(Event, index=2):
    """An accepted off-chain message could not be routed (an unknown chain-only topic, or
    the handling pallet refused it); its sequence stays used up, its effects are reverted."""

    sender: MessageOrigin
    sequence: u64
    error: DispatchErrorInfo


# -- errors -----------------------------------------------------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class TopicTooLong(Error):
    """The message's topic is longer than MAX_TOPIC (256) bytes."""

    code = 0


class PayloadTooLarge(Error):
    """The message's payload is larger than MAX_PAYLOAD (64 KiB)."""

    code = 1


class UnknownTopic(Error):
    """No pallet handles this chain-only (``^``) topic."""

    code = 2


class BadSequence(Error):
    """The message's sequence is not its sender's next expected one."""

    code = 3


# -- helpers: the interface other pallets use -------------------------------------------------


def push_outbound(env: Env, message: Message) -> None:
    """Append ``message`` to this block's outbound messages (for pRuntimes). Reverted with
    the call that pushed it if that call fails. Chain-only topics are not outbound: a pallet
    that means to reach another pallet calls :func:`route`."""
    if message.topic.startswith(CHAIN_ONLY_PREFIX):
        raise ValueError(f"chain-only topic {message.topic!r} cannot be pushed outbound; route it")
    st = env.state
    count = PendingCount.get(st)
    Pending.put(st, count, message)
    PendingCount.put(st, count + 1)


def route(env: Env, message: Message) -> None:
    """Deliver ``message``: a chain-only topic to the pallet that lists it in
    ``Pallet.topics`` (raises :class:`UnknownTopic` if none does), any other topic to the
    outbound messages."""
    if not message.topic.startswith(CHAIN_ONLY_PREFIX):
        push_outbound(env, message)
        return
    from . import executive  # the runtime's pallet list (executive imports this module)

    for pallet in executive.PALLETS:
        if message.topic in pallet.topics and pallet.on_message is not None:
            pallet.on_message(env, message)
            return
    raise UnknownTopic(f"no pallet handles the chain-only topic {message.topic!r}")


def next_sequence(env: Env, origin: MessageOrigin) -> int:
    """The sequence the chain expects next from ``origin``."""
    return OffchainSequence.get(env.state, origin)


def sender_key(origin: MessageOrigin) -> bytes:
    """The transaction pool's sender key for ``origin``'s synced messages."""
    return SENDER_PREFIX + ORIGIN_CODEC.encode(origin)


def expected_sequence_of_key(env: Env, key: bytes) -> int:
    """``next_sequence`` for a pool sender key without its :data:`SENDER_PREFIX`."""
    return OffchainSequence.get(env.state, ORIGIN_CODEC.decode(key))


def _check_size(message: Message) -> None:
    if len(message.topic) > MAX_TOPIC:
        raise TopicTooLong(f"topic of {len(message.topic)} bytes exceeds {MAX_TOPIC}")
    if len(message.payload) > MAX_PAYLOAD:
        raise PayloadTooLarge(f"payload of {len(message.payload)} bytes exceeds {MAX_PAYLOAD}")


# -- off-chain senders: the key registered for each kind of origin ----------------------------


def _worker_key(env: Env, origin: MessageOrigin) -> bytes | None:
    from . import registry  # the registry imports this pallet for push_outbound

    assert isinstance(origin, WorkerOrigin)
    return origin.identity if registry.is_active_worker(env, origin.identity) else None


def _gatekeeper_key(env: Env, origin: MessageOrigin) -> bytes | None:
    from . import gatekeeper  # imports this pallet for push_outbound

    return gatekeeper.master_pubkey(env)  # every gatekeeper signs with the master key


def _cluster_key(env: Env, origin: MessageOrigin) -> bytes | None:
    from . import cluster  # imports this pallet for push_outbound

    assert isinstance(origin, ClusterOrigin)
    # A cluster's workers sign with its current epoch's cluster key; none while the cluster
    # does not exist or the gatekeepers have not published that epoch's keys.
    keys = cluster.current_pubkeys(env, origin.cluster)
    return None if keys is None else keys.pubkey


def _contract_key(env: Env, origin: MessageOrigin) -> bytes | None:
    from . import contracts  # imports this pallet for push_outbound

    assert isinstance(origin, ContractOrigin)
    # A contract's workers sign with the contract's key of the current epoch, as published.
    keys = contracts.contract_keys(env, origin.contract)
    return None if keys is None else keys.pubkey


# The public key that signs an off-chain origin's messages, or None when the origin has none
# (a worker not registered or no longer active, no master key yet, a cluster unknown or its
# current epoch keys unpublished). Origins without an entry cannot sync yet.
KEY_LOOKUPS: dict[type[MessageOrigin], Callable[[Env, MessageOrigin], bytes | None]] = {
    WorkerOrigin: _worker_key,
    GatekeeperOrigin: _gatekeeper_key,
    ClusterOrigin: _cluster_key,
    ContractOrigin: _contract_key,
}
OFFCHAIN_ORIGINS: tuple[type[MessageOrigin], ...] = (
    WorkerOrigin,
    ContractOrigin,
    ClusterOrigin,
    GatekeeperOrigin,
)

# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class push_message(Call, index=0):  # noqa: N801
    """Send a message from the signing account (origin ``AccountOrigin(signer)``)."""

    topic: bytes
    payload: bytes

    def dispatch(self, env: Env, origin: Origin) -> None:
        sender = AccountOrigin(ensure_signed(origin))
        message = Message(sender, self.topic, self.payload)
        _check_size(message)
        route(env, message)
        env.deposit_event(MessagePushed(sender, self.topic))


@dataclass(frozen=True)
class sync_offchain_message(Call, index=1):  # noqa: N801
    """Unsigned only: a message an off-chain sender signed, with its sequence."""

    signed: SignedMessage

    def dispatch(self, env: Env, origin: Origin) -> None:
        raise BadOrigin("sync_offchain_message can only be submitted as an unsigned extrinsic")

    def validate_unsigned(self, env: Env) -> UnsignedValidity:
        """Cheapest checks first: sizes, kind of origin, stale sequence, registered key,
        and last the signature over (genesis hash, origin, sequence, message)."""
        from .executive import InvalidTransaction, UnsignedValidity

        signed = self.signed
        message = signed.message
        origin = message.sender
        try:
            _check_size(message)
        except Error as exc:
            raise InvalidTransaction("ExhaustsResources", str(exc)) from exc
        kind = type(origin).__name__
        lookup = KEY_LOOKUPS.get(type(origin))
        if lookup is None:
            if isinstance(origin, OFFCHAIN_ORIGINS):
                raise InvalidTransaction(
                    "BadSigner", f"messages from a {kind} are not yet supported"
                )
            raise InvalidTransaction(
                "BadSigner", f"a {kind} is not an off-chain sender: it cannot sync messages"
            )
        expected = OffchainSequence.get(env.state, origin)
        if signed.sequence < expected:
            raise InvalidTransaction(
                "Stale", f"sequence {signed.sequence} is stale: the next is {expected}"
            )
        key = lookup(env, origin)
        if key is None:
            raise InvalidTransaction(
                "BadSigner",
                f"the {kind} has no key on chain: not registered, no longer active, "
                "or its current keys not published",
            )
        if not verify_message(signed, env.block.genesis_hash, key):
            raise InvalidTransaction(
                "BadProof",
                "invalid message signature: wrong key, or signed for another chain (genesis hash)",
            )
        return UnsignedValidity(sender_key(origin), signed.sequence, expected, UNSIGNED_LONGEVITY)

    def dispatch_unsigned(self, env: Env) -> None:
        """Use up the sequence, then route the message; a routing failure reverts only the
        routing (reported by ``OffchainMessageFailed``), so the sender is never stuck."""
        signed = self.signed
        message = signed.message
        origin = message.sender
        expected = OffchainSequence.get(env.state, origin)
        if signed.sequence != expected:
            raise BadSequence(f"sequence {signed.sequence}, expected {expected}")
        OffchainSequence.put(env.state, origin, expected + 1)
        env.deposit_event(OffchainMessageAccepted(origin, signed.sequence, message.topic))
        try:
            with env.transaction():
                route(env, message)
        except DispatchError as err:
            env.deposit_event(
                OffchainMessageFailed(
                    origin, signed.sequence, DispatchErrorInfo(err.pallet_index, err.code)
                )
            )


# -- hooks ------------------------------------------------------------------------------------


def on_initialize(env: Env) -> None:
    """The previous block's outbound messages are not this block's."""
    OutboundMessages.kill(env.state)


def on_finalize(env: Env) -> None:
    """Move the block's messages (if any) from the scratch space to ``OutboundMessages``.
    Runs after every other pallet's ``on_finalize`` (Mq is last in the runtime), so what
    they push there is included."""
    st = env.state
    count = PendingCount.get(st)
    if not count:
        return
    out = bytearray()
    encode_compact(count, out)  # list[Message]: the count, then the encoded messages
    for i in range(count):
        key = Pending.key(i)
        raw = st.get(key)
        assert raw is not None
        out += raw
        st.delete(key)
    PendingCount.kill(st)
    st.set(OutboundMessages.key, bytes(out))


PALLET = Pallet(
    name=NAME,
    index=PALLET_INDEX,
    call=Call,
    event=Event,
    error=Error,
    on_initialize=on_initialize,
    on_finalize=on_finalize,
)
