"""The state transition: genesis, block initialization, extrinsic validation and application,
block finalization. Written as plain functions; each says what it checks and what it raises.

The same functions serve the transaction pool (``check_extrinsic`` against the best
block's state, without writing) and block execution (``apply_extrinsic``), so a transaction
the pool accepted is judged by the same rules when it is included.

Extrinsics come in two forms. A *signed* extrinsic names an account, pays a fee and carries
the account's nonce. An *unsigned* one (``0x04 ++ call``) is accepted only for a call that
defines

* ``validate_unsigned(self, env) -> UnsignedValidity``: cheap, write-free checks of the proof
  the call carries (a signed mq message, for instance); it raises :class:`InvalidTransaction`
  or names the pool sender key, the extrinsic's sequence and the sender's expected one;
* ``dispatch_unsigned(self, env)``: the call's effect, which must advance the sender's
  expected sequence (as a signed extrinsic's nonce is bumped), so it cannot be replayed.

Unsigned extrinsics pay no fee and bump no account nonce. Both forms meet the pool as
(sender key, nonce) pairs: an account's key is its 32-byte id; an unsigned sender's key
starts with a prefix registered in :data:`UNSIGNED_SENDERS` and is never 32 bytes long.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from phala.core.codec import DecodeError, codec_of
from phala.core.keys import verify
from phala.core.types import EXTRINSIC_VERSION, Era, Extrinsic, UnsignedExtrinsic, signing_payload

from . import (
    authorities,
    balances,
    cluster,
    contracts,
    gatekeeper,
    mq,
    registry,
    sudo,
    system,
    timestamp,
)
from .frame import BlockContext, DispatchError, Env, Origin, Pallet, RuntimeCall
from .system import DispatchErrorInfo

log = logging.getLogger("phala.runtime")

PALLETS: tuple[Pallet, ...] = (
    system.PALLET,
    timestamp.PALLET,
    balances.PALLET,
    sudo.PALLET,
    authorities.PALLET,
    registry.PALLET,
    gatekeeper.PALLET,
    cluster.PALLET,
    contracts.PALLET,
    mq.PALLET,  # last: its on_finalize collects what the others pushed
)


@dataclass(frozen=True)
class RuntimeVersion:
    spec_name: str
    spec_version: int
    transaction_version: int


VERSION = RuntimeVersion("phala", spec_version=1, transaction_version=1)

# A worker's registration carries ~20 KiB of attestation collateral; leave ample room.
MAX_EXTRINSIC_SIZE = 128 * 1024

CALL_CODEC = codec_of(RuntimeCall)
ACCOUNT_KEY_SIZE = 32

# Pool sender keys of unsigned extrinsics, by prefix: how to read the sender's expected
# nonce (sequence) from state, given the key without its prefix.
UNSIGNED_SENDERS: dict[bytes, Callable[[Env, bytes], int]] = {
    mq.SENDER_PREFIX: mq.expected_sequence_of_key,
}


class InvalidTransaction(Exception):
    """An extrinsic that must not be included. ``kind`` names the rule it broke."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class UnsignedValidity:
    """What an unsigned call's ``validate_unsigned`` tells the pool and the block builder."""

    sender: bytes  # the pool's key for the sender: a prefix of UNSIGNED_SENDERS, then anything
    nonce: int  # this extrinsic's sequence
    expected: int  # the sender's next expected sequence in state
    longevity: int  # blocks the pool keeps it (while it waits for its predecessors)


@dataclass(frozen=True, slots=True)
class CheckedExtrinsic:
    """An extrinsic that passed every check that does not depend on its exact nonce.

    ``sender``/``nonce`` are what the pool orders by: the signer's account id and nonce, or an
    unsigned call's sender key and sequence; ``expected`` is the sender's nonce in state.
    """

    extrinsic: Extrinsic | UnsignedExtrinsic
    call: RuntimeCall
    length: int
    fee: int
    sender: bytes
    nonce: int
    expected: int
    tip: int
    death: int  # first block number at which it is no longer valid

    @property
    def signed(self) -> bool:
        return type(self.extrinsic) is Extrinsic


def decode_call(raw: bytes) -> RuntimeCall:
    try:
        return CALL_CODEC.decode(raw)
    except DecodeError as exc:
        raise InvalidTransaction("Call", f"cannot decode the call: {exc}") from exc


