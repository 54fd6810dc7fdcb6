"""pherry: the relayer that carries finalized blocks into one pRuntime and its messages out.

The loop (DESIGN.md section 5): read the worker's ``get_info``; initialise it at genesis if
needed; push finalized headers with a justification on the last of each batch (a batch
ends at every authority-set change); dispatch the blocks' storage changes in batches; once
caught up, register the worker on chain; submit its egress messages the chain has not seen.
It is trusted for nothing: the worker checks everything it brings. It survives restarts of
the node, the pRuntime and itself: every step starts again from what ``get_info`` says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from phala.chain.runtime import mq as mq_pallet
from phala.chain.runtime import registry
from phala.client.rpc import NodeUnreachable, RpcClient, RpcError
from phala.client.tx import submit
from phala.core.attestation import AttestationReport, WorkerRegistrationInfo
from phala.core.codec import codec_of, decode, encode
from phala.core.keys import Keypair
from phala.core.light_client import AUTHORITY_SET_KEY
from phala.core.mq import SignedMessage
from phala.core.types import BlockChanges, Header, Justification
from phala.pruntime.api import (
    DispatchBlocksRequest,
    InitRuntimeRequest,
    SignEndpointRequest,
    SyncHeaderRequest,
)

log = logging.getLogger("phala.pherry")

RANGE = 1000  # blocks per node request (the node's limit)


class PRuntimeError(Exception):
    """The pRuntime refused a request or is unreachable."""


def _bytes(text: str) -> bytes:
    return bytes.fromhex(text[2:])


class PRuntimeClient:
    """The pRuntime HTTP API, with SCALE request bodies."""

    def __init__(self, url: str, session: aiohttp.ClientSession):
        self.url = url.rstrip("/")
        self.session = session

    async def call(self, endpoint: str, request: object | None = None) -> dict:
        data = b"" if request is None else encode(request)
        try:
            async with self.session.post(
                f"{self.url}/{endpoint}", data=data, headers={"Content-Type": "application/octet-stream"}
            ) as resp:
                body = orjson.loads(await resp.read())
        except (aiohttp.ClientError, orjson.JSONDecodeError, OSError) as exc:
            raise PRuntimeError(f"pRuntime unreachable: {exc}") from exc
        if "error" in body:
            raise PRuntimeError(body["error"])
        return body


@dataclass
class Progress:
    """Logs sync progress: blocks per second over the last interval and height behind."""

    interval: float = 5.0
    blocks: int = 0
    last_report: float = field(default_factory=time.monotonic)
    reported_blocks: int = 0
    reported_height: int = -1

    def report(self, height: int, target: int) -> None:
        now = time.monotonic()
        elapsed = now - self.last_report
        if height == self.reported_height or (elapsed < self.interval and height < target):
            return
        rate = (self.blocks - self.reported_blocks) / max(elapsed, 1e-9)
        self.last_report, self.reported_blocks, self.reported_height = now, self.blocks, height
        log.info("synced #%d of #%d: %d behind, %.0f blocks/s", height, target, target - height, rate)


class Relayer:
    def __init__(self, node_url: str, pruntime_url: str, operator: Keypair, batch: int = 500,
                 register: bool = True, endpoint: str | None = None):
        self.node_url = node_url
        self.pruntime_url = pruntime_url
        self.operator = operator
        self.batch = batch
        self.register = register
        self.progress = Progress()
        self.registration_sent_at: int | None = None
        self.endpoint = None if endpoint is None else endpoint.encode()
        self.endpoint_sent_at: int | None = None

    # -- one pass -----------------------------------------------------------------------------

    async def step(self, node: RpcClient, worker: PRuntimeClient) -> bool:
        """Do one round of work; returns True when the worker is caught up."""
        info = await worker.call("get_info")
        if not info["initialized"]:
            await self.init_runtime(node, worker)
            info = await worker.call("get_info")
        finalized = int((await node.call("chain_getHeader"))["number"], 16)
        header_number = info["headerNumber"]
        next_block = info["nextBlock"]
        # Keep the worker's queue of finalized-but-undispatched headers short.
        if header_number < finalized and header_number - next_block < 2 * RANGE:
            await self.sync_headers(node, worker, header_number + 1, min(finalized, header_number + RANGE))
            info = await worker.call("get_info")
            header_number = info["headerNumber"]
        if next_block <= header_number:
            last = min(header_number, next_block + self.batch - 1)
            await self.dispatch(node, worker, next_block, last)
            self.progress.blocks += last - next_block + 1
            next_block = last + 1
        self.progress.report(next_block - 1, finalized)
        caught_up = next_block > finalized
        if caught_up:
            await self.submit_egress(node, worker)
            if self.register and not info["registered"]:
                # ``info`` predates the blocks just dispatched, which may hold the registration.
                info = await worker.call("get_info")
                if not info["registered"]:
                    await self.register_worker(node, worker, finalized)
            elif info["registered"] and self.endpoint is not None:
                await self.update_endpoint(node, worker, bytes.fromhex(info["identity"][2:]), finalized)
        return caught_up

    async def init_runtime(self, node: RpcClient, worker: PRuntimeClient) -> None:
        genesis_hash = await node.call("chain_getBlockHash", 0)
        headers = await node.call("phala_getHeaders", 0, 0)
        genesis = decode(Header, _bytes(headers[0]["header"]))
        proof = await node.call("state_getReadProof", ["0x" + AUTHORITY_SET_KEY.hex()], genesis_hash)
        request = InitRuntimeRequest(genesis, [_bytes(p) for p in proof["proof"]], self.operator.public_key)
        await worker.call("init_runtime", request)
        log.info("initialised the pRuntime at genesis %s", genesis_hash)

    async def sync_headers(self, node: RpcClient, worker: PRuntimeClient, first: int, last: int) -> None:
        """Push headers ``first..=last`` in batches that end at authority-set changes."""
        entries = await node.call("phala_getHeaders", first, last)
        batch: list[Header] = []
        for i, entry in enumerate(entries):
            header = decode(Header, _bytes(entry["header"]))
            batch.append(header)
            if header.authorities_change() is not None or i == len(entries) - 1:
                if entry["justification"] is None:
                    raise PRuntimeError(f"the node has no justification for #{header.number}")
                justification = decode(Justification, _bytes(entry["justification"]))
                await worker.call("sync_header", SyncHeaderRequest(batch, justification))
                batch = []

    async def dispatch(self, node: RpcClient, worker: PRuntimeClient, first: int, last: int) -> None:
        blocks: list[BlockChanges] = []
        for start in range(first, last + 1, RANGE):
            entries = await node.call("phala_getStorageChanges", start, min(last, start + RANGE - 1))
            blocks += [decode(BlockChanges, _bytes(e["encoded"])) for e in entries]
        await worker.call("dispatch_blocks", DispatchBlocksRequest(blocks))

    async def submit_egress(self, node: RpcClient, worker: PRuntimeClient) -> None:
        reply = await worker.call("get_egress_messages")
        codec = codec_of(SignedMessage)
        for text in reply["messages"]:
            signed = codec.decode(_bytes(text))
            call = mq_pallet.sync_offchain_message(signed)
            try:
                await submit_unsigned(node, call)
            except RpcError as exc:
                # Already pooled (1013), the same sequence pooled from another gatekeeper
                # (1014), or already on chain (stale): nothing left to do.
                if exc.code in (1013, 1014) or (exc.code == 1010 and str(exc.data or "").startswith("Stale")):
                    continue
                log.warning("the chain refused egress #%d: %s %s", signed.sequence, exc.message, exc.data or "")

    async def register_worker(self, node: RpcClient, worker: PRuntimeClient, finalized: int) -> None:
        if self.registration_sent_at is not None and finalized < self.registration_sent_at + 10:
            return  # give the last attempt time to land
        reply = await worker.call("get_runtime_info")
        reg = reply["registration"]
        info = decode(WorkerRegistrationInfo, _bytes(reg["info"]))
        attestation = codec_of(AttestationReport).decode(_bytes(reg["attestation"]))
        try:
            await submit(node, self.operator, registry.register_worker(info, attestation))
            log.info("submitted register_worker for 0x%s", info.identity.hex())
        except RpcError as exc:
            log.warning("register_worker refused: %s %s", exc.message, exc.data or "")
        self.registration_sent_at = finalized

    async def update_endpoint(self, node: RpcClient, worker: PRuntimeClient, identity: bytes, finalized: int) -> None:
        """Keep the worker's endpoint on chain equal to ``--endpoint``."""
        if self.endpoint_sent_at is not None and finalized < self.endpoint_sent_at + 10:
            return
        raw = await node.call("state_getStorage", "0x" + registry.Workers.key(identity).hex())
        if raw is None:
            return
        if registry.Workers.codec.decode(_bytes(raw)).endpoint == self.endpoint:
            return
        reply = await worker.call("sign_endpoint", SignEndpointRequest(self.endpoint))
        call = registry.update_worker_endpoint(identity, self.endpoint, reply["counter"], _bytes(reply["signature"]))
        try:
            await submit(node, self.operator, call)
            log.info("submitted the worker's endpoint %s", self.endpoint.decode())
        except RpcError as exc:
            log.warning("update_worker_endpoint refused: %s %s", exc.message, exc.data or "")
        self.endpoint_sent_at = finalized

    # -- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None, idle: float = 0.5) -> None:
        stop = stop or asyncio.Event()
        backoff = 0.5
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
            worker = PRuntimeClient(self.pruntime_url, session)
            while not stop.is_set():
                try:
                    async with RpcClient(self.node_url) as node:
                        while not stop.is_set():
                            caught_up = await self.step(node, worker)
                            backoff = 0.5
                            if caught_up:
                                await _wait(stop, idle)
                except (NodeUnreachable, PRuntimeError, RpcError, aiohttp.ClientError, OSError) as exc:
                    log.warning("retrying in %.1fs: %s", backoff, exc)
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, 10.0)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def submit_unsigned(node: RpcClient, call) -> bytes:
    """Submit an unsigned extrinsic (0x04 ++ call); returns its hash."""
    from phala.chain.runtime.frame import RuntimeCall

    raw = bytes([4]) + codec_of(RuntimeCall).encode(call)
    result = await node.call("author_submitExtrinsic", "0x" + raw.hex())
    return _bytes(result)
