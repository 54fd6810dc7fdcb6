"""The key derivation tree: HKDF-SHA256 along named paths below the master key.

Every secret a gatekeeper, a cluster or a contract uses is a node of one tree rooted at the
master key. A node is 32 bytes of secret key material (:class:`KeyNode`); a child is one
HKDF-SHA256 step away from its parent, keyed by one path segment::

    master
    ├── "cluster_key" / <cluster_id>            cluster_key(master, cluster_id)
    │   └── "epoch" / u64le(epoch)              cluster_epoch_key(master, cluster_id, epoch)
    │       └── "contract_key" / <contract_id>  contract_key(cluster, contract_id)
    ├── "random_number" / u64le(round) / <previous value>     random_number(...)
    └── "iv_generator" / <purpose> / <recipient> / u64le(rotation_id) / u64le(sequence)

Because each segment is a separate step, the tree is associative:
``master.derive("cluster_key", c).derive("contract_key", k)`` is
``master.derive("cluster_key", c, "contract_key", k)``. Whoever holds a node derives the whole
subtree below it (a worker given a cluster key derives every contract key of the cluster),
and nobody can go up: HKDF is one-way, so a child reveals neither its parent nor its siblings.
That is why only cluster keys are ever distributed. It is also why rotation cannot be done by
derivation: a key derived from the old master is computable by every holder of the old one.

Byte-level definition (``||`` is concatenation, ``u32le``/``u64le`` little-endian integers)::

    info(kind, data) = b"phala/derive/v1/" || kind || 0x00 || u32le(len(data)) || data
    HKDF(ikm, info, L) = HKDF-SHA256 (RFC 5869), salt absent (32 zero bytes), L output bytes

    child.secret = HKDF(parent.secret, info(b"segment", segment_bytes), 32)
    sr25519()    = Keypair.from_seed(HKDF(secret, info(b"sr25519", b""), 32))
    x25519()     = X25519Keypair.from_secret(HKDF(secret, info(b"x25519", b""), 32))
    aead_key()   = HKDF(secret, info(b"aead", b""), 32)          (an AES-256-GCM key)
    bytes32(l)   = HKDF(secret, info(b"bytes32", l), 32)
    IV           = HKDF(secret, info(b"iv", b""), 12)

A ``str`` segment or label is its UTF-8 bytes, a ``bytes`` one is used as is (so ``"ab"`` and
``b"ab"`` are the same segment). The kind names contain no 0x00 and the data is
length-prefixed, so distinct (kind, data) pairs always give distinct ``info``: the segments
``("ab", "c")`` and ``("a", "bc")`` lead to different keys, and no conversion of a node can
equal one of its children. The fixed vectors in ``tests/core/test_derivation.py`` (repeated
in ``docs/keys.md``) pin all of this; changing any byte here changes every key on a chain.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from functools import lru_cache

from phala.core.envelope import NONCE_LENGTH, X25519Keypair, hkdf_sha256
from phala.core.keys import Keypair

__all__ = [
    "CLUSTER_KEY",
    "CONTRACT_KEY",
    "DOMAIN",
    "IV_GENERATOR",
    "RANDOM_NUMBER",
    "SECRET_LENGTH",
    "KeyNode",
    "Segment",
    "cluster_epoch_key",
    "cluster_key",
    "contract_key",
    "iv_generator",
    "random_number",
    "u64le",
]

SECRET_LENGTH = 32
DOMAIN = b"phala/derive/v1/"

CLUSTER_KEY = "cluster_key"
CONTRACT_KEY = "contract_key"
RANDOM_NUMBER = "random_number"
IV_GENERATOR = "iv_generator"

Segment = str | bytes

_U32_LIMIT = 1 << 32
_U64_LIMIT = 1 << 64


def _segment_bytes(segment: Segment) -> bytes:
    if isinstance(segment, str):
        return segment.encode("utf-8")
    if isinstance(segment, bytes | bytearray | memoryview):
        return bytes(segment)
    # An int or other object has no single obvious byte form (str(1)? u64le(1)?); make the
    # caller choose, e.g. with u64le(), so a path can never change meaning by accident.
    raise TypeError(f"path segment must be str or bytes, got {type(segment).__name__}")


def _info(kind: bytes, data: bytes) -> bytes:
    if len(data) >= _U32_LIMIT:
        raise ValueError(f"derivation data too long: {len(data)} bytes")
    return DOMAIN + kind + b"\x00" + len(data).to_bytes(4, "little") + data


def u64le(value: int) -> bytes:
    """``value`` as 8 little-endian bytes: how integers (rounds, rotation ids, sequence
    numbers) become path segments. Raises ValueError outside 0..2**64-1."""
    if not 0 <= value < _U64_LIMIT:
        raise ValueError(f"integer segment must be in 0..2**64-1, got {value}")
    return value.to_bytes(8, "little")


@dataclass(frozen=True, eq=False)
class KeyNode:
    """A node of the derivation tree: 32 bytes of secret key material.

    ``KeyNode(secret)`` wraps raw material (the master key, or a cluster key received from
    the gatekeepers). The secret is kept out of ``repr``; equality is constant-time.
    Raises ValueError when ``secret`` is not 32 bytes.
    """

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != SECRET_LENGTH:
            raise ValueError(f"key material must be {SECRET_LENGTH} bytes, got {len(self.secret)}")
        object.__setattr__(self, "secret", bytes(self.secret))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyNode):
            return NotImplemented
        return hmac.compare_digest(self.secret, other.secret)

    def __hash__(self) -> int:
        return hash((KeyNode, self.secret))

    def derive(self, *path: Segment) -> KeyNode:
        """The node at ``path`` below this one: one HKDF-SHA256 step per segment.

        ``child = HKDF(secret, b"phala/derive/v1/segment" || 0x00 || u32le(len(s)) || s, 32)``
        with ``s`` the segment's bytes (str: UTF-8, bytes: raw). An empty path is this node.
        Raises TypeError for a segment that is neither str nor bytes.
        """
        secret = self.secret
        for segment in path:
            secret = hkdf_sha256(secret, _info(b"segment", _segment_bytes(segment)), 32)
        return KeyNode(secret)

    def _expand(self, kind: bytes, label: bytes, length: int) -> bytes:
        return hkdf_sha256(self.secret, _info(kind, label), length)

    def sr25519(self) -> Keypair:
        """This node's sr25519 keypair (signing; its public key is what goes on chain)."""
        return _sr25519_of(self.secret)

    def x25519(self) -> X25519Keypair:
        """This node's X25519 keypair (others encrypt to its public key)."""
        return _x25519_of(self.secret)

    def aead_key(self) -> bytes:
        """A 32-byte AES-256-GCM key for data encrypted under this node (e.g. contract state)."""
        return self._expand(b"aead", b"", 32)

    def bytes32(self, label: Segment) -> bytes:
        """32 bytes for any other use, one independent value per ``label``."""
        return self._expand(b"bytes32", _segment_bytes(label), 32)