def check_extrinsic(env: Env, raw: bytes, verify_signature: bool = True) -> CheckedExtrinsic:
    """Check ``raw`` for inclusion in the block ``env`` describes.

    Checks, in order: size, decoding, mortality era (born, not dead, birth hash known),
    signature over the payload (call, era, nonce, tip, runtime version, genesis and birth
    hashes), nonce not stale, fee and tip affordable. Raises :class:`InvalidTransaction`.
    A nonce above the account's is returned, not refused: the pool holds such extrinsics.
    An unsigned extrinsic is checked by :func:`check_unsigned` instead.
    """
    if len(raw) > MAX_EXTRINSIC_SIZE:
        raise InvalidTransaction(
            "ExhaustsResources", f"extrinsic of {len(raw)} bytes exceeds the {MAX_EXTRINSIC_SIZE}-byte limit"
        )
    if raw and raw[0] == EXTRINSIC_VERSION:
        return check_unsigned(env, raw)
    try:
        xt = Extrinsic.decode(raw)
    except DecodeError as exc:
        raise InvalidTransaction("Decode", f"cannot decode the extrinsic: {exc}") from exc
    call = decode_call(xt.call)
    number = env.block.number
    birth_hash = era_birth_hash(env, xt.era, number)
    if verify_signature:
        payload = signing_payload(
            xt.call,
            xt.era,
            xt.nonce,
            xt.tip,
            VERSION.spec_version,
            VERSION.transaction_version,
            env.block.genesis_hash,
            birth_hash,
        )
        # keys.verify never raises: a signer that is not a curve point or a signature
        # without the schnorrkel marker is just a bad proof.
        if not verify(xt.signer, payload, xt.signature):
            raise InvalidTransaction(
                "BadProof",
                "invalid signature: wrong key, or signed for another chain (genesis hash), "
                "runtime version or era birth block",
            )
    info = system.account(env, xt.signer)
    if xt.nonce < info.nonce:
        raise InvalidTransaction("Stale", f"nonce {xt.nonce} is stale: the account's nonce is {info.nonce}")
    fee = balances.compute_fee(env, len(raw))
    usable = info.data.free - info.data.frozen
    if usable < fee + xt.tip:
        raise InvalidTransaction(
            "Payment", f"cannot pay fee {fee} plus tip {xt.tip} from a usable balance of {max(0, usable)}"
        )
    return CheckedExtrinsic(xt, call, len(raw), fee, xt.signer, xt.nonce, info.nonce, xt.tip, xt.era.death(number))


def check_unsigned(env: Env, raw: bytes) -> CheckedExtrinsic:
    """Check an unsigned extrinsic: it decodes, its call defines ``validate_unsigned``, that
    validation passes (the call's own proof: the signature of the message it carries, say),
    and its sequence is not stale. A sequence above the expected one is returned, not
    refused: the pool holds it as future, exactly as for account nonces."""
    try:
        xt = UnsignedExtrinsic.decode(raw)
    except DecodeError as exc:
        raise InvalidTransaction("Decode", f"cannot decode the extrinsic: {exc}") from exc
    call = decode_call(xt.call)
    validate = getattr(call, "validate_unsigned", None)
    if validate is None:
        raise InvalidTransaction("Call", f"{type(call).__name__} cannot be submitted unsigned: sign it")
    validity: UnsignedValidity = validate(env)
    sender = validity.sender
    if len(sender) == ACCOUNT_KEY_SIZE or not any(sender.startswith(p) for p in UNSIGNED_SENDERS):
        # A runtime bug, not a bad transaction: such a key could be taken for an account's.
        raise RuntimeError(f"{type(call).__name__}.validate_unsigned returned an unregistered sender key")
    if validity.nonce < validity.expected:
        raise InvalidTransaction(
            "Stale", f"sequence {validity.nonce} is stale: the sender's next sequence is {validity.expected}"
        )
    return CheckedExtrinsic(
        xt, call, len(raw), 0, sender, validity.nonce, validity.expected, 0, env.block.number + validity.longevity
    )


def expected_nonce(env: Env, sender: bytes) -> int:
    """The nonce state expects next from a pool sender key: an account's nonce, or an
    unsigned sender's next sequence. The node reads it for the senders a block touched."""
    if len(sender) == ACCOUNT_KEY_SIZE:
        return system.account(env, sender).nonce
    for prefix, read in UNSIGNED_SENDERS.items():
        if sender.startswith(prefix):
            return read(env, sender[len(prefix) :])
    raise KeyError(f"not a pool sender key: 0x{sender.hex()}")


