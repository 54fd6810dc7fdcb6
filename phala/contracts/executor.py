"""The executor: one process per contract, where its untrusted code runs.

Started by :class:`phala.contracts.host.Executor` as a fresh interpreter (never forked from
the process that holds keys) with ``PYTHONHASHSEED=0``. Before it reads any request it
limits itself (address space, CPU time, no new files or processes) and, where the kernel
allows, installs a seccomp filter that refuses every system call but the few reading
stdin, writing stdout and managing memory need. Then it serves length-prefixed requests on
stdin, one at a time, in the canonical codec (:mod:`phala.contracts.protocol`), and never
unpickles anything.

The state of the contract is the instance's attributes; after each command they are encoded
(plain values only, at most ``MAX_STATE_BYTES``) and returned. A failed command (an error,
out of gas, a limit, a sandbox violation) restores the state it started from.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import resource
import sys
import typing
from typing import Any

from phala.core.codec import DecodeError, decode, encode

from . import protocol as p
from .gas import MAX_STATE_BYTES, LimitExceeded, Meter, OutOfGas
from .guards import Builtin, Guards, SandboxViolation, make_globals
from .policy import PolicyError, compile_contract
from .sdk import KINDS, AccountIdType, Context, Contract, ContractError, exports
from .values import PlainValueError, decode_plain, encode_plain

MEMORY_LIMIT = 1 << 30  # bytes of address space: the last line behind gas


class Random:
    """HMAC-SHA256 in counter mode over the call's seed: the context's random stream."""

    def __init__(self, seed: bytes):
        self.seed, self.counter, self.buffer = seed, 0, b""

    def take(self, n: int) -> bytes:
        if type(n) is not int or not 0 <= n <= 4096:
            raise ValueError("random_bytes takes 0..4096")
        while len(self.buffer) < n:
            self.buffer += hmac.new(self.seed, self.counter.to_bytes(8, "little"), hashlib.sha256).digest()
            self.counter += 1
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


def check_argument(value: Any, annotation: Any, where: str) -> None:
    """Raise ``ContractError`` unless ``value`` fits ``annotation``."""
    if annotation is None or annotation is typing.Any:
        return
    if isinstance(annotation, AccountIdType):
        if type(value) is not bytes or len(value) != 32:
            raise ContractError(f"{where} must be an AccountId (32 bytes)")
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


class Runtime:
    """The loaded contract: its class, its instance, its committed state."""

    def __init__(self) -> None:
        self.cls: type | None = None
        self.instance: Any = None
        self.committed = encode_plain({})
        self.guards: Guards | None = None

    def load(self, request: p.Load) -> p.Outcome:
        try:
            compiled = compile_contract(request.source)
        except PolicyError as exc:
            return p.Outcome(p.REFUSED, f"policy: {exc}", 0, b"", [], [], b"")
        meter = Meter(request.gas_limit)
        guards = Guards(meter)
        scope = make_globals(guards, exports())
        try:
            exec(compiled.code, scope)  # noqa: S102 - compiled by the policy, run with guarded globals
        except BaseException as exc:  # noqa: BLE001 - any failure of contract code is its outcome
            return _failure(exc, meter)
        classes = [v for v in scope.values() if isinstance(v, type) and issubclass(v, Contract) and v is not Contract]
        if len(classes) != 1:
            return p.Outcome(p.REFUSED, "policy: a contract module defines exactly one Contract class", meter.used, b"", [], [], b"")
        self.cls, self.guards = classes[0], guards
        self.instance = object.__new__(self.cls)
        if request.state:
            self.instance.__dict__.update(decode_plain(request.state))
            self.committed = request.state
        return p.Outcome(p.OK, "", meter.used, encode_plain(self.interface()), [], [], self.committed)

    def interface(self) -> dict:
        """The contract's name and its marked methods with their kinds, e.g.
        ``{"name": "Token", "methods": {"init": "constructor", "transfer": "command"}}``."""
        assert self.cls is not None
        methods = {
            name: value.phala_kind
            for name, value in self.cls.__dict__.items()
            if getattr(value, "phala_kind", None) in KINDS
        }
        return {"name": self.cls.__name__, "methods": methods}

    def call(self, request: p.Call) -> p.Outcome:
        if self.cls is None or self.guards is None:
            return p.Outcome(p.REFUSED, "no contract is loaded", 0, b"", [], [], b"")
        kind = KINDS[request.kind]
        method = self.cls.__dict__.get(request.method)
        if request.method.startswith("_") or getattr(method, "phala_kind", None) != kind:
            return p.Outcome(p.ERROR, f"the contract has no {kind} {request.method!r}", 0, b"", [], [], b"")
        meter = Meter(request.gas_limit)
        self.guards.meter = meter  # the module's hooks charge this call's meter
        context = request.context
        ctx = Context(context.sender, context.block_number, context.timestamp, context.contract_id,
                      Random(context.seed), read_only=kind == "query")
        try:
            args = decode_plain(request.args)
            if type(args) is not list:
                raise ContractError("arguments must be a list")
            self._check_arguments(method, args)
            value = method(self.instance, ctx, *args)
            result = encode_plain(value)
            events = [encode_plain(e) for e in ctx.events]
            messages = [encode_plain(m) for m in ctx.messages]
            state = encode_plain(dict(self.instance.__dict__)) if kind != "query" else self.committed
            if len(state) > MAX_STATE_BYTES:
                raise LimitExceeded(f"the state would be {len(state)} bytes; the limit is {MAX_STATE_BYTES}")
        except BaseException as exc:  # noqa: BLE001 - any failure of contract code is its outcome
            self._revert()
            return _failure(exc, meter)
        if kind == "query":
            self._revert()  # a query's changes are thrown away
        self.committed = state
        return p.Outcome(p.OK, "", meter.used, result, events, messages, state)

    def _check_arguments(self, method: Any, args: list) -> None:
        names = method.__code__.co_varnames[2 : method.__code__.co_argcount]
        if len(args) != len(names):
            raise ContractError(f"{method.__name__} takes {len(names)} argument(s), got {len(args)}")
        annotations = method.__annotations__
        for name, value in zip(names, args, strict=True):
            check_argument(value, annotations.get(name), f"argument {name!r}")

    def _revert(self) -> None:
        self.instance.__dict__.clear()
        self.instance.__dict__.update(decode_plain(self.committed))


def _failure(exc: BaseException, meter: Meter) -> p.Outcome:
    if isinstance(exc, OutOfGas):
        return p.Outcome(p.OUT_OF_GAS, str(exc), meter.used, b"", [], [], b"")
    if isinstance(exc, LimitExceeded | RecursionError | MemoryError):
        return p.Outcome(p.LIMIT, f"{type(exc).__name__}: {exc}", meter.used, b"", [], [], b"")
    if isinstance(exc, SandboxViolation):
        return p.Outcome(p.REFUSED, f"sandbox: {exc}", meter.used, b"", [], [], b"")
    if isinstance(exc, PlainValueError):
        return p.Outcome(p.ERROR, f"not a plain value: {exc}", meter.used, b"", [], [], b"")
    if isinstance(exc, Exception):
        return p.Outcome(p.ERROR, f"{type(exc).__name__}: {exc}"[:1000], meter.used, b"", [], [], b"")
    raise exc  # KeyboardInterrupt, SystemExit: not the contract's doing


# -- the process ------------------------------------------------------------------------------


def confine(seccomp: bool = True) -> str:
    """Limit this process before it runs contract code; returns how (for the hello)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_NOFILE, (8, 8))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.setrecursionlimit(4 * 128 + 200)  # deeper than MAX_CALL_DEPTH allows contracts to go
    if not seccomp:
        return "rlimits"
    from .seccomp_filter import install

    return "rlimits+seccomp" if install() else "rlimits"


def serve(stdin: Any, stdout: Any) -> None:
    runtime = Runtime()
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return
        size = int.from_bytes(header, "little")
        if size > p.MAX_FRAME:
            return
        body = stdin.read(size)
        try:
            request = decode(p.Request, body)
        except DecodeError as exc:
            reply = p.Outcome(p.REFUSED, f"bad request: {exc}", 0, b"", [], [], b"")
        else:
            if isinstance(request, p.Load):
                reply = runtime.load(request)
            elif isinstance(request, p.Call):
                reply = runtime.call(request)
            else:
                return
        data = encode(reply)
        stdout.write(len(data).to_bytes(4, "little") + data)
        stdout.flush()


def main() -> None:
    if sys.flags.hash_randomization:
        sys.stderr.write("the executor must run with PYTHONHASHSEED=0\n")
        raise SystemExit(2)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    how = confine(seccomp=os.environ.get("PHALA_EXECUTOR_SECCOMP", "1") == "1")
    hello = encode(p.Hello(p.PROTOCOL_VERSION, how, ".".join(map(str, sys.version_info[:3]))))
    stdout.write(len(hello).to_bytes(4, "little") + hello)
    stdout.flush()
    serve(stdin, stdout)


if __name__ == "__main__":
    main()
