"""sr25519 account keys, derived exactly as Substrate's ``subkey`` derives them.

A secret URI (SURI) is ``<phrase or 0x-seed><path>[///password]``:

* the phrase is a BIP39 English mnemonic, or ``0x`` + 64 hex digits (a raw 32-byte seed), or
  absent, in which case the well-known development phrase :data:`DEV_PHRASE` is used;
* the path is a sequence of junctions, ``//name`` (hard) or ``/name`` (soft);
* the password (after ``///``) salts the mnemonic's seed derivation.

So ``//Alice`` is ``DEV_PHRASE`` hard-derived with the junction ``Alice``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import sr25519
from mnemonic import Mnemonic

from phala.core import ss58
from phala.core.envelope import hkdf_sha256
from phala.core.hashing import blake2_256

__all__ = [
    "DEV_ACCOUNTS",
    "DEV_PHRASE",
    "InvalidSecretUri",
    "Keypair",
    "dev_keypair",
    "mini_secret_from_mnemonic",
    "verify",
]

DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
DEV_ACCOUNTS = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")

PUBLIC_KEY_LENGTH = 32
SECRET_KEY_LENGTH = 64
SEED_LENGTH = 32
SIGNATURE_LENGTH = 64

_X25519_INFO = b"phala/account-x25519"
_JUNCTION_ID_LENGTH = 32
_U64_LIMIT = 1 << 64

# Substrate's SURI grammar. ``\w``/``\d`` are Unicode-aware in both Rust's regex and Python's
# re, and both pick the same leftmost-first match, so the same strings split the same way.
_SURI = re.compile(r"(?P<phrase>[\d\w ]+)?(?P<path>(?://?[^/]+)*)(?:///(?P<password>.*))?")
_JUNCTION = re.compile(r"/(/?[^/]+)")
_PATH = re.compile(r"(?://?[^/]+)*")
# Rust's u64::from_str accepts an optional leading '+' and ASCII digits only; Python's int()
# would also accept whitespace, underscores and non-ASCII digits, so match Rust explicitly.
_RUST_U64 = re.compile(r"\+?[0-9]+")
_HEX_SEED = re.compile(r"[0-9a-fA-F]{64}")


class InvalidSecretUri(ValueError):
    """A secret URI, mnemonic or hex seed could not be parsed; the message says why."""


def mini_secret_from_mnemonic(phrase: str, password: str = "") -> bytes:
    """The 32-byte sr25519 mini-secret for a BIP39 phrase, as substrate-bip39 computes it.

    Unlike BIP39's own seed (PBKDF2 over the phrase *text*), substrate-bip39 runs PBKDF2 over
    the phrase's *entropy*, so the same words give different keys in Substrate and in Bitcoin
    wallets. Checks word count, that every word is in the English list, and the checksum.
    Raises InvalidSecretUri naming the failure.
    """
    # Substrate splits on any whitespace; the mnemonic library only on single spaces.
    words = phrase.split()
    try:
        entropy = bytes(Mnemonic("english").to_entropy(words))
    except (ValueError, LookupError) as exc:
        raise InvalidSecretUri(f"invalid mnemonic: {exc}") from exc
    salt = b"mnemonic" + password.encode("utf-8")
    return hashlib.pbkdf2_hmac("sha512", entropy, salt, 2048)[:SEED_LENGTH]


def _chain_code(code: str) -> bytes:
    """Substrate's 32-byte chain code for one junction's text.

    A junction that Rust parses as u64 is SCALE-encoded as 8 little-endian bytes; anything else
    as a SCALE string (compact length + UTF-8). Short encodings are zero-padded to 32 bytes,
    long ones replaced by their blake2-256.
    """
    if _RUST_U64.fullmatch(code) and int(code) < _U64_LIMIT:
        encoded = int(code).to_bytes(8, "little")
    else:
        raw = code.encode("utf-8")
        encoded = _compact(len(raw)) + raw
    if len(encoded) > _JUNCTION_ID_LENGTH:
        return blake2_256(encoded)
    return encoded.ljust(_JUNCTION_ID_LENGTH, b"\x00")


def _compact(n: int) -> bytes:
    """SCALE compact encoding of a non-negative integer (string length prefixes)."""
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 0b01).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 0b10).to_bytes(4, "little")
    body = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(body) - 4) << 2) | 0b11]) + body


def _parse_path(path: str) -> list[tuple[bool, bytes]]:
    """Split a derivation path into ``(is_hard, chain_code)`` junctions."""
    junctions = []
    for match in _JUNCTION.finditer(path):
        code = match.group(1)
        hard = code.startswith("/")
        junctions.append((hard, _chain_code(code[1:] if hard else code)))
    return junctions


@dataclass(frozen=True)
class Keypair:
    """An sr25519 keypair: 32-byte public key and 64-byte secret key (scalar || nonce).

    The secret is kept out of ``repr`` so that logging a keypair does not leak it.
    """

    public_key: bytes
    secret_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.public_key) != PUBLIC_KEY_LENGTH:
            raise ValueError(
                f"public key must be {PUBLIC_KEY_LENGTH} bytes, got {len(self.public_key)}"
            )
        if len(self.secret_key) != SECRET_KEY_LENGTH:
            raise ValueError(
                f"secret key must be {SECRET_KEY_LENGTH} bytes, got {len(self.secret_key)}"
            )
        # Signing with a mismatched pair produces signatures that never verify; catch it early.
        if sr25519.public_from_secret_key(bytes(self.secret_key)) != self.public_key:
            raise ValueError("public key does not match the secret key")

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        """The keypair for a 32-byte mini-secret (Substrate's "secret seed").

        Raises InvalidSecretUri when the seed is not 32 bytes.
        """
        if len(seed) != SEED_LENGTH:
            raise InvalidSecretUri(f"seed must be {SEED_LENGTH} bytes, got {len(seed)}")
        public, secret = sr25519.pair_from_seed(bytes(seed))
        return cls(public_key=bytes(public), secret_key=bytes(secret))

    @classmethod
    def from_mnemonic(cls, phrase: str, password: str = "") -> Keypair:
        """The root (underived) keypair of a BIP39 phrase, as ``subkey`` computes it.

        Raises InvalidSecretUri for a bad phrase (see :func:`mini_secret_from_mnemonic`).
        """
        return cls.from_seed(mini_secret_from_mnemonic(phrase, password))

    @classmethod
    def from_uri(cls, suri: str) -> Keypair:
        """The keypair named by a secret URI such as ``//Alice``, ``<phrase>//stash///pw``
        or ``0x<64 hex digits>/1``.

        As in Substrate, a password is only used with a mnemonic: it is ignored with a hex seed.
        Unlike Substrate, an empty or blank URI is refused rather than read as the dev phrase.
        Raises InvalidSecretUri when the URI is empty or does not fit the grammar, the phrase is
        not a valid mnemonic, or the hex seed is not exactly 64 hex digits.
        """
        # Substrate reads "" as the bare development phrase; refuse it, so that a secret that
        # failed to reach us (empty variable, blank file) cannot turn into a public dev key.
        if not suri.strip():
            raise InvalidSecretUri("empty secret URI")
        match = _SURI.fullmatch(suri)
        if match is None:
            raise InvalidSecretUri(
                "secret URI must be <phrase or 0x-seed>[/soft|//hard]...[///password]"
            )
        phrase = match.group("phrase")
        password = match.group("password") or ""
        path = match.group("path")
        if phrase is None:
            phrase = DEV_PHRASE
        if phrase.startswith("0x"):
            if not _HEX_SEED.fullmatch(phrase[2:]):
                raise InvalidSecretUri("hex seed must be 0x followed by exactly 64 hex digits")
            root = cls.from_seed(bytes.fromhex(phrase[2:]))
        else:
            root = cls.from_mnemonic(phrase, password)
        return root.derive(path)

    @classmethod
    def generate(cls) -> tuple[str, Keypair]:
        """A new random 12-word English mnemonic and its root keypair."""
        phrase = Mnemonic("english").generate(strength=128)
        return phrase, cls.from_mnemonic(phrase)

    def derive(self, path: str) -> Keypair:
        """The keypair at derivation ``path`` (e.g. ``//stash/0``) below this one.

        Junctions are applied in order, each with its own chain code against the current key,
        as Substrate's ``Pair::derive`` does. Soft derivation picks a random secret nonce each
        time; the public key and the secret scalar are deterministic.
        Raises InvalidSecretUri when ``path`` is not a sequence of ``/soft`` or ``//hard``.
        """
        if not _PATH.fullmatch(path):
            raise InvalidSecretUri(
                f"derivation path must be a sequence of /soft or //hard junctions, got {path!r}"
            )
        public, secret = self.public_key, self.secret_key
        for hard, code in _parse_path(path):
            derive = sr25519.hard_derive_keypair if hard else sr25519.derive_keypair
            # Substrate passes the junction as the chain code and an empty index.
            _, public, secret = derive((code, public, secret), b"")
        return Keypair(public_key=bytes(public), secret_key=bytes(secret))

    def sign(self, message: bytes) -> bytes:
        """A 64-byte sr25519 signature on ``message`` (Substrate's "substrate" context)."""
        return bytes(sr25519.sign((self.public_key, self.secret_key), bytes(message)))

    def ss58_address(self, prefix: int = ss58.DEFAULT_PREFIX) -> str:
        """This account's SS58 address for network ``prefix``."""
        return ss58.encode(self.public_key, prefix)

    def x25519_secret(self) -> bytes:
        """A 32-byte X25519 secret for encrypting to this account.

        Derived with HKDF-SHA256 from the secret *scalar* only (first 32 bytes): soft-derived
        keys carry a random nonce half, and the X25519 key must be the same every time.
        Note that the matching X25519 public key cannot be computed from the account's public
        key; the account has to publish it.
        """
        return hkdf_sha256(self.secret_key[:32], _X25519_INFO, 32)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid sr25519 signature of ``message`` by ``public_key``.

    Never raises: wrong lengths, non-bytes input, signatures without the schnorrkel marker bit
    and public keys that are not valid points all yield False, because callers verify
    untrusted data and must not crash on it.
    """
    try:
        if len(public_key) != PUBLIC_KEY_LENGTH or len(signature) != SIGNATURE_LENGTH:
            return False
        return bool(sr25519.verify(bytes(signature), bytes(message), bytes(public_key)))
    except (ValueError, TypeError):
        return False


def dev_keypair(name: str) -> Keypair:
    """The well-known development keypair ``//<name>`` for one of :data:`DEV_ACCOUNTS`.

    The name is matched case-insensitively ("alice" gives //Alice). Raises ValueError for a
    name outside DEV_ACCOUNTS.
    """
    for account in DEV_ACCOUNTS:
        if account.lower() == name.lower():
            return Keypair.from_uri(f"//{account}")
    raise ValueError(f"unknown dev account {name!r}; expected one of {', '.join(DEV_ACCOUNTS)}")
