"""Run the contract runtime component under wasmtime: fuel, memory, host functions, traps.

:class:`VM` holds the compiled runtime (deserialised from its cache, compiled once per
machine) and a linker that grants exactly the ``host`` interface of
``wit/runtime.wit`` and nothing else: the component was built with every WASI import
replaced by a trap, so files, sockets, clocks, randomness and the environment are
unreachable by construction.

:class:`Instance` is one fresh instantiation (about a millisecond) bound to one contract's
:class:`Storage`. Gas is wasmtime fuel (one unit per WebAssembly instruction, the
interpreter's own C code included), plus what each host function charges by the bytes it
moves (:data:`HOST_CALL_FUEL`, :data:`HOST_BYTE_FUEL`), since fuel does not see host work.
Every way a call can end is an outcome of that call alone: it returns, it runs out of fuel,
it passes the memory cap (a ``MemoryError`` inside), or it traps (the VM's stack runs out,
say). After anything but a normal return the instance is not used again.
"""

from __future__ import annotations

import ctypes
import fcntl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wc
from wasmtime.component._enter import catch_exceptions

from .build import architecture, cache_dir, component_path, wasmtime_version

MEMORY_LIMIT = 256 << 20  # bytes of linear memory per instance (instantiation takes ~13 MiB)
MAX_WASM_STACK = 512 << 10  # bytes of native stack for wasm frames; traps are outcomes
HOST_CALL_FUEL = 20_000  # fuel a host function charges per call ...
HOST_BYTE_FUEL = 20  # ... and per byte it reads or writes
HOST_STEP_FUEL = 2_000  # a key a storage walk passes over
LOAD_FUEL = 500_000_000  # checking and compiling a contract's source and running its module body, once
# Running the compiled module body in each fresh instance (every block, every query), which
# no call pays for: code whose module body needs more is refused when it is installed.
MODULE_FUEL = 20_000_000
INSTANTIATE_FUEL = 100_000_000
HOST_INTERFACE = "phala:contract/host@0.1.0"
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _idx: None)


