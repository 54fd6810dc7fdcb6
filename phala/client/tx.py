"""Building, signing, submitting and following extrinsics.

An extrinsic signs ``signing_payload(call, era, nonce, tip, spec_version,
transaction_version, genesis_hash, birth_hash)`` (``docs/formats.md``): the genesis hash
ties it to one chain, the birth block's hash to one fork and validity window.
"""

from __future__ import annotations

import asyncio

from phala.chain.runtime.executive import VERSION, RuntimeVersion
from phala.chain.runtime.frame import RuntimeCall
from phala.core.codec import encode
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair
from phala.core.types import Era, Extrinsic, signing_payload

from . import chain
from .chain import ChainEvent, VerificationError
from .rpc import RpcClient

__all__ = [
    "build_extrinsic",
    "extrinsic_hash",
    "prepare",
    "submit",
    "wait_finalized",
]


def extrinsic_hash(raw: bytes) -> bytes:
    """The hash the pool and blocks know an extrinsic by: blake2_256 of its bytes."""
    return blake2_256(raw)


def build_extrinsic(
    keypair: Keypair,
    call: RuntimeCall,
    nonce: int,
    genesis_hash: bytes,
    tip: int = 0,
    era: Era | None = None,
    birth_hash: bytes | None = None,
    *,
    version: RuntimeVersion = VERSION,
) -> bytes:
    """A signed extrinsic's bytes.

    ``era`` None (or immortal) signs over the genesis hash as birth; a mortal era needs the
    hash of its birth block (``era.birth(current)``). Raises ValueError otherwise.
    """
    era = era or Era()
    if era.immortal:
        birth_hash = genesis_hash
    elif birth_hash is None:
        raise ValueError("a mortal era needs the hash of its birth block")
    if len(genesis_hash) != 32 or len(birth_hash) != 32:
        raise ValueError("genesis and birth hashes must be 32 bytes")
    raw_call = encode(call, RuntimeCall)
    payload = signing_payload(
        raw_call,
        era,
        nonce,
        tip,
        version.spec_version,
        version.transaction_version,
        genesis_hash,
        birth_hash,
    )
    return Extrinsic(keypair.public_key, keypair.sign(payload), era, nonce, tip, raw_call).encode()


async def prepare(
    client: RpcClient,
    keypair: Keypair,
    call: RuntimeCall,
    tip: int = 0,
    mortal_period: int | None = None,
    nonce: int | None = None,
) -> bytes:
    """Sign ``call`` for the chain behind ``client``: its genesis hash and runtime version,
    the account's next nonce (unless given) and, for a mortal era of ``mortal_period``
    blocks, the finalized head as birth block."""
    if nonce is None:
        nonce = await chain.next_index(client, keypair.public_key)
    genesis = await chain.block_hash(client, 0)
    if genesis is None:
        raise VerificationError("the node has no genesis block")
    version = await chain.runtime_version(client)
    era, birth = None, None
    if mortal_period is not None:
        head = await chain.get_header(client, await chain.finalized_head(client))
        if head is None:
            raise VerificationError("the node does not know its own finalized head")
        era = Era.mortal(mortal_period, head.number)
        birth_number = era.birth(head.number)
        birth = head.hash if birth_number == head.number else await chain.block_hash(client, birth_number)
        if birth is None:
            raise VerificationError(f"the node does not know block #{birth_number}")
    return build_extrinsic(keypair, call, nonce, genesis, tip, era, birth, version=version)


async def submit(
    client: RpcClient,
    keypair: Keypair,
    call: RuntimeCall,
    tip: int = 0,
    mortal_period: int | None = None,
) -> bytes:
    """Sign (see :func:`prepare`) and submit ``call``; returns the extrinsic's hash.

    Raises :class:`~phala.client.rpc.RpcError` when the node refuses it (code 1010 with
    the reason in ``data``, 1013 already imported, 1014 priority too low, 1016 pool full).
    """
    raw = await prepare(client, keypair, call, tip, mortal_period)
    returned = chain.hex_bytes(
        await client.call("author_submitExtrinsic", "0x" + raw.hex()), "extrinsic hash", 32
    )
    if returned != extrinsic_hash(raw):
        raise VerificationError("the node returned a hash that is not the extrinsic's blake2_256")
    return returned


async def _find_in_block(
    client: RpcClient, at: bytes, tx_hash: bytes
) -> tuple[bytes, list[ChainEvent]] | None:
    block = await chain.get_block(client, at)
    if block is None:
        raise VerificationError(f"the node announced block 0x{at.hex()} but does not serve it")
    for index, raw in enumerate(block.block.extrinsics):
        if extrinsic_hash(raw) == tx_hash:
            evs = await chain.events(client, at)
            return at, [e for e in evs if e.phase == index]
    return None


async def _find_by_number(
    client: RpcClient, number: int, tx_hash: bytes
) -> tuple[bytes, list[ChainEvent]] | None:
    at = await chain.block_hash(client, number)
    if at is None:
        raise VerificationError(f"the node has no finalized block #{number}")
    return await _find_in_block(client, at, tx_hash)


async def wait_finalized(
    client: RpcClient, tx_hash: bytes, timeout: float = 60.0, since: int | None = None
) -> tuple[bytes, list[ChainEvent]]:
    """Follow finalized heads until a block includes the extrinsic ``tx_hash``; return that
    block's hash and the extrinsic's events.

    ``since`` (a block number, e.g. the finalized head's number + 1 taken *before*
    submitting) makes the search start there, so an inclusion that happens before the
    subscription is open is not missed. Blocks skipped between two notifications are
    fetched by number. Raises TimeoutError after ``timeout`` seconds.
    """

    async def follow() -> tuple[bytes, list[ChainEvent]]:
        async with client.subscribe(
            "chain_subscribeFinalizedHeads", "chain_unsubscribeFinalizedHeads"
        ) as heads:
            next_number = since
            if since is not None:
                head = await chain.get_header(client)
                if head is None:
                    raise VerificationError("the node has no finalized head")
                for number in range(since, head.number + 1):
                    found = await _find_by_number(client, number, tx_hash)
                    if found:
                        return found
                next_number = max(since, head.number + 1)
            async for obj in heads:
                header = chain.header_from_json(obj)
                if next_number is None:
                    next_number = header.number
                if header.number < next_number:
                    continue
                for number in range(next_number, header.number):
                    found = await _find_by_number(client, number, tx_hash)
                    if found:
                        return found
                next_number = header.number + 1
                found = await _find_in_block(client, header.hash, tx_hash)
                if found:
                    return found
        raise VerificationError("the finalized-head subscription ended")  # pragma: no cover

    try:
        return await asyncio.wait_for(follow(), timeout)
    except TimeoutError as exc:
        raise TimeoutError(
            f"extrinsic 0x{tx_hash.hex()} was not in a finalized block within {timeout:g} s"
        ) from exc
