"""Hash functions of the protocol: blake2b with 256, 128 and 512-bit outputs."""

from hashlib import blake2b


def blake2_256(data: bytes) -> bytes:
    """The protocol's hash: block hashes, state commitments, extrinsic hashes."""
    return blake2b(data, digest_size=32).digest()


def blake2_128(data: bytes) -> bytes:
    """Short hash for storage key prefixes (pallet and item names)."""
    return blake2b(data, digest_size=16).digest()


def blake2_128_concat(data: bytes) -> bytes:
    """Storage map hasher that keeps the key readable: 16-byte hash, then the key itself."""
    return blake2b(data, digest_size=16).digest() + data


def blake2_512(data: bytes) -> bytes:
    return blake2b(data, digest_size=64).digest()
