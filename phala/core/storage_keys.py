"""Storage key layout, shared by the runtime and by anyone who reads chain state.

A value lives at ``blake2_128(pallet) ++ blake2_128(item)``; a map entry at that prefix
followed by ``blake2_128_concat(encoded key)``.
"""

from __future__ import annotations

from .hashing import blake2_128, blake2_128_concat


def storage_prefix(pallet: str, item: str) -> bytes:
    """32-byte prefix of a storage item."""
    return blake2_128(pallet.encode()) + blake2_128(item.encode())


def map_key(pallet: str, item: str, encoded_key: bytes) -> bytes:
    return storage_prefix(pallet, item) + blake2_128_concat(encoded_key)
