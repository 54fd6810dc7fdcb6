"""Typed reads of the chain over :class:`~phala.client.rpc.RpcClient`.

Whatever can be checked is checked: a header's hash is rebuilt from its fields, a block's
extrinsics must match the header's extrinsics root, and :func:`verified_storage` reads
state only with a Merkle proof against the state root of a header whose hash it checked.
A node that sends data failing a check gets a :class:`VerificationError`.

What a proof does *not* show is that the header is finalized: pass ``at`` (a block hash
you trust) to pin the block, or follow finality with :class:`phala.core.light_client.LightClient`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phala.chain.runtime import system
from phala.chain.runtime.executive import RuntimeVersion
from phala.core import ss58
from phala.core.codec import DecodeError, decode, encode
from phala.core.trie import ProofError, verify_proof
from phala.core.types import (
    Block,
    BlockChanges,
    DigestItem,
    Header,
    Justification,
    SignedBlock,
    extrinsics_root,
)

from .rpc import RpcClient

__all__ = [
    "ChainEvent",
    "ChainProperties",
    "ProvenStorage",
    "VerificationError",
    "account_id",
    "account_info",
    "account_key",
    "decode_account_info",
    "block_hash",
    "events",
    "finalized_head",
    "get_block",
    "get_header",
    "get_storage",
    "header_from_json",
    "header_to_json",
    "hex_bytes",
    "next_index",
    "properties",
    "read_proof",
    "runtime_version",
    "storage_changes",
    "verified_storage",
]

MAX_CHANGES_RANGE = 1000


class VerificationError(Exception):
    """The node sent chain data that does not decode, or does not match its commitments."""


# ---------------------------------------------------------------------------------------------
# JSON helpers


def hex_bytes(value: Any, name: str, length: int | None = None) -> bytes:
    """Bytes from a ``0x`` hex string; raises :class:`VerificationError` naming ``name``."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise VerificationError(f"{name} is not a 0x hex string")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise VerificationError(f"{name} is not valid hex") from exc
    if length is not None and len(raw) != length:
        raise VerificationError(f"{name} must be {length} bytes, got {len(raw)}")
    return raw


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def _int(value: Any, name: str) -> int:
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return int(value, 16)
        except ValueError as exc:
            raise VerificationError(f"{name} is not a hex number") from exc
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise VerificationError(f"{name} is not a number")


def account_id(account: bytes | str) -> bytes:
    """A 32-byte account id from bytes, an SS58 address (any prefix) or ``0x`` + 64 hex."""
    if isinstance(account, bytes | bytearray):
        if len(account) != ss58.ACCOUNT_ID_LENGTH:
            raise ss58.InvalidAddress(f"account id must be 32 bytes, got {len(account)}")
        return bytes(account)
    return ss58.parse_account(account)


def _at(at: bytes | None) -> str | None:
    return None if at is None else _hex(at)


# ---------------------------------------------------------------------------------------------
# Headers and blocks


def header_to_json(header: Header) -> dict:
    """The node's JSON form of a header (``docs/rpc.md``), with its hash."""
    return {
        "parentHash": _hex(header.parent_hash),
        "number": hex(header.number),
        "stateRoot": _hex(header.state_root),
        "extrinsicsRoot": _hex(header.extrinsics_root),
        "timestamp": header.timestamp,
        "author": _hex(header.author),
        "digest": {"logs": [_hex(encode(item, DigestItem)) for item in header.digest]},
        "hash": _hex(header.hash),
    }


def header_from_json(obj: Any) -> Header:
    """Rebuild a header from its JSON and check that it hashes to its ``hash`` field.

    Raises :class:`VerificationError` when a field is missing or malformed, or the hash
    does not match.
    """
    if not isinstance(obj, dict):
        raise VerificationError("header is not a JSON object")
    try:
        logs = obj["digest"]["logs"]
        if not isinstance(logs, list):
            raise VerificationError("header digest logs are not a list")
        digest = [decode(DigestItem, hex_bytes(x, f"digest.logs[{i}]")) for i, x in enumerate(logs)]
        header = Header(
            parent_hash=hex_bytes(obj["parentHash"], "parentHash", 32),
            number=_int(obj["number"], "number"),
            state_root=hex_bytes(obj["stateRoot"], "stateRoot", 32),
            extrinsics_root=hex_bytes(obj["extrinsicsRoot"], "extrinsicsRoot", 32),
            timestamp=_int(obj["timestamp"], "timestamp"),
            author=hex_bytes(obj["author"], "author", 32),
            digest=digest,
        )
        claimed = hex_bytes(obj["hash"], "hash", 32)
        computed = header.hash
    except (KeyError, TypeError) as exc:
        raise VerificationError(f"header is missing field {exc}") from exc
    except DecodeError as exc:
        raise VerificationError(f"header does not encode: {exc}") from exc
    if computed != claimed:
        raise VerificationError(
            f"header #{header.number} hashes to {_hex(computed)}, not to the claimed {_hex(claimed)}"
        )
    return header


