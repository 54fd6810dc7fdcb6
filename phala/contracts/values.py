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

from typing import Any

from phala.core.compact import DecodeError, EncodeError, decode_compact, encode_compact

__all__ = [
    "MAX_DEPTH", "DecodeError", "PlainValueError", "decode_plain", "encode_plain", "is_plain",
    "Raw", "validate_plain", "decode_record", "split_event", "split_message",
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


class Raw(bytes):
    """Bytes that already are the canonical encoding of a plain value: :func:`encode_plain`
    splices them in as they are. Lets the host answer with values a contract produced
    without decoding them (which would build the contract's dicts on the host)."""


class _Bad(Exception):
    """A value that is not plain, found while encoding: ``what`` happened at the path whose
    parts (innermost first) are collected on the way out. Paths are only ever built for the
    error: formatting one for every element was most of what encoding cost."""

    def __init__(self, what: str):
        self.what = what
        self.parts: list[str] = []

    def error(self) -> PlainValueError:
        path = "".join(reversed(self.parts))
        return PlainValueError(f"{path or 'value'} {self.what}")


def _encode(value: Any, out: bytearray, depth: int) -> None:
    tp = type(value)  # exact types only: a subclass could override anything
    if tp is Raw:
        out += value
    elif value is None:
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
            raise _Bad(f"is nested more than {MAX_DEPTH} levels deep")
        out.append(_LIST if tp is list else _TUPLE)
        encode_compact(len(value), out)
        i = 0
        try:
            for item in value:
                _encode(item, out, depth + 1)
                i += 1
        except _Bad as bad:
            bad.parts.append(f"[{i}]")
            raise
    elif tp is dict:
        if depth >= MAX_DEPTH:
            raise _Bad(f"is nested more than {MAX_DEPTH} levels deep")
        out.append(_DICT)
        encode_compact(len(value), out)
        for key, item in value.items():
            if not _is_key(key):
                raise _Bad(f"has a key of type {type(key).__name__}")
            _encode(key, out, depth + 1)
            try:
                _encode(item, out, depth + 1)
            except _Bad as bad:
                bad.parts.append(f"[{key!r:.40}]")
                raise
    else:
        raise _Bad(f"is a {tp.__name__}, not a plain value")


def _is_key(key: Any) -> bool:
    tp = type(key)
    if key is None or tp in (bool, int, str, bytes):
        return True
    return tp is tuple and all(_is_key(k) for k in key)


def encode_plain(value: Any) -> bytes:
    """The canonical bytes of a plain value. Raises :class:`PlainValueError` otherwise."""
    tp = type(value)
    if (tp is bytes or tp is str) and len(value) < 64:  # the common keys and fields, directly
        body = value if tp is bytes else value.encode("utf-8", "surrogatepass")
        if len(body) < 64:
            return bytes((_BYTES if tp is bytes else _STR, len(body) << 2)) + body
    elif tp is int and -(1 << 63) <= value < 1 << 63:
        body = _int_bytes(value)
        return bytes((_INT, len(body) << 2)) + body
    out = bytearray()
    try:
        _encode(value, out, 0)
    except _Bad as bad:
        raise bad.error() from None
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
    if len(data) >= 2 and data[0] in (_INT, _BYTES, _STR) and data[1] & 3 == 0 and (data[1] >> 2) + 2 == len(data):
        body = data[2:]  # a small scalar (the common field or entry): read directly
        tag = data[0]
        if tag == _BYTES:
            return body
        if tag == _STR:
            try:
                return body.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"plain value: invalid UTF-8: {exc.reason}") from exc
        value = int.from_bytes(body, "little", signed=True)
        if _int_bytes(value) != body:
            raise DecodeError("plain value: non-canonical int")
        return value
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


def is_plain(value: Any) -> bool:
    try:
        encode_plain(value)
    except PlainValueError:
        return False
    return True



def validate_plain(data: bytes, max_items: int = 1 << 20) -> None:
    """Check that ``data`` is one canonical plain value, building no objects: no dict is
    made (so no attacker-chosen keys are hashed) and at most ``max_items`` values are
    visited. Raises ``DecodeError``. For bytes the host keeps but does not need to read
    (events, return values): their readers decode them. Dict keys are not checked for
    repeats here (that would hash them); :func:`decode_plain` refuses repeats."""
    end = _skip(data, 0, 0, [max_items])
    if end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes after a plain value")


