"""``phala bench sync``: blocks per second a pRuntime verifies and applies through pherry.

A node (manual seal) makes blocks quickly; a pRuntime process follows it through the
relayer, which runs here. Measured: ``empty_blocks_per_s`` (blocks without extrinsics) and
``full_blocks_per_s`` (blocks of 1,000 transfers each), from the relayer's first request to
the worker reporting the last block dispatched. Floor, in the same run:
``header_hash_per_s``, how many headers per second this machine encodes and hashes (every
header the worker accepts costs at least that), and ``sr25519_verify_per_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from bench.chain import signed_transfer, sr25519_verify_per_s, start_phala
from phala.chain.blockchain import genesis_block
from phala.chain.spec import ChainSpec, bench_keypair
from phala.core.keys import dev_keypair
from phala.core.types import Header
from phala.pherry.relayer import PRuntimeClient, Relayer

TRANSFERS_PER_BLOCK = 1000


def header_hash_per_s(seconds: float = 0.5) -> float:
    header = Header(bytes(32), 123456, b"\x01" * 32, b"\x02" * 32, 1_767_225_600_000, b"\x03" * 32, [])
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            header.hash  # noqa: B018 - the work measured
        n += 200
    return n / (time.perf_counter() - start)


async def _ws_calls(ws_url: str, requests: list[tuple[str, list]], window: int = 256) -> list[dict]:
    """Send JSON-RPC requests over one WebSocket, up to ``window`` in flight (the node drops a
    client whose unread replies pile up); return the replies in order."""
    replies: dict[int, dict] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        for start in range(0, len(requests), window):
            chunk = requests[start : start + window]
            for i, (method, params) in enumerate(chunk, start):
                await ws.send_str(orjson.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).decode())
            async for msg in ws:
                reply = orjson.loads(msg.data)
                replies[reply["id"]] = reply
                if len(replies) == start + len(chunk):
                    break
            else:
                raise RuntimeError("the node closed the connection")
    return [replies[i] for i in range(len(requests))]


async def _make_blocks(url: str, count: int, per_block: list[list[bytes]] | None = None) -> None:
    ws_url = url.replace("http://", "ws://")
    if per_block is None:
        await _ws_calls(ws_url, [("engine_createBlock", [True, True])] * count)
        return
    for txs in per_block:
        replies = await _ws_calls(ws_url, [("author_submitExtrinsic", ["0x" + x.hex()]) for x in txs])
        bad = [r["error"] for r in replies if "error" in r]
        if bad:
            raise RuntimeError(f"transfers refused: {bad[:3]}")
        await _ws_calls(ws_url, [("engine_createBlock", [False, True])])


async def _sync_until(relayer: Relayer, pruntime_url: str, target: int) -> float:
    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.ensure_future(relayer.run(stop, idle=0.01))
    async with aiohttp.ClientSession() as session:
        client = PRuntimeClient(pruntime_url, session)
        while True:
            info = await client.call("get_info")
            if (info.get("blockNumber") or -1) >= target:
                break
            await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    return elapsed


def run(quick: bool = False) -> dict:
    empty = 1000 if quick else 5000
    full = 3 if quick else 10
    spec = dataclasses.replace(ChainSpec.dev(start_time_ms=1_767_225_600_000, extra_accounts=TRANSFERS_PER_BLOCK))
    genesis = genesis_block(spec)[0].hash
    senders = [bench_keypair(i) for i in range(TRANSFERS_PER_BLOCK)]
    per_block = [
        [signed_transfer(k, senders[(i + 1) % len(senders)].public_key, b, genesis) for i, k in enumerate(senders)]
        for b in range(full)
    ]
    floor_hash = header_hash_per_s()
    floor_verify = sr25519_verify_per_s(0.5)
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(spec.to_json())
        node, url = start_phala(["node", "--chain", str(spec_path), "--base-path", f"{tmp}/node", "--rpc-port", "0",
                            "--manual-seal"], "RPC listening on ")
        worker, pr_url = start_phala(["pruntime", "--chain", str(spec_path), "--data-dir", f"{tmp}/worker",
                                 "--port", "0", "--checkpoint-interval", "1000000"], "pRuntime listening on ")
        try:
            asyncio.run(_make_blocks(url, empty))
            relayer = Relayer(url, pr_url, dev_keypair("Alice"), batch=1000, register=False)
            empty_s = asyncio.run(_sync_until(relayer, pr_url, empty))
            asyncio.run(_make_blocks(url, full, per_block))
            full_s = asyncio.run(_sync_until(relayer, pr_url, empty + full))
        finally:
            for proc in (node, worker):
                proc.kill()
                proc.wait()
    return {
        "empty_blocks_per_s": round(empty / empty_s, 1),
        "full_blocks_per_s": round(full / full_s, 2),
        "header_hash_per_s": round(floor_hash, 1),
        "sr25519_verify_per_s": round(floor_verify, 1),
        "ratio": round(empty / empty_s / floor_hash, 4),
        "empty_blocks": empty,
        "full_blocks": full,
        "transfers_per_full_block": TRANSFERS_PER_BLOCK,
        "targets": {"empty_blocks_per_s": 2000},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "quick": quick,
    }
