"""The node's database: finalized blocks and state in LMDB.

A finalized block is written in one LMDB write transaction: header, body, justification,
number index, storage changes, the new state values, the new trie blobs and the finalized
head pointer. LMDB commits are atomic and durable (copy-on-write pages, fsync at commit),
so after ``kill -9`` at any moment the database holds either the whole block or none of it.

Tables:

=================  =========================  =======================================
table              key                        value
=================  =========================  =======================================
``meta``           ``spec``, ``genesis``,     chain spec JSON, genesis hash,
                   ``finalized``              finalized head hash
``headers``        block hash                 encoded ``Header``
``bodies``         block hash                 encoded ``Vec<Vec<u8>>`` of extrinsics
``justifications`` block hash                 encoded ``Justification``
``numbers``        u32 big-endian             block hash
``changes``        u32 big-endian             encoded ``Vec<StorageChange>``
``state``          storage key                value at the finalized head
``nodes``          blob hash                  trie blob (every version: an archive)
=================  =========================  =======================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import lmdb

from phala.core.codec import decode, encode
from phala.core.trie import read as trie_read
from phala.core.types import Header, Justification, StorageChange

MAP_SIZE = 1 << 38  # address space only: the file grows as data is written
TABLES = ("meta", "headers", "bodies", "justifications", "numbers", "changes", "state", "nodes")


class DatabaseError(Exception):
    """The database is unusable: corrupt, tampered with, or for another chain."""


def _num(n: int) -> bytes:
    return n.to_bytes(4, "big")


class ChainDB:
    def __init__(self, path: str | Path):
        Path(path).mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(path), map_size=MAP_SIZE, max_dbs=len(TABLES), sync=True, metasync=True, readahead=False
        )
        self.t = {name: self.env.open_db(name.encode()) for name in TABLES}

    def close(self) -> None:
        self.env.close()

    # -- reads --------------------------------------------------------------------------------

    def meta(self, key: str) -> bytes | None:
        with self.env.begin(db=self.t["meta"]) as txn:
            return txn.get(key.encode())

    def header(self, block_hash: bytes) -> Header | None:
        with self.env.begin(db=self.t["headers"]) as txn:
            raw = txn.get(block_hash)
        return None if raw is None else decode(Header, raw)

    def body(self, block_hash: bytes) -> list[bytes] | None:
        with self.env.begin(db=self.t["bodies"]) as txn:
            raw = txn.get(block_hash)
        return None if raw is None else decode(list[bytes], raw)

    def justification(self, block_hash: bytes) -> Justification | None:
        with self.env.begin(db=self.t["justifications"]) as txn:
            raw = txn.get(block_hash)
        return None if raw is None else decode(Justification, raw)

    def hash_of(self, number: int) -> bytes | None:
        if not 0 <= number < 2**32:
            return None
        with self.env.begin(db=self.t["numbers"]) as txn:
            return txn.get(_num(number))

    def changes(self, number: int) -> list[StorageChange] | None:
        with self.env.begin(db=self.t["changes"]) as txn:
            raw = txn.get(_num(number))
        return None if raw is None else decode(list[StorageChange], raw)

    def state_get(self, key: bytes) -> bytes | None:
        with self.env.begin(db=self.t["state"]) as txn:
            return txn.get(key)

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        with self.env.begin(db=self.t["state"]) as txn:
            yield from txn.cursor().iternext(keys=True, values=True)

    def node(self, blob_hash: bytes) -> bytes | None:
        with self.env.begin(db=self.t["nodes"]) as txn:
            return txn.get(blob_hash)

    def read_at(self, state_root: bytes, key: bytes) -> bytes | None:
        """A value in the state of any stored block, read through the trie archive."""
        return trie_read(state_root, key, self.node)

    def state_view(self) -> StateView:
        """A consistent read-only view of the finalized state (an LMDB read transaction)."""
        return StateView(self.env.begin(db=self.t["state"], buffers=False), self.t["state"])

    # -- writes -------------------------------------------------------------------------------

    def write_genesis(
        self, spec_json: str, header: Header, state: Iterable[tuple[bytes, bytes]], blobs: list[tuple[bytes, bytes]]
    ) -> None:
        h = header.hash
        with self.env.begin(write=True) as txn:
            txn.put(b"spec", spec_json.encode(), db=self.t["meta"])
            txn.put(b"genesis", h, db=self.t["meta"])
            txn.put(b"finalized", h, db=self.t["meta"])
            txn.put(h, encode(header), db=self.t["headers"])
            txn.put(h, encode([], list[bytes]), db=self.t["bodies"])
            txn.put(_num(0), h, db=self.t["numbers"])
            genesis_changes = sorted(state)
            txn.put(_num(0), encode([StorageChange(k, v) for k, v in genesis_changes], list[StorageChange]), db=self.t["changes"])
            st = self.t["state"]
            for key, value in genesis_changes:
                txn.put(key, value, db=st)
            nodes = self.t["nodes"]
            for blob_hash, blob in blobs:
                txn.put(blob_hash, blob, db=nodes)

    def write_block(
        self,
        header: Header,
        extrinsics: list[bytes],
        justification: Justification,
        changes: list[tuple[bytes, bytes | None]],
        blobs: list[tuple[bytes, bytes]],
    ) -> None:
        """Write a finalized block and move the finalized head to it, atomically."""
        h = header.hash
        n = _num(header.number)
        with self.env.begin(write=True) as txn:
            txn.put(h, encode(header), db=self.t["headers"])
            txn.put(h, encode(extrinsics, list[bytes]), db=self.t["bodies"])
            txn.put(h, encode(justification), db=self.t["justifications"])
            txn.put(n, h, db=self.t["numbers"])
            txn.put(n, encode([StorageChange(k, v) for k, v in changes], list[StorageChange]), db=self.t["changes"])
            st = self.t["state"]
            for key, value in changes:
                if value is None:
                    txn.delete(key, db=st)
                else:
                    txn.put(key, value, db=st)
            nodes = self.t["nodes"]
            for blob_hash, blob in blobs:
                txn.put(blob_hash, blob, db=nodes)
            txn.put(b"finalized", h, db=self.t["meta"])


class StateView:
    """Reads of the finalized state inside one LMDB read transaction (a state backend)."""

    def __init__(self, txn: lmdb.Transaction, db):
        self.txn = txn
        self.db = db
        self._get = txn.get

    def get(self, key: bytes) -> bytes | None:
        return self._get(key)

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        cursor = self.txn.cursor()
        if not cursor.set_range(prefix):
            return
        for key, value in cursor.iternext(keys=True, values=True):
            if not key.startswith(prefix):
                return
            yield key, value

    def close(self) -> None:
        self.txn.abort()
