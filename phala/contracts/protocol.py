"""Frames between a host and its executor: little-endian u32 length, then the SCALE
encoding of one of these types (never pickle). The executor greets with :class:`Hello`,
then answers each :class:`Request` with one :class:`Outcome`."""

from __future__ import annotations

from dataclasses import dataclass

from phala.core.codec import H256, AccountId, ScaleEnum, u8, u32, u64

PROTOCOL_VERSION = 1
MAX_FRAME = 8 << 20

# Outcome statuses. The same inputs give the same status and gas on every worker.
OK, ERROR, OUT_OF_GAS, LIMIT, REFUSED = range(5)
STATUS_NAMES = ("ok", "error", "out of gas", "limit exceeded", "refused")
# Not an outcome: the executor ran out of address space (its rlimit, the memory watchdog).
# Where that happens depends on the process, not on the contract alone, so it is never
# recorded: the host raises ExecutorAlarm and the worker stops serving the contract.
MEMORY_ALARM = 255

# Call kinds: indices into phala.contracts.sdk.KINDS.
CONSTRUCTOR, COMMAND, QUERY, HANDLER = range(4)


@dataclass(frozen=True)
class Hello:
    version: u32
    confinement: str  # "rlimits+seccomp" or "rlimits"
    python: str  # the interpreter's version: a cluster's workers must run the same minor one
    policy: str  # the RestrictedPython version (pinned in pyproject.toml)


@dataclass(frozen=True)
class CallContext:
    sender: AccountId | None
    block_number: u32
    timestamp: u64
    contract_id: H256
    seed: H256  # the random stream's seed (HKDF of contract secret, block hash, index)


class Request(ScaleEnum):
    pass


@dataclass(frozen=True)
class Load(Request, index=0):
    source: str
    state: bytes  # encoded plain state to resume from (empty: a new instance)
    gas_limit: u64  # for running the module body


@dataclass(frozen=True)
class Call(Request, index=1):
    kind: u8
    method: str
    args: bytes  # encoded plain list
    context: CallContext
    gas_limit: u64


@dataclass(frozen=True)
class Outcome:
    status: u8
    message: str
    gas_used: u64
    value: bytes  # encoded plain return value (empty on failure)
    events: list[bytes]  # encoded plain events
    messages: list[bytes]  # encoded plain (to, message) pairs
    state: bytes  # encoded plain state after the call (empty on failure)


def failure(status: int, message: str, gas_used: int = 0) -> Outcome:
    """An outcome that is not OK: its status, why, and the gas used; it carries no value,
    events, messages or state (a failed call changes nothing)."""
    return Outcome(status, message, gas_used, b"", [], [], b"")
