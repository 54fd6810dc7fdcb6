"""A contract's key-value storage as the executor holds it, with the layers a block needs.

:class:`ContractStorage` is what is committed. A block runs over a :class:`Layer` on top of
it, and each call over a layer on top of the block's: a call that succeeds folds its layer
into the block's, one that fails drops it, and at the end of the block its writes are
committed and handed back to the worker (which keeps the authoritative copy, the Merkle root
over it, and checkpoints). Queries read a layer that refuses writes.

Limits are checked here, on every write, whatever the guest's SDK checked before:
:data:`MAX_KEY_BYTES`, :data:`MAX_VALUE_BYTES` and :data:`MAX_STORAGE_BYTES` (keys and values
of a contract together).

Walking keys (:meth:`Layer.next`) is host work the guest asks for, so it must cost what it
does: every level keeps its keys sorted (``SortedList``: a step is logarithmic), and every
candidate key the walk passes over (one a layer removed, say) is charged to the call, so
removing many keys and then walking past them is paid for key by key. What is charged
depends only on the storage's contents and the call's own operations, never on what an
index happened to hold: the same gas on every worker.
"""

from __future__ import annotations

from collections.abc import Callable

from sortedcontainers import SortedList

from .sdk import MAX_KEY_BYTES, MAX_VALUE_BYTES
from .vm.engine import HostRefusal

MAX_STORAGE_BYTES = 64 << 20
_DELETED = None

Charge = Callable[[int], None]  # charge the call for looking at a key of that many bytes


def _no_charge(size: int) -> None:
    pass


class ContractStorage:
    """The committed storage of one contract."""

    def __init__(self) -> None:
        self.items: dict[bytes, bytes] = {}
        self.keys = SortedList()
        self.size = 0

    def get(self, key: bytes) -> bytes | None:
        return self.items.get(key)

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        for key, value in writes.items():
            old = self.items.get(key)
            if old is not None:
                self.size -= len(key) + len(old)
            if value is None:
                if old is not None:
                    del self.items[key]
                    self.keys.remove(key)
            else:
                if old is None:
                    self.keys.add(key)
                self.items[key] = value
                self.size += len(key) + len(value)

    def first_at_or_above(self, lower: bytes) -> bytes | None:
        i = self.keys.bisect_left(lower)
        return self.keys[i] if i < len(self.keys) else None


class Layer:
    """Writes on top of ``below`` (a :class:`ContractStorage` or another layer)."""

    def __init__(self, below: ContractStorage | Layer, read_only: bool = False):
        self.below = below
        self.read_only = read_only
        self.writes: dict[bytes, bytes | None] = {}
        self.written = SortedList()  # the keys of ``writes``
        self.size = below.size

    def get(self, key: bytes) -> bytes | None:
        layer: ContractStorage | Layer = self
        while isinstance(layer, Layer):
            if key in layer.writes:
                return layer.writes[key]
            layer = layer.below
        return layer.get(key)

    def _put(self, key: bytes, value: bytes | None) -> None:
        if key not in self.writes:
            self.written.add(key)
        self.writes[key] = value

    def set(self, key: bytes, value: bytes) -> None:
        self._check_writable()
        if len(key) > MAX_KEY_BYTES:
            raise HostRefusal("limit", f"a storage key of {len(key)} bytes; the limit is {MAX_KEY_BYTES}")
        if len(value) > MAX_VALUE_BYTES:
            raise HostRefusal("limit", f"a storage value of {len(value)} bytes; the limit is {MAX_VALUE_BYTES}")
        old = self.get(key)
        size = self.size - (0 if old is None else len(key) + len(old)) + len(key) + len(value)
        if size > MAX_STORAGE_BYTES:
            raise HostRefusal("limit", f"the contract's storage would pass {MAX_STORAGE_BYTES} bytes")
        self.size = size
        self._put(key, value)

    def remove(self, key: bytes) -> None:
        self._check_writable()
        old = self.get(key)
        if old is not None:
            self.size -= len(key) + len(old)
            self._put(key, _DELETED)

    def _check_writable(self) -> None:
        if self.read_only:
            raise HostRefusal("limit", "a query cannot change storage")

    def next(self, prefix: bytes, after: bytes, charge: Charge = _no_charge) -> bytes | None:
        """The smallest key that starts with ``prefix``, is greater than ``after`` and is
        present here. ``charge`` is called for every candidate passed over."""
        lower = max(prefix, after + b"\x00") if after else prefix
        while True:
            candidate = self._next_candidate(lower)
            if candidate is None or not candidate.startswith(prefix):
                return None
            if self.get(candidate) is not None:
                return candidate
            charge(len(candidate))
            lower = candidate + b"\x00"

    def _next_candidate(self, lower: bytes) -> bytes | None:
        """The smallest key at or above ``lower`` written in any layer or committed (present
        or deleted: the caller checks)."""
        best = None
        layer: ContractStorage | Layer = self
        while isinstance(layer, Layer):
            i = layer.written.bisect_left(lower)
            if i < len(layer.written):
                key = layer.written[i]
                if best is None or key < best:
                    best = key
            layer = layer.below
        key = layer.first_at_or_above(lower)
        if key is not None and (best is None or key < best):
            best = key
        return best

    def fold(self) -> None:
        """Make this layer's writes the layer below's (a call that succeeded)."""
        below = self.below
        if isinstance(below, Layer):
            for key, value in self.writes.items():
                below._put(key, value)
            below.size = self.size
        else:
            below.apply(self.writes)
