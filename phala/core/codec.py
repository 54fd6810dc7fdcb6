"""The canonical binary codec: SCALE-compatible, typed, declared on dataclasses.

Everything that is hashed, signed or stored goes through this codec, so an encoding must be
unique: decoding refuses non-canonical compact integers, booleans other than 0/1, trailing
bytes, invalid UTF-8 and unsorted map keys.

Types are declared with ordinary annotations. Integers carry their width through
``Annotated``; the aliases below cover what the protocol uses::

    @dataclass(frozen=True, slots=True)
    class Transfer:
        dest: AccountId          # [u8; 32]
        value: Compact           # compact-encoded unsigned integer
        memo: bytes              # Vec<u8>
        note: str | None         # Option<String>

Mapping from Python annotations to SCALE:

=====================  ==========================================
``u8`` … ``u128``      little-endian fixed-width unsigned integers
``i32``, ``i64``       little-endian two's complement
``Compact``            compact (variable-length) unsigned integer
``bool``               one byte, 0 or 1
``bytes``              ``Vec<u8>``: compact length, then the bytes
``str``                UTF-8 bytes as ``Vec<u8>``
``H256`` / ``Fixed(n)`` exactly *n* bytes, no length prefix
``list[T]``            ``Vec<T>``
``tuple[A, B]``        the fields one after the other
``T | None``           ``Option<T>`` (Option<bool> uses one byte, as in SCALE)
``dict[K, V]``         ``BTreeMap<K, V>``: sorted by key, keys unique
a dataclass            its fields in declaration order (a struct)
a ``ScaleEnum``        one index byte per level, then the variant's fields
=====================  ==========================================

Enums are class hierarchies: a subclass of :class:`ScaleEnum` declares a variant with
``class Mortal(Era, index=1)``; a variant that is itself a ``ScaleEnum`` nests (a runtime call
is pallet index, then call index, then arguments).
"""

from __future__ import annotations

import dataclasses
import struct
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from .compact import CodecError as CodecError  # the codec's errors and compact integers live
from .compact import DecodeError as DecodeError  # there, with no dependency, for the contract VM
from .compact import EncodeError as EncodeError
from .compact import decode_compact as decode_compact
from .compact import encode_compact as encode_compact

T = TypeVar("T")

Encoder = Callable[[Any, bytearray], None]
Decoder = Callable[[bytes, int], tuple[Any, int]]


class Codec:
    """An encoder and a decoder for one type, with the smallest size of an encoding."""

    __slots__ = ("name", "encode_to", "decode_from", "min_size")

    def __init__(self, name: str, encode_to: Encoder, decode_from: Decoder, min_size: int):
        self.name = name
        self.encode_to = encode_to
        self.decode_from = decode_from
        self.min_size = min_size

    def encode(self, value: Any) -> bytes:
        out = bytearray()
        try:
            self.encode_to(value, out)
        except CodecError:
            raise
        except (struct.error, OverflowError, TypeError, AttributeError, KeyError) as exc:
            raise EncodeError(f"cannot encode {value!r:.80} as {self.name}: {exc}") from exc
        return bytes(out)

    def decode(self, data: bytes) -> Any:
        """Decode the whole of ``data``; trailing bytes are an error."""
        value, pos = self.decode_prefix(data, 0)
        if pos != len(data):
            raise DecodeError(f"{len(data) - pos} trailing bytes after {self.name}")
        return value

    def decode_prefix(self, data: bytes, pos: int = 0) -> tuple[Any, int]:
        try:
            return self.decode_from(data, pos)
        except CodecError:
            raise
        except (struct.error, IndexError) as exc:
            raise DecodeError(f"input too short for {self.name}") from exc
        except RecursionError as exc:
            raise DecodeError(f"{self.name} is nested too deeply") from exc
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"invalid {self.name}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Codec({self.name})"


# ---------------------------------------------------------------------------------------------
# Primitives


