"""The executor: a keyless process that runs contracts in the VM for one worker.

Started by :class:`phala.contracts.host.Executor` as a fresh interpreter (never forked from
the process that holds keys). It loads the compiled runtime (:class:`~.vm.engine.VM`),
limits itself (address space, open files, no new processes, and a seccomp filter where the
kernel allows), greets, and serves length-prefixed :mod:`~phala.contracts.protocol` frames
on stdin, one request at a time; nothing is ever unpickled.

It holds, per contract, the compiled code and the committed storage. A block's calls of one
contract run in one fresh instance, in order; after any call that does not succeed the
instance is thrown away and the next call gets a fresh one, so what a call sees never
depends on anything but the block's earlier successful calls and committed storage: the
same on every worker, after a restart too. Queries run in instances of their own.
"""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass
from typing import Any

from phala.core.codec import DecodeError, EncodeError, decode, encode

from . import protocol as p
from .sdk import MAX_EVENT_RECIPIENTS, MAX_OUTPUT_BYTES
from .storage import ContractStorage, Layer
from .values import decode_record, split_event, split_message, validate_plain
from .vm.build import runtime_identity, wasmtime_version
from .vm.engine import HOST_BYTE_FUEL, HOST_CALL_FUEL, MODULE_FUEL, VM, Ended, HostRefusal, Instance
from .wire import WireError, pack_request, unpack_outcome

ADDRESS_SPACE = 64 << 30  # bytes: each open instance reserves its capped memory (engine.MEMORY_LIMIT)
GUEST_PYTHON = "3.14"
MAX_INTERFACE_BYTES = 64 << 10  # a contract's name and its methods' names and kinds


@dataclass
class Installed:
    code: bytes  # marshalled by the runtime in a fresh instance
    storage: ContractStorage


@dataclass
class OpenBlock:
    """A contract's block in progress: its writes so far, and the instance its calls run in
    (None after a failure, until the next call makes a fresh one)."""

    layer: Layer
    instance: Instance | None = None


def _loaded(ended: Ended) -> tuple[p.Loaded, bytes]:
    """The guest's answer to load: ``[status, message, line, interface, code]``."""
    if ended.status != "returned":
        if ended.status == "out of gas":
            why = "checking, compiling and running the module body ran out of its budget"
        elif "call stack exhausted" in ended.message:
            why = "the source is nested too deeply for the VM to compile or run it (its stack ran out)"
        else:
            why = f"the module body stopped the VM: {ended.message}"
        return p.Loaded(p.REFUSED, why, 1, b""), b""
    try:
        status, message, line, interface, code = decode_record(ended.value, "isibb")
    except DecodeError as exc:
        return p.Loaded(p.REFUSED, f"the runtime answered nonsense: {exc}", 1, b""), b""
    if status != p.OK:
        return p.Loaded(p.REFUSED, _utf8(message[:1000]), max(0, min(line, 1 << 31)), b""), b""
    try:  # the guest's to make, the host's to check: a bounded, canonical plain value
        if len(interface) > MAX_INTERFACE_BYTES:
            raise DecodeError(f"{len(interface)} bytes; the limit is {MAX_INTERFACE_BYTES}")
        validate_plain(interface, max_items=4096)
    except DecodeError as exc:
        return p.Loaded(p.REFUSED, f"the contract's interface is malformed: {exc}", 1, b""), b""
    return p.Loaded(p.OK, "", 0, interface), code