# Workers convert the same few nodes (cluster and contract keys) for every command: keep the
# keypairs of the most recent ones instead of redoing HKDF and the curve arithmetic.
@lru_cache(maxsize=4096)
def _sr25519_of(secret: bytes) -> Keypair:
    return Keypair.from_seed(KeyNode(secret)._expand(b"sr25519", b"", 32))


@lru_cache(maxsize=4096)
def _x25519_of(secret: bytes) -> X25519Keypair:
    return X25519Keypair.from_secret(KeyNode(secret)._expand(b"x25519", b"", 32))


def cluster_key(master: KeyNode, cluster_id: Segment) -> KeyNode:
    """``master / "cluster_key" / cluster_id``: the secret the gatekeepers send, encrypted,
    to each worker of the cluster. Its holder derives every contract key of the cluster."""
    return master.derive(CLUSTER_KEY, cluster_id)


def cluster_epoch_key(master: KeyNode, cluster_id: Segment, epoch: int) -> KeyNode:
    """``master / "cluster_key" / cluster_id / "epoch" / u64le(epoch)``: the key of one epoch
    of a cluster, the secret the gatekeepers actually send. Workers receive epoch keys only,
    never the ``cluster_key`` node above them, so a worker removed at epoch ``e`` cannot
    derive the key of epoch ``e + 1``."""
    return cluster_key(master, cluster_id).derive("epoch", u64le(epoch))


def contract_key(cluster: KeyNode, contract_id: Segment) -> KeyNode:
    """``cluster / "contract_key" / contract_id``: one contract's keys, derived by every
    worker of its cluster and never sent anywhere."""
    return cluster.derive(CONTRACT_KEY, contract_id)


def random_number(master: KeyNode, round_number: int, previous: bytes) -> bytes:
    """The randomness beacon's value for ``round_number``, chained to the ``previous`` value:
    ``master / "random_number" / u64le(round_number) / previous``, then ``bytes32("value")``.

    Every gatekeeper computes the same 32 bytes; nobody without the master key can predict
    the next value, even knowing every earlier one.
    """
    node = master.derive(RANDOM_NUMBER, u64le(round_number), previous)
    return node.bytes32("value")


def iv_generator(
    root: KeyNode, purpose: str, recipient: bytes, rotation_id: int, sequence: int
) -> bytes:
    """A 12-byte AES-GCM IV for the context (purpose, recipient, rotation id, sequence):
    ``HKDF(node.secret, info(b"iv", b""), 12)`` where ``node`` is
    ``root / "iv_generator" / purpose / recipient / u64le(rotation_id) / u64le(sequence)``.

    Gatekeepers derive IVs instead of drawing them so that all of them send byte-identical
    messages. The IV is unique as long as the context is unique: distinct contexts give
    independent pseudo-random 96-bit values (n of them collide with probability below
    n**2 / 2**97, the bound NIST SP 800-38D accepts for random IVs). The AEAD key used with
    these IVs must be fixed per purpose, so that (key, IV) never repeats across contexts;
    the caller must never encrypt two different plaintexts under one context (re-sending the
    same plaintext under it gives the same ciphertext, which is harmless).
    """
    return root.derive(
        IV_GENERATOR, purpose, recipient, u64le(rotation_id), u64le(sequence)
    )._expand(b"iv", b"", NONCE_LENGTH)