def _fixed_int(name: str, fmt: str) -> Codec:
    packer = struct.Struct(fmt)
    pack, unpack_from, size = packer.pack, packer.unpack_from, packer.size

    def enc(v: int, out: bytearray) -> None:
        if type(v) is bool:
            raise EncodeError(f"{name} expects an int, got bool")
        out += pack(v)

    def dec(data: bytes, pos: int) -> tuple[int, int]:
        return unpack_from(data, pos)[0], pos + size

    return Codec(name, enc, dec, size)


def _wide_uint(name: str, size: int) -> Codec:
    limit = 1 << (8 * size)

    def enc(v: int, out: bytearray) -> None:
        if type(v) is not int or not 0 <= v < limit:
            raise EncodeError(f"{v!r:.40} is not a {name}")
        out += v.to_bytes(size, "little")

    def dec(data: bytes, pos: int) -> tuple[int, int]:
        end = pos + size
        if end > len(data):
            raise DecodeError(f"input too short for {name}")
        return int.from_bytes(data[pos:end], "little"), end

    return Codec(name, enc, dec, size)


U8 = _fixed_int("u8", "<B")
U16 = _fixed_int("u16", "<H")
U32 = _fixed_int("u32", "<I")
U64 = _fixed_int("u64", "<Q")
U128 = _wide_uint("u128", 16)
U256 = _wide_uint("u256", 32)
I32 = _fixed_int("i32", "<i")
I64 = _fixed_int("i64", "<q")



def _enc_compact(v: int, out: bytearray) -> None:
    if type(v) is not int:
        raise EncodeError(f"compact expects an int, got {type(v).__name__}")
    encode_compact(v, out)


COMPACT = Codec("Compact", _enc_compact, decode_compact, 1)


def compact_bounded(bits: int) -> Codec:
    """``Compact<uN>``: a compact integer that must fit in ``bits`` bits (in both directions)."""
    limit = 1 << bits

    def enc(v: int, out: bytearray) -> None:
        if type(v) is not int or not 0 <= v < limit:
            raise EncodeError(f"{v!r:.40} does not fit Compact<u{bits}>")
        encode_compact(v, out)

    def dec(data: bytes, pos: int) -> tuple[int, int]:
        v, pos = decode_compact(data, pos)
        if v >= limit:
            raise DecodeError(f"compact value does not fit u{bits}")
        return v, pos

    return Codec(f"Compact<u{bits}>", enc, dec, 1)


COMPACT_U32 = compact_bounded(32)
COMPACT_U128 = compact_bounded(128)


def _enc_bool(v: bool, out: bytearray) -> None:
    if type(v) is not bool:
        raise EncodeError(f"bool expected, got {type(v).__name__}")
    out.append(1 if v else 0)


def _dec_bool(data: bytes, pos: int) -> tuple[bool, int]:
    b = data[pos]
    if b > 1:
        raise DecodeError(f"invalid bool byte {b}")
    return b == 1, pos + 1


BOOL = Codec("bool", _enc_bool, _dec_bool, 1)


def _enc_bytes(v: bytes, out: bytearray) -> None:
    if not isinstance(v, bytes | bytearray):
        raise EncodeError(f"bytes expected, got {type(v).__name__}")
    encode_compact(len(v), out)
    out += v


def _dec_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = decode_compact(data, pos)
    end = pos + n
    if end > len(data):
        raise DecodeError(f"length {n} exceeds the input")
    return bytes(data[pos:end]), end


BYTES = Codec("Vec<u8>", _enc_bytes, _dec_bytes, 1)


def _enc_str(v: str, out: bytearray) -> None:
    if type(v) is not str:
        raise EncodeError(f"str expected, got {type(v).__name__}")
    try:
        raw = v.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 encoding
        raise EncodeError("string is not encodable as UTF-8") from exc
    encode_compact(len(raw), out)
    out += raw


