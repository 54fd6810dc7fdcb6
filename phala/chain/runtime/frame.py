"""The pallet framework: the anatomy every pallet shares.

A pallet is a module with, in this order:

* **storage**: :class:`StorageValue` and :class:`StorageMap` items declared at module level;
* **events**: dataclass variants of the pallet's ``Event(RuntimeEvent, index=PALLET_INDEX)``;
* **errors**: subclasses of the pallet's ``Error(ModuleError)`` with a numeric ``code``;
* **calls**: dataclass variants of ``Call(RuntimeCall, index=PALLET_INDEX)``, each with a
  ``dispatch(self, env, origin)`` method that checks, then writes;
* **hooks**: optional ``on_initialize(env)`` and ``on_finalize(env)``;
* **genesis**: optional ``build_genesis(env, spec)``;

and ends with ``PALLET = Pallet(...)`` that names them for the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from phala.core.codec import ScaleEnum, codec_of
from phala.core.hashing import blake2_128_concat
from phala.core.storage_keys import storage_prefix

from ..state import Overlay

MEMO_SIZE = 1 << 17

T = TypeVar("T")
K = TypeVar("K")


class StorageValue(Generic[T]):
    """A single typed value at a fixed key."""

    def __init__(self, pallet: str, name: str, tp: Any, default: T | None = None):
        self.pallet, self.name = pallet, name
        self.key = storage_prefix(pallet, name)
        self.codec = codec_of(tp)
        self.default = default

    def get(self, st: Overlay) -> T:
        raw = st.get(self.key)
        return self.default if raw is None else self.codec.decode(raw)

    def exists(self, st: Overlay) -> bool:
        return st.get(self.key) is not None

    def put(self, st: Overlay, value: T) -> None:
        st.set(self.key, self.codec.encode(value))

    def kill(self, st: Overlay) -> None:
        st.delete(self.key)


class StorageMap(Generic[K, T]):
    """Typed values keyed by a typed key at ``prefix ++ blake2_128_concat(encode(key))``.

    The concat hasher keeps the key readable so that a map can be iterated by prefix.
    """

    def __init__(
        self, pallet: str, name: str, key_tp: Any, tp: Any, default: T | None = None, memo: bool = False
    ):
        self.pallet, self.name = pallet, name
        self.prefix = storage_prefix(pallet, name)
        self.key_codec = codec_of(key_tp)
        self.codec = codec_of(tp)
        self.default = default
        # Hot items (accounts) keep the full keys and decoded values they saw recently.
        # Only for immutable value types: a cached value is shared between readers.
        self._keys: dict[Any, bytes] | None = {} if memo else None
        self._values: dict[bytes, T] | None = {} if memo else None

    def key(self, k: K) -> bytes:
        keys = self._keys
        if keys is None:
            return self.prefix + blake2_128_concat(self.key_codec.encode(k))
        full = keys.get(k)
        if full is None:
            if len(keys) >= MEMO_SIZE:
                keys.clear()
            full = keys[k] = self.prefix + blake2_128_concat(self.key_codec.encode(k))
        return full

    def get(self, st: Overlay, k: K) -> T:
        raw = st.get(self.key(k))
        if raw is None:
            return self.default
        values = self._values
        if values is None:
            return self.codec.decode(raw)
        value = values.get(raw)
        if value is None:
            if len(values) >= MEMO_SIZE:
                values.clear()
            value = values[raw] = self.codec.decode(raw)
        return value

    def get_opt(self, st: Overlay, k: K) -> T | None:
        raw = st.get(self.key(k))
        return None if raw is None else self.codec.decode(raw)

    def contains(self, st: Overlay, k: K) -> bool:
        return st.get(self.key(k)) is not None

    def put(self, st: Overlay, k: K, value: T) -> None:
        st.set(self.key(k), self.codec.encode(value))

    def remove(self, st: Overlay, k: K) -> None:
        st.delete(self.key(k))

    def decode_key(self, full_key: bytes) -> K:
        return self.key_codec.decode(full_key[len(self.prefix) + 16 :])

    def items(self, st: Overlay) -> Iterator[tuple[K, T]]:
        for full_key, raw in st.iter_prefix(self.prefix):
            yield self.decode_key(full_key), self.codec.decode(raw)


# ---------------------------------------------------------------------------------------------
# Calls, events, errors


class RuntimeCall(ScaleEnum):
    """Root of all calls: pallet index, then call index, then arguments."""

    def dispatch(self, env: Env, origin: Origin) -> None:
        raise NotImplementedError


class RuntimeEvent(ScaleEnum):
    """Root of all events: pallet index, then event index, then fields."""


@dataclass(frozen=True)
class Origin:
    """Who dispatches a call: an account (signed) or the chain's governance (root)."""

    signer: bytes | None  # None means root

    @property
    def is_root(self) -> bool:
        return self.signer is None


