"""Balances pallet: transfers, the existential deposit, transaction fees, reserves and locks.

* An account exists while its total balance (free + reserved) is at least the existential
  deposit (ED). Below that it is reaped: the dust is burnt and its balances are cleared
  (its nonce stays, see the system pallet).
* Locks freeze part of the free balance (the largest lock counts); reserves move balance
  out of the free part until they are released, slashed or repatriated. Later pallets
  (staking, contracts) use both.
* Fees are ``base_fee + byte_fee * length``, paid before dispatch and kept even when the
  call fails; they go to the treasury account. Tips go to the block author. Both are
  credited once per block in ``on_finalize``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from phala.core.codec import AccountId, Balance, Fixed, u128

from . import system
from .frame import (
    Env,
    ModuleError,
    Origin,
    Pallet,
    RuntimeCall,
    RuntimeEvent,
    StorageMap,
    StorageValue,
    ensure_root,
    ensure_signed,
)
from .system import AccountData, AccountInfo

PALLET_INDEX = 2
NAME = "Balances"

LockId = Annotated[bytes, Fixed(8)]
TREASURY = b"modl" + b"py/trsry" + bytes(20)
MAX_LOCKS = 16

# -- storage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    existential_deposit: u128
    base_fee: u128
    byte_fee: u128


@dataclass(frozen=True)
class BalanceLock:
    id: LockId
    amount: u128


TotalIssuance: StorageValue[int] = StorageValue(NAME, "TotalIssuance", u128, 0)
Parameters: StorageValue[Params] = StorageValue(NAME, "Parameters", Params)
Locks: StorageMap[bytes, list[BalanceLock]] = StorageMap(NAME, "Locks", AccountId, list[BalanceLock], [])

# -- events -----------------------------------------------------------------------------------


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class Endowed(Event, index=0):
    account: AccountId
    free_balance: u128


@dataclass(frozen=True)
class DustLost(Event, index=1):
    account: AccountId
    amount: u128


@dataclass(frozen=True)
class Transfer(Event, index=2):
    from_: AccountId
    to: AccountId
    amount: u128


@dataclass(frozen=True)
class BalanceSet(Event, index=3):
    who: AccountId
    free: u128


@dataclass(frozen=True)
class Reserved(Event, index=4):
    who: AccountId
    amount: u128


@dataclass(frozen=True)
class Unreserved(Event, index=5):
    who: AccountId
    amount: u128


@dataclass(frozen=True)
class TransactionFeePaid(Event, index=6):
    who: AccountId
    fee: u128
    tip: u128


@dataclass(frozen=True)
class Slashed(Event, index=7):
    who: AccountId
    amount: u128


# -- errors -----------------------------------------------------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class InsufficientBalance(Error):
    """Balance too low to send value."""

    code = 0


class ExistentialDeposit(Error):
    """Value too low to create an account (below the existential deposit)."""

    code = 1


class KeepAlive(Error):
    """Transfer would kill the sending account."""

    code = 2


class LiquidityRestrictions(Error):
    """Part of the balance is locked and cannot be spent."""

    code = 3


class TooManyLocks(Error):
    """An account cannot have more locks."""

    code = 4


class InsufficientReserve(Error):
    """Not enough reserved balance."""

    code = 5


# -- helpers: the interface other pallets use -------------------------------------------------


def params(env: Env) -> Params:
    cached = env.cache.get("balances.params")
    if cached is None:
        cached = env.cache["balances.params"] = Parameters.get(env.state)
    return cached


def free_balance(env: Env, who: bytes) -> int:
    return system.account(env, who).data.free


def usable_balance(env: Env, who: bytes) -> int:
    """Free balance that no lock freezes."""
    data = system.account(env, who).data
    return max(0, data.free - data.frozen)


def _store(env: Env, who: bytes, info: AccountInfo, data: AccountData) -> None:
    """Write new balances, creating or reaping the account as the ED dictates."""
    ed = params(env).existential_deposit
    total = data.free + data.reserved
    existed = info.providers > 0
    if total < ed:
        if total:
            TotalIssuance.put(env.state, TotalIssuance.get(env.state) - total)
            env.deposit_event(DustLost(who, total))
        if existed:
            env.deposit_event(system.KilledAccount(who))
        Locks.remove(env.state, who)
        system.put_account(env, who, AccountInfo(info.nonce, info.consumers, 0, AccountData()))
        return
    if not existed:
        env.deposit_event(system.NewAccount(who))
        env.deposit_event(Endowed(who, data.free))
        info = AccountInfo(info.nonce, info.consumers, 1, data)
    else:
        info = AccountInfo(info.nonce, info.consumers, info.providers, data)
    system.put_account(env, who, info)


def transfer(env: Env, source: bytes, dest: bytes, amount: int, keep_alive: bool) -> None:
    """Move ``amount`` of free balance. Raises before any write if the move is not allowed."""
    if source == dest or amount == 0:
        return
    ed = params(env).existential_deposit
    src = system.account(env, source)
    sd = src.data
    if sd.free < amount:
        raise InsufficientBalance(f"free balance {sd.free} is less than {amount}")
    new_free = sd.free - amount
    if new_free < sd.frozen:
        raise LiquidityRestrictions(f"{sd.frozen} of the balance is locked")
    if keep_alive and new_free + sd.reserved < ed:
        raise KeepAlive("the transfer would take the sender below the existential deposit")
    dst = system.account(env, dest)
    dd = dst.data
    if dd.free + dd.reserved + amount < ed:
        raise ExistentialDeposit(f"the receiver would hold less than the existential deposit {ed}")
    _store(env, source, src, AccountData(new_free, sd.reserved, sd.frozen))
    _store(env, dest, dst, AccountData(dd.free + amount, dd.reserved, dd.frozen))
    env.deposit_event(Transfer(source, dest, amount))


def withdraw(env: Env, who: bytes, amount: int) -> None:
    """Take ``amount`` out of circulation from the usable balance (the account may die)."""
    info = system.account(env, who)
    data = info.data
    if data.free - data.frozen < amount:
        raise InsufficientBalance(f"usable balance {max(0, data.free - data.frozen)} < {amount}")
    TotalIssuance.put(env.state, TotalIssuance.get(env.state) - amount)
    _store(env, who, info, AccountData(data.free - amount, data.reserved, data.frozen))


def deposit(env: Env, who: bytes, amount: int) -> None:
    """Mint ``amount`` into ``who``; if that cannot create the account, nothing is minted."""
    if amount == 0:
        return
    info = system.account(env, who)
    data = info.data
    if data.free + data.reserved + amount < params(env).existential_deposit:
        return
    TotalIssuance.put(env.state, TotalIssuance.get(env.state) + amount)
    _store(env, who, info, AccountData(data.free + amount, data.reserved, data.frozen))


def reserve(env: Env, who: bytes, amount: int) -> None:
    info = system.account(env, who)
    data = info.data
    if data.free - data.frozen < amount:
        raise InsufficientBalance(f"cannot reserve {amount}: usable balance is lower")
    _store(env, who, info, replace(data, free=data.free - amount, reserved=data.reserved + amount))
    env.deposit_event(Reserved(who, amount))


def unreserve(env: Env, who: bytes, amount: int) -> int:
    """Move up to ``amount`` back to free; returns what could not be unreserved."""
    info = system.account(env, who)
    data = info.data
    actual = min(amount, data.reserved)
    if actual:
        _store(env, who, info, replace(data, free=data.free + actual, reserved=data.reserved - actual))
        env.deposit_event(Unreserved(who, actual))
    return amount - actual


def slash_reserved(env: Env, who: bytes, amount: int) -> int:
    """Burn up to ``amount`` of reserved balance; returns what could not be slashed."""
    info = system.account(env, who)
    data = info.data
    actual = min(amount, data.reserved)
    if actual:
        TotalIssuance.put(env.state, TotalIssuance.get(env.state) - actual)
        _store(env, who, info, replace(data, reserved=data.reserved - actual))
        env.deposit_event(Slashed(who, actual))
    return amount - actual


def repatriate_reserved(env: Env, slashed: bytes, beneficiary: bytes, amount: int) -> None:
    """Move ``amount`` of ``slashed``'s reserve into ``beneficiary``'s free balance."""
    info = system.account(env, slashed)
    if info.data.reserved < amount:
        raise InsufficientReserve(f"reserved {info.data.reserved} is less than {amount}")
    dst = system.account(env, beneficiary)
    ed = params(env).existential_deposit
    if dst.data.free + dst.data.reserved + amount < ed:
        raise ExistentialDeposit("the beneficiary would hold less than the existential deposit")
    _store(env, slashed, info, replace(info.data, reserved=info.data.reserved - amount))
    dst = system.account(env, beneficiary)
    _store(env, beneficiary, dst, replace(dst.data, free=dst.data.free + amount))


def set_lock(env: Env, lock_id: bytes, who: bytes, amount: int) -> None:
    """Create or change a lock; the account's frozen balance is the largest lock."""
    locks = [lk for lk in Locks.get(env.state, who) if lk.id != lock_id]
    if amount:
        locks.append(BalanceLock(lock_id, amount))
    if len(locks) > MAX_LOCKS:
        raise TooManyLocks(f"at most {MAX_LOCKS} locks per account")
    _write_locks(env, who, locks)


