"""Encryption envelopes: X25519 key agreement, HKDF-SHA256 and AES-256-GCM.

An envelope encrypts a message to the holder of an X25519 secret. The sender makes a fresh
(ephemeral) X25519 keypair, agrees a shared secret with the recipient's public key, and derives
a one-off AES-256-GCM key from it with HKDF-SHA256. The derivation binds both public keys, so a
key can only ever be used between exactly this ephemeral key and this recipient.

Wire form of an envelope (:meth:`Envelope.to_bytes`)::

    ephemeral_public (32 bytes) || nonce (12 bytes) || ciphertext (plaintext length + 16-byte tag)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DEFAULT_INFO",
    "KEY_LENGTH",
    "NONCE_LENGTH",
    "PUBLIC_KEY_LENGTH",
    "TAG_LENGTH",
    "Envelope",
    "EnvelopeError",
    "X25519Keypair",
    "aead_decrypt",
    "aead_encrypt",
    "hkdf_sha256",
    "open_envelope",
    "seal",
]

PUBLIC_KEY_LENGTH = 32
KEY_LENGTH = 32
NONCE_LENGTH = 12
TAG_LENGTH = 16
DEFAULT_INFO = b"phala/envelope/v1"

# One message for every way opening can fail, so a caller (or an attacker watching errors)
# learns nothing about which check rejected the input.
_DECRYPTION_FAILED = "decryption failed: wrong key, tampered ciphertext or wrong associated data"


class EnvelopeError(ValueError):
    """A key, nonce or envelope is malformed, or decryption/authentication failed."""


def hkdf_sha256(
    key_material: bytes, info: bytes, length: int = 32, salt: bytes | None = None
) -> bytes:
    """HKDF-SHA256 (RFC 5869) extract-and-expand of ``key_material`` into ``length`` bytes.

    ``salt=None`` means the RFC's default (32 zero bytes). Raises ValueError if ``length`` is
    not in 1..8160 (255 SHA-256 blocks, the RFC's limit).
    """
    if not 1 <= length <= 255 * 32:
        raise ValueError(f"HKDF-SHA256 output length must be in 1..8160, got {length}")
    return HKDF(algorithm=SHA256(), length=length, salt=salt, info=info).derive(key_material)


@dataclass(frozen=True)
class X25519Keypair:
    """An X25519 key-agreement keypair (raw 32-byte secret and public keys)."""

    secret: bytes = field(repr=False)
    public: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise EnvelopeError(f"X25519 secret must be 32 bytes, got {len(self.secret)}")
        expected = _private_key(self.secret).public_key().public_bytes_raw()
        # A mismatched pair would encrypt to a key nobody holds; refuse it at construction.
        if self.public != expected:
            raise EnvelopeError("X25519 public key does not match the secret key")

    @classmethod
    def generate(cls) -> X25519Keypair:
        """A new random keypair from the operating system's CSPRNG."""
        return cls.from_secret(X25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_secret(cls, secret: bytes) -> X25519Keypair:
        """The keypair for a 32-byte secret (clamping is applied by X25519 itself).

        Raises EnvelopeError when the secret is not 32 bytes.
        """
        if len(secret) != 32:
            raise EnvelopeError(f"X25519 secret must be 32 bytes, got {len(secret)}")
        public = _private_key(secret).public_key().public_bytes_raw()
        return cls(secret=bytes(secret), public=public)

    def agree(self, peer_public: bytes) -> bytes:
        """The 32-byte X25519 shared secret with ``peer_public``.

        Raises EnvelopeError when the peer key is not 32 bytes or is a low-order point (the
        result would be all zeros, i.e. a key any attacker knows).
        """
        return _exchange(_private_key(self.secret), peer_public)


def _exchange(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    if len(peer_public) != PUBLIC_KEY_LENGTH:
        raise EnvelopeError(
            f"X25519 public key must be {PUBLIC_KEY_LENGTH} bytes, got {len(peer_public)}"
        )
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError as exc:  # OpenSSL refuses all-zero results itself
        raise EnvelopeError("X25519 agreement failed: low-order peer public key") from exc
    # Checked here as well so the guarantee does not depend on the crypto backend.
    if shared == bytes(32):
        raise EnvelopeError("X25519 agreement failed: low-order peer public key")
    return shared


@lru_cache(maxsize=1024)
def _private_key(secret: bytes) -> X25519PrivateKey:
    """The key object of a secret (kept: parsing costs as much as the agreement, and a
    worker opens every command of a contract with the same one)."""
    return X25519PrivateKey.from_private_bytes(bytes(secret))


@dataclass(frozen=True)
class Envelope:
    """A sealed message: sender's ephemeral X25519 public key, AES-GCM nonce, ciphertext+tag."""

    ephemeral_public: bytes
    nonce: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        if len(self.ephemeral_public) != PUBLIC_KEY_LENGTH:
            raise EnvelopeError(
                f"ephemeral public key must be {PUBLIC_KEY_LENGTH} bytes, "
                f"got {len(self.ephemeral_public)}"
            )
        if len(self.nonce) != NONCE_LENGTH:
            raise EnvelopeError(f"nonce must be {NONCE_LENGTH} bytes, got {len(self.nonce)}")
        if len(self.ciphertext) < TAG_LENGTH:
            raise EnvelopeError(
                f"ciphertext must hold at least the {TAG_LENGTH}-byte tag, "
                f"got {len(self.ciphertext)} bytes"
            )

    def to_bytes(self) -> bytes:
        """``ephemeral_public (32) || nonce (12) || ciphertext (len(plaintext) + 16)``."""
        return self.ephemeral_public + self.nonce + self.ciphertext

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Split the wire form of :meth:`to_bytes`.

        Raises EnvelopeError when ``data`` is shorter than 32 + 12 + 16 bytes.
        """
        minimum = PUBLIC_KEY_LENGTH + NONCE_LENGTH + TAG_LENGTH
        if len(data) < minimum:
            raise EnvelopeError(f"envelope too short: {len(data)} bytes, need at least {minimum}")
        data = bytes(data)
        nonce_end = PUBLIC_KEY_LENGTH + NONCE_LENGTH
        return cls(
            ephemeral_public=data[:PUBLIC_KEY_LENGTH],
            nonce=data[PUBLIC_KEY_LENGTH:nonce_end],
            ciphertext=data[nonce_end:],
        )


def _envelope_key(
    shared: bytes, info: bytes, ephemeral_public: bytes, recipient_public: bytes
) -> bytes:
    # Binding both public keys into the KDF input stops an attacker from re-targeting an
    # envelope to another key that happens to produce the same shared secret.
    return hkdf_sha256(shared, info + ephemeral_public + recipient_public, KEY_LENGTH)


def seal(
    recipient_public: bytes,
    plaintext: bytes,
    aad: bytes,
    info: bytes = DEFAULT_INFO,
    ephemeral: X25519Keypair | None = None,
    nonce: bytes | None = None,
) -> Envelope:
    """Encrypt ``plaintext`` to ``recipient_public``, authenticating ``aad`` alongside it.

    A fresh ephemeral keypair and a random nonce are used unless given. Passing them is for
    deterministic callers (a gatekeeper deriving them from its own secrets); such a caller must
    never reuse an (ephemeral, recipient, nonce) triple for two different plaintexts, since
    AES-GCM loses both secrecy and integrity under nonce reuse.
    Raises EnvelopeError for a malformed recipient key or nonce, or a low-order recipient key.
    """
    if nonce is None:
        nonce = os.urandom(NONCE_LENGTH)
    elif len(nonce) != NONCE_LENGTH:
        raise EnvelopeError(f"nonce must be {NONCE_LENGTH} bytes, got {len(nonce)}")
    if ephemeral is None:
        ephemeral = X25519Keypair.generate()
    recipient_public = bytes(recipient_public)
    shared = ephemeral.agree(recipient_public)
    key = _envelope_key(shared, info, ephemeral.public, recipient_public)
    ciphertext = AESGCM(key).encrypt(bytes(nonce), plaintext, aad)
    return Envelope(ephemeral_public=ephemeral.public, nonce=bytes(nonce), ciphertext=ciphertext)


def open_envelope(
    recipient_secret: bytes, envelope: Envelope, aad: bytes, info: bytes = DEFAULT_INFO
) -> bytes:
    """Decrypt and authenticate an envelope addressed to ``recipient_secret``'s public key.

    Raises EnvelopeError("decryption failed: ...") on any failure: malformed secret, low-order
    ephemeral key, wrong recipient, wrong ``aad`` or ``info``, or any modified byte.
    """
    try:
        if len(recipient_secret) != 32:
            raise EnvelopeError("X25519 secret must be 32 bytes")
        private = _private_key(recipient_secret)  # once: this is the hot path of every command
        shared = _exchange(private, envelope.ephemeral_public)
        recipient_public = private.public_key().public_bytes_raw()
        key = _envelope_key(shared, info, envelope.ephemeral_public, recipient_public)
        return AESGCM(key).decrypt(envelope.nonce, envelope.ciphertext, aad)
    except (InvalidTag, ValueError) as exc:  # EnvelopeError is a ValueError
        raise EnvelopeError(_DECRYPTION_FAILED) from exc


def _check_key_nonce(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_LENGTH:
        raise EnvelopeError(f"AES-256-GCM key must be {KEY_LENGTH} bytes, got {len(key)}")
    if len(nonce) != NONCE_LENGTH:
        raise EnvelopeError(f"nonce must be {NONCE_LENGTH} bytes, got {len(nonce)}")


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM encryption; returns ``ciphertext || 16-byte tag``.

    The caller owns nonce uniqueness per key. Raises EnvelopeError when the key is not
    32 bytes or the nonce not 12 bytes.
    """
    _check_key_nonce(key, nonce)
    return AESGCM(bytes(key)).encrypt(bytes(nonce), plaintext, aad)


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM decryption of ``ciphertext || tag``.

    Raises EnvelopeError for a malformed key or nonce, and EnvelopeError("decryption failed:
    ...") when the tag does not verify (wrong key, nonce or aad, or modified ciphertext).
    """
    _check_key_nonce(key, nonce)
    try:
        return AESGCM(bytes(key)).decrypt(bytes(nonce), ciphertext, aad)
    except InvalidTag as exc:
        raise EnvelopeError(_DECRYPTION_FAILED) from exc
