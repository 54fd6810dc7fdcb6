"""The contract SDK: what ``from phala.contracts.sdk import …`` gives a contract.

This module runs inside the contract VM (CPython compiled to WebAssembly, see
:mod:`phala.contracts.vm`); the host imports it only to read its names. A contract is one
class deriving from :class:`Contract`. Methods are marked with the decorators:

* ``@constructor``: runs once, at instantiation, with the constructor arguments;
* ``@command``: changes state; runs on every worker of the cluster, in chain order;
* ``@query``: read-only, answered by one worker; any state change it makes is thrown away;
* ``@handler``: called by the runtime (deposits, messages from other contracts).

Each takes ``ctx`` (a :class:`Context`) after ``self``; the other arguments are checked
against their annotations before the method runs (``int``, ``bool``, ``str``, ``bytes``,
``AccountId``, ``list[...]``, ``dict[..., ...]``, records), so a wrong argument is a clear
error.

State lives in the contract's key-value storage, held by the worker, never in the Python
objects: ``self.count = 5`` stores the field ``count``; ``self.count`` reads it back. A
:class:`Mapping` declared on the class (``balances = Mapping()``) stores each entry under
its own key, so a command that touches two balances reads and writes two entries, however
many there are. Values read in a call are cached for that call and written back at its end
if they changed (so ``self.order.append(x)`` is kept); nothing else survives the call::

    from phala.contracts.sdk import AccountId, Contract, Mapping, command, constructor, query

    class Counter(Contract):
        counts = Mapping()

        @constructor
        def init(self, ctx, start: int):
            self.total = start

        @command
        def bump(self, ctx, by: int) -> int:
            self.total += by
            self.counts[ctx.sender] = self.counts.get(ctx.sender, 0) + by
            ctx.emit({"bumped": by})
            return self.total

        @query
        def get(self, ctx) -> int:
            return self.total
"""

from __future__ import annotations

import hashlib
import typing
from types import FunctionType
from typing import Any

from .values import MAX_DEPTH, _is_key, decode_plain, encode_plain

KINDS = ("constructor", "command", "query", "handler")
MAX_EVENT_RECIPIENTS = 16
MAX_KEY_BYTES = 512  # an encoded storage key (also enforced by the host)
MAX_VALUE_BYTES = 256 << 10  # an encoded storage value (also enforced by the host)
MAX_OUTPUT_BYTES = 1 << 20  # a call's return value, events and messages together
MAX_RANDOM_BYTES = 4096  # one random_bytes call

FIELD_PREFIX = b"\x00"  # storage key of field f: FIELD_PREFIX + f
ENTRY_PREFIX = b"\x01"  # of entry k of mapping m: ENTRY_PREFIX + m + b"\x00" + encode_plain(k)


class ContractError(Exception):
    """Raised by a contract to fail a command with a message (its state changes revert)."""


class LimitExceeded(Exception):
    """A value passed a limit of the SDK (size of a key, a value, the output)."""


# -- the storage of the running call --------------------------------------------------------


class _Storage:
    """What the runtime plugs in: ``get(key) -> bytes | None``, ``set(key, value)``,
    ``remove(key)``, ``next(prefix, after) -> bytes | None`` over the contract's storage."""

    def get(self, key: bytes) -> bytes | None:
        raise ContractError("no storage outside a call")

    set = remove = next = get  # type: ignore[assignment]


_NO_STORAGE = _Storage()


