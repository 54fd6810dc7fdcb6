"""The bytes of a call crossing the VM boundary: a request in, an outcome out.

A fixed layout, packed and unpacked with :mod:`struct` and slicing: the guest pays fuel for
every instruction of it, and the general plain-value codec cost a call more than a
third of its own work. Runs inside the VM (the guest packs outcomes) and on the host (the
executor packs requests and unpacks outcomes, strictly: what the guest hands over is not
trusted, so every length is checked and nothing may follow the last field).

Layout (integers little-endian; ``blob`` is a u32 length and the bytes; ``blobs`` a u32
count and that many blobs):

* request: ``kind u8 · block u32 · timestamp u64 · has_sender u8`` then the blobs
  ``method`` (UTF-8), ``args`` (an encoded plain list), ``sender`` (empty when
  ``has_sender`` is 0), ``contract``, ``seed``;
* outcome: ``status u8`` then the blobs ``message`` (UTF-8) and ``value``, then ``blobs``
  of events, messages, keys written, their values, keys removed.
"""

from __future__ import annotations

import struct

_HEAD = struct.Struct("<BIQB")
_U32 = struct.Struct("<I")


class WireError(ValueError):
    """Bytes that are not a request or an outcome."""


def _blob(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def pack_request(kind: int, method: str, args: bytes, sender: bytes | None, block: int, timestamp: int,
                 contract: bytes, seed: bytes) -> bytes:
    return b"".join((
        _HEAD.pack(kind, block, timestamp, sender is not None), _blob(method.encode()), _blob(args),
        _blob(sender or b""), _blob(contract), _blob(seed),
    ))


class _Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def blob(self) -> bytes:
        end = self.pos + 4
        if end > len(self.data):
            raise WireError("input too short")
        (size,) = _U32.unpack_from(self.data, self.pos)
        stop = end + size
        if stop > len(self.data):
            raise WireError("a field is longer than the input")
        self.pos = stop
        return self.data[end:stop]

    def blobs(self) -> list[bytes]:
        end = self.pos + 4
        if end > len(self.data):
            raise WireError("input too short")
        (count,) = _U32.unpack_from(self.data, self.pos)
        if count > (len(self.data) - end) // 4:
            raise WireError("a count exceeds the input")
        self.pos = end
        return [self.blob() for _ in range(count)]

    def done(self) -> None:
        if self.pos != len(self.data):
            raise WireError(f"{len(self.data) - self.pos} trailing bytes")


def unpack_request(data: bytes) -> tuple[int, str, bytes, bytes | None, int, int, bytes, bytes]:
    """``(kind, method, args, sender, block, timestamp, contract, seed)``."""
    if len(data) < _HEAD.size:
        raise WireError("input too short")
    kind, block, timestamp, has_sender = _HEAD.unpack_from(data)
    reader = _Reader(data, _HEAD.size)
    method, args, sender, contract, seed = (reader.blob() for _ in range(5))
    reader.done()
    return kind, method.decode(), args, sender if has_sender else None, block, timestamp, contract, seed


def pack_outcome(status: int, message: str, value: bytes, events: list[bytes], messages: list[bytes],
                 keys: list[bytes], values: list[bytes], removed: list[bytes]) -> bytes:
    parts = [bytes([status]), _blob(message.encode("utf-8", "replace")), _blob(value)]
    for items in (events, messages, keys, values, removed):
        parts.append(_U32.pack(len(items)))
        parts.extend(_blob(item) for item in items)
    return b"".join(parts)


def unpack_outcome(data: bytes) -> tuple[int, str, bytes, list[bytes], list[bytes], list[bytes], list[bytes],
                                         list[bytes]]:
    """``(status, message, value, events, messages, keys, values, removed)``; raises
    :class:`WireError` for anything else."""
    if not data:
        raise WireError("input too short")
    reader = _Reader(data, 1)
    message, value = reader.blob(), reader.blob()
    lists = [reader.blobs() for _ in range(5)]
    reader.done()
    try:
        text = message.decode()
    except UnicodeDecodeError as exc:
        raise WireError("the message is not UTF-8") from exc
    return (data[0], text, value, *lists)  # type: ignore[return-value]