class HostRefusal(Exception):
    """Raised inside a host function to end the call with ``status`` (out of gas, a limit)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Storage:
    """One contract's storage as an instance sees it (the executor's implementation is
    :class:`phala.contracts.storage.ContractStorage`)."""

    def get(self, key: bytes) -> bytes | None:  # pragma: no cover - interface
        raise NotImplementedError

    def set(self, key: bytes, value: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def remove(self, key: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def next(self, prefix: bytes, after: bytes, charge: Callable[[int], None]) -> bytes | None:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Ended:
    """How a call into the VM ended: ``status`` is ``"returned"`` (``value`` holds the
    guest's answer), ``"out of gas"``, ``"limit"`` or ``"trap"``; ``fuel`` is what it used."""

    status: str
    value: bytes
    fuel: int
    message: str = ""


GUARD_BYTES = 64 << 10
# How the engine is configured, as part of the runtime's identity: compiled code (so the
# depth at which the VM's stack runs out) depends on it.
ENGINE_TAG = f"mem{MEMORY_LIMIT >> 20}m-guard{GUARD_BYTES >> 10}k-stack{MAX_WASM_STACK >> 10}k-nan"


def make_config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.cranelift_nan_canonicalization = True  # NaN bits are the same on every machine
    config.max_wasm_stack = MAX_WASM_STACK
    # Reserve just the capped memory per instance (not wasmtime's 4 GiB default): a worker
    # keeps one instance open per contract with calls in the block, and a hundred of them
    # would otherwise reserve 400 GiB of address space.
    config.memory_reservation = MEMORY_LIMIT
    config.memory_guard_size = GUARD_BYTES
    config.memory_may_move = False
    return config


def compiled_path(component: Path | None = None) -> Path:
    """The component compiled for this wasmtime and machine, compiled first if missing."""
    component = component or component_path()
    path = cache_dir() / f"{component.stem}-wasmtime{wasmtime_version()}-{architecture()}-{ENGINE_TAG}.cwasm"
    if path.exists():
        return path
    with open(cache_dir() / "compile.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            engine = wasmtime.Engine(make_config())
            compiled = wc.Component.from_file(engine, str(component)).serialize()
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(bytes(compiled))
            tmp.replace(path)
    return path


class VM:
    """The runtime, compiled and ready to instantiate (one per process)."""

    def __init__(self, component: Path | None = None):
        self.engine = wasmtime.Engine(make_config())
        self.component = wc.Component.deserialize_file(self.engine, str(compiled_path(component)))
        self.linker = wc.Linker(self.engine)
        self._active: Instance | None = None  # the instance whose call is running
        self._callbacks: list = []  # the C callbacks must live as long as the linker
        with self.linker.root() as root, root.add_instance(HOST_INTERFACE) as host:
            self._add(host, "storage-get", lambda i, key: i.storage_get(key))
            self._add(host, "storage-set", lambda i, key, value: i.storage_set(key, value))
            self._add(host, "storage-remove", lambda i, key: i.storage_remove(key))
            self._add(host, "storage-next", lambda i, prefix, after: i.storage_next(prefix, after))

    def _add(self, host: wc.LinkerInstance, name: str, body: Callable) -> None:
        """Define a host function whose parameters are strings and whose result is nothing or
        ``option<string>`` (the only shapes ``wit/runtime.wit`` uses), converting them
        directly: wasmtime-py's generic path reads the function's type through its C API on
        every call, which cost most of a storage call's 60 us. ``body`` gets the instance
        and the arguments as bytes (latin-1), and returns bytes, None, or nothing."""

        def run(store: object, args: Any, nargs: int, results: Any, nresults: int) -> None:
            texts = []
            for n in range(nargs):
                raw = args[n].of.string
                texts.append(ffi.to_bytes(raw))
                ffi.wasm_byte_vec_delete(ctypes.byref(raw))
            try:
                values = [text.decode("utf-8").encode("latin-1") for text in texts]
            except UnicodeError:
                raise HostRefusal("limit", f"{name} takes bytes, as latin-1 text") from None
            instance = self._active
            if instance is None:
                raise HostRefusal("trap", "a host function was called outside a call")
            answer = body(instance, *values)
            if nresults:
                out = results[0]
                out.kind = ffi.WASMTIME_COMPONENT_OPTION
                if answer is None:
                    out.of.option = None
                else:
                    inner = ffi.wasmtime_component_val_t()
                    inner.kind = ffi.WASMTIME_COMPONENT_STRING
                    inner.of.string = ffi.str_to_capi(answer.decode("latin-1"))
                    out.of.option = ffi.wasmtime_component_val_new(ctypes.byref(inner))

        @ffi.wasmtime_component_func_callback_t
        def callback(_idx, context, _ty, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
            return catch_exceptions(context, lambda store: run(store, args, nargs, results, nresults))

        self._callbacks.append(callback)
        name_bytes = name.encode()
        error = ffi.wasmtime_component_linker_instance_add_func(
            host.ptr(), ctypes.create_string_buffer(name_bytes), len(name_bytes), callback, None, _NO_FINALIZER)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)

    def instance(self, storage: Storage) -> Instance:
        return Instance(self, storage)


class Instance:
    """One fresh instance of the runtime, for one contract's storage."""

    def __init__(self, vm: VM, storage: Storage):
        self.vm = vm
        self.storage = storage
        self.read_only = False
        self.store = wasmtime.Store(vm.engine)
        self.store.set_limits(memory_size=MEMORY_LIMIT)
        self.store.set_fuel(INSTANTIATE_FUEL)  # the component's start functions
        self.dead = False
        wasm = vm.linker.instantiate(self.store, vm.component)
        self._load = wasm.get_func(self.store, "load")
        self._load_compiled = wasm.get_func(self.store, "load-compiled")
        self._call = wasm.get_func(self.store, "call")

    # -- host functions (fuel first, then the work) --------------------------------------------

    def _burn(self, cost: int, why: str) -> None:
        """Take ``cost`` fuel for host work, before doing it; out of gas if there is not that much."""
        left = self.store.get_fuel()
        if left < cost:
            self.store.set_fuel(0)
            raise HostRefusal("out of gas", why)
        self.store.set_fuel(left - cost)

    def _charge(self, size: int) -> None:
        self._burn(HOST_CALL_FUEL + HOST_BYTE_FUEL * size, "out of gas in a storage call")

    def _charge_step(self, size: int) -> None:
        """A key a walk passed over (one a layer removed): a step of host work."""
        self._burn(HOST_STEP_FUEL + HOST_BYTE_FUEL * size, "out of gas walking storage")

    def storage_get(self, key: bytes) -> bytes | None:
        self._charge(len(key))
        value = self.storage.get(key)
        if value is not None:
            self._charge(len(value))
        return value

    def storage_set(self, key: bytes, value: bytes) -> None:
        self._charge(len(key) + len(value))
        if self.read_only:
            raise HostRefusal("trap", "a query cannot write storage")
        self.storage.set(key, value)

    def storage_remove(self, key: bytes) -> None:
        self._charge(len(key))
        if self.read_only:
            raise HostRefusal("trap", "a query cannot write storage")
        self.storage.remove(key)

    def storage_next(self, prefix: bytes, after: bytes) -> bytes | None:
        self._charge(len(prefix) + len(after))
        found = self.storage.next(prefix, after, self._charge_step)
        if found is not None:
            self._charge(len(found))
        return found

    # -- calls into the guest --------------------------------------------------------------

    def load(self, source: str) -> Ended:
        return self._enter(self._load, source, LOAD_FUEL)

    def load_compiled(self, code: bytes) -> Ended:
        return self._enter(self._load_compiled, code.decode("latin-1"), MODULE_FUEL)

    def call(self, request: bytes, fuel: int, read_only: bool) -> Ended:
        self.read_only = read_only
        return self._enter(self._call, request.decode("latin-1"), fuel)

    def _enter(self, func: wc.Func, argument: str, fuel: int) -> Ended:
        if self.dead:
            raise RuntimeError("this instance ended with a trap; make a fresh one")
        self.store.set_fuel(fuel)
        self.vm._active = self
        try:
            result = func(self.store, argument)
        except HostRefusal as exc:
            self.dead = True
            _drop_traceback(exc)
            return Ended("out of gas" if exc.status == "out of gas" else "limit", b"", fuel - self._fuel_left(),
                         exc.message)
        except wasmtime.WasmtimeError as exc:
            self.dead = True
            _drop_traceback(exc)
            used = fuel - self._fuel_left()
            text = str(exc)
            if "all fuel consumed" in text:
                return Ended("out of gas", b"", used, "out of gas")
            return Ended("trap", b"", used, _trap_reason(text))
        finally:
            self.vm._active = None
        return Ended("returned", result.encode("latin-1"), fuel - self._fuel_left())

    def _fuel_left(self) -> int:
        try:
            return self.store.get_fuel()
        except wasmtime.WasmtimeError:
            return 0


def _drop_traceback(exc: BaseException) -> None:
    """Forget where ``exc`` was raised: wasmtime-py's frames keep the error in a local, so
    the traceback is a cycle holding this instance, whose store reserves gigabytes of
    address space until the cycle collector happens to run."""
    while exc is not None:
        exc.__traceback__ = None
        exc = exc.__context__ or exc.__cause__  # type: ignore[assignment]


def _trap_reason(text: str) -> str:
    """The first line of wasmtime's trap message, without the backtrace (which holds
    addresses of this machine's compiled code)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and not line[0].isdigit() and "backtrace" not in line and not line.startswith("note:"):
            return line[:200]
    return "the VM trapped"