class _Call:
    """The cache of one call: every storage key read or written, its bytes as read (None:
    absent) and its current value (``_ABSENT`` once deleted)."""

    def __init__(self, storage: Any, read_only: bool):
        self.storage = storage
        self.read_only = read_only
        self.cache: dict[bytes, list] = {}

    def read(self, key: bytes) -> Any:
        slot = self.cache.get(key)
        if slot is None:
            raw = self.storage.get(key)
            slot = self.cache[key] = [raw, _ABSENT if raw is None else decode_plain(raw)]
        return slot[1]

    def write(self, key: bytes, value: Any) -> None:
        if len(key) > MAX_KEY_BYTES:
            raise LimitExceeded(f"a storage key of {len(key)} bytes; the limit is {MAX_KEY_BYTES}")
        slot = self.cache.get(key)
        if slot is None:
            self.read(key)
            slot = self.cache[key]
        slot[1] = value

    def changes(self, prefix: bytes = b"") -> tuple[list[bytes], list[bytes], list[bytes]]:
        """What changed under ``prefix``, as ``(keys set, their values, keys removed)``: a
        value counts as changed only if its encoding differs from what was read. They are
        marked written."""
        keys, values, removed = [], [], []
        for key, slot in self.cache.items():
            if not key.startswith(prefix):
                continue
            raw, value = slot
            if value is _ABSENT:
                if raw is not None:
                    removed.append(key)
                    slot[0] = None
                continue
            data = encode_plain(value)
            if len(data) > MAX_VALUE_BYTES:
                raise LimitExceeded(f"a storage value of {len(data)} bytes; the limit is {MAX_VALUE_BYTES}")
            if data != raw:
                keys.append(key)
                values.append(data)
                slot[0] = data
        return keys, values, removed

    def flush(self, prefix: bytes = b"") -> None:
        """Write what changed under ``prefix`` to storage now (before walking it)."""
        keys, values, removed = self.changes(prefix)
        for key, data in zip(keys, values, strict=True):
            self.storage.set(key, data)
        for key in removed:
            self.storage.remove(key)


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()
_current: list[_Call | None] = [None]


def _begin(storage: Any, read_only: bool) -> _Call:
    call = _current[0] = _Call(storage, read_only)
    return call


def _end() -> None:
    _current[0] = None


def _call() -> _Call:
    call = _current[0]
    if call is None:
        raise ContractError("contract state is only reachable inside a call")
    return call


def _field_key(name: str) -> bytes:
    return FIELD_PREFIX + name.encode()


# -- contracts ------------------------------------------------------------------------------


class Contract:
    """Base class of every contract. Attributes of an instance are the contract's fields,
    kept in its storage; methods, :class:`Mapping` declarations and constants are the
    class's. A fresh instance is made for every call."""

    def __getattr__(self, name: str) -> Any:  # only for names the class does not define
        if name.startswith("__"):
            raise AttributeError(name)
        value = _call().read(_field_key(name))
        if value is _ABSENT:
            raise AttributeError(f"the contract has no field {name!r} (never assigned)")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        declared = getattr(type(self), name, None)
        if isinstance(declared, Mapping):
            raise ContractError(f"{name} is a Mapping: assign its entries, {name}[key] = value")
        if declared is not None:
            raise ContractError(f"{name} is defined by the class; a field needs another name")
        _call().write(_field_key(name), value)

    def __delattr__(self, name: str) -> None:
        call = _call()
        if call.read(_field_key(name)) is _ABSENT:
            raise AttributeError(name)
        call.write(_field_key(name), _ABSENT)


class Mapping:
    """A map kept entry by entry in storage. Declare it on the class (``balances =
    Mapping()``) and use it like a dict: ``m[k]``, ``m[k] = v``, ``del m[k]``, ``k in m``,
    ``m.get(k, default)``, ``m.pop(k, default)``, and ``keys()``, ``values()``, ``items()``
    (in the order of the keys' encodings, read from storage one entry at a time). Keys are
    plain values that can be dict keys (None, bool, int, str, bytes, tuples of them)."""

    def __init__(self) -> None:
        self.name = ""
        self.view = MappingView(ENTRY_PREFIX + b"\x00")

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.view = MappingView(ENTRY_PREFIX + name.encode() + b"\x00")  # it holds only its prefix

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return self.view


