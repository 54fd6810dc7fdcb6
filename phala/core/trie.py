"""The chain's state commitment: a fixed-depth 16-ary Merkle tree over hashed keys.

Both the chain node and the TEE worker use this module: the node commits its storage
after every block and puts the root in the header; the worker replays each block's storage
changes into its own :class:`StateTree` and must reach the same root.

Why not a Patricia trie
-----------------------
A hexary Patricia trie in pure Python manages only a few thousand inserts per second,
because every insert walks and rewrites a chain of variable-shaped nodes. This tree has a
fixed shape, so the current version is kept in flat lists indexed by arithmetic and a block
costs one pass over the buckets it touched and their ancestors.

Layout
------
* Keys and values are arbitrary bytes. A key is placed by ``kh = blake2_256(key)``.
* There are ``DEPTH = 4`` levels of inner nodes, each with 16 children, over
  ``16**4 = 65536`` leaf buckets. A key's bucket index is the first two bytes of ``kh``
  (big-endian); the path from the root is the four nibbles of those two bytes, most
  significant first.
* Every node is a content-addressed blob, hashed with ``blake2_256`` over the whole blob.
  The first byte is a domain tag, so no blob can pose as another kind:

  - value blob:  ``b"\\x00" + value``; its hash is the value hash ``vh``.
  - inner blob:  ``b"\\x01" + child_hash[0] + ... + child_hash[15]`` (32 bytes each, in
    nibble order). The children of the last inner level are buckets.
  - bucket blob: ``b"\\x02" + kh_1 + vh_1 + kh_2 + vh_2 + ...`` for every key in the
    bucket, sorted by ``kh`` (strictly increasing). The empty bucket is ``b"\\x02"``.

* The state root is the hash of the top inner blob.
* An empty subtree hashes to a precomputed constant (``EMPTY_HASHES[level]``; level 0 is
  the root, level ``DEPTH`` a bucket), so the empty tree has the fixed root ``EMPTY_ROOT``.
  Empty blobs are never stored: a walk that meets the empty constant for its level stops
  there and the key is absent, with no further blobs needed.

Versions
--------
:class:`StateTree` is the in-memory current version: per bucket a dict ``kh -> vh``, and
the hashes of all buckets and inner nodes in one flat list per level. Changes only mark
buckets dirty; :meth:`StateTree.root` rehashes the dirty buckets and each of their
ancestors once. :meth:`StateTree.commit` hands back every blob created since the previous
commit so that a content-addressed store can keep every version (archive node).

Any version, current or old, can then be read and proven from such a store with the module
functions :func:`read`, :func:`prove` and :func:`verify_proof`, which take a
``fetch(hash) -> bytes | None`` function and check every blob against its parent's hash.

Performance: with 100k keys and blocks of 10k random updates, apply + commit runs at
about 200k updates/s on a 2-core machine (``bench/trie.py``): per update two short hashes
(key and value) plus its share of ~0.9 bucket and ~0.45 inner-node rehashes. Buckets keep
``kh || vh`` entries so a bucket blob is one C-level sort and join. A proof for one key
in a 100k-key tree is about 2.2 KB (four 513-byte inner blobs, the bucket, the value).

Determinism: bucket entries are sorted by ``kh`` and dirty nodes are processed in index
order, so roots and blobs never depend on insertion order, dict ordering or
``PYTHONHASHSEED``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from hashlib import blake2b

from phala.core.hashing import blake2_256

__all__ = [
    "BUCKETS",
    "DEPTH",
    "EMPTY_BUCKET_HASH",
    "EMPTY_HASHES",
    "EMPTY_ROOT",
    "FANOUT",
    "MemoryNodeStore",
    "MissingNode",
    "ProofError",
    "StateTree",
    "TAG_BUCKET",
    "TAG_INNER",
    "TAG_VALUE",
    "TrieError",
    "node_kind",
    "prove",
    "read",
    "verify_proof",
]

DEPTH = 4
FANOUT = 16
BUCKETS = FANOUT**DEPTH  # 65536: bucket index = first two bytes of the key hash

TAG_VALUE = 0x00
TAG_INNER = 0x01
TAG_BUCKET = 0x02

_HASH_LEN = 32
_ENTRY_LEN = 2 * _HASH_LEN  # kh || vh
_INNER_LEN = 1 + FANOUT * _HASH_LEN  # 513

_VALUE_PREFIX = bytes([TAG_VALUE])
_INNER_PREFIX = bytes([TAG_INNER])
_BUCKET_PREFIX = bytes([TAG_BUCKET])

Fetch = Callable[[bytes], "bytes | None"]


class TrieError(Exception):
    """Base class of state-tree errors."""


class ProofError(TrieError):
    """A blob is missing from a proof, malformed, of the wrong kind, or does not hash to
    what its parent says."""


class MissingNode(TrieError):
    """A blob needed to walk a version is absent from the node store."""


def _empty_hashes() -> tuple[bytes, ...]:
    """Hashes of empty subtrees: index 0 is the root level, index DEPTH the bucket level."""
    hashes = [blake2_256(_BUCKET_PREFIX)]
    for _ in range(DEPTH):
        hashes.append(blake2_256(_INNER_PREFIX + hashes[-1] * FANOUT))
    hashes.reverse()
    return tuple(hashes)


EMPTY_HASHES: tuple[bytes, ...] = _empty_hashes()
EMPTY_BUCKET_HASH: bytes = EMPTY_HASHES[DEPTH]
EMPTY_ROOT: bytes = EMPTY_HASHES[0]

# A blake2b-256 hasher to copy in hot loops: same digests as blake2_256.
_HASHER = blake2b(digest_size=_HASH_LEN)

_KIND_NAMES = {TAG_VALUE: "value", TAG_INNER: "inner", TAG_BUCKET: "bucket"}


def node_kind(blob: bytes) -> str:
    """The kind of a blob by its tag: "value", "inner", "bucket" or "unknown"."""
    if not blob:
        return "unknown"
    return _KIND_NAMES.get(blob[0], "unknown")


class _DiscardBlobs(dict):
    """The blob store of a tree that keeps none: every write is dropped."""

    def __setitem__(self, key: bytes, value: bytes) -> None:
        pass


class StateTree:
    """The in-memory current version of the state tree.

    ``set``/``apply`` only update the bucket dicts and mark buckets dirty; ``root`` rehashes
    the dirty buckets and their ancestors once. The original keys and values are not kept:
    a bucket maps key hash to its entry (key hash + value hash), and value blobs wait in the
    pending set for the next ``commit``.
    """

    __slots__ = ("_buckets", "_bucket_hashes", "_levels", "_dirty", "_pending", "_count")

    def __init__(self, keep_blobs: bool = True) -> None:
        """``keep_blobs=False``: a tree that only tracks the root (a worker keeps no archive),
        so no blob is kept for :meth:`commit`."""
        # Bucket index -> {kh: kh || vh}, or None while the bucket is empty. Keeping the
        # whole 64-byte entry lets a bucket blob be built by sorting and joining the values.
        self._buckets: list[dict[bytes, bytes] | None] = [None] * BUCKETS
        self._bucket_hashes: list[bytes] = [EMPTY_BUCKET_HASH] * BUCKETS
        # _levels[d] holds the hashes of the 16**d inner nodes at depth d; _levels[0][0] is
        # the root. Node i at depth d has children 16*i .. 16*i+15 at depth d+1.
        self._levels: list[list[bytes]] = [[EMPTY_HASHES[d]] * (FANOUT**d) for d in range(DEPTH)]
        self._dirty: set[int] = set()
        # Blobs created since the previous commit, by hash (insertion ordered).
        self._pending: dict[bytes, bytes] = {} if keep_blobs else _DiscardBlobs()
        self._count = 0

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_items(cls, items: Iterable[tuple[bytes, bytes]], keep_blobs: bool = True) -> StateTree:
        """Build a tree from (key, value) pairs (a later duplicate key wins)."""
        tree = cls(keep_blobs)
        tree.apply(items)
        tree.root()
        return tree

    def copy(self) -> StateTree:
        """An independent copy, including dirty marks and blobs not yet committed."""
        new = StateTree.__new__(StateTree)
        new._buckets = [d.copy() if d is not None else None for d in self._buckets]
        new._bucket_hashes = self._bucket_hashes.copy()
        new._levels = [level.copy() for level in self._levels]
        new._dirty = self._dirty.copy()
        new._pending = type(self._pending)(self._pending)
        new._count = self._count
        return new

    # -- updates --------------------------------------------------------------------------

    def set(self, key: bytes, value: bytes | None) -> None:
        """Insert or replace ``key``; ``value=None`` deletes it."""
        self.apply(((key, value),))

    def delete(self, key: bytes) -> None:
        self.apply(((key, None),))

    def apply(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Apply (key, value) changes in order; a value of None deletes the key."""
        # Hot loop: everything is bound to locals. Copying a prepared hasher is cheaper
        # than blake2b(data, digest_size=32), whose keyword parsing dominates short inputs.
        buckets = self._buckets
        dirty_add = self._dirty.add
        pending = self._pending
        new_hasher = _HASHER.copy
        vprefix = _VALUE_PREFIX
        count = self._count
        for key, value in changes:
            hasher = new_hasher()
            hasher.update(key)
            kh = hasher.digest()
            b = (kh[0] << 8) | kh[1]
            d = buckets[b]
            if value is None:
                if d is not None and kh in d:
                    del d[kh]
                    count -= 1
                    dirty_add(b)
                continue
            blob = vprefix + value
            hasher = new_hasher()
            hasher.update(blob)
            vh = hasher.digest()
            pending[vh] = blob
            entry = kh + vh
            if d is None:
                buckets[b] = {kh: entry}
                count += 1
                dirty_add(b)
                continue
            old = d.get(kh)
            if old != entry:
                if old is None:
                    count += 1
                d[kh] = entry
                dirty_add(b)
        self._count = count

    # -- reading the current version --------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: bytes) -> bool:
        return self.value_hash(key) is not None

    def value_hash(self, key: bytes) -> bytes | None:
        """The hash of ``key``'s value blob in the current version, or None if absent."""
        kh = blake2_256(key)
        d = self._buckets[(kh[0] << 8) | kh[1]]
        entry = None if d is None else d.get(kh)
        return None if entry is None else entry[_HASH_LEN:]

    # -- commitment -----------------------------------------------------------------------

    def root(self) -> bytes:
        """The state root; rehashes only dirty buckets and their ancestors."""
        dirty = self._dirty
        if not dirty:
            return self._levels[0][0]
        new_hasher = _HASHER.copy
        pending = self._pending
        buckets = self._buckets
        hashes = self._bucket_hashes
        bprefix = _BUCKET_PREFIX
        join = b"".join
        empty_bucket = EMPTY_BUCKET_HASH
        indices = sorted(dirty)
        dirty.clear()
        for b in indices:
            d = buckets[b]
            if not d:
                buckets[b] = None
                hashes[b] = empty_bucket
                continue
            # Entries are kh || vh and the kh are distinct, so sorting the entries sorts
            # by kh.
            blob = bprefix + join(sorted(d.values()))
            hasher = new_hasher()
            hasher.update(blob)
            bh = hasher.digest()
            pending[bh] = blob
            hashes[b] = bh

        iprefix = _INNER_PREFIX
        children = hashes
        for depth in range(DEPTH - 1, -1, -1):
            level = self._levels[depth]
            empty = EMPTY_HASHES[depth]
            # indices is sorted, so the parents come out sorted and deduplicated.
            indices = list(dict.fromkeys([i >> 4 for i in indices]))
            for p in indices:
                start = p << 4
                blob = iprefix + join(children[start : start + 16])
                hasher = new_hasher()
                hasher.update(blob)
                ih = hasher.digest()
                if ih != empty:
                    pending[ih] = blob
                level[p] = ih
            children = level
        return self._levels[0][0]

    def commit(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The root and every (hash, blob) created since the previous commit.

        The blobs are the value blobs of values set since then, and the changed buckets and
        inner nodes (empty-subtree constants are never included). Putting them all into a
        content-addressed store keeps every committed version readable.
        """
        root = self.root()
        blobs = list(self._pending.items())
        self._pending = type(self._pending)()
        return root, blobs

    def __repr__(self) -> str:
        return f"StateTree(len={self._count}, root={self.root().hex()})"


# -- walking any version through a content-addressed store ------------------------------------


def _check_kind(blob: bytes, tag: int, what: str) -> None:
    if not blob or blob[0] != tag:
        raise ProofError(
            f"wrong tag: expected a {what} blob (tag {tag}), got {node_kind(blob)} blob"
            + (f" (tag {blob[0]})" if blob else " (empty)")
        )


def _bucket_lookup(blob: bytes, kh: bytes) -> bytes | None:
    """Validate a bucket blob on ``kh``'s path and return ``kh``'s value hash, if any."""
    _check_kind(blob, TAG_BUCKET, "bucket")
    n = len(blob)
    if (n - 1) % _ENTRY_LEN:
        raise ProofError(
            f"malformed bucket: {n - 1} bytes after the tag is not a multiple of {_ENTRY_LEN}"
        )
    prefix = kh[:2]
    prev = b""
    found = None
    for off in range(1, n, _ENTRY_LEN):
        k = blob[off : off + _HASH_LEN]
        if k <= prev:
            raise ProofError("malformed bucket: entries are not strictly sorted by key hash")
        if k[:2] != prefix:
            raise ProofError("malformed bucket: entry does not belong to this bucket")
        if k == kh:
            found = blob[off + _HASH_LEN : off + _ENTRY_LEN]
        prev = k
    return found


def _walk(
    root: bytes,
    kh: bytes,
    get: Callable[[bytes], bytes],
    seen: Callable[[bytes, bytes], None] | None = None,
) -> bytes | None:
    """Walk ``kh``'s path from ``root``; return its value hash, or None when absent.

    ``get`` returns the blob for a hash (raising if it cannot); ``seen(hash, blob)`` is
    called for every inner and bucket blob visited.
    """
    if len(root) != _HASH_LEN:
        raise TrieError(f"root must be {_HASH_LEN} bytes, got {len(root)}")
    nibbles = (kh[0] >> 4, kh[0] & 15, kh[1] >> 4, kh[1] & 15)
    node = root
    for depth in range(DEPTH):
        if node == EMPTY_HASHES[depth]:
            return None
        blob = get(node)
        _check_kind(blob, TAG_INNER, "inner")
        if len(blob) != _INNER_LEN:
            raise ProofError(f"malformed inner node: {len(blob)} bytes, expected {_INNER_LEN}")
        if seen is not None:
            seen(node, blob)
        off = 1 + nibbles[depth] * _HASH_LEN
        node = blob[off : off + _HASH_LEN]
    if node == EMPTY_BUCKET_HASH:
        return None
    blob = get(node)
    vh = _bucket_lookup(blob, kh)
    if seen is not None:
        seen(node, blob)
    return vh


def _store_getter(fetch: Fetch) -> Callable[[bytes], bytes]:
    def get(h: bytes) -> bytes:
        blob = fetch(h)
        if blob is None:
            raise MissingNode(f"node {h.hex()} is not in the store")
        blob = bytes(blob)
        if blake2_256(blob) != h:
            raise ProofError(f"node {h.hex()} does not hash to its expected hash")
        return blob

    return get


def _value_from_blob(blob: bytes) -> bytes:
    _check_kind(blob, TAG_VALUE, "value")
    return blob[1:]


def read(root: bytes, key: bytes, fetch: Fetch) -> bytes | None:
    """The value of ``key`` in the version with state root ``root``, or None if absent.

    Raises MissingNode if a needed blob is not in the store, and ProofError if a blob does
    not hash to what its parent says or is malformed.
    """
    get = _store_getter(fetch)
    vh = _walk(root, blake2_256(key), get)
    if vh is None:
        return None
    return _value_from_blob(get(vh))


def prove(root: bytes, keys: Iterable[bytes], fetch: Fetch) -> list[bytes]:
    """The blobs a verifier needs to learn ``keys``' values (or absence) under ``root``.

    Deduplicated; ordered by walking the keys in key-hash order, each path root first, so
    the result does not depend on the order of ``keys``.
    """
    get = _store_getter(fetch)
    out: dict[bytes, bytes] = {}

    def seen(h: bytes, blob: bytes) -> None:
        out.setdefault(h, blob)

    for kh in sorted({blake2_256(k) for k in keys}):
        vh = _walk(root, kh, get, seen)
        if vh is not None and vh not in out:
            blob = get(vh)
            _check_kind(blob, TAG_VALUE, "value")
            out[vh] = blob
    return list(out.values())


def verify_proof(
    root: bytes, proof: Iterable[bytes], keys: Iterable[bytes]
) -> dict[bytes, bytes | None]:
    """Check a proof against ``root`` and return each key's value (None = proven absent).

    Raises ProofError when a needed blob is missing (a tampered blob no longer hashes to
    what its parent says, so it counts as missing), a blob has the wrong tag, an inner node
    has the wrong length, or a bucket is malformed.
    """
    index = {blake2_256(bytes(blob)): bytes(blob) for blob in proof}

    def get(h: bytes) -> bytes:
        blob = index.get(h)
        if blob is None:
            raise ProofError(f"proof is missing node {h.hex()}")
        return blob

    result: dict[bytes, bytes | None] = {}
    for key in keys:
        vh = _walk(root, blake2_256(key), get)
        result[key] = None if vh is None else _value_from_blob(get(vh))
    return result


class MemoryNodeStore:
    """A dict-backed content-addressed blob store (tests, the worker)."""

    __slots__ = ("_blobs",)

    def __init__(self) -> None:
        self._blobs: dict[bytes, bytes] = {}

    def put(self, h: bytes, blob: bytes) -> None:
        self._blobs[h] = blob

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self._blobs.update(items)

    def get(self, h: bytes) -> bytes | None:
        return self._blobs.get(h)

    def __contains__(self, h: bytes) -> bool:
        return h in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)
