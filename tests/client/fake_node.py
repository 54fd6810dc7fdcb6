"""A small in-process JSON-RPC node for the client tests: real headers, blocks, state tree
and proofs, served over aiohttp as ``docs/rpc.md`` says, without the chain machinery.

``FakeNode`` seals a block for every submitted extrinsic (after ``seal_delay`` seconds) and
notifies finalized-head subscribers. Tests can tamper with what it serves.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from phala.chain.runtime import system
from phala.chain.runtime.executive import VERSION
from phala.client.chain import header_to_json
from phala.core import trie
from phala.core.codec import encode
from phala.core.hashing import blake2_256
from phala.core.keys import dev_keypair
from phala.core.types import BlockChanges, Extrinsic, Header, StorageChange, extrinsics_root

ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")
ALICE_INFO = system.AccountInfo(5, 0, 1, system.AccountData(10**18, 7, 3))
START = 1_767_225_600_000


class FakeNode:
    def __init__(self, seal_delay: float = 0.05):
        self.seal_delay = seal_delay
        self.store = trie.MemoryNodeStore()
        self.tree = trie.StateTree()
        self.tree.apply([(system.Account.key(ALICE.public_key), encode(ALICE_INFO))])
        root, blobs = self.tree.commit()
        self.store.put_many(blobs)
        genesis = Header(bytes(32), 0, root, extrinsics_root([]), START, bytes(32), [])
        self.headers: list[Header] = [genesis]
        self.bodies: dict[bytes, list[bytes]] = {genesis.hash: []}
        self.events: dict[bytes, list[dict]] = {genesis.hash: []}
        self.subscribers: dict[str, web.WebSocketResponse] = {}
        self.submitted: list[bytes] = []
        self.tamper: Callable[[str, Any], Any] = lambda method, result: result
        self.fail_next_block = False
        self._ids = 0

    # -- chain --------------------------------------------------------------------------------

    @property
    def head(self) -> Header:
        return self.headers[-1]

    def by_hash(self, value: Any) -> Header | None:
        if value is None:
            return self.head
        for h in self.headers:
            if "0x" + h.hash.hex() == value:
                return h
        return None

    def seal(self, extrinsics: list[bytes]) -> Header:
        """Make and finalize a block; each extrinsic succeeds (or fails: ``fail_next_block``)."""
        parent = self.head
        header = Header(
            parent.hash,
            parent.number + 1,
            parent.state_root,
            extrinsics_root(extrinsics),
            parent.timestamp + 1000,
            ALICE.public_key,
            [],
        )
        self.headers.append(header)
        self.bodies[header.hash] = list(extrinsics)
        evs = []
        for i, _ in enumerate(extrinsics):
            if self.fail_next_block:
                evs.append(
                    {"phase": i, "pallet": "System", "event": "ExtrinsicFailed",
                     "fields": {"error": {"pallet": 2, "code": 0}}}
                )
            else:
                evs.append({"phase": i, "pallet": "System", "event": "ExtrinsicSuccess", "fields": {}})
        evs.append({"phase": None, "pallet": "Balances", "event": "Deposit", "fields": {}})
        self.events[header.hash] = evs
        self.fail_next_block = False
        note = header_to_json(header)
        for sub_id, ws in list(self.subscribers.items()):
            message = {"jsonrpc": "2.0", "method": "chain_finalizedHead",
                       "params": {"subscription": sub_id, "result": note}}
            asyncio.ensure_future(ws.send_str(orjson.dumps(message).decode()))
        return header

    # -- RPC ----------------------------------------------------------------------------------

    def handle(self, method: str, params: list, ws: web.WebSocketResponse | None) -> Any:
        if method == "chain_getHeader":
            h = self.by_hash(params[0] if params else None)
            return None if h is None else header_to_json(h)
        if method == "chain_getBlock":
            h = self.by_hash(params[0] if params else None)
            if h is None:
                return None
            return {
                "block": {"header": header_to_json(h), "extrinsics": ["0x" + x.hex() for x in self.bodies[h.hash]]},
                "justification": None,
            }
        if method == "chain_getBlockHash":
            n = params[0] if params else self.head.number
            return "0x" + self.headers[n].hash.hex() if n < len(self.headers) else None
        if method == "chain_getFinalizedHead":
            return "0x" + self.head.hash.hex()
        if method == "state_getReadProof":
            keys = [bytes.fromhex(k[2:]) for k in params[0]]
            h = self.by_hash(params[1] if len(params) > 1 else None)
            proof = trie.prove(h.state_root, keys, self.store.get)
            return {"at": "0x" + h.hash.hex(), "proof": ["0x" + b.hex() for b in proof]}
        if method == "state_getRuntimeVersion":
            return {"specName": "phala", "specVersion": VERSION.spec_version,
                    "transactionVersion": VERSION.transaction_version}
        if method == "system_properties":
            return {"ss58Format": 30, "tokenSymbol": "PHA", "tokenDecimals": 12}
        if method == "system_accountNextIndex":
            return ALICE_INFO.nonce + len(self.submitted)
        if method == "phala_getEvents":
            h = self.by_hash(params[0] if params else None)
            return self.events[h.hash]
        if method == "author_submitExtrinsic":
            raw = bytes.fromhex(params[0][2:])
            Extrinsic.decode(raw)
            self.submitted.append(raw)
            asyncio.get_running_loop().call_later(self.seal_delay, self.seal, [raw])
            return "0x" + blake2_256(raw).hex()
        if method == "chain_subscribeFinalizedHeads":
            if ws is None:
                raise RpcFault(-32601, "subscriptions need a WebSocket connection")
            self._ids += 1
            self.subscribers[str(self._ids)] = ws
            return str(self._ids)
        if method == "chain_unsubscribeFinalizedHeads":
            return self.subscribers.pop(str(params[0]), None) is not None
        if method == "phala_getStorageChanges":
            first, last = params
            out = []
            for n in range(first, min(last, self.head.number) + 1):
                h = self.headers[n].hash
                changes = [StorageChange(b"key%d" % n, b"value"), StorageChange(b"gone%d" % n, None)]
                out.append({
                    "number": n,
                    "hash": "0x" + h.hex(),
                    "changes": [["0x" + c.key.hex(), None if c.value is None else "0x" + c.value.hex()]
                                for c in changes],
                    "encoded": "0x" + encode(BlockChanges(n, h, changes)).hex(),
                })
            return out
        if method == "always_fails":
            raise RpcFault(1010, "Invalid Transaction", "Payment: cannot pay")
        raise RpcFault(-32601, f"method not found: {method}")

    def reply(self, request: dict, ws: web.WebSocketResponse | None) -> dict:
        try:
            result = self.tamper(request["method"], self.handle(request["method"], request.get("params") or [], ws))
        except RpcFault as exc:
            error = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            return {"jsonrpc": "2.0", "id": request.get("id"), "error": error}
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": result}

    async def http(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        return web.Response(body=orjson.dumps(self.reply(body, None)), content_type="application/json")

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(orjson.dumps(self.reply(orjson.loads(msg.data), ws)).decode())
        for sub_id, other in list(self.subscribers.items()):
            if other is ws:
                del self.subscribers[sub_id]
        return ws

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self.http)
        app.router.add_get("/", self.websocket)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for ws in list(self.subscribers.values()):
            await ws.close()
        await self.runner.cleanup()


class RpcFault(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class ThreadedFakeNode:
    """A FakeNode on its own event loop in a thread, for synchronous callers (the CLI)."""

    def __init__(self, node: FakeNode | None = None):
        self.node = node or FakeNode()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedFakeNode:
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.node.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.node.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