def _skip(data: bytes, pos: int, depth: int, budget: list[int]) -> int:
    budget[0] -= 1
    if budget[0] < 0:
        raise DecodeError("plain value: too many items")
    if pos >= len(data):
        raise DecodeError("plain value: input too short")
    tag = data[pos]
    pos += 1
    if tag <= _TRUE:
        return pos
    if tag in (_INT, _STR, _BYTES):
        n, pos = decode_compact(data, pos)
        end = pos + n
        if end > len(data):
            raise DecodeError("plain value: input too short")
        body = data[pos:end]
        if tag == _INT and _int_bytes(int.from_bytes(body, "little", signed=True)) != body:
            raise DecodeError("plain value: non-canonical int")
        if tag == _STR:
            try:
                body.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"plain value: invalid UTF-8: {exc.reason}") from exc
        return end
    if tag in (_LIST, _TUPLE, _DICT):
        if depth >= MAX_DEPTH:
            raise DecodeError(f"plain value nested more than {MAX_DEPTH} levels deep")
        count, pos = decode_compact(data, pos)
        if count > len(data) - pos:
            raise DecodeError("plain value: count exceeds the input")
        for _ in range(count * 2 if tag == _DICT else count):
            pos = _skip(data, pos, depth + 1, budget)
        return pos
    raise DecodeError(f"plain value: unknown tag {tag}")


_SHAPE_TAGS = {"i": _INT, "s": _STR, "b": _BYTES}


def decode_record(data: bytes, shape: str) -> list:
    """A plain list of a fixed shape, read strictly: ``shape`` names each element, ``i``
    an int, ``s`` a str, ``b`` bytes, ``L`` a list of bytes, ``N`` bytes or None. No other
    value is accepted (so no dict is ever built). Raises ``DecodeError``."""
    try:
        if data[:1] != bytes([_LIST]):
            raise DecodeError("not a list")
        count, pos = decode_compact(data, 1)
        if count != len(shape):
            raise DecodeError(f"{count} elements, not {len(shape)}")
        out = []
        for kind in shape:
            tag = data[pos]
            if kind == "L":
                if tag != _LIST:
                    raise DecodeError("expected a list of bytes")
                n, pos = decode_compact(data, pos + 1)
                if n > len(data) - pos:
                    raise DecodeError("count exceeds the input")
                items = []
                for _ in range(n):
                    if data[pos] != _BYTES:
                        raise DecodeError("expected bytes in the list")
                    item, pos = _decode(data, pos, 0)
                    items.append(item)
                out.append(items)
                continue
            if kind == "N" and tag == _NONE:
                out.append(None)
                pos += 1
                continue
            if tag != _SHAPE_TAGS["b" if kind == "N" else kind]:
                raise DecodeError(f"element {len(out)} has the wrong type")
            value, pos = _decode(data, pos, 0)
            out.append(value)
    except IndexError as exc:
        raise DecodeError("input too short") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8: {exc.reason}") from exc
    if pos != len(data):
        raise DecodeError(f"{len(data) - pos} trailing bytes")
    return out


def _pair_start(data: bytes) -> int:
    """Where the first part of an encoded 2-tuple starts; raises ``DecodeError`` otherwise."""
    if data[:2] != bytes([_TUPLE, 2 << 2]):
        raise DecodeError("plain value: not a pair")
    return 2


def split_event(data: bytes, max_accounts: int = 16) -> tuple[list[bytes], bytes]:
    """An encoded event pair ``(accounts, event)``: the accounts (at most ``max_accounts``
    32-byte ids) and the event's canonical bytes, checked but not decoded."""
    pos = _pair_start(data)
    try:
        if data[pos] != _LIST:
            raise DecodeError("an event's accounts must be a list")
        n, pos = decode_compact(data, pos + 1)
        if n > max_accounts:
            raise DecodeError(f"an event concerns at most {max_accounts} accounts")
        accounts = []
        for _ in range(n):
            if data[pos] != _BYTES:
                raise DecodeError("an event's accounts must be 32-byte ids")
            account, pos = _decode(data, pos, 0)
            if len(account) != 32:
                raise DecodeError("an event's accounts must be 32-byte ids")
            accounts.append(account)
    except IndexError as exc:
        raise DecodeError("input too short") from exc
    event = data[pos:]
    validate_plain(event)
    return accounts, event


def split_message(data: bytes) -> tuple[bytes | str, bytes]:
    """An encoded message pair ``(to, message)``: the target (a 32-byte contract id or a
    pallet name of at most 32 characters) and the message's canonical bytes, checked but
    not decoded."""
    pos = _pair_start(data)
    try:
        if data[pos] not in (_BYTES, _STR):
            raise DecodeError("a message goes to a contract id or a pallet name")
        to, pos = _decode(data, pos, 0)
    except IndexError as exc:
        raise DecodeError("input too short") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8: {exc.reason}") from exc
    if (type(to) is bytes and len(to) != 32) or (type(to) is str and len(to) > 32):
        raise DecodeError("a message goes to a 32-byte contract id or a pallet name")
    message = data[pos:]
    validate_plain(message)
    return to, message
