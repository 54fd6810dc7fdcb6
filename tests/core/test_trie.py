import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phala.core.hashing import blake2_256
from phala.core.trie import (
    BUCKETS,
    DEPTH,
    EMPTY_BUCKET_HASH,
    EMPTY_HASHES,
    EMPTY_ROOT,
    MemoryNodeStore,
    MissingNode,
    ProofError,
    StateTree,
    TrieError,
    prove,
    read,
    verify_proof,
)

# -- an independent, naive reference of the layout ----------------------------------------------


def ref_root(state: dict[bytes, bytes]) -> bytes:
    """Root of ``state`` computed straight from the specification (sparse, but with its
    own empty-subtree hashes rather than the module's)."""
    empty = [blake2_256(b"\x02")]
    for _ in range(DEPTH):
        empty.append(blake2_256(b"\x01" + empty[-1] * 16))
    buckets: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in state.items():
        kh = blake2_256(key)
        buckets.setdefault(int.from_bytes(kh[:2], "big"), []).append(
            (kh, blake2_256(b"\x00" + value))
        )
    level = {
        i: blake2_256(b"\x02" + b"".join(kh + vh for kh, vh in sorted(entries)))
        for i, entries in buckets.items()
    }
    for height in range(DEPTH):
        parents = {i >> 4 for i in level}
        level = {
            p: blake2_256(
                b"\x01" + b"".join(level.get(16 * p + n, empty[height]) for n in range(16))
            )
            for p in parents
        }
    return level.get(0, empty[DEPTH])


def key_with_bucket(pred, start: int = 0) -> bytes:
    """A key whose bucket index satisfies ``pred``."""
    i = start
    while True:
        key = b"probe-%d" % i
        kh = blake2_256(key)
        if pred(int.from_bytes(kh[:2], "big")):
            return key
        i += 1


def bucket_of(key: bytes) -> int:
    return int.from_bytes(blake2_256(key)[:2], "big")


def committed(items) -> tuple[StateTree, MemoryNodeStore, bytes]:
    tree = StateTree.from_items(items)
    store = MemoryNodeStore()
    root, blobs = tree.commit()
    store.put_many(blobs)
    return tree, store, root


def tree_over_bucket(bucket_blob: bytes, index: int) -> tuple[bytes, list[bytes]]:
    """Hand-build the inner nodes over one (possibly malformed) bucket blob at ``index``,
    with empty subtrees elsewhere. Returns the root and all inner blobs + the bucket blob."""
    nibbles = [(index >> (4 * (DEPTH - 1 - d))) & 15 for d in range(DEPTH)]
    child = blake2_256(bucket_blob)
    blobs = [bucket_blob]
    for depth in range(DEPTH - 1, -1, -1):
        children = [EMPTY_HASHES[depth + 1]] * 16
        children[nibbles[depth]] = child
        blob = b"\x01" + b"".join(children)
        blobs.append(blob)
        child = blake2_256(blob)
    return child, blobs


ITEMS = [(b"key-%d" % i, b"value-%d" % i * (i % 5 + 1)) for i in range(300)]


# -- roots ------------------------------------------------------------------------------------


def test_empty_root_constant():
    bucket = blake2_256(b"\x02")
    assert EMPTY_BUCKET_HASH == bucket
    h = bucket
    for _ in range(DEPTH):
        h = blake2_256(b"\x01" + h * 16)
    assert EMPTY_ROOT == h == EMPTY_HASHES[0]
    assert EMPTY_ROOT.hex() == ref_root({}).hex()
    tree = StateTree()
    assert tree.root() == EMPTY_ROOT
    assert len(tree) == 0
    assert tree.commit() == (EMPTY_ROOT, [])
    assert BUCKETS == 65536


def test_single_key_matches_spec():
    tree = StateTree()
    tree.set(b"alice", b"100")
    assert len(tree) == 1
    assert tree.root() == ref_root({b"alice": b"100"})
    assert tree.value_hash(b"alice") == blake2_256(b"\x00100")
    assert b"alice" in tree and b"bob" not in tree


