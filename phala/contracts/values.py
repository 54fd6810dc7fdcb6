"""Plain values: the only data that crosses the sandbox boundary, and their canonical bytes.

A contract's state, arguments, results, events and messages are *plain*: ``None``, ``bool``,
``int``, ``str``, ``bytes``, and ``list``, ``tuple`` and ``dict`` of plain values. Nothing
else leaves an executor: an object of a contract-defined class would run its own
``__repr__``/``__eq__``/``__iter__`` in whatever host code touched it.

Encoding (one tag byte, then the body; ``compact`` is SCALE's compact integer)::

    0x00 None        0x01 False        0x02 True
    0x03 int         compact(n) || n bytes, two's complement little-endian, shortest form
    0x04 str         compact(len) || UTF-8
    0x05 bytes       compact(len) || bytes
    0x06 list        compact(count) || values
    0x07 tuple       compact(count) || values
    0x08 dict        compact(count) || (key || value) in insertion order

Every value has exactly one encoding (the decoder refuses any other), so equal states give
equal bytes and equal hashes on every worker. Dict keys must be ``None``, ``bool``, ``int``,
``str``, ``bytes`` or tuples of those (hashable and plain). Nesting is limited to
:data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

from typing import Annotated, Any

from phala.core.codec import Codec, DecodeError, EncodeError, decode_compact, encode_compact

__all__ = [
    "MAX_DEPTH", "PLAIN", "Plain", "PlainValueError", "decode_plain", "encode_plain", "is_plain", "split_pair",
]

MAX_DEPTH = 64

_NONE, _FALSE, _TRUE, _INT, _STR, _BYTES, _LIST, _TUPLE, _DICT = range(9)
_SCALARS = (type(None), bool, int, str, bytes)


class PlainValueError(EncodeError):
    """A value that is not plain (its path inside the value is in the message)."""


def _int_bytes(v: int) -> bytes:
    if v == 0:
        return b""
    return v.to_bytes((v + (v < 0)).bit_length() // 8 + 1, "little", signed=True)


def _encode(value: Any, out: bytearray, depth: int, path: str) -> None:
    tp = type(value)  # exact types only: a subclass could override anything
    if value is None:
        out.append(_NONE)
    elif tp is bool:
        out.append(_TRUE if value else _FALSE)
    elif tp is int:
        body = _int_bytes(value)
        out.append(_INT)
        encode_compact(len(body), out)
        out += body
    elif tp is str:
        body = value.encode("utf-8", "surrogatepass")
        out.append(_STR)
        encode_compact(len(body), out)
        out += body
    elif tp is bytes:
        out.append(_BYTES)
        encode_compact(len(value), out)
        out += value
    elif tp is list or tp is tuple:
        if depth >= MAX_DEPTH:
            raise PlainValueError(f"{path or 'value'} is nested more than {MAX_DEPTH} levels deep")
        out.append(_LIST if tp is list else _TUPLE)
        encode_compact(len(value), out)
        for i, item in enumerate(value):
            _encode(item, out, depth + 1, f"{path}[{i}]")
    elif tp is dict:
        if depth >= MAX_DEPTH:
            raise PlainValueError(f"{path or 'value'} is nested more than {MAX_DEPTH} levels deep")
        out.append(_DICT)
        encode_compact(len(value), out)
        for key, item in value.items():
            if not _is_key(key):
                raise PlainValueError(f"{path or 'value'} has a key of type {type(key).__name__}")
            _encode(key, out, depth + 1, path)
            _encode(item, out, depth + 1, f"{path}[{key!r:.40}]")
    else:
        raise PlainValueError(f"{path or 'value'} is a {tp.__name__}, not a plain value")


def _is_key(key: Any) -> bool:
    tp = type(key)
    if key is None or tp in (bool, int, str, bytes):
        return True
    return tp is tuple and all(_is_key(k) for k in key)


def encode_plain(value: Any) -> bytes:
    """The canonical bytes of a plain value. Raises :class:`PlainValueError` otherwise."""
    out = bytearray()
    _encode(value, out, 0, "")
    return bytes(out)


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    if tag == _NONE:
        return None, pos
    if tag == _FALSE:
        return False, pos
    if tag == _TRUE:
        return True, pos
    if tag in (_INT, _STR, _BYTES):
        n, pos = decode_compact(data, pos)
        end = pos + n
        if end > len(data):
            raise DecodeError("plain value: input too short")
        body = data[pos:end]
        if tag == _BYTES:
            return bytes(body), end
        if tag == _STR:
            return body.decode("utf-8", "surrogatepass"), end
        value = int.from_bytes(body, "little", signed=True)
        if _int_bytes(value) != body:
            raise DecodeError("plain value: non-canonical int")
        return value, end
    if tag in (_LIST, _TUPLE, _DICT):
        if depth >= MAX_DEPTH:
            raise DecodeError(f"plain value nested more than {MAX_DEPTH} levels deep")
        count, pos = decode_compact(data, pos)
        if count > len(data) - pos:
            raise DecodeError("plain value: count exceeds the input")
        if tag == _DICT:
            result: dict = {}
            for _ in range(count):
                key, pos = _decode(data, pos, depth + 1)
                if not _is_key(key):
                    raise DecodeError(f"plain value: a dict key of type {type(key).__name__}")
                if key in result:
                    raise DecodeError("plain value: a dict key repeats")
                result[key], pos = _decode(data, pos, depth + 1)
            return result, pos
        items = []
        for _ in range(count):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return (items if tag == _LIST else tuple(items)), pos
    raise DecodeError(f"plain value: unknown tag {tag}")


def decode_plain(data: bytes) -> Any:
    """The value of canonical bytes. Raises ``DecodeError`` for anything else."""
    value, pos = _decode_prefix(data, 0)
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} trailing bytes after a plain value")
    return value


def _decode_prefix(data: bytes, pos: int) -> tuple[Any, int]:
    try:
        return _decode(data, pos, 0)
    except IndexError as exc:
        raise DecodeError("plain value: input too short") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"plain value: invalid UTF-8: {exc.reason}") from exc


def split_pair(data: bytes) -> tuple[Any, bytes]:
    """For the encoding of a 2-tuple ``(a, b)``: ``a`` decoded, and ``b``'s canonical bytes
    as they are (no decoding and encoding again). Raises ``DecodeError`` for anything else."""
    if data[:2] != bytes([_TUPLE, 2 << 2]):
        raise DecodeError("plain value: not a pair")
    first, pos = _decode_prefix(data, 2)
    second = data[pos:]
    _, end = _decode_prefix(second, 0)  # one whole value, nothing after it
    if end != len(second):
        raise DecodeError(f"{len(second) - end} trailing bytes after a plain value")
    return first, second


def is_plain(value: Any) -> bool:
    try:
        encode_plain(value)
    except PlainValueError:
        return False
    return True


PLAIN = Codec("PlainValue", lambda v, out: _encode(v, out, 0, ""), _decode_prefix, 1)
Plain = Annotated[object, PLAIN]  # a dataclass field holding a plain value