class MappingView:
    """A :class:`Mapping` as one call sees it."""

    def __init__(self, prefix: bytes):
        self._prefix = prefix

    def _key(self, key: Any) -> bytes:
        if type(key) is bytes or type(key) is int or type(key) is str:  # plain and hashable: encode directly
            return self._prefix + encode_plain(key)
        if not _is_key(key):
            raise ContractError(f"a Mapping key must be None, bool, int, str, bytes or a tuple of them, not "
                                f"{type(key).__name__}")
        return self._prefix + encode_plain(key)

    def __getitem__(self, key: Any) -> Any:
        value = _call().read(self._key(key))
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        value = _call().read(self._key(key))
        return default if value is _ABSENT else value

    def __contains__(self, key: Any) -> bool:
        return _call().read(self._key(key)) is not _ABSENT

    def __setitem__(self, key: Any, value: Any) -> None:
        _call().write(self._key(key), value)

    def __delitem__(self, key: Any) -> None:
        call = _call()
        storage_key = self._key(key)
        if call.read(storage_key) is _ABSENT:
            raise KeyError(key)
        call.write(storage_key, _ABSENT)

    def pop(self, key: Any, default: Any = _ABSENT) -> Any:
        call = _call()
        storage_key = self._key(key)
        value = call.read(storage_key)
        if value is _ABSENT:
            if default is _ABSENT:
                raise KeyError(key)
            return default
        call.write(storage_key, _ABSENT)
        return value

    def _keys(self) -> Any:
        call = _call()
        call.flush(self._prefix)  # the entries this call changed are in storage before we walk it
        after = b""
        while True:
            found = call.storage.next(self._prefix, after)
            if found is None:
                return
            after = found
            if call.read(found) is not _ABSENT:
                yield decode_plain(found[len(self._prefix):])

    def keys(self) -> list:
        return list(self._keys())

    def __iter__(self) -> Any:
        return iter(self.keys())

    def values(self) -> list:
        return [self[k] for k in self.keys()]

    def items(self) -> list:
        return [(k, self[k]) for k in self.keys()]

    def __len__(self) -> int:
        return len(self.keys())


def _mark(kind: str):
    def decorate(func: Any) -> Any:
        if type(func) is not FunctionType or getattr(func, "phala_kind", None) is not None:
            raise ContractError(f"@{kind} applies to a method, once")
        func.phala_kind = kind
        return func

    decorate.__name__ = kind
    return decorate


constructor = _mark("constructor")
command = _mark("command")
query = _mark("query")
handler = _mark("handler")


class AccountIdType:
    """Annotation for a 32-byte account id (``bytes`` of length 32)."""

    def __repr__(self) -> str:
        return "AccountId"


AccountId = AccountIdType()


class Record:
    """A named record type for arguments and results::

        Bid = Record("Bid", bidder=AccountId, amount=int)

        @command
        def bid(self, ctx, offer: Bid) -> Bid: ...

    A record is a plain dict with exactly the declared fields, each of its declared type;
    ``Bid(bidder=..., amount=...)`` makes one (checked)."""

    def __init__(self, name: str, **fields: Any):
        if type(name) is not str or not name.isidentifier():
            raise ContractError("a record needs a name")
        if not fields:
            raise ContractError(f"record {name} needs fields")
        self.name = name
        self.fields = dict(fields)

    def __call__(self, **values: Any) -> dict:
        check_argument(values, self, self.name)
        return {field: values[field] for field in self.fields}

    def __repr__(self) -> str:
        return f"<record {self.name}>"


def check_argument(value: Any, annotation: Any, where: str, depth: int = 0) -> None:
    """Raise :class:`ContractError` unless ``value`` fits ``annotation`` (``int``, ``bool``,
    ``str``, ``bytes``, ``AccountId``, a :class:`Record`, ``list[...]``, ``dict[..., ...]``;
    no annotation accepts any plain value)."""
    if annotation is int or annotation is str or annotation is bytes or annotation is bool:
        if type(value) is not annotation:
            raise ContractError(f"{where} must be {annotation.__name__}, got {type(value).__name__}")
        return
    if annotation is None or annotation is typing.Any or annotation is Any:
        return
    if depth > MAX_DEPTH:
        raise ContractError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(annotation, AccountIdType):
        if type(value) is not bytes or len(value) != 32:
            raise ContractError(f"{where} must be an AccountId (32 bytes)")
        return
    if isinstance(annotation, Record):
        if type(value) is not dict or set(value) != set(annotation.fields):
            fields = ", ".join(annotation.fields)
            raise ContractError(f"{where} must be a {annotation.name} record with fields {fields}")
        for field, kind in annotation.fields.items():
            check_argument(value[field], kind, f"{where}.{field}", depth + 1)
        return
    origin = typing.get_origin(annotation)
    if origin is None:
        if annotation in (int, bool, str, bytes, list, dict, tuple) and type(value) is not annotation:
            raise ContractError(f"{where} must be {annotation.__name__}, got {type(value).__name__}")
        return
    if type(value) is not origin:
        raise ContractError(f"{where} must be {origin.__name__}, got {type(value).__name__}")
    params = typing.get_args(annotation)
    if origin is list and params:
        for i, item in enumerate(value):
            check_argument(item, params[0], f"{where}[{i}]", depth + 1)
    elif origin is dict and len(params) == 2:
        for key, item in value.items():
            check_argument(key, params[0], f"{where} key", depth + 1)
            check_argument(item, params[1], f"{where}[{key!r:.20}]", depth + 1)


