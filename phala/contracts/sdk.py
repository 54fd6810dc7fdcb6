"""The contract SDK: what ``from phala.contracts.sdk import …`` gives a contract.

A contract is one class deriving from :class:`Contract`. Its state is its attributes (plain
values only). Methods are marked with the decorators:

* ``@constructor``: runs once, at instantiation, with the constructor arguments;
* ``@command``: changes state; runs on every worker of the cluster, in chain order;
* ``@query``: read-only, answered by one worker; any state change it makes is thrown away;
* ``@handler``: called by the runtime (block end, messages from pallets and contracts).

Each takes ``ctx`` (a :class:`Context`) after ``self``; the other arguments are checked
against their annotations before the method runs (``int``, ``bool``, ``str``, ``bytes``,
``AccountId``, ``list[...]``, ``dict[..., ...]``), so a wrong argument is a clear error.

Example::

    from phala.contracts.sdk import Contract, constructor, command, query, AccountId

    class Counter(Contract):
        @constructor
        def init(self, ctx, start: int):
            self.count = start
            self.owner = ctx.sender

        @command
        def bump(self, ctx, by: int) -> int:
            self.count += by
            ctx.emit({"bumped": by})
            return self.count

        @query
        def get(self, ctx) -> int:
            return self.count
"""

from __future__ import annotations

import typing
from types import FunctionType
from typing import Any

from .guards import Builtin, ContractBase, SandboxViolation

KINDS = ("constructor", "command", "query", "handler")
MAX_EVENT_RECIPIENTS = 16


class ContractError(Exception):
    """Raised by a contract to fail a command with a message (its state changes revert)."""


class Contract(ContractBase):
    """Base class of every contract. Contract code cannot create instances: the runtime
    makes the one instance and keeps it."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise SandboxViolation("contracts are instantiated by the runtime, not by contract code")


def _mark(kind: str):
    def decorate(func: Any) -> Any:
        # Only a function: called as command(Contract) it set an attribute on an SDK class.
        if type(func) is not FunctionType or getattr(func, "phala_kind", None) is not None:
            raise SandboxViolation(f"@{kind} applies to a method, once")
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
    ``Bid(bidder=..., amount=...)`` makes one (checked). Annotated arguments are checked
    before the method runs, so a wrong field is a clear error."""

    def __init__(self, name: str, **fields: Any):
        if type(name) is not str or not name.isidentifier():
            raise ContractError("a record needs a name")
        if not fields:
            raise ContractError(f"record {name} needs fields")
        self.name = name
        self.fields = dict(fields)

    def __call__(self, **values: Any) -> dict:
        record = {field: values[field] for field in self.fields if field in values}
        check_argument(values, self, self.name)
        return record

    def __repr__(self) -> str:
        return f"<record {self.name}>"


def check_argument(value: Any, annotation: Any, where: str) -> None:
    """Raise :class:`ContractError` unless ``value`` fits ``annotation`` (``int``, ``bool``,
    ``str``, ``bytes``, ``AccountId``, a :class:`Record`, ``list[...]``, ``dict[..., ...]``;
    no annotation accepts any plain value)."""
    if annotation is None or annotation is typing.Any:
        return
    if isinstance(annotation, AccountIdType):
        if type(value) is not bytes or len(value) != 32:
            raise ContractError(f"{where} must be an AccountId (32 bytes)")
        return
    if isinstance(annotation, Record):
        if type(value) is not dict or set(value) != set(annotation.fields):
            fields = ", ".join(annotation.fields)
            raise ContractError(f"{where} must be a {annotation.name} record with fields {fields}")
        for field, kind in annotation.fields.items():
            check_argument(value[field], kind, f"{where}.{field}")
        return
    if type(annotation) is Builtin:
        annotation = annotation.real
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
            check_argument(item, params[0], f"{where}[{i}]")
    elif origin is dict and len(params) == 2:
        for key, item in value.items():
            check_argument(key, params[0], f"{where} key")
            check_argument(item, params[1], f"{where}[{key!r:.20}]")


class Context:
    """What a method knows about its call. Read-only fields: ``sender`` (the account that
    signed the command or the query; ``None`` for handlers), ``block_number``, ``timestamp``
    (ms), ``contract_id``; and ``emit(event)``, ``send(to, message)``, ``random_bytes(n)``,
    ``random_below(n)``."""

    public = frozenset(
        {"sender", "block_number", "timestamp", "contract_id", "emit", "send", "random_bytes", "random_below"}
    )

    def __init__(self, sender: bytes | None, block_number: int, timestamp: int, contract_id: bytes, random: Any,
                 read_only: bool):
        self.sender = sender
        self.block_number = block_number
        self.timestamp = timestamp
        self.contract_id = contract_id
        self.events: list = []
        self.messages: list = []
        self._random = random
        self._read_only = read_only

    def emit(self, event: Any, to: Any = ()) -> None:
        """Record an event (a plain value) for the accounts concerned: the command's sender,
        and the accounts listed in ``to`` (32-byte account ids, at most 16). Each can read it,
        and only it, with a signed query (answers are sealed to the asker)."""
        if self._read_only:
            raise ContractError("queries cannot emit events")
        if type(to) not in (list, tuple) or len(to) > MAX_EVENT_RECIPIENTS:
            raise ContractError(f"emit(to=...) takes a list of at most {MAX_EVENT_RECIPIENTS} accounts")
        for account in to:
            if type(account) is not bytes or len(account) != 32:
                raise ContractError("emit(to=...) takes 32-byte account ids")
        self.events.append((list(to), event))

    def send(self, to: Any, message: Any) -> None:
        """Send ``message`` (a plain value) to another contract (its 32-byte id) or to a pallet
        (its name, a str), delivered after this command (see docs/contracts.md)."""
        if self._read_only:
            raise ContractError("queries cannot send messages")
        self.messages.append((to, message))

    def random_bytes(self, n: int) -> bytes:
        """``n`` bytes no one outside the cluster can predict, the same on every worker."""
        return self._random.take(n)

    def random_below(self, n: int) -> int:
        """A uniform integer in ``0 .. n-1`` from the same stream."""
        if type(n) is not int or n <= 0:
            raise ValueError("random_below takes a positive int")
        width = (n.bit_length() + 7) // 8 + 8  # 64 extra bits make the bias negligible
        return int.from_bytes(self._random.take(width), "little") % n


def exports() -> dict[str, Any]:
    """The names a contract may import from the SDK."""
    return {
        "Contract": Contract,
        "ContractError": ContractError,
        "constructor": constructor,
        "command": command,
        "query": query,
        "handler": handler,
        "AccountId": AccountId,
        "Record": Record,
    }