async def get_header(client: RpcClient, at: bytes | None = None) -> Header | None:
    """The header of block ``at`` (default: the finalized head), or None if unknown."""
    obj = await client.call("chain_getHeader", _at(at))
    if obj is None:
        return None
    header = header_from_json(obj)
    if at is not None and header.hash != at:
        raise VerificationError(f"asked for block {_hex(at)}, got {_hex(header.hash)}")
    return header


async def get_block(client: RpcClient, at: bytes | None = None) -> SignedBlock | None:
    """Block ``at`` (default: the finalized head) with its decoded justification, or None.

    Checks the header hash, that the extrinsics match the header's extrinsics root and that
    the justification (if any) names this block.
    """
    obj = await client.call("chain_getBlock", _at(at))
    if obj is None:
        return None
    try:
        header = header_from_json(obj["block"]["header"])
        raw_xts = obj["block"]["extrinsics"]
        raw_just = obj.get("justification")
    except (KeyError, TypeError) as exc:
        raise VerificationError(f"block is missing field {exc}") from exc
    if at is not None and header.hash != at:
        raise VerificationError(f"asked for block {_hex(at)}, got {_hex(header.hash)}")
    if not isinstance(raw_xts, list):
        raise VerificationError("block extrinsics are not a list")
    extrinsics = [hex_bytes(x, f"extrinsics[{i}]") for i, x in enumerate(raw_xts)]
    if extrinsics_root(extrinsics) != header.extrinsics_root:
        raise VerificationError(f"block #{header.number}: extrinsics do not match the extrinsics root")
    justification = None
    if raw_just is not None:
        try:
            justification = decode(Justification, hex_bytes(raw_just, "justification"))
        except DecodeError as exc:
            raise VerificationError(f"justification does not decode: {exc}") from exc
        if justification.block_hash != header.hash or justification.number != header.number:
            raise VerificationError(f"block #{header.number}: justification is for another block")
    return SignedBlock(Block(header, extrinsics), justification)


async def block_hash(client: RpcClient, number: int) -> bytes | None:
    """Hash of the finalized block ``number``, or None beyond the head."""
    result = await client.call("chain_getBlockHash", number)
    return None if result is None else hex_bytes(result, "block hash", 32)


async def finalized_head(client: RpcClient) -> bytes:
    """Hash of the finalized head."""
    return hex_bytes(await client.call("chain_getFinalizedHead"), "finalized head", 32)


# ---------------------------------------------------------------------------------------------
# State


async def get_storage(client: RpcClient, key: bytes, at: bytes | None = None) -> bytes | None:
    """The raw value at ``key`` as the node says (unverified); None when absent."""
    result = await client.call("state_getStorage", _hex(key), _at(at))
    return None if result is None else hex_bytes(result, "storage value")


async def read_proof(
    client: RpcClient, keys: list[bytes], at: bytes | None = None
) -> tuple[bytes, list[bytes]]:
    """``(block hash, proof blobs)`` for ``keys`` at block ``at`` (default: finalized head)."""
    result = await client.call("state_getReadProof", [_hex(k) for k in keys], _at(at))
    if not isinstance(result, dict) or not isinstance(result.get("proof"), list):
        raise VerificationError("read proof is not {at, proof}")
    proof_at = hex_bytes(result.get("at"), "proof block hash", 32)
    blobs = [hex_bytes(b, f"proof[{i}]") for i, b in enumerate(result["proof"])]
    return proof_at, blobs


@dataclass(frozen=True)
class ProvenStorage:
    """Values proven against ``header``'s state root (None: proven absent)."""

    header: Header
    values: dict[bytes, bytes | None] = field(default_factory=dict)

    def __getitem__(self, key: bytes) -> bytes | None:
        return self.values[key]


async def verified_storage(
    client: RpcClient, keys: list[bytes], at: bytes | None = None
) -> ProvenStorage:
    """Read ``keys`` at block ``at`` (default: the finalized head, pinned first) with a
    proof checked against the block's state root. Raises :class:`VerificationError`."""
    if at is None:
        at = await finalized_head(client)
    header = await get_header(client, at)
    if header is None:
        raise VerificationError(f"the node does not know block {_hex(at)}")
    proof_at, proof = await read_proof(client, keys, at)
    if proof_at != at:
        raise VerificationError(f"asked for a proof at {_hex(at)}, got one at {_hex(proof_at)}")
    try:
        values = verify_proof(header.state_root, proof, keys)
    except ProofError as exc:
        raise VerificationError(f"storage proof does not verify: {exc}") from exc
    return ProvenStorage(header, values)