ROOT = Origin(None)


class DispatchError(Exception):
    """A call failed; its storage changes are reverted, its fee is kept."""

    pallet_index: ClassVar[int] = 0
    code: ClassVar[int] = 0

    def __init__(self, message: str = ""):
        super().__init__(message or self.__doc__ or type(self).__name__)


class BadOrigin(DispatchError):
    """The call needs another origin (a signed account, or root)."""

    pallet_index = 0
    code = 255


class ModuleError(DispatchError):
    """Base of a pallet's errors: ``pallet_index`` and ``code`` identify it on chain."""


def ensure_signed(origin: Origin) -> bytes:
    if origin.signer is None:
        raise BadOrigin("this call needs a signed origin")
    return origin.signer


def ensure_root(origin: Origin) -> None:
    if origin.signer is not None:
        raise BadOrigin("this call needs the root origin (sudo)")


# ---------------------------------------------------------------------------------------------
# Execution environment


@dataclass
class BlockContext:
    """What a block's execution knows about the block itself."""

    number: int
    parent_hash: bytes
    timestamp: int
    author: bytes
    genesis_hash: bytes


class Env:
    """The state and context that calls and hooks run against.

    ``phase`` is the index of the extrinsic being applied, or ``None`` during the block's
    initialization and finalization; events record it.
    """

    def __init__(self, state: Overlay, block: BlockContext):
        self.state = state
        self.block = block
        self.events: list[tuple[int | None, RuntimeEvent]] = []
        self.phase: int | None = None
        self.digest: list = []
        # Caches of values that are constant for a block, filled by pallets on first use.
        self.cache: dict[str, Any] = {}

    def deposit_event(self, event: RuntimeEvent) -> None:
        self.events.append((self.phase, event))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A storage transaction that also drops the events deposited inside it when it
        raises: a reverted call must not report changes that never happened."""
        mark = len(self.events)
        try:
            with self.state.transaction():
                yield
        except BaseException:
            del self.events[mark:]
            raise


Hook = Callable[[Env], None]


@dataclass(frozen=True)
class Pallet:
    name: str
    index: int
    call: type[RuntimeCall] | None = None
    event: type[RuntimeEvent] | None = None
    error: type[ModuleError] | None = None
    on_initialize: Hook | None = None
    on_finalize: Hook | None = None
    build_genesis: Callable[[Env, dict], None] | None = None
    # Chain-only mq topics (starting with ``^``) this pallet handles, and its handler: the
    # mq pallet calls ``on_message(env, message)`` for an accepted message on such a topic.
    topics: tuple[bytes, ...] = ()
    on_message: Callable[[Env, Any], None] | None = None

    def errors(self) -> dict[int, type[ModuleError]]:
        """Error classes by code, for decoding failures into names."""
        if self.error is None:
            return {}
        found: dict[int, type[ModuleError]] = {}
        stack = list(self.error.__subclasses__())
        while stack:
            cls = stack.pop()
            found[cls.code] = cls
            stack.extend(cls.__subclasses__())
        return found
