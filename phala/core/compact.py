"""SCALE's compact integers and the codec's error types, with no dependency at all.

Kept apart from :mod:`phala.core.codec` because the contract runtime bundles this module
into the WebAssembly VM (plain values use compact lengths), where nothing else of
``phala.core`` is.
"""

from __future__ import annotations


class CodecError(ValueError):
    """Base of codec errors."""


class EncodeError(CodecError):
    """A value does not fit its declared type."""


class DecodeError(CodecError):
    """Bytes are not the canonical encoding of the expected type."""


_MAX_COMPACT = 1 << (8 * 67)


def encode_compact(v: int, out: bytearray) -> None:
    """Append the compact encoding of a non-negative integer."""
    if v < 64:
        if v < 0:
            raise EncodeError(f"compact integers are unsigned, got {v}")
        out.append(v << 2)
    elif v < 1 << 14:
        out += ((v << 2) | 1).to_bytes(2, "little")
    elif v < 1 << 30:
        out += ((v << 2) | 2).to_bytes(4, "little")
    else:
        if v >= _MAX_COMPACT:
            raise EncodeError("compact integer too large")
        n = max(4, (v.bit_length() + 7) // 8)
        out.append(((n - 4) << 2) | 3)
        out += v.to_bytes(n, "little")


def decode_compact(data: bytes, pos: int) -> tuple[int, int]:
    """Read a compact integer, refusing any encoding that is not the shortest one."""
    first = data[pos]
    mode = first & 3
    if mode == 0:
        return first >> 2, pos + 1
    if mode == 1:
        if pos + 2 > len(data):
            raise DecodeError("input too short for compact")
        v = (first | (data[pos + 1] << 8)) >> 2
        if v < 64:
            raise DecodeError("non-canonical compact integer")
        return v, pos + 2
    if mode == 2:
        if pos + 4 > len(data):
            raise DecodeError("input too short for compact")
        v = int.from_bytes(data[pos : pos + 4], "little") >> 2
        if v < 1 << 14:
            raise DecodeError("non-canonical compact integer")
        return v, pos + 4
    n = (first >> 2) + 4
    end = pos + 1 + n
    if end > len(data):
        raise DecodeError("input too short for compact")
    v = int.from_bytes(data[pos + 1 : end], "little")
    if v < 1 << 30 or (n > 4 and v < 1 << (8 * (n - 1))):
        raise DecodeError("non-canonical compact integer")
    return v, end