def _utf8(text: str) -> str:
    """``text`` with what UTF-8 cannot carry (a lone surrogate a contract put in a message)
    replaced: every reply must encode."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _request(call: p.Call) -> bytes:
    c = call.context
    return pack_request(call.kind, call.method, call.args, c.sender, c.block_number, c.timestamp, c.contract_id,
                        c.seed)


def _outcome(ended: Ended, gas_limit: int, layer: Layer | None) -> p.Outcome:
    """The guest's answer to a call (``[status, message, value, events, messages, keys,
    values, removed]``), or how the call ended when it did not answer. The storage writes
    it names go into ``layer`` (checked there), charged like host calls, by size."""
    used = min(ended.fuel, gas_limit)
    out_of_gas = p.failure(p.OUT_OF_GAS, f"out of gas (limit {gas_limit})", gas_limit)
    if ended.status == "out of gas":
        return out_of_gas
    if ended.status != "returned":
        return p.failure(p.LIMIT, f"the VM stopped the call: {ended.message}", used)
    try:
        status, message, value, events, messages, keys, values, removed = unpack_outcome(ended.value)
    except WireError as exc:
        return p.failure(p.ERROR, f"the runtime answered nonsense: {exc}", used)
    if status not in range(5):
        return p.failure(p.ERROR, "the runtime answered an unknown status", used)
    if status != p.OK:
        return p.failure(status, message[:1000], used)
    if len(keys) != len(values) or (layer is None and (keys or removed)):
        return p.failure(p.ERROR, "the runtime answered writes that do not pair up", used)
    if layer is None and (events or messages):  # (the SDK refuses; contract code can reach past it)
        return p.failure(p.ERROR, "a query cannot emit events or send messages", used)
    refusal = _check_output(value, events, messages)
    if refusal is not None:
        return p.failure(*refusal, used)
    used += write_fuel(keys, values, removed)
    if used > gas_limit:
        return out_of_gas
    try:
        for key, data in zip(keys, values, strict=True):
            layer.set(key, data)  # type: ignore[union-attr]
        for key in removed:
            layer.remove(key)  # type: ignore[union-attr]
    except HostRefusal as exc:
        return p.failure(p.LIMIT, exc.message, used)
    return p.Outcome(p.OK, "", used, value, events, messages)


def _check_output(value: bytes, events: list[bytes], messages: list[bytes]) -> tuple[int, str] | None:
    """Why a call's output may not leave the executor (a status and a message), or None: the SDK checks all this too,
    but contract code can reach past the SDK (append to ``ctx.events``, patch the runtime), so
    the host checks what it is handed: at most MAX_OUTPUT_BYTES together, a canonical plain
    return value, events that are (at most 16 accounts, plain value) pairs, messages that are
    (contract id or pallet name, plain value) pairs."""
    size = len(value) + sum(map(len, events)) + sum(map(len, messages))
    if size > MAX_OUTPUT_BYTES:
        return p.LIMIT, f"the call's output is {size} bytes; the limit is {MAX_OUTPUT_BYTES}"
    try:
        validate_plain(value)
        for event in events:
            split_event(event, MAX_EVENT_RECIPIENTS)
        for message in messages:
            split_message(message)
    except DecodeError as exc:
        return p.ERROR, f"the call's output is malformed: {exc}"
    return None


def write_fuel(keys: list[bytes], values: list[bytes], removed: list[bytes]) -> int:
    """What a call's storage writes cost: as many host calls, by the bytes they move."""
    size = sum(map(len, keys)) + sum(map(len, values)) + sum(map(len, removed))
    return (len(keys) + len(removed)) * HOST_CALL_FUEL + size * HOST_BYTE_FUEL