def remove_lock(env: Env, lock_id: bytes, who: bytes) -> None:
    _write_locks(env, who, [lk for lk in Locks.get(env.state, who) if lk.id != lock_id])


def _write_locks(env: Env, who: bytes, locks: list[BalanceLock]) -> None:
    locks.sort(key=lambda lk: lk.id)
    if locks:
        Locks.put(env.state, who, locks)
    else:
        Locks.remove(env.state, who)
    info = system.account(env, who)
    frozen = max((lk.amount for lk in locks), default=0)
    system.put_account(env, who, replace(info, data=replace(info.data, frozen=frozen)))


# -- fees (used by the executive) -------------------------------------------------------------


def compute_fee(env: Env, length: int) -> int:
    p = params(env)
    return p.base_fee + p.byte_fee * length


def can_pay(env: Env, who: bytes, amount: int) -> bool:
    return usable_balance(env, who) >= amount


def charge_fee(env: Env, who: bytes, fee: int, tip: int) -> None:
    """Withdraw fee and tip; both are credited to treasury and author in ``on_finalize``."""
    withdraw(env, who, fee + tip)
    acc = env.cache.setdefault("balances.fees", [0, 0])
    acc[0] += fee
    acc[1] += tip
    env.deposit_event(TransactionFeePaid(who, fee, tip))


# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class transfer_allow_death(Call, index=0):  # noqa: N801
    """Transfer; the sender may fall below the ED and be reaped."""

    dest: AccountId
    value: Balance

    def dispatch(self, env: Env, origin: Origin) -> None:
        transfer(env, ensure_signed(origin), self.dest, self.value, keep_alive=False)


@dataclass(frozen=True)
class force_set_balance(Call, index=1):  # noqa: N801
    """Root only: set an account's free balance (minting or burning the difference)."""

    who: AccountId
    new_free: Balance

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        info = system.account(env, self.who)
        delta = self.new_free - info.data.free
        TotalIssuance.put(env.state, TotalIssuance.get(env.state) + delta)
        _store(env, self.who, info, replace(info.data, free=self.new_free))
        env.deposit_event(BalanceSet(self.who, self.new_free))


@dataclass(frozen=True)
class transfer_keep_alive(Call, index=3):  # noqa: N801
    """Transfer, refusing to take the sender below the ED."""

    dest: AccountId
    value: Balance

    def dispatch(self, env: Env, origin: Origin) -> None:
        transfer(env, ensure_signed(origin), self.dest, self.value, keep_alive=True)


# -- hooks and genesis ------------------------------------------------------------------------


def on_finalize(env: Env) -> None:
    fee, tip = env.cache.pop("balances.fees", (0, 0))
    deposit(env, TREASURY, fee)
    deposit(env, env.block.author, tip)


def build_genesis(env: Env, spec: dict) -> None:
    """``spec``: ``{"existentialDeposit", "baseFee", "byteFee", "balances": [[account, amount]]}``."""
    Parameters.put(env.state, Params(spec["existentialDeposit"], spec["baseFee"], spec["byteFee"]))
    env.cache.pop("balances.params", None)
    for who, amount in spec["balances"]:
        deposit(env, who, amount)
    # The treasury exists from genesis on, so that a block's fees below the ED are kept.
    if free_balance(env, TREASURY) < spec["existentialDeposit"]:
        deposit(env, TREASURY, spec["existentialDeposit"])


PALLET = Pallet(
    name=NAME,
    index=PALLET_INDEX,
    call=Call,
    event=Event,
    error=Error,
    on_finalize=on_finalize,
    build_genesis=build_genesis,
)
