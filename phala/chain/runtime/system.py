"""System pallet: accounts and nonces, the block's events, block hash history, randomness.

An account's nonce is never reset: when the balances pallet reaps an account, its record
keeps the nonce (a tombstone), so no extrinsic it ever signed can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass

from phala.core.codec import H256, AccountId, u8, u32, u128
from phala.core.hashing import blake2_256

from .frame import (
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

PALLET_INDEX = 0
NAME = "System"

# Blocks whose hashes stay in state: a mortal era's birth block must be among them.
BLOCK_HASH_COUNT = 4096
MAX_REMARK = 128 * 1024

# -- storage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountData:
    """Balances of an account; ``frozen`` is the part locks keep from being spent."""

    free: u128 = 0
    reserved: u128 = 0
    frozen: u128 = 0


@dataclass(frozen=True)
class AccountInfo:
    nonce: u32 = 0
    consumers: u32 = 0
    providers: u32 = 0
    data: AccountData = AccountData()


@dataclass(frozen=True)
class DispatchErrorInfo:
    """A failed call's error, as recorded on chain: the pallet and its error code."""

    pallet: u8
    code: u8


@dataclass(frozen=True)
class EventRecord:
    phase: u32 | None  # index of the extrinsic; None: initialization or finalization
    event: RuntimeEvent


Account: StorageMap[bytes, AccountInfo] = StorageMap(
    NAME, "Account", AccountId, AccountInfo, AccountInfo(), memo=True
)
Number: StorageValue[int] = StorageValue(NAME, "Number", u32, 0)
ParentHash: StorageValue[bytes] = StorageValue(NAME, "ParentHash", H256, bytes(32))
BlockHash: StorageMap[int, bytes] = StorageMap(NAME, "BlockHash", u32, H256)
RandomnessSeed: StorageValue[bytes] = StorageValue(NAME, "RandomnessSeed", H256, bytes(32))

# -- events -----------------------------------------------------------------------------------


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class ExtrinsicSuccess(Event, index=0):
    pass


@dataclass(frozen=True)
class ExtrinsicFailed(Event, index=1):
    error: DispatchErrorInfo


@dataclass(frozen=True)
class NewAccount(Event, index=2):
    account: AccountId


@dataclass(frozen=True)
class KilledAccount(Event, index=3):
    account: AccountId


@dataclass(frozen=True)
class Remarked(Event, index=4):
    sender: AccountId
    hash: H256


# Declared after the events: building its codec needs RuntimeEvent to have variants, so that
# this module can be imported first.
Events: StorageValue[list[EventRecord]] = StorageValue(NAME, "Events", list[EventRecord], [])


# -- errors -----------------------------------------------------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class RemarkTooLong(Error):
    """The remark is longer than the system allows."""

    code = 0


class Unexpected(Error):
    """The call failed with an unexpected internal error (a bug; the node logged it)."""

    code = 254


# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class remark(Call, index=0):  # noqa: N801 - call names follow Substrate's
    """Put bytes on chain; only their hash is kept in the event."""

    data: bytes

    def dispatch(self, env: Env, origin: Origin) -> None:
        sender = ensure_signed(origin)
        if len(self.data) > MAX_REMARK:
            raise RemarkTooLong(f"remark of {len(self.data)} bytes exceeds {MAX_REMARK}")
        env.deposit_event(Remarked(sender, blake2_256(self.data)))


# -- helpers for other pallets and the executive ----------------------------------------------


def account(env: Env, who: bytes) -> AccountInfo:
    return Account.get(env.state, who)


def put_account(env: Env, who: bytes, info: AccountInfo) -> None:
    if info.nonce == 0 and info.providers == 0 and info.consumers == 0 and info.data == AccountData():
        # Nothing worth keeping (and no nonce to protect): drop the record entirely.
        Account.remove(env.state, who)
    else:
        Account.put(env.state, who, info)


def block_hash(env: Env, number: int) -> bytes | None:
    return BlockHash.get_opt(env.state, number)


# -- hooks ------------------------------------------------------------------------------------


def on_initialize(env: Env) -> None:
    n = env.block.number
    st = env.state
    Number.put(st, n)
    ParentHash.put(st, env.block.parent_hash)
    BlockHash.put(st, n - 1, env.block.parent_hash)
    if n - 1 - BLOCK_HASH_COUNT > 0:
        # Genesis (block 0) stays: immortal extrinsics sign over its hash.
        BlockHash.remove(st, n - 1 - BLOCK_HASH_COUNT)
    # Public, predictable randomness: anyone can compute it. Unpredictable randomness comes
    # from the gatekeepers' beacon.
    RandomnessSeed.put(st, blake2_256(RandomnessSeed.get(st) + env.block.parent_hash))


def store_events(env: Env) -> None:
    """Write the block's events; the executive calls this after every other hook."""
    Events.put(env.state, [EventRecord(phase, event) for phase, event in env.events])


def build_genesis(env: Env, spec: dict) -> None:
    Number.put(env.state, 0)
    Events.put(env.state, [])


PALLET = Pallet(
    name=NAME,
    index=PALLET_INDEX,
    call=Call,
    event=Event,
    error=Error,
    on_initialize=on_initialize,
    build_genesis=build_genesis,
)
