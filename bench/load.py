"""Load generator for ``phala bench chain`` (b): a separate process that submits pre-signed
transfers over several WebSocket connections, many in flight on each, and counts them when a
finalized block includes them.

Usage: ``python -m bench.load URL TRANSFERS CONNECTIONS WINDOW``; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time

import aiohttp
import orjson

from bench.chain import signed_transfer
from phala.chain.spec import bench_keypair
from phala.core.hashing import blake2_256


async def rpc(session: aiohttp.ClientSession, url: str, method: str, *params: object) -> object:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    async with session.post(url, json=body) as resp:
        reply = await resp.json()
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply["result"]


async def submitter(session, ws_url: str, txs: list[bytes], window: int, stats: dict) -> None:
    async with session.ws_connect(ws_url, max_msg_size=0) as ws:
        slots = asyncio.Semaphore(window)
        pending = len(txs)
        done = asyncio.Event()
        ids = itertools.count(1)

        async def reader() -> None:
            nonlocal pending
            async for msg in ws:
                reply = orjson.loads(msg.data)
                if "error" in reply:
                    stats["rejected"] += 1
                    stats.setdefault("errors", set()).add(reply["error"].get("data") or reply["error"]["message"])
                else:
                    stats["accepted"] += 1
                slots.release()
                pending -= 1
                if pending == 0:
                    done.set()
                    return

        task = asyncio.ensure_future(reader())
        for raw in txs:
            await slots.acquire()
            await ws.send_str(
                orjson.dumps({"jsonrpc": "2.0", "id": next(ids), "method": "author_submitExtrinsic",
                              "params": ["0x" + raw.hex()]}).decode()
            )
        await done.wait()
        task.cancel()


async def follower(session, url: str, ws_url: str, wanted: set[bytes], stats: dict, finished: asyncio.Event) -> None:
    async with session.ws_connect(ws_url, max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeFinalizedHeads"}))
        async for msg in ws:
            note = orjson.loads(msg.data)
            if note.get("method") != "chain_finalizedHead":
                continue
            block = await rpc(session, url, "chain_getBlock", note["params"]["result"]["hash"])
            for x in block["block"]["extrinsics"]:
                h = blake2_256(bytes.fromhex(x[2:]))
                if h in wanted:
                    wanted.discard(h)
                    stats["finalized"] += 1
                    stats["last_finalized_at"] = time.perf_counter()
            if not wanted or (stats["submitted_all"] and stats["finalized"] >= stats["accepted"]):
                finished.set()
                return


async def main(url: str, transfers: int, connections: int, window: int) -> dict:
    ws_url = url.replace("http://", "ws://")
    async with aiohttp.ClientSession() as session:
        genesis = bytes.fromhex((await rpc(session, url, "chain_getBlockHash", 0))[2:])
        keys = [bench_keypair(i) for i in range(transfers)]
        txs = [signed_transfer(k, keys[(i + 1) % transfers].public_key, 0, genesis) for i, k in enumerate(keys)]
        wanted = {blake2_256(x) for x in txs}
        stats = {"accepted": 0, "rejected": 0, "finalized": 0, "submitted_all": False, "last_finalized_at": 0.0}
        finished = asyncio.Event()
        follow = asyncio.ensure_future(follower(session, url, ws_url, wanted, stats, finished))
        await asyncio.sleep(0.2)
        start = time.perf_counter()
        shares = [txs[i::connections] for i in range(connections)]
        await asyncio.gather(*(submitter(session, ws_url, share, window, stats) for share in shares))
        stats["submitted_all"] = True
        submit_seconds = time.perf_counter() - start
        try:
            await asyncio.wait_for(finished.wait(), timeout=120)
        except TimeoutError:
            pass
        follow.cancel()
        seconds = (stats["last_finalized_at"] or time.perf_counter()) - start
    return {
        "submitted": transfers,
        "accepted": stats["accepted"],
        "rejected": stats["rejected"],
        "errors": sorted(stats.get("errors", set()))[:5],
        "finalized": stats["finalized"],
        "submit_seconds": round(submit_seconds, 3),
        "seconds": round(seconds, 3),
        "rpc_transfers_per_s": stats["finalized"] / seconds if seconds > 0 else 0.0,
    }


if __name__ == "__main__":
    url, n, conns, win = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(main(url, n, conns, win))))
