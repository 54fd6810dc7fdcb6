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
import unicodedata  # noqa: F401 - the parser imports it for a non-ASCII name; under seccomp it no longer could
from importlib import metadata
from typing import Any

from phala.core.codec import DecodeError, decode, encode

from . import protocol as p
from .gas import MAX_STATE_BYTES, LimitExceeded, Meter, OutOfGas
from .guards import Guards, SandboxViolation, make_globals
from .policy import PolicyError, compile_contract
from .sdk import KINDS, Context, Contract, ContractError, check_argument, exports
from .values import PlainValueError, decode_plain, encode_plain

POLICY_VERSION = metadata.version("RestrictedPython")  # read before confinement: it opens files
MEMORY_LIMIT = 1 << 30  # bytes of address space: the last line behind gas
MAX_OUTPUT_BYTES = 1 << 20  # the encoded return value, events and messages of one call


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
            return p.failure(p.REFUSED, f"policy: {exc}")
        meter = Meter(request.gas_limit)
        guards = Guards(meter)
        scope = make_globals(guards, exports())
        try:
            exec(compiled.code, scope)  # noqa: S102 - compiled by the policy, run with guarded globals
        except BaseException as exc:  # noqa: BLE001 - any failure of contract code is its outcome
            return _failure(exc, meter)
        classes = [v for v in scope.values() if isinstance(v, type) and issubclass(v, Contract) and v is not Contract]
        if len(classes) != 1:
            return p.failure(p.REFUSED, "policy: a contract module defines exactly one Contract class", meter.used)
        self.cls, self.guards = classes[0], guards
        self.instance = object.__new__(self.cls)
        if request.state:
            try:  # (a malformed state, say a pickle, killed the executor)
                state = decode_plain(request.state)
            except DecodeError as exc:
                return p.failure(p.REFUSED, f"bad state: {exc}", meter.used)
            if type(state) is not dict or not all(type(k) is str for k in state):
                return p.failure(p.REFUSED, "bad state: not a dict of attributes", meter.used)
            self.instance.__dict__.update(state)
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
            return p.failure(p.REFUSED, "no contract is loaded")
        kind = KINDS[request.kind]
        method = self.cls.__dict__.get(request.method)
        if request.method.startswith("_") or getattr(method, "phala_kind", None) != kind:
            return p.failure(p.ERROR, f"the contract has no {kind} {request.method!r}")
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
            # Results are typed too: a method returning what it did not declare fails.
            check_argument(value, method.__annotations__.get("return"), "the result")
            budget = [MAX_OUTPUT_BYTES]
            result = _encode_within(value, budget, "the return value")
            events = [_encode_within(e, budget, "the events") for e in ctx.events]
            messages = [_encode_within(m, budget, "the messages") for m in ctx.messages]
            if kind != "query":
                state = _encode_within(dict(self.instance.__dict__), [MAX_STATE_BYTES], "the state")
            else:
                state = self.committed
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


def _encode_within(value: Any, budget: list[int], what: str) -> bytes:
    """``encode_plain(value)``, taken from ``budget[0]`` bytes. The size is bounded from below
    first, by a walk that stops as soon as it passes the budget: encoding is not metered, and
    a value can hold one big list many times ([[0] * 10**6] * 1000 ran past the watchdog; a
    9 MB return value made a frame the host refused: it killed the executor and raised an alarm)."""
    left = budget[0]
    total = 1
    stack = [value]
    while stack:
        item = stack.pop()
        tp = type(item)
        if tp is str or tp is bytes:
            total += len(item)
        elif tp is int:
            total += item.bit_length() >> 3
        elif tp is list or tp is tuple:
            total += len(item)
            if total <= left:
                stack.extend(item)
        elif tp is dict:
            total += 2 * len(item)
            if total <= left:
                stack.extend(item.keys())
                stack.extend(item.values())
        if total > left:
            raise LimitExceeded(f"{what} would encode to more than {left} bytes")
    data = encode_plain(value)
    if len(data) > left:
        raise LimitExceeded(f"{what} would encode to {len(data)} bytes; {left} are left")
    budget[0] = left - len(data)
    return data


def _message(exc: BaseException) -> str:
    """``Type: message`` of a failed call. Python formats the exception only when its
    arguments are small plain scalars: formatting anything else here, unmetered, could run for
    minutes (the repr of a huge list), fail and kill the executor (a deeply nested list, an
    int too long to print), or show an address (a function's repr), which differs between
    workers. Other arguments are named by their type."""
    args = exc.args
    if all(type(a) in (str, bytes, bool, type(None)) or type(a) is int and a.bit_length() <= 4096 for a in args):
        text = str(exc)
    else:
        text = ", ".join(a if type(a) is str else f"<{type(a).__name__}>" for a in args[:8])
    return f"{type(exc).__name__}: {text}"[:1000]


def _failure(exc: BaseException, meter: Meter) -> p.Outcome:
    if isinstance(exc, OutOfGas):
        return p.failure(p.OUT_OF_GAS, str(exc), meter.used)
    if isinstance(exc, MemoryError):
        return p.failure(p.MEMORY_ALARM, "the executor ran out of memory", meter.used)
    if isinstance(exc, LimitExceeded | RecursionError):
        return p.failure(p.LIMIT, _message(exc), meter.used)
    if isinstance(exc, SandboxViolation):
        return p.failure(p.REFUSED, f"sandbox: {exc}", meter.used)
    if isinstance(exc, PlainValueError):
        return p.failure(p.ERROR, f"not a plain value: {exc}", meter.used)
    if isinstance(exc, Exception):
        return p.failure(p.ERROR, _message(exc), meter.used)
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
            reply = p.failure(p.REFUSED, f"bad request: {exc}")
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
    hello = encode(p.Hello(p.PROTOCOL_VERSION, how, ".".join(map(str, sys.version_info[:3])), POLICY_VERSION))
    stdout.write(len(hello).to_bytes(4, "little") + hello)
    stdout.flush()
    serve(stdin, stdout)


if __name__ == "__main__":
    main()