class Executor:
    """The executor's state: the VM and the installed contracts."""

    def __init__(self, vm: VM):
        self.vm = vm
        self.contracts: dict[bytes, Installed] = {}
        self.blocks: dict[bytes, OpenBlock] = {}

    def _fresh(self, installed: Installed, storage: Any) -> tuple[Instance | None, p.Loaded]:
        instance = self.vm.instance(storage)
        loaded, _ = _loaded(instance.load_compiled(installed.code))
        return (instance if loaded.status == p.OK else None), loaded

    def check(self, source: str) -> tuple[p.Loaded, bytes]:
        """Check and compile ``source`` in a fresh instance, then run the compiled module in
        another, as every block and query will: refused if that needs more than MODULE_FUEL."""
        instance = self.vm.instance(Layer(ContractStorage(), read_only=True))
        loaded, code = _loaded(instance.load(source))
        if loaded.status != p.OK:
            return loaded, code
        again = self.vm.instance(Layer(ContractStorage(), read_only=True)).load_compiled(code)
        if again.status == "out of gas":
            return p.Loaded(p.REFUSED, f"the module body needs more than {MODULE_FUEL} fuel, which every block "
                                       "and query would spend again: move the work into a call", 1, b""), b""
        return _loaded(again)[0], code

    def install(self, request: p.Install) -> p.Loaded:
        loaded, code = self.check(request.source)
        if loaded.status == p.OK:
            previous = self.contracts.get(request.contract)
            self.contracts[request.contract] = Installed(code, previous.storage if previous else ContractStorage())
        return loaded

    def restore(self, request: p.Restore) -> p.Ack:
        installed = self.contracts.get(request.contract)
        if installed is None:
            return p.Ack(False, "the contract is not installed")
        installed.storage.apply(dict(request.entries))
        return p.Ack(True, "")

    def enqueue(self, request: p.Enqueue) -> p.Outcome:
        """Run one call of the contract's open block (opened by its first call)."""
        installed = self.contracts.get(request.contract)
        if installed is None:
            return p.failure(p.REFUSED, "the contract is not installed")
        block = self.blocks.get(request.contract)
        if block is None:
            block = self.blocks[request.contract] = OpenBlock(Layer(installed.storage))
        call = request.call
        layer = Layer(block.layer)
        if block.instance is None:
            block.instance, loaded = self._fresh(installed, layer)
            if block.instance is None:
                return p.failure(p.REFUSED, loaded.message)
        block.instance.storage = layer
        ended = block.instance.call(_request(call), call.gas_limit, read_only=False)
        outcome = _outcome(ended, call.gas_limit, layer)
        if outcome.status == p.OK:
            layer.fold()
        else:
            block.instance = None  # never reused after a failure: the next call starts fresh
        return outcome

    def commit(self, request: p.Commit, reply: Any) -> None:
        """Close the contract's open block: commit its writes and send them."""
        block = self.blocks.pop(request.contract, None)
        writes = sorted(block.layer.writes.items()) if block else []
        if block is not None:
            block.layer.fold()
        for start in range(0, max(len(writes), 1), p.WRITES_PER_FRAME):
            chunk = writes[start : start + p.WRITES_PER_FRAME]
            reply(p.Writes(chunk, start + p.WRITES_PER_FRAME >= len(writes)))

    def query(self, request: p.Query) -> p.Outcome:
        installed = self.contracts.get(request.contract)
        if installed is None:
            return p.failure(p.REFUSED, "the contract is not installed")
        layer = Layer(installed.storage, read_only=True)
        instance, loaded = self._fresh(installed, layer)
        if instance is None:
            return p.failure(p.REFUSED, loaded.message)
        call = request.call
        return _outcome(instance.call(_request(call), call.gas_limit, read_only=True), call.gas_limit, None)

    def remove(self, request: p.Remove) -> p.Ack:
        self.contracts.pop(request.contract, None)
        self.blocks.pop(request.contract, None)
        return p.Ack(True, "")


# -- the process ------------------------------------------------------------------------------


def confine(seccomp: bool = True) -> str:
    """Limit this process before it runs contract code; returns how (for the hello)."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if not seccomp:
        return "rlimits"
    from .seccomp_filter import install

    return "rlimits+seccomp" if install() else "rlimits"


def _write(stdout: Any, value: Any) -> None:
    try:
        data = encode(value)
    except EncodeError as exc:  # a reply that cannot be encoded is a bug of ours: say so, stay up
        kind = type(value)
        value = p.failure(p.ERROR, f"the executor could not encode its reply: {exc}") if kind is p.Outcome else \
            p.Loaded(p.REFUSED, f"the executor could not encode its reply: {exc}", 1, b"") if kind is p.Loaded else \
            p.Ack(False, f"the executor could not encode its reply: {exc}")
        data = encode(value)
    stdout.write(len(data).to_bytes(4, "little") + data)
    stdout.flush()


def serve(executor: Executor, stdin: Any, stdout: Any) -> None:
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
            _write(stdout, p.Ack(False, f"bad request: {exc}"))
            continue
        if isinstance(request, p.Install):
            _write(stdout, executor.install(request))
        elif isinstance(request, p.Check):
            _write(stdout, executor.check(request.source)[0])
        elif isinstance(request, p.Restore):
            _write(stdout, executor.restore(request))
        elif isinstance(request, p.Enqueue):
            _write(stdout, executor.enqueue(request))
        elif isinstance(request, p.Commit):
            executor.commit(request, lambda value: _write(stdout, value))
        elif isinstance(request, p.Query):
            _write(stdout, executor.query(request))
        elif isinstance(request, p.Remove):
            _write(stdout, executor.remove(request))


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    vm = VM()  # before confinement: it reads the compiled runtime from its cache
    identity, version = runtime_identity(), wasmtime_version()  # (metadata reads files: not after confine)
    how = confine(seccomp=os.environ.get("PHALA_EXECUTOR_SECCOMP", "1") == "1")
    _write(stdout, p.Hello(p.PROTOCOL_VERSION, how, identity, version, GUEST_PYTHON))
    serve(Executor(vm), stdin, stdout)


if __name__ == "__main__":
    main()