class Context:
    """What a method knows about its call: ``sender`` (the account that signed the command
    or the query; ``None`` for handlers of deposits), ``block_number``, ``timestamp`` (ms),
    ``contract_id``; and ``emit(event)``, ``send(to, message)``, ``random_bytes(n)``,
    ``random_below(n)``."""

    def __init__(self, sender: bytes | None, block_number: int, timestamp: int, contract_id: bytes, seed: bytes,
                 read_only: bool):
        self.sender = sender
        self.block_number = block_number
        self.timestamp = timestamp
        self.contract_id = contract_id
        self.events: list[bytes] = []
        self.messages: list[bytes] = []
        self.output_left = MAX_OUTPUT_BYTES
        self._seed = seed
        self._counter = 0
        self._buffer = b""
        self._read_only = read_only

    def _take_output(self, data: bytes, what: str) -> bytes:
        if len(data) > self.output_left:
            raise LimitExceeded(f"{what} would pass the {MAX_OUTPUT_BYTES}-byte output limit of a call")
        self.output_left -= len(data)
        return data

    def emit(self, event: Any, to: Any = ()) -> None:
        """Record an event (a plain value) for the accounts concerned: the command's sender,
        and the accounts listed in ``to`` (32-byte account ids, at most 16). Each can read it,
        and only it, with a signed query (answers are sealed to the asker). The event is
        encoded now: changing the value afterwards changes nothing."""
        if self._read_only:
            raise ContractError("queries cannot emit events")
        if type(to) not in (list, tuple) or len(to) > MAX_EVENT_RECIPIENTS:
            raise ContractError(f"emit(to=...) takes a list of at most {MAX_EVENT_RECIPIENTS} accounts")
        for account in to:
            if type(account) is not bytes or len(account) != 32:
                raise ContractError("emit(to=...) takes 32-byte account ids")
        self.events.append(self._take_output(encode_plain((list(to), event)), "the events"))

    def send(self, to: Any, message: Any) -> None:
        """Send ``message`` (a plain value) to another contract (its 32-byte id) or to a pallet
        (its name, a str), delivered after this command (see docs/contracts.md). Its size
        counts against the call's output limit now."""
        if self._read_only:
            raise ContractError("queries cannot send messages")
        if not (type(to) is bytes and len(to) == 32 or type(to) is str and len(to) <= 32):
            raise ContractError("send(to, ...) takes a 32-byte contract id or a pallet name")
        self.messages.append(self._take_output(encode_plain((to, message)), "the messages"))

    def random_bytes(self, n: int) -> bytes:
        """``n`` bytes no one outside the cluster can predict, the same on every worker:
        keyed BLAKE2b in counter mode over the call's seed."""
        if type(n) is not int or not 0 <= n <= MAX_RANDOM_BYTES:
            raise ContractError(f"random_bytes takes 0..{MAX_RANDOM_BYTES}")
        while len(self._buffer) < n:
            block = hashlib.blake2b(self._counter.to_bytes(8, "little"), key=self._seed, digest_size=64)
            self._buffer += block.digest()
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def random_below(self, n: int) -> int:
        """A uniform integer in ``0 .. n-1`` from the same stream."""
        if type(n) is not int or n <= 0:
            raise ContractError("random_below takes a positive int")
        width = (n.bit_length() + 7) // 8 + 8  # 64 extra bits make the bias negligible
        return int.from_bytes(self.random_bytes(width), "little") % n


def exports() -> dict[str, Any]:
    """The names a contract may import from the SDK."""
    return {
        "Contract": Contract,
        "ContractError": ContractError,
        "LimitExceeded": LimitExceeded,
        "Mapping": Mapping,
        "constructor": constructor,
        "command": command,
        "query": query,
        "handler": handler,
        "AccountId": AccountId,
        "Record": Record,
    }