def test_matches_reference_with_shared_buckets():
    # Several keys in one bucket exercise the sorting of bucket entries.
    target = bucket_of(b"k0")
    keys = [b"k0"]
    i = 0
    while len(keys) < 4:
        key = key_with_bucket(lambda b: b == target, start=i)
        i = int(key.split(b"-")[1]) + 1
        keys.append(key)
    state = {k: b"v" + k for k in keys} | dict(ITEMS[:50])
    assert StateTree.from_items(state.items()).root() == ref_root(state)


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.binary(max_size=12), st.binary(max_size=20), max_size=40),
    st.randoms(use_true_random=False),
)
def test_insertion_order_independent(state, rnd):
    items = list(state.items())
    a = StateTree()
    for k, v in items:
        a.set(k, v)
    rnd.shuffle(items)
    b = StateTree()
    b.apply(items)
    assert a.root() == b.root() == ref_root(state)
    assert len(a) == len(b) == len(state)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"a", b"b", b"c", b"d", b"", b"\x00" * 40]),
            st.none() | st.binary(max_size=8),
        ),
        max_size=30,
    )
)
def test_random_operations_match_model(ops):
    tree = StateTree()
    model: dict[bytes, bytes] = {}
    for i, (k, v) in enumerate(ops):
        tree.set(k, v)
        if v is None:
            model.pop(k, None)
        else:
            model[k] = v
        if i % 7 == 0:
            assert tree.root() == ref_root(model)
    assert tree.root() == ref_root(model)
    assert len(tree) == len(model)


def test_delete_restores_previous_root():
    tree = StateTree.from_items(ITEMS)
    before = tree.root()
    tree.set(b"new key", b"x")
    tree.set(b"key-3", b"changed")
    assert tree.root() != before
    tree.set(b"new key", None)
    tree.set(b"key-3", dict(ITEMS)[b"key-3"])
    assert tree.root() == before
    assert len(tree) == len(ITEMS)
    tree.delete(b"not there")
    assert tree.root() == before and len(tree) == len(ITEMS)
    for k, _ in ITEMS:
        tree.set(k, None)
    assert tree.root() == EMPTY_ROOT and len(tree) == 0


def test_from_items_equals_incremental_build():
    inc = StateTree()
    for i, (k, v) in enumerate(ITEMS):
        inc.set(k, v)
        if i % 50 == 0:
            inc.root()  # interleaved root computations must not matter
    bulk = StateTree.from_items(ITEMS)
    assert bulk.root() == inc.root() == ref_root(dict(ITEMS))
    assert len(bulk) == len(ITEMS)
    # Later duplicates win in both.
    dup = ITEMS + [(ITEMS[0][0], b"last")]
    assert StateTree.from_items(dup).root() == ref_root(dict(dup))


def test_root_is_cached_and_copy_is_independent():
    tree = StateTree.from_items(ITEMS)
    r = tree.root()
    assert tree.root() is r
    snap = tree.copy()
    tree.set(b"key-1", b"other")
    assert snap.root() == r != tree.root()
    assert len(snap) == len(tree)
    snap.set(b"key-1", b"other")
    assert snap.root() == tree.root()


def test_root_does_not_depend_on_hash_seed():
    code = (
        "from phala.core.trie import StateTree\n"
        "items = [(b'k%d' % i, b'v%d' % i) for i in range(2000)]\n"
        "t = StateTree.from_items(items)\n"
        "r, blobs = t.commit()\n"
        "print(r.hex(), len(blobs), blobs[-1][0].hex())\n"
    )
    outs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        outs.add(proc.stdout)
    assert len(outs) == 1


# -- commit and archive -------------------------------------------------------------------------


def test_commit_returns_only_new_blobs():
    tree = StateTree.from_items(ITEMS)
    root, blobs = tree.commit()
    for h, blob in blobs:
        assert blake2_256(blob) == h
    kinds = {blob[0] for _, blob in blobs}
    assert kinds == {0, 1, 2}
    assert sum(1 for _, b in blobs if b[0] == 0) == len({v for _, v in ITEMS})
    assert tree.commit() == (root, [])
    tree.set(b"key-7", b"fresh value")
    root2, blobs2 = tree.commit()
    # One value blob, one bucket, one inner node per level.
    assert sorted(b[0] for _, b in blobs2) == [0, 1, 1, 1, 1, 2]
    assert root2 != root


def test_archive_reads_and_proves_old_versions():
    store = MemoryNodeStore()
    tree = StateTree.from_items(ITEMS)
    root1, blobs = tree.commit()
    store.put_many(blobs)

    tree.apply([(b"key-1", b"v2"), (b"key-2", None), (b"added", b"a")])
    tree.root()  # an intermediate root() must not lose blobs for the next commit
    tree.set(b"key-4", b"v2")
    root2, blobs = tree.commit()
    store.put_many(blobs)
    tree.set(b"key-1", b"v3")
    root3, blobs = tree.commit()
    store.put_many(blobs)

    fetch = store.get
    old = dict(ITEMS)
    for k in (b"key-1", b"key-2", b"key-4", b"added", b"key-299"):
        assert read(root1, k, fetch) == old.get(k)
    assert read(root2, b"key-1", fetch) == b"v2"
    assert read(root2, b"key-2", fetch) is None
    assert read(root2, b"added", fetch) == b"a"
    assert read(root2, b"key-4", fetch) == b"v2"
    assert read(root3, b"key-1", fetch) == b"v3"

    keys = [b"key-1", b"key-2", b"added"]
    assert verify_proof(root1, prove(root1, keys, fetch), keys) == {
        b"key-1": old[b"key-1"],
        b"key-2": old[b"key-2"],
        b"added": None,
    }
    assert verify_proof(root2, prove(root2, keys, fetch), keys) == {
        b"key-1": b"v2",
        b"key-2": None,
        b"added": b"a",
    }