async def account_info(
    client: RpcClient, account: bytes | str, at: bytes | None = None
) -> system.AccountInfo:
    """``System.Account`` of ``account``, proof-verified; an unknown account reads as empty."""
    key = account_key(account)
    return decode_account_info((await verified_storage(client, [key], at))[key])


def account_key(account: bytes | str) -> bytes:
    """The storage key of ``System.Account`` for ``account``."""
    return system.Account.key(account_id(account))


def decode_account_info(raw: bytes | None) -> system.AccountInfo:
    """An ``AccountInfo`` from its stored bytes; None (no record) is the empty account."""
    if raw is None:
        return system.AccountInfo()
    try:
        return decode(system.AccountInfo, raw)
    except DecodeError as exc:
        raise VerificationError(f"account record does not decode: {exc}") from exc


async def storage_changes(client: RpcClient, first: int, last: int) -> list[BlockChanges]:
    """Every storage write of blocks ``first..last`` (inclusive, up to the head), in
    requests of at most 1000 blocks. Each block's JSON changes must match its encoding."""
    out: list[BlockChanges] = []
    start = first
    while start <= last:
        end = min(last, start + MAX_CHANGES_RANGE - 1)
        result = await client.call("phala_getStorageChanges", start, end)
        if not isinstance(result, list):
            raise VerificationError("storage changes are not a list")
        for item in result:
            out.append(_block_changes(item))
        if len(result) < end - start + 1:
            break  # past the head
        start = end + 1
    return out


def _block_changes(item: Any) -> BlockChanges:
    try:
        changes = decode(BlockChanges, hex_bytes(item["encoded"], "encoded changes"))
        number, claimed_hash, listed = item["number"], item["hash"], item["changes"]
    except (KeyError, TypeError) as exc:
        raise VerificationError(f"storage changes entry is missing {exc}") from exc
    except DecodeError as exc:
        raise VerificationError(f"storage changes do not decode: {exc}") from exc
    as_json = [[_hex(c.key), None if c.value is None else _hex(c.value)] for c in changes.changes]
    if number != changes.number or claimed_hash != _hex(changes.block_hash) or listed != as_json:
        raise VerificationError(f"block #{number}: storage changes disagree with their encoding")
    return changes


# ---------------------------------------------------------------------------------------------
# Node and runtime facts


@dataclass(frozen=True)
class ChainProperties:
    ss58_format: int
    token_symbol: str
    token_decimals: int


async def properties(client: RpcClient) -> ChainProperties:
    """The chain's SS58 prefix, token symbol and decimals (``system_properties``)."""
    raw = await client.call("system_properties")
    if not isinstance(raw, dict):
        raise VerificationError("system properties are not an object")
    symbol, decimals = raw.get("tokenSymbol", "UNIT"), raw.get("tokenDecimals", 0)
    # Substrate allows a list per token; the first is the native one.
    symbol = symbol[0] if isinstance(symbol, list) and symbol else symbol
    decimals = decimals[0] if isinstance(decimals, list) and decimals else decimals
    fmt = raw.get("ss58Format", ss58.DEFAULT_PREFIX)
    if not isinstance(symbol, str) or not isinstance(decimals, int) or not isinstance(fmt, int):
        raise VerificationError("system properties have the wrong types")
    return ChainProperties(fmt, symbol, decimals)


async def runtime_version(client: RpcClient, at: bytes | None = None) -> RuntimeVersion:
    raw = await client.call("state_getRuntimeVersion", _at(at))
    try:
        return RuntimeVersion(raw["specName"], int(raw["specVersion"]), int(raw["transactionVersion"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"runtime version is malformed: {exc}") from exc


async def next_index(client: RpcClient, account: bytes | str) -> int:
    """The account's next nonce, counting its extrinsics ready in the pool."""
    result = await client.call("system_accountNextIndex", _hex(account_id(account)))
    return _int(result, "next index")


@dataclass(frozen=True)
class ChainEvent:
    """One event as ``phala_getEvents`` reports it; ``phase`` is the extrinsic index, or
    None for events of block initialization and finalization."""

    phase: int | None
    pallet: str
    event: str
    fields: Any

    @property
    def name(self) -> str:
        return f"{self.pallet}.{self.event}"


async def events(client: RpcClient, at: bytes | None = None) -> list[ChainEvent]:
    """The events of block ``at`` (default: the finalized head)."""
    raw = await client.call("phala_getEvents", _at(at))
    if not isinstance(raw, list):
        raise VerificationError("events are not a list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise VerificationError(f"event {i} is not an object")
        phase = item.get("phase")
        if phase is not None and not isinstance(phase, int):
            raise VerificationError(f"event {i} has a malformed phase")
        out.append(ChainEvent(phase, str(item.get("pallet", "?")), str(item.get("event", "?")), item.get("fields")))
    return out
