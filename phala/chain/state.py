"""Layered key-value state: a committed backend with block and transaction overlays.

The runtime reads and writes through an :class:`Overlay`. A block's writes collect in the
block layer; each dispatched call opens a transaction layer that is merged on success and
dropped on failure, so a failed call leaves no trace but its fee.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class StateBackend(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys starting with ``prefix`` in ascending order, with their values."""
        ...


class MemoryBackend:
    """A dict-backed state, for genesis construction and tests."""

    def __init__(self, items: dict[bytes, bytes] | None = None):
        self.items = dict(items or {})

    def get(self, key: bytes) -> bytes | None:
        return self.items.get(key)

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self.items if k.startswith(prefix)):
            yield key, self.items[key]

    def apply(self, changes: dict[bytes, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.items.pop(key, None)
            else:
                self.items[key] = value


class Overlay:
    """Uncommitted writes over a backend. ``None`` in a layer means deleted."""

    def __init__(self, backend: StateBackend):
        self.backend = backend
        self.block: dict[bytes, bytes | None] = {}
        self.layers: list[dict[bytes, bytes | None]] = []

    def get(self, key: bytes) -> bytes | None:
        for layer in reversed(self.layers):
            if key in layer:
                return layer[key]
        block = self.block
        if key in block:
            return block[key]
        return self.backend.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        (self.layers[-1] if self.layers else self.block)[key] = value

    def delete(self, key: bytes) -> None:
        (self.layers[-1] if self.layers else self.block)[key] = None

    # -- transactions -------------------------------------------------------------------------

    def start_transaction(self) -> None:
        self.layers.append({})

    def commit_transaction(self) -> None:
        top = self.layers.pop()
        (self.layers[-1] if self.layers else self.block).update(top)

    def rollback_transaction(self) -> None:
        self.layers.pop()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit the writes of the block if it returns, drop them if it raises."""
        self.start_transaction()
        try:
            yield
        except BaseException:
            self.rollback_transaction()
            raise
        self.commit_transaction()

    # -- reading the result -------------------------------------------------------------------

    def changes(self) -> dict[bytes, bytes | None]:
        """The block layer's writes (no transaction may be open)."""
        if self.layers:
            raise RuntimeError("a storage transaction is still open")
        return self.block

    def sorted_changes(self) -> list[tuple[bytes, bytes | None]]:
        """The block's writes that actually change the backend, sorted by key."""
        get = self.backend.get
        return sorted((k, v) for k, v in self.changes().items() if get(k) != v)

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Backend entries merged with the overlays, in key order, deletions hidden."""
        merged: dict[bytes, bytes | None] = {}
        for layer in [self.block, *self.layers]:
            for key, value in layer.items():
                if key.startswith(prefix):
                    merged[key] = value
        pending = sorted(merged.items())
        backend_iter = ((k, v, 1) for k, v in self.backend.iter_prefix(prefix))
        overlay_iter = ((k, v, 0) for k, v in pending)
        last = None
        # The overlay sorts first on equal keys (rank 0), so it shadows the backend.
        for key, value, _rank in heapq.merge(overlay_iter, backend_iter, key=lambda e: (e[0], e[2])):
            if key == last:
                continue
            last = key
            if value is not None:
                yield key, value