def test_read_missing_and_corrupt_nodes():
    _, store, root = committed(ITEMS)
    assert read(EMPTY_ROOT, b"x", lambda h: None) is None
    with pytest.raises(MissingNode):
        read(root, b"key-1", lambda h: None)
    with pytest.raises(MissingNode):
        read(blake2_256(b"unknown root"), b"key-1", store.get)

    # A store that returns the wrong blob for a hash.
    def lying(h):
        blob = store.get(h)
        if blob is not None and blob[0] == 2:
            return blob[:-1] + bytes([blob[-1] ^ 1])
        return blob

    with pytest.raises(ProofError, match="hash"):
        read(root, b"key-1", lying)
    assert issubclass(MissingNode, TrieError) and issubclass(ProofError, TrieError)


# -- proofs --------------------------------------------------------------------------------------


def test_proof_present_and_absent_keys():
    _, store, root = committed(ITEMS)
    keys = [b"key-0", b"key-150", b"nope", b"also missing"]
    proof = prove(root, keys, store.get)
    assert len(proof) == len(set(proof))
    assert verify_proof(root, proof, keys) == {
        b"key-0": dict(ITEMS)[b"key-0"],
        b"key-150": dict(ITEMS)[b"key-150"],
        b"nope": None,
        b"also missing": None,
    }
    # Deterministic regardless of the order of the keys.
    assert prove(root, list(reversed(keys)), store.get) == proof
    # A single present key: 4 inner blobs, a bucket and its value.
    one = prove(root, [b"key-9"], store.get)
    assert [b[0] for b in one] == [1, 1, 1, 1, 2, 0]
    assert verify_proof(root, one, [b"key-9"]) == {b"key-9": dict(ITEMS)[b"key-9"]}


def test_proof_absent_in_empty_subtrees():
    items = [(b"only", b"one")]
    _, store, root = committed(items)
    first = bucket_of(b"only") >> 12
    # A key under a different top-level child: the root blob alone proves absence.
    other = key_with_bucket(lambda b: b >> 12 != first)
    proof = prove(root, [other], store.get)
    assert [b[0] for b in proof] == [1]
    assert verify_proof(root, proof, [other]) == {other: None}
    # Same top nibble but a different second nibble: two inner blobs.
    second = (bucket_of(b"only") >> 8) & 15
    near = key_with_bucket(lambda b: b >> 12 == first and (b >> 8) & 15 != second)
    proof = prove(root, [near], store.get)
    assert [b[0] for b in proof] == [1, 1]
    assert verify_proof(root, proof, [near]) == {near: None}
    # A key in the same bucket but absent: proven by the bucket.
    same = key_with_bucket(lambda b: b == bucket_of(b"only"))
    proof = prove(root, [same], store.get)
    assert [b[0] for b in proof] == [1, 1, 1, 1, 2]
    assert verify_proof(root, proof, [same]) == {same: None}
    # The empty tree needs no blobs at all.
    assert prove(EMPTY_ROOT, [b"a"], store.get) == []
    assert verify_proof(EMPTY_ROOT, [], [b"a", b"b"]) == {b"a": None, b"b": None}


def test_proof_for_different_root_fails():
    _, store, root = committed(ITEMS)
    tree2 = StateTree.from_items(ITEMS + [(b"key-5", b"changed")])
    root2, blobs2 = tree2.commit()
    proof = prove(root, [b"key-5"], store.get)
    with pytest.raises(ProofError, match="missing"):
        verify_proof(root2, proof, [b"key-5"])
    with pytest.raises(ProofError):
        verify_proof(blake2_256(b"random root"), proof, [b"key-5"])


