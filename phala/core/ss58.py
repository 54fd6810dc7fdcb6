"""SS58 account addresses, encoded and decoded exactly as Substrate does.

An SS58 address is base58 (Bitcoin alphabet) of ``prefix || payload || checksum`` where

* ``prefix`` is the network identifier: one byte for identifiers 0..63, two bytes for
  64..16383 (Substrate's bit layout, see :func:`_encode_prefix`);
* ``payload`` is the 32-byte account id (the sr25519 public key);
* ``checksum`` is the first 2 bytes of ``blake2b-512(b"SS58PRE" || prefix || payload)``.

Only 32-byte account ids are supported: that is the only payload this chain puts in addresses.
"""

from __future__ import annotations

import re

import base58

from phala.core.hashing import blake2_512

__all__ = [
    "ACCOUNT_ID_LENGTH",
    "DEFAULT_PREFIX",
    "MAX_PREFIX",
    "InvalidAddress",
    "decode",
    "decode_with_prefix",
    "encode",
    "parse_account",
]

#: The generic Substrate prefix, rendering addresses that start with ``5``.
DEFAULT_PREFIX = 42
#: Two-byte prefixes carry 14 bits of identifier.
MAX_PREFIX = 16383
ACCOUNT_ID_LENGTH = 32

_CHECKSUM_PREFIX = b"SS58PRE"
# Substrate uses a 2-byte checksum for 32-byte payloads.
_CHECKSUM_LENGTH = 2
_HEX_ACCOUNT = re.compile(r"0x[0-9a-fA-F]{64}")


class InvalidAddress(ValueError):
    """An account address or hex public key could not be parsed; the message says why."""


def _checksum(prefixed_payload: bytes) -> bytes:
    return blake2_512(_CHECKSUM_PREFIX + prefixed_payload)[:_CHECKSUM_LENGTH]


def _encode_prefix(prefix: int) -> bytes:
    """Encode a network identifier the way Substrate does.

    Identifiers 0..63 are one byte. For 64..16383 Substrate writes two bytes: the first holds
    ``0b01`` in its top bits and bits 2..7 of the identifier in its low six bits; the second
    holds bits 0..1 of the identifier in its top two bits and bits 8..13 in its low six bits.
    The leading ``0b01`` is what lets a decoder tell one-byte from two-byte prefixes.
    """
    if prefix < 64:
        return bytes([prefix])
    first = ((prefix & 0b1111_1100) >> 2) | 0b0100_0000
    second = (prefix >> 8) | ((prefix & 0b11) << 6)
    return bytes([first, second])


def _decode_prefix(data: bytes) -> tuple[int, int]:
    """Return ``(prefix_length, prefix)`` from the start of decoded address bytes.

    Raises InvalidAddress when the first byte is 128 or more (reserved by SS58).
    """
    first = data[0]
    if first < 64:
        return 1, first
    if first < 128:
        # Inverse of _encode_prefix. Like Substrate, a non-canonical two-byte encoding of an
        # identifier below 64 is accepted and yields that identifier.
        second = data[1]
        lower = ((first & 0b0011_1111) << 2) | (second >> 6)
        upper = second & 0b0011_1111
        return 2, lower | (upper << 8)
    raise InvalidAddress(f"invalid SS58 prefix byte 0x{first:02x} (must be below 0x80)")


def encode(public_key: bytes, prefix: int = DEFAULT_PREFIX) -> str:
    """Render a 32-byte account id as an SS58 address for network ``prefix``.

    Raises ValueError when the key is not 32 bytes or the prefix is outside 0..16383.
    """
    if len(public_key) != ACCOUNT_ID_LENGTH:
        raise ValueError(f"account id must be {ACCOUNT_ID_LENGTH} bytes, got {len(public_key)}")
    if not 0 <= prefix <= MAX_PREFIX:
        raise ValueError(f"SS58 prefix must be in 0..{MAX_PREFIX}, got {prefix}")
    body = _encode_prefix(prefix) + bytes(public_key)
    return base58.b58encode(body + _checksum(body)).decode("ascii")


def decode_with_prefix(address: str) -> tuple[bytes, int]:
    """Parse an SS58 address into ``(account_id, prefix)``.

    Checks, in this order: the text is base58; the first byte is a valid prefix byte; the total
    length fits a 32-byte account id with a 2-byte checksum; the checksum matches.
    Raises InvalidAddress naming the first check that failed.
    """
    try:
        data = base58.b58decode(address)
    except ValueError as exc:  # includes UnicodeEncodeError for non-ASCII text
        raise InvalidAddress(f"not valid base58: {exc}") from exc
    # At least two bytes are needed to read even the longest prefix.
    if len(data) < 2:
        raise InvalidAddress(f"bad length: {len(data)} bytes decoded")
    prefix_length, prefix = _decode_prefix(data)
    expected_length = prefix_length + ACCOUNT_ID_LENGTH + _CHECKSUM_LENGTH
    if len(data) != expected_length:
        raise InvalidAddress(
            f"bad length: {len(data)} bytes decoded, expected {expected_length} "
            f"for a {ACCOUNT_ID_LENGTH}-byte account id"
        )
    body, checksum = data[:-_CHECKSUM_LENGTH], data[-_CHECKSUM_LENGTH:]
    if _checksum(body) != checksum:
        raise InvalidAddress("bad checksum")
    return bytes(body[prefix_length:]), prefix


def decode(address: str, expected_prefix: int | None = None) -> bytes:
    """Parse an SS58 address and return the 32-byte account id (public key).

    Performs the checks of :func:`decode_with_prefix`; then, if ``expected_prefix`` is given,
    checks that the address was made for that network, because accepting another network's
    address silently is how funds get sent to the wrong chain.
    Raises InvalidAddress with the reason.
    """
    account_id, prefix = decode_with_prefix(address)
    if expected_prefix is not None and prefix != expected_prefix:
        raise InvalidAddress(
            f"wrong prefix: address is for network {prefix}, expected {expected_prefix}"
        )
    return account_id


def parse_account(text: str, prefix: int | None = None) -> bytes:
    """Parse user input naming an account: an SS58 address or ``0x`` + 64 hex digits.

    Surrounding whitespace is ignored. ``prefix`` is checked only for SS58 input, because a
    bare public key carries no network. Raises InvalidAddress with the reason.
    """
    text = text.strip()
    if text[:2].lower() == "0x":
        if not _HEX_ACCOUNT.fullmatch("0x" + text[2:]):
            raise InvalidAddress("hex account id must be 0x followed by exactly 64 hex digits")
        return bytes.fromhex(text[2:])
    return decode(text, expected_prefix=prefix)
