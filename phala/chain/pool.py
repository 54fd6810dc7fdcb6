"""The transaction pool: validated extrinsics waiting for a block.

Each sender's extrinsics are kept by nonce. A sender is a key: a signed extrinsic's is its
account id and its nonce the account nonce; an unsigned one's is the key its call names (an
mq sender, say) and its nonce the sender's message sequence. Both are handled alike. Those
whose nonce follows the sender's expected nonce without a gap are *ready*; the rest are
*future* and are promoted, in nonce order, as blocks include their predecessors. A block
takes ready extrinsics by tip (highest first), then by arrival. After each block the pool
drops what was included, what went stale and what expired.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from phala.core.hashing import blake2_256

from .runtime.executive import CheckedExtrinsic


class PoolError(Exception):
    """The pool refuses an extrinsic. ``code`` is the JSON-RPC error code (Substrate's)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


ALREADY_IMPORTED = 1013
PRIORITY_TOO_LOW = 1014
IMMEDIATELY_DROPPED = 1016


@dataclass
class PoolEntry:
    hash: bytes
    raw: bytes
    sender: bytes
    nonce: int
    tip: int
    death: int
    seq: int


class TxPool:
    def __init__(self, max_count: int = 20_000, max_bytes: int = 64 << 20, max_future_per_sender: int = 64):
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.max_future_per_sender = max_future_per_sender
        self.by_hash: dict[bytes, PoolEntry] = {}
        self.by_sender: dict[bytes, dict[int, PoolEntry]] = {}
        # Each pooled sender's expected nonce, as of the head the pool last saw.
        self.account_nonce: dict[bytes, int] = {}
        self.bytes = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self.by_hash

    def add(self, raw: bytes, checked: CheckedExtrinsic) -> bytes:
        """Add a validated extrinsic; returns its hash. Raises :class:`PoolError`."""
        tx_hash = blake2_256(raw)
        if tx_hash in self.by_hash:
            raise PoolError(ALREADY_IMPORTED, "transaction already imported")
        sender, nonce, tip, expected = checked.sender, checked.nonce, checked.tip, checked.expected
        # Check everything before changing anything: a refused extrinsic leaves no trace.
        queue = self.by_sender.get(sender, {})
        old = queue.get(nonce)
        if old is not None and old.tip >= tip:
            raise PoolError(
                PRIORITY_TOO_LOW,
                f"a transaction with nonce {nonce} from this sender is already pooled; "
                "replace it only with a higher tip",
            )
        if old is None:
            if len(self.by_hash) >= self.max_count or self.bytes + len(raw) > self.max_bytes:
                raise PoolError(IMMEDIATELY_DROPPED, f"the pool is full ({len(self.by_hash)} transactions)")
            if (
                nonce > expected + len(queue)
                and self._future_count(sender, expected) >= self.max_future_per_sender
            ):
                raise PoolError(IMMEDIATELY_DROPPED, "too many future transactions from this sender")
        else:
            self._remove(old)
        self.account_nonce[sender] = expected
        entry = PoolEntry(tx_hash, raw, sender, nonce, tip, checked.death, next(self._seq))
        self.by_hash[tx_hash] = entry
        self.by_sender.setdefault(sender, {})[nonce] = entry
        self.bytes += len(raw)
        return tx_hash

    def next_nonce(self, sender: bytes, expected: int) -> int:
        """The nonce the sender's next extrinsic should use, counting ready ones pooled
        (``expected``: the sender's nonce in state)."""
        queue = self.by_sender.get(sender, {})
        n = expected
        while n in queue:
            n += 1
        return n

    def ready(self, limit: int, max_bytes: int) -> list[PoolEntry]:
        """Ready extrinsics for a block: per sender in nonce order, across senders by tip
        then arrival, within ``limit`` extrinsics and ``max_bytes`` bytes."""
        heap: list[tuple[int, int, PoolEntry]] = []
        for sender, queue in self.by_sender.items():
            entry = queue.get(self.account_nonce.get(sender, 0))
            if entry is not None:
                heap.append((-entry.tip, entry.seq, entry))
        heapq.heapify(heap)
        chosen: list[PoolEntry] = []
        size = 0
        while heap and len(chosen) < limit:
            _, _, entry = heapq.heappop(heap)
            if size + len(entry.raw) > max_bytes:
                break
            chosen.append(entry)
            size += len(entry.raw)
            successor = self.by_sender[entry.sender].get(entry.nonce + 1)
            if successor is not None:
                heapq.heappush(heap, (-successor.tip, successor.seq, successor))
        return chosen

    def pending(self) -> list[bytes]:
        return [e.raw for e in sorted(self.by_hash.values(), key=lambda e: e.seq)]

    def prune(self, nonces: dict[bytes, int], next_block: int, dropped: Iterable[bytes] = ()) -> None:
        """After a block: record senders' new nonces (``nonces``: the expected nonce of every
        sender the block touched), drop stale and expired extrinsics and those named in
        ``dropped`` (included ones, and those the block builder found invalid)."""
        for tx_hash in dropped:
            entry = self.by_hash.get(tx_hash)
            if entry is not None:
                self._remove(entry)
        for sender, nonce in nonces.items():
            queue = self.by_sender.get(sender)
            if queue:  # a sender with nothing pooled is not tracked
                self.account_nonce[sender] = nonce
                for stale in [e for n, e in queue.items() if n < nonce]:
                    self._remove(stale)
        for entry in [e for e in self.by_hash.values() if e.death <= next_block]:
            self._remove(entry)

    def senders(self) -> list[bytes]:
        return list(self.by_sender)

    def _future_count(self, sender: bytes, expected: int) -> int:
        queue = self.by_sender.get(sender, {})
        return len(queue) - (self.next_nonce(sender, expected) - expected)

    def _remove(self, entry: PoolEntry) -> None:
        del self.by_hash[entry.hash]
        queue = self.by_sender[entry.sender]
        del queue[entry.nonce]
        if not queue:
            del self.by_sender[entry.sender]
            self.account_nonce.pop(entry.sender, None)
        self.bytes -= len(entry.raw)
