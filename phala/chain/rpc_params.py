"""Decoding JSON-RPC parameters into typed values at the edge.

Every parameter a client sends passes through one of these functions; a wrong one raises
:class:`InvalidParams` naming the parameter and what is wrong with it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from phala.core import ss58

MAX_U32 = 2**32 - 1


class InvalidParams(Exception):
    code = -32602


def positional(params: Any, count_min: int, count_max: int) -> list:
    """Parameters as a list (JSON-RPC allows an absent ``params``)."""
    if params is None:
        params = []
    if not isinstance(params, list):
        raise InvalidParams("params must be an array")
    if not count_min <= len(params) <= count_max:
        want = str(count_min) if count_min == count_max else f"{count_min} to {count_max}"
        raise InvalidParams(f"expected {want} parameters, got {len(params)}")
    return params + [None] * (count_max - len(params))


def hex_bytes(value: Any, name: str, length: int | None = None, max_len: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise InvalidParams(f"{name} must be a 0x-prefixed hex string")
    body = value[2:]
    if max_len is not None and len(body) > 2 * max_len:
        raise InvalidParams(f"{name} is longer than {max_len} bytes")
    try:
        raw = bytes.fromhex(body)
    except ValueError as exc:
        raise InvalidParams(f"{name} is not valid hex") from exc
    if length is not None and len(raw) != length:
        raise InvalidParams(f"{name} must be {length} bytes, got {len(raw)}")
    return raw


def opt_hash(value: Any, name: str) -> bytes | None:
    return None if value is None else hex_bytes(value, name, 32)


def block_number(value: Any, name: str) -> int:
    if isinstance(value, str) and value.startswith("0x"):
        try:
            value = int(value, 16)
        except ValueError as exc:
            raise InvalidParams(f"{name} is not a valid hex number") from exc
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_U32:
        raise InvalidParams(f"{name} must be a block number (0 to 2^32-1)")
    return value


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidParams(f"{name} must be true or false")
    return value


def account(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidParams(f"{name} must be an SS58 address or 0x public key")
    try:
        return ss58.parse_account(value)
    except ValueError as exc:
        raise InvalidParams(f"{name}: {exc}") from exc


def string(value: Any, name: str, max_len: int = 128) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidParams(f"{name} must be a string of at most {max_len} characters")
    return value


# ---------------------------------------------------------------------------------------------
# Results: typed values to JSON


def to_json(value: Any) -> Any:
    """Plain JSON for a decoded value: bytes as hex, large ints as strings, dataclasses as
    objects (enum variants also get their name)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return [[to_json(k), to_json(v)] for k, v in value.items()]
    if dataclasses.is_dataclass(value):
        return {f.name.rstrip("_"): to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)