def test_tampered_proofs_are_rejected():
    _, store, root = committed(ITEMS)
    key = b"key-42"
    proof = prove(root, [key], store.get)
    by_tag = {b[0]: b for b in proof}

    def replaced(old: bytes, new: bytes) -> list[bytes]:
        return [new if b == old else b for b in proof]

    # A changed value.
    value_blob = by_tag[0]
    with pytest.raises(ProofError):
        verify_proof(root, replaced(value_blob, b"\x00forged"), [key])
    # Each dropped blob.
    for i in range(len(proof)):
        with pytest.raises(ProofError, match="missing"):
            verify_proof(root, proof[:i] + proof[i + 1 :], [key])
    # A bucket with the entry removed (would claim absence).
    bucket = by_tag[2]
    kh = blake2_256(key)
    off = bucket.index(kh)
    without = bucket[:off] + bucket[off + 64 :]
    with pytest.raises(ProofError):
        verify_proof(root, replaced(bucket, without), [key])
    # A changed tag on an inner blob.
    inner = proof[0]
    with pytest.raises(ProofError):
        verify_proof(root, replaced(inner, b"\x02" + inner[1:]), [key])
    # Extra unrelated blobs do no harm.
    assert verify_proof(root, proof + [b"\x00junk"], [key]) == {key: dict(ITEMS)[key]}


def _entry(key: bytes, value: bytes) -> bytes:
    return blake2_256(key) + blake2_256(b"\x00" + value)


def test_structurally_malformed_blobs_with_consistent_hashes():
    # Blobs that hash correctly but break the layout must still be rejected.
    a = b"probe-0"
    index = bucket_of(a)
    b = key_with_bucket(lambda i: i == index, start=1)
    ea, eb = sorted([_entry(a, b"1"), _entry(b, b"2")])
    good_bucket = b"\x02" + ea + eb
    root, blobs = tree_over_bucket(good_bucket, index)
    proof = blobs + [b"\x001", b"\x002"]
    assert verify_proof(root, proof, [a, b]) == {a: b"1", b: b"2"}

    root, blobs = tree_over_bucket(b"\x02" + eb + ea, index)
    with pytest.raises(ProofError, match="sorted"):
        verify_proof(root, blobs + [b"\x001", b"\x002"], [a])

    root, blobs = tree_over_bucket(b"\x02" + ea + ea, index)
    with pytest.raises(ProofError, match="sorted"):
        verify_proof(root, blobs + [b"\x001"], [a])

    root, blobs = tree_over_bucket(good_bucket + b"\x00", index)
    with pytest.raises(ProofError, match="multiple of 64"):
        verify_proof(root, blobs, [a])

    other = key_with_bucket(lambda i: i != index)
    root, blobs = tree_over_bucket(b"\x02" + _entry(other, b"x"), index)
    with pytest.raises(ProofError, match="belong"):
        verify_proof(root, blobs, [a])

    # Wrong tags: an inner blob in a bucket's place, a value blob as the root, and a bucket
    # entry whose value hash points at an inner blob.
    inner_blob = b"\x01" + EMPTY_BUCKET_HASH * 16
    root, blobs = tree_over_bucket(inner_blob, index)
    with pytest.raises(ProofError, match="tag"):
        verify_proof(root, blobs, [a])

    fake_root_blob = b"\x00" + bytes(512)
    with pytest.raises(ProofError, match="tag"):
        verify_proof(blake2_256(fake_root_blob), [fake_root_blob], [a])

    entry = blake2_256(a) + blake2_256(inner_blob)
    root, blobs = tree_over_bucket(b"\x02" + entry, index)
    with pytest.raises(ProofError, match="tag"):
        verify_proof(root, blobs + [inner_blob], [a])

    short_inner = b"\x01" + bytes(64)
    with pytest.raises(ProofError, match="inner"):
        verify_proof(blake2_256(short_inner), [short_inner], [a])


def test_larger_random_tree_proofs():
    rng = random.Random(7)
    items = [
        (rng.randbytes(rng.randint(1, 60)), rng.randbytes(rng.randint(0, 50))) for _ in range(3000)
    ]
    tree, store, root = committed(items)
    state = dict(items)
    assert len(tree) == len(state)
    sample = [k for k, _ in items[:50]] + [rng.randbytes(20) for _ in range(50)]
    proof = prove(root, sample, store.get)
    got = verify_proof(root, proof, sample)
    assert got == {k: state.get(k) for k in sample}
    for k in sample[:20]:
        assert read(root, k, store.get) == state.get(k)


def test_tree_without_blobs_reaches_the_same_roots_and_keeps_nothing():
    items = [(b"k%d" % i, b"v%d" % i) for i in range(500)]
    archive, lean = StateTree.from_items(items), StateTree.from_items(items, keep_blobs=False)
    assert lean.root() == archive.root()
    lean.apply([(b"k1", None), (b"new", b"x")])
    archive.apply([(b"k1", None), (b"new", b"x")])
    assert lean.root() == archive.root()
    assert lean.commit() == (archive.root(), [])
    assert lean.copy().commit()[1] == []