def _dec_str(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _dec_bytes(data, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise DecodeError("string is not valid UTF-8") from exc


STR = Codec("String", _enc_str, _dec_str, 1)


def _enc_unit(v: Any, out: bytearray) -> None:
    if v is not None:
        raise EncodeError("() expects None")


UNIT = Codec("()", _enc_unit, lambda data, pos: (None, pos), 0)


_fixed_cache: dict[int, Codec] = {}


def Fixed(n: int) -> Codec:  # noqa: N802 - reads as a type in annotations
    """``[u8; n]``: exactly ``n`` bytes, no length prefix."""
    if n in _fixed_cache:
        return _fixed_cache[n]

    def enc(v: bytes, out: bytearray) -> None:
        if len(v) != n or not isinstance(v, bytes | bytearray):
            raise EncodeError(f"expected {n} bytes, got {len(v)}")
        out += v

    def dec(data: bytes, pos: int) -> tuple[bytes, int]:
        end = pos + n
        if end > len(data):
            raise DecodeError(f"input too short for [u8; {n}]")
        return bytes(data[pos:end]), end

    codec = _fixed_cache[n] = Codec(f"[u8; {n}]", enc, dec, n)
    return codec


# ---------------------------------------------------------------------------------------------
# Combinators


def vec(item: Codec) -> Codec:
    ienc, idec, isize = item.encode_to, item.decode_from, item.min_size

    def enc(v: list, out: bytearray) -> None:
        if not isinstance(v, list | tuple):
            raise EncodeError(f"list expected, got {type(v).__name__}")
        encode_compact(len(v), out)
        for x in v:
            ienc(x, out)

    def dec(data: bytes, pos: int) -> tuple[list, int]:
        n, pos = decode_compact(data, pos)
        # Refuse a length the input cannot hold before allocating anything for it.
        # (Zero-sized items are held to one per remaining byte, which SCALE does not
        # require, so that no input makes the decoder loop without consuming anything.)
        if n * max(isize, 1) > len(data) - pos:
            raise DecodeError(f"vector length {n} exceeds the input")
        items = []
        append = items.append
        for _ in range(n):
            x, pos = idec(data, pos)
            append(x)
        return items, pos

    return Codec(f"Vec<{item.name}>", enc, dec, 1)


def option(item: Codec) -> Codec:
    ienc, idec = item.encode_to, item.decode_from
    if item is BOOL:

        def enc_b(v: bool | None, out: bytearray) -> None:
            if v is not None and type(v) is not bool:
                raise EncodeError(f"Option<bool> expects a bool or None, got {type(v).__name__}")
            out.append(0 if v is None else (1 if v else 2))

        def dec_b(data: bytes, pos: int) -> tuple[bool | None, int]:
            b = data[pos]
            if b > 2:
                raise DecodeError(f"invalid Option<bool> byte {b}")
            return (None, True, False)[b], pos + 1

        return Codec("Option<bool>", enc_b, dec_b, 1)

    def enc(v: Any, out: bytearray) -> None:
        if v is None:
            out.append(0)
        else:
            out.append(1)
            ienc(v, out)

    def dec(data: bytes, pos: int) -> tuple[Any, int]:
        tag = data[pos]
        if tag == 0:
            return None, pos + 1
        if tag != 1:
            raise DecodeError(f"invalid Option tag {tag}")
        return idec(data, pos + 1)

    return Codec(f"Option<{item.name}>", enc, dec, 1)


def tuple_of(*items: Codec) -> Codec:
    encs = [c.encode_to for c in items]
    decs = [c.decode_from for c in items]
    count = len(items)

    def enc(v: tuple, out: bytearray) -> None:
        if len(v) != count:
            raise EncodeError(f"expected a tuple of {count}, got {len(v)}")
        for e, x in zip(encs, v, strict=True):
            e(x, out)

    def dec(data: bytes, pos: int) -> tuple[tuple, int]:
        values = []
        for d in decs:
            x, pos = d(data, pos)
            values.append(x)
        return tuple(values), pos

    name = "(" + ", ".join(c.name for c in items) + ")"
    return Codec(name, enc, dec, sum(c.min_size for c in items))


def btree_map(key: Codec, value: Codec) -> Codec:
    kenc, kdec, venc, vdec = key.encode_to, key.decode_from, value.encode_to, value.decode_from

    def enc(v: dict, out: bytearray) -> None:
        if not isinstance(v, dict):
            raise EncodeError(f"dict expected, got {type(v).__name__}")
        encode_compact(len(v), out)
        for k in sorted(v):
            kenc(k, out)
            venc(v[k], out)

    def dec(data: bytes, pos: int) -> tuple[dict, int]:
        n, pos = decode_compact(data, pos)
        if n > len(data) - pos:
            raise DecodeError(f"map length {n} exceeds the input")
        result: dict = {}
        last: Any = None
        for i in range(n):
            k, pos = kdec(data, pos)
            if i and not last < k:
                raise DecodeError("map keys are not strictly increasing")
            last = k
            result[k], pos = vdec(data, pos)
        return result, pos

    return Codec(f"BTreeMap<{key.name}, {value.name}>", enc, dec, 1)


# ---------------------------------------------------------------------------------------------
# Declarations: annotations -> codecs

Compact = Annotated[int, COMPACT]
CompactU32 = Annotated[int, COMPACT_U32]
Balance = Annotated[int, COMPACT_U128]  # amounts in calls: Compact<u128>
u8 = Annotated[int, U8]
u16 = Annotated[int, U16]
u32 = Annotated[int, U32]
u64 = Annotated[int, U64]
u128 = Annotated[int, U128]
u256 = Annotated[int, U256]
i32 = Annotated[int, I32]
i64 = Annotated[int, I64]
H256 = Annotated[bytes, Fixed(32)]
H512 = Annotated[bytes, Fixed(64)]
AccountId = Annotated[bytes, Fixed(32)]


class ScaleEnum:
    """Base of enums. Subclass once for the enum, then once per variant with ``index=``.

    A variant is a dataclass (its fields are the payload) or, to nest, another enum.
    """

    __variants__: dict[int, type] = {}
    __variant_index__: int | None = None

    def __init_subclass__(cls, index: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__variants__ = {}
        cls.__variant_index__ = index
        if index is None:
            return
        if not 0 <= index < 256:
            raise TypeError(f"variant index {index} out of range")
        parent = next(b for b in cls.__bases__ if issubclass(b, ScaleEnum))
        if index in parent.__variants__:
            other = parent.__variants__[index].__name__
            raise TypeError(f"{parent.__name__}: index {index} used by {other} and {cls.__name__}")
        parent.__variants__[index] = cls


_codec_cache: dict[Any, Codec] = {}


def register(tp: Any, codec: Codec) -> None:
    """Give a Python type a hand-written codec (for layouts a dataclass cannot express)."""
    _codec_cache[tp] = codec


def codec_of(tp: Any) -> Codec:
    """The codec for a type annotation (cached)."""
    try:
        return _codec_cache[tp]
    except (KeyError, TypeError):
        pass
    codec = _build(tp)
    try:
        _codec_cache[tp] = codec
    except TypeError:
        pass
    return codec


def _build(tp: Any) -> Codec:
    if isinstance(tp, Codec):
        return tp
    origin = get_origin(tp)
    if origin is Annotated:
        for meta in get_args(tp)[1:]:
            if isinstance(meta, Codec):
                return meta
        return codec_of(get_args(tp)[0])
    if tp is bool:
        return BOOL
    if tp is bytes:
        return BYTES
    if tp is str:
        return STR
    if tp is type(None) or tp is None:
        return UNIT
    if tp is int:
        raise TypeError("plain int has no encoding: use u8 … u128 or Compact")
    if origin is list:
        return vec(codec_of(get_args(tp)[0]))
    if origin is tuple:
        return tuple_of(*(codec_of(a) for a in get_args(tp)))
    if origin is dict:
        k, v = get_args(tp)
        return btree_map(codec_of(k), codec_of(v))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) != 1 or len(get_args(tp)) != 2:
            raise TypeError(f"only `T | None` unions are encodable, got {tp}")
        return option(codec_of(args[0]))
    if isinstance(tp, type) and issubclass(tp, ScaleEnum):
        # An enum (root or nested) resolves its variants when it first encodes or decodes,
        # so a storage item may name an enum before every pallet has declared its variants.
        if tp.__variants__ or not dataclasses.is_dataclass(tp):
            return _enum_codec(tp)
    if dataclasses.is_dataclass(tp):
        return _struct_codec(tp)
    raise TypeError(f"no codec for {tp!r}")


def _struct_codec(cls: type) -> Codec:
    hints = get_type_hints(cls, include_extras=True)
    fields = [f.name for f in dataclasses.fields(cls)]
    codecs = [codec_of(hints[name]) for name in fields]
    pairs = list(zip(fields, [c.encode_to for c in codecs], strict=True))
    decs = [c.decode_from for c in codecs]

    def enc(v: Any, out: bytearray) -> None:
        if not isinstance(v, cls):
            raise EncodeError(f"{cls.__name__} expected, got {type(v).__name__}")
        for name, e in pairs:
            e(getattr(v, name), out)

    def dec(data: bytes, pos: int) -> tuple[Any, int]:
        values = []
        append = values.append
        for d in decs:
            x, pos = d(data, pos)
            append(x)
        return cls(*values), pos

    return Codec(cls.__name__, enc, dec, sum(c.min_size for c in codecs))


def _enum_codec(base: type) -> Codec:
    # Encoders per concrete class are built lazily: variants may be declared after first use.
    encoders: dict[type, tuple[bytes, Encoder]] = {}

    def leaf_prefix(cls: type) -> tuple[bytes, Encoder]:
        path = []
        c = cls
        while c is not base:
            if c.__variant_index__ is None or not issubclass(c, base):
                raise EncodeError(f"{cls.__name__} is not a variant of {base.__name__}")
            path.append(c.__variant_index__)
            c = next(b for b in c.__bases__ if issubclass(b, ScaleEnum))
        return bytes(reversed(path)), _struct_codec(cls).encode_to

    def enc(v: Any, out: bytearray) -> None:
        cls = type(v)
        entry = encoders.get(cls)
        if entry is None:
            entry = encoders[cls] = leaf_prefix(cls)
        out += entry[0]
        entry[1](v, out)

    def dec(data: bytes, pos: int) -> tuple[Any, int]:
        cls = base
        while True:
            idx = data[pos]
            pos += 1
            nxt = cls.__variants__.get(idx)
            if nxt is None:
                raise DecodeError(f"unknown {cls.__name__} variant {idx}")
            cls = nxt
            if not cls.__variants__:
                return codec_of(cls).decode_from(data, pos)

    return Codec(base.__name__, enc, dec, 1)


# ---------------------------------------------------------------------------------------------
# Entry points


def encode(value: Any, tp: Any = None) -> bytes:
    """Encode ``value`` as ``tp`` (default: its own dataclass or enum type)."""
    if tp is None:
        tp = type(value)
        if issubclass(tp, ScaleEnum):
            tp = _enum_root(tp)
    return codec_of(tp).encode(value)


def decode(tp: type[T] | Any, data: bytes) -> T:
    """Decode all of ``data`` as ``tp``; raises :class:`DecodeError` with the reason."""
    return codec_of(tp).decode(data)


def _enum_root(cls: type) -> type:
    root = cls
    for c in cls.__mro__:
        if isinstance(c, type) and issubclass(c, ScaleEnum) and c is not ScaleEnum:
            if c.__variant_index__ is None:
                root = c
    return root