def era_birth_hash(env: Env, era: Era, number: int) -> bytes:
    """Hash of the era's birth block, seen from block ``number``. Raises if the era is not
    valid at ``number``: born later, already dead, or born too long ago to check."""
    if era.immortal:
        return env.block.genesis_hash
    birth = era.birth(number)
    if birth >= number:
        raise InvalidTransaction("AncientBirthBlock", f"era born at block {birth}, not before block {number}")
    if number >= era.death(number):
        raise InvalidTransaction("Stale", "the transaction's era has ended")
    if birth == 0:
        return env.block.genesis_hash
    if birth == number - 1:
        return env.block.parent_hash
    found = system.block_hash(env, birth)
    if found is None:
        raise InvalidTransaction("AncientBirthBlock", f"birth block {birth} is too old to check")
    return found


# ---------------------------------------------------------------------------------------------
# Block execution


def initialize_block(env: Env) -> None:
    """Run every pallet's ``on_initialize`` in pallet order."""
    for pallet in PALLETS:
        if pallet.on_initialize:
            pallet.on_initialize(env)


@dataclass(frozen=True)
class ApplyOutcome:
    """A included extrinsic's result; ``error`` is set when its call failed."""

    error: DispatchErrorInfo | None


def apply_extrinsic(env: Env, raw: bytes, index: int) -> ApplyOutcome:
    """Apply one extrinsic of the block, checking it again in full (signature included)
    against the state it now meets.

    Raises :class:`InvalidTransaction` (and writes nothing) if it must not be included;
    otherwise bumps the nonce, charges the fee, and dispatches the call in a storage
    transaction that a :class:`DispatchError` reverts. An unsigned extrinsic pays nothing
    and bumps no nonce: its ``dispatch_unsigned`` advances its sender's sequence.
    """
    env.phase = index
    checked = check_extrinsic(env, raw)
    if checked.nonce != checked.expected:
        raise InvalidTransaction("Future", f"nonce {checked.nonce} is ahead of {checked.expected}")
    xt = checked.extrinsic
    signed = type(xt) is Extrinsic
    if signed:
        info = system.account(env, xt.signer)
        system.Account.put(env.state, xt.signer, _bump_nonce(info))
        balances.charge_fee(env, xt.signer, checked.fee, xt.tip)
    try:
        with env.transaction():
            if signed:
                checked.call.dispatch(env, Origin(xt.signer))
            else:
                checked.call.dispatch_unsigned(env)
    except DispatchError as err:
        error = DispatchErrorInfo(err.pallet_index, err.code)
        env.deposit_event(system.ExtrinsicFailed(error))
        return ApplyOutcome(error)
    except Exception:
        # A bug in a call must not halt block production: the call fails, its writes and
        # events are reverted (by env.transaction), and the fault is logged loudly.
        log.exception("call %s raised an unexpected error", type(checked.call).__name__)
        error = DispatchErrorInfo(system.Unexpected.pallet_index, system.Unexpected.code)
        env.deposit_event(system.ExtrinsicFailed(error))
        return ApplyOutcome(error)
    env.deposit_event(system.ExtrinsicSuccess())
    return ApplyOutcome(None)


def _bump_nonce(info: system.AccountInfo) -> system.AccountInfo:
    return system.AccountInfo(info.nonce + 1, info.consumers, info.providers, info.data)


def finalize_block(env: Env) -> list:
    """Run every pallet's ``on_finalize``, then store the block's events. Returns the digest
    items the hooks produced (an authority change, for instance)."""
    env.phase = None
    for pallet in PALLETS:
        if pallet.on_finalize:
            pallet.on_finalize(env)
    system.store_events(env)
    return env.digest


def build_genesis(env: Env, spec: dict) -> None:
    """Fill genesis state from the ``runtime`` section of a chain spec (already decoded)."""
    for pallet in PALLETS:
        if pallet.build_genesis and pallet.name in spec:
            pallet.build_genesis(env, spec[pallet.name])
    system.store_events(env)


def genesis_context(genesis_time: int) -> BlockContext:
    return BlockContext(number=0, parent_hash=bytes(32), timestamp=genesis_time, author=bytes(32), genesis_hash=bytes(32))
