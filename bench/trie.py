"""Benchmark of the state tree: key updates per second with one commit per block.

A tree of existing keys takes blocks of random updates (mostly overwrites of existing keys,
some inserts and deletes); each block is applied and committed (root recomputation plus the
list of new blobs). The same run measures blake2_256 over 64-byte inputs as the floor: a
key update costs at least two hashes (key and value) plus its share of bucket and inner
node hashes.

Nothing is written to disk; ``run`` returns the figures.
"""

from __future__ import annotations

import random
import time

from phala.core.hashing import blake2_256
from phala.core.trie import StateTree


def _key(rng: random.Random) -> bytes:
    # Shaped like a storage-map key: 32-byte pallet/item prefix + blake2_128_concat(32 bytes).
    return rng.randbytes(80)


def _bench_hash(n: int) -> float:
    inputs = [i.to_bytes(8, "little") * 8 for i in range(1024)]
    reps = max(1, n // len(inputs))
    h = blake2_256
    start = time.perf_counter()
    for _ in range(reps):
        for data in inputs:
            h(data)
    elapsed = time.perf_counter() - start
    return reps * len(inputs) / elapsed


def _bench_trie(existing: int, block_size: int, blocks: int, seed: int) -> dict:
    rng = random.Random(seed)
    keys = [_key(rng) for _ in range(existing)]
    t0 = time.perf_counter()
    tree = StateTree.from_items((k, rng.randbytes(rng.randint(8, 64))) for k in keys)
    tree.commit()
    build_s = time.perf_counter() - t0

    # Prepare every block's changes up front so only the tree is timed.
    plans = []
    for _ in range(blocks):
        changes: list[tuple[bytes, bytes | None]] = []
        for _ in range(block_size):
            r = rng.random()
            if r < 0.9:
                changes.append((keys[rng.randrange(len(keys))], rng.randbytes(rng.randint(8, 64))))
            elif r < 0.97:
                k = _key(rng)
                keys.append(k)
                changes.append((k, rng.randbytes(rng.randint(8, 64))))
            else:
                changes.append((keys[rng.randrange(len(keys))], None))
        plans.append(changes)

    times = []
    blob_counts = []
    for changes in plans:
        start = time.perf_counter()
        tree.apply(changes)
        _root, blobs = tree.commit()
        times.append(time.perf_counter() - start)
        blob_counts.append(len(blobs))
    total = sum(times)
    return {
        "trie_updates_per_s": blocks * block_size / total,
        "trie_best_block_updates_per_s": block_size / min(times),
        "trie_block_ms_mean": 1000 * total / blocks,
        "trie_build_keys_per_s": existing / build_s,
        "blobs_per_block_mean": sum(blob_counts) / blocks,
        "existing_keys": existing,
        "block_size": block_size,
        "blocks": blocks,
        "final_keys": len(tree),
    }


def run(quick: bool = False) -> dict:
    """Measure trie updates/s (100k keys, blocks of 10k updates, commit per block) against
    blake2_256/s of 64-byte inputs in the same run."""
    blocks = 3 if quick else 10
    hash_n = 200_000 if quick else 1_000_000
    hash_per_s = _bench_hash(hash_n)
    result = _bench_trie(existing=100_000, block_size=10_000, blocks=blocks, seed=20240601)
    result["blake2_256_per_s"] = hash_per_s
    result["ratio"] = result["trie_updates_per_s"] / hash_per_s
    result["targets"] = {"trie_updates_per_s": 50_000}
    return result


if __name__ == "__main__":
    import sys

    for name, value in run(quick="--quick" in sys.argv).items():
        if isinstance(value, dict):
            continue
        print(f"{name}: {value:,.4g}" if isinstance(value, float) else f"{name}: {value}")
