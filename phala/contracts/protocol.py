"""Frames between a worker and its executor: little-endian u32 length, then the SCALE
encoding of one of these types (never pickle).

The executor greets with :class:`Hello`, then answers each :class:`Request`:

* :class:`Install` → one :class:`Loaded` (the contract's code checked, compiled and run in a
  fresh instance; the executor keeps the compiled code);
* :class:`Restore` → :class:`Ack` (committed storage entries, in chunks, after a restart);
* :class:`Enqueue` → one :class:`Outcome` (a call of the contract's open block, which its
  first call opens: a worker streams a block's calls while it is still opening them);
* :class:`Commit` → :class:`Writes` frames until one is ``last`` (closes the open block: its
  storage writes, committed in the executor when sent);
* :class:`Query` → one :class:`Outcome` (a fresh instance over committed storage);
* :class:`Check` → one :class:`Loaded` (nothing is kept);
* :class:`Remove` → :class:`Ack`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from phala.core.codec import H256, AccountId, ScaleEnum, u8, u32, u64
from phala.core.compact import DecodeError, decode_compact, encode_compact

PROTOCOL_VERSION = 3
MAX_FRAME = 16 << 20
WRITES_PER_FRAME = 4096  # storage entries per Writes or Restore frame

# Outcome statuses. The same inputs give the same status and gas on every worker.
OK, ERROR, OUT_OF_GAS, LIMIT, REFUSED = range(5)
STATUS_NAMES = ("ok", "error", "out of gas", "limit exceeded", "refused")

# Call kinds: indices into phala.contracts.sdk.KINDS.
CONSTRUCTOR, COMMAND, QUERY, HANDLER = range(4)


@dataclass(frozen=True)
class Hello:
    version: u32
    confinement: str  # "rlimits+seccomp" or "rlimits"
    runtime: str  # the runtime identity (phala.contracts.vm.build.runtime_identity)
    wasmtime: str  # the wasmtime version
    python: str  # the guest interpreter's version


@dataclass(frozen=True)
class CallContext:
    sender: AccountId | None
    block_number: u32
    timestamp: u64
    contract_id: H256
    seed: H256  # the random stream's seed (derived from contract secret, block hash, index)


@dataclass(frozen=True)
class Call:
    kind: u8
    method: str
    args: bytes  # encoded plain list
    context: CallContext
    gas_limit: u64


class Request(ScaleEnum):
    pass


@dataclass(frozen=True)
class Install(Request, index=0):
    contract: H256
    source: str


@dataclass(frozen=True)
class Restore(Request, index=1):
    contract: H256
    entries: list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Query(Request, index=3):
    contract: H256
    call: Call


@dataclass(frozen=True)
class Check(Request, index=4):
    source: str


@dataclass(frozen=True)
class Remove(Request, index=5):
    contract: H256


@dataclass(frozen=True)
class Enqueue(Request, index=6):
    contract: H256
    call: Call


@dataclass(frozen=True)
class Commit(Request, index=7):
    contract: H256


@dataclass(frozen=True)
class Loaded:
    status: u8  # OK or REFUSED
    message: str  # why it was refused, with the line
    line: u32  # the source line of the refusal (0 when ok)
    interface: bytes  # encoded plain {"name": ..., "methods": {name: kind}} (empty unless ok)


@dataclass(frozen=True)
class Outcome:
    status: u8
    message: str
    gas_used: u64
    value: bytes  # encoded plain return value (empty on failure)
    events: list[bytes]  # encoded plain (accounts, event) pairs
    messages: list[bytes]  # encoded plain (to, message) pairs


@dataclass(frozen=True)
class Writes:
    entries: list[tuple[bytes, bytes | None]]  # None: removed
    last: bool


@dataclass(frozen=True)
class Ack:
    ok: bool
    message: str


def failure(status: int, message: str, gas_used: int = 0) -> Outcome:
    """An outcome that is not OK: its status, why, and the gas used; it carries no value,
    events or messages (a failed call changes nothing)."""
    return Outcome(status, message, gas_used, b"", [], [])


# -- the two frames of every call, by hand ---------------------------------------------------
# A worker sends an Enqueue and reads an Outcome for every command; the generic codec spent
# more on them than the worker's part of the command did. These give exactly the codec's
# bytes (tests/contracts/test_protocol.py compares them).

_ENQUEUE = 6
_BLOCK_TIME_GAS = struct.Struct("<IQ")
_U64 = struct.Struct("<Q")


def _bytes_into(out: bytearray, data: bytes) -> None:
    encode_compact(len(data), out)
    out += data


def encode_enqueue(contract: bytes, call: Call) -> bytes:
    """``encode(Enqueue(contract, call), Request)``."""
    c = call.context
    if len(contract) != 32 or len(c.contract_id) != 32 or len(c.seed) != 32 or (
            c.sender is not None and len(c.sender) != 32):
        raise ValueError("ids are 32 bytes")
    out = bytearray((_ENQUEUE,))
    out += contract
    out.append(call.kind)
    _bytes_into(out, call.method.encode())
    _bytes_into(out, call.args)
    if c.sender is None:
        out.append(0)
    else:
        out.append(1)
        out += c.sender
    out += _BLOCK_TIME_GAS.pack(c.block_number, c.timestamp)
    out += c.contract_id
    out += c.seed
    out += _U64.pack(call.gas_limit)
    return bytes(out)


def decode_outcome(data: bytes) -> Outcome:
    """``decode(Outcome, data)``, strictly: raises ``DecodeError`` for anything else."""
    try:
        status = data[0]
        pos = 1
        size, pos = decode_compact(data, pos)
        end = pos + size
        if end > len(data):
            raise DecodeError("input too short")
        message = data[pos:end].decode("utf-8")
        pos = end
        if pos + 8 > len(data):
            raise DecodeError("input too short")
        (gas_used,) = _U64.unpack_from(data, pos)
        pos += 8
        size, pos = decode_compact(data, pos)
        end = pos + size
        if end > len(data):
            raise DecodeError("input too short")
        value = data[pos:end]
        pos = end
        lists = []
        for _ in range(2):
            count, pos = decode_compact(data, pos)
            if count > len(data) - pos:
                raise DecodeError("a count exceeds the input")
            items = []
            for _ in range(count):
                size, pos = decode_compact(data, pos)
                end = pos + size
                if end > len(data):
                    raise DecodeError("input too short")
                items.append(data[pos:end])
                pos = end
            lists.append(items)
    except IndexError as exc:
        raise DecodeError("input too short") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8: {exc.reason}") from exc
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} trailing bytes")
    return Outcome(status, message, gas_used, value, lists[0], lists[1])
