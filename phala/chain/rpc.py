"""The node's JSON-RPC 2.0 server over HTTP and WebSocket (aiohttp), as in ``docs/rpc.md``.

Every request is decoded at the edge: the body must be JSON, each request a JSON-RPC 2.0
object, each parameter of its method's type. A request that fails gets an error object
with a code and a message, and changes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from phala.core import trie
from phala.core.codec import DecodeError, encode
from phala.core.serving import start_site
from phala.core.types import BlockChanges, DigestItem, Header

from .consensus import CannotFinalize
from .node import Node
from .pool import PoolError
from .rpc_params import (
    InvalidParams,
    account,
    block_number,
    boolean,
    hex_bytes,
    opt_hash,
    positional,
    to_json,
)
from .runtime import executive, mq, system
from .runtime.executive import InvalidTransaction

log = logging.getLogger("phala.rpc")

MAX_BODY = 4 << 20
MAX_BATCH = 1000
MAX_CHANGES_RANGE = 1000
MAX_PROOF_KEYS = 1000
MAX_ORIGIN = 1024  # bytes of an encoded MessageOrigin (the largest real one is 33)
NODE_VERSION = "0.1.0"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
INVALID_TRANSACTION = 1010


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def header_json(header: Header) -> dict:
    return {
        "parentHash": "0x" + header.parent_hash.hex(),
        "number": hex(header.number),
        "stateRoot": "0x" + header.state_root.hex(),
        "extrinsicsRoot": "0x" + header.extrinsics_root.hex(),
        "timestamp": header.timestamp,
        "author": "0x" + header.author.hex(),
        "digest": {"logs": ["0x" + encode(item, DigestItem).hex() for item in header.digest]},
        "hash": "0x" + header.hash.hex(),
    }


class Connection:
    """One WebSocket client: its subscriptions and an outgoing queue (a slow client never
    blocks block production; its queue is bounded and it is dropped if it falls behind)."""

    MAX_QUEUE = 1024

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.subscriptions: dict[str, str] = {}  # id -> notification method
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(self.MAX_QUEUE)

    def push(self, payload: bytes) -> None:
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("dropping a WebSocket client that does not read its notifications")
            self.subscriptions.clear()
            asyncio.ensure_future(self.ws.close())


class RpcServer:
    def __init__(self, node: Node):
        self.node = node
        self.connections: set[Connection] = set()
        self._sub_ids = itertools.count(1)
        self.methods: dict[str, Callable[[list, Connection | None], Any]] = {
            "system_health": self.system_health,
            "system_chain": lambda p, c: self._noargs(p) or self.node.chain.spec.name,
            "system_name": lambda p, c: self._noargs(p) or "phala-node",
            "system_version": lambda p, c: self._noargs(p) or NODE_VERSION,
            "system_properties": lambda p, c: self._noargs(p) or self.node.chain.spec.properties(),
            "system_accountNextIndex": self.system_account_next_index,
            "rpc_methods": lambda p, c: self._noargs(p) or {"methods": sorted(self.methods)},
            "chain_getHeader": self.chain_get_header,
            "chain_getBlock": self.chain_get_block,
            "chain_getBlockHash": self.chain_get_block_hash,
            "chain_getFinalizedHead": self.chain_get_finalized_head,
            "chain_getFinalisedHead": self.chain_get_finalized_head,
            "chain_subscribeNewHeads": self._subscriber("chain_newHead"),
            "chain_subscribeFinalizedHeads": self._subscriber("chain_finalizedHead"),
            "chain_unsubscribeNewHeads": self.unsubscribe,
            "chain_unsubscribeFinalizedHeads": self.unsubscribe,
            "state_getStorage": self.state_get_storage,
            "state_getReadProof": self.state_get_read_proof,
            "state_getRuntimeVersion": self.state_get_runtime_version,
            "author_submitExtrinsic": self.author_submit_extrinsic,
            "author_pendingExtrinsics": self.author_pending_extrinsics,
            "phala_getStorageChanges": self.phala_get_storage_changes,
            "phala_getHeaders": self.phala_get_headers,
            "phala_getEvents": self.phala_get_events,
            "phala_mqNextSequence": self.phala_mq_next_sequence,
            "engine_createBlock": self.engine_create_block,
        }
        node.head_listeners.append(self._on_new_head)

    # -- transport ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/", self.handle_http)
        app.router.add_get("/", self.handle_ws)
        app.router.add_get("/health", self.handle_health)
        return app

    async def handle_health(self, request: web.Request) -> web.Response:
        return web.json_response(self.system_health([], None))

    async def handle_http(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._json(self._error(None, INVALID_REQUEST, f"request body exceeds {MAX_BODY} bytes"))
        return self._json(self.handle_body(body, None))

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_BODY, heartbeat=30)
        if not ws.can_prepare(request).ok:
            return web.Response(status=405, text="POST a JSON-RPC request, or open a WebSocket\n")
        await ws.prepare(request)
        conn = Connection(ws)
        self.connections.add(conn)
        writer = asyncio.ensure_future(self._writer(conn))
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    data = msg.data.encode() if isinstance(msg.data, str) else msg.data
                    response = self.handle_body(data, conn)
                    if response is not None:
                        conn.push(orjson.dumps(response))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.connections.discard(conn)
            conn.subscriptions.clear()
            writer.cancel()
        return ws

    async def _writer(self, conn: Connection) -> None:
        while True:
            payload = await conn.queue.get()
            if payload is None or conn.ws.closed:
                return
            try:
                await conn.ws.send_str(payload.decode())
            except (ConnectionError, RuntimeError):
                return

    @staticmethod
    def _json(obj: Any) -> web.Response:
        if obj is None:
            return web.Response(status=204)
        return web.Response(body=orjson.dumps(obj), content_type="application/json")

    # -- JSON-RPC envelope --------------------------------------------------------------------

    def handle_body(self, body: bytes, conn: Connection | None) -> Any:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._error(None, PARSE_ERROR, "parse error: the body is not valid JSON")
        if isinstance(request, list):
            if not request:
                return self._error(None, INVALID_REQUEST, "empty batch")
            if len(request) > MAX_BATCH:
                return self._error(None, INVALID_REQUEST, f"batch of more than {MAX_BATCH} requests")
            responses = [r for r in (self.handle_request(item, conn) for item in request) if r is not None]
            return responses or None
        return self.handle_request(request, conn)

    def handle_request(self, request: Any, conn: Connection | None) -> dict | None:
        if not isinstance(request, dict):
            return self._error(None, INVALID_REQUEST, "a request must be a JSON object")
        req_id = request.get("id")
        if req_id is not None and not isinstance(req_id, str | int) or isinstance(req_id, bool):
            return self._error(None, INVALID_REQUEST, "id must be a string, a number or null")
        if request.get("jsonrpc") != "2.0":
            return self._error(req_id, INVALID_REQUEST, 'jsonrpc must be "2.0"')
        method = request.get("method")
        if not isinstance(method, str):
            return self._error(req_id, INVALID_REQUEST, "method must be a string")
        handler = self.methods.get(method)
        if handler is None:
            return self._error(req_id, METHOD_NOT_FOUND, f"method not found: {method[:64]}")
        params = request.get("params")
        if isinstance(params, dict):
            return self._error(req_id, -32602, "named parameters are not supported; pass an array")
        is_notification = "id" not in request
        try:
            result = handler(params, conn)
        except InvalidParams as exc:
            return self._error(req_id, -32602, f"invalid params: {exc}")
        except InvalidTransaction as exc:
            return self._error(req_id, INVALID_TRANSACTION, "Invalid Transaction", f"{exc.kind}: {exc.message}")
        except PoolError as exc:
            return self._error(req_id, exc.code, exc.message)
        except RpcError as exc:
            return self._error(req_id, exc.code, exc.message, exc.data)
        except CannotFinalize as exc:
            return self._error(req_id, SERVER_ERROR, f"cannot produce a block: {exc}")
        except Exception:
            log.exception("internal error in %s", method)
            return self._error(req_id, INTERNAL_ERROR, "internal error")
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": req_id, "result": result}

    @staticmethod
    def _error(req_id: Any, code: int, message: str, data: Any = None) -> dict:
        err: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            err["data"] = data
        return {"jsonrpc": "2.0", "id": req_id, "error": err}

    @staticmethod
    def _noargs(params: Any) -> None:
        positional(params, 0, 0)

    # -- helpers ------------------------------------------------------------------------------

    def _header_at(self, at: bytes | None) -> Header:
        if at is None:
            return self.node.chain.head
        header = self.node.chain.db.header(at)
        if header is None:
            raise RpcError(-32602, f"unknown block 0x{at.hex()}")
        return header

    # -- system -------------------------------------------------------------------------------

    def system_health(self, params: Any, conn: Connection | None) -> dict:
        self._noargs(params)
        return {"peers": 0, "isSyncing": False, "shouldHavePeers": False}

    def system_account_next_index(self, params: Any, conn: Connection | None) -> int:
        (who,) = positional(params, 1, 1)
        return self.node.account_next_index(account(who, "account"))

    # -- chain --------------------------------------------------------------------------------

    def chain_get_header(self, params: Any, conn: Connection | None) -> dict | None:
        (at,) = positional(params, 0, 1)
        at = opt_hash(at, "hash")
        header = self.node.chain.head if at is None else self.node.chain.db.header(at)
        return None if header is None else header_json(header)

    def chain_get_block(self, params: Any, conn: Connection | None) -> dict | None:
        (at,) = positional(params, 0, 1)
        at = opt_hash(at, "hash")
        db = self.node.chain.db
        header = self.node.chain.head if at is None else db.header(at)
        if header is None:
            return None
        h = header.hash
        justification = db.justification(h)
        return {
            "block": {"header": header_json(header), "extrinsics": ["0x" + x.hex() for x in db.body(h) or []]},
            "justification": None if justification is None else "0x" + encode(justification).hex(),
        }

    def chain_get_block_hash(self, params: Any, conn: Connection | None) -> str | None:
        (number,) = positional(params, 0, 1)
        if number is None:
            return "0x" + self.node.chain.head.hash.hex()
        found = self.node.chain.db.hash_of(block_number(number, "number"))
        return None if found is None else "0x" + found.hex()

    def chain_get_finalized_head(self, params: Any, conn: Connection | None) -> str:
        self._noargs(params)
        return "0x" + self.node.chain.head.hash.hex()

    def _subscriber(self, notification: str) -> Callable[[Any, Connection | None], str]:
        def subscribe(params: Any, conn: Connection | None) -> str:
            self._noargs(params)
            if conn is None:
                raise RpcError(-32601, "subscriptions need a WebSocket connection")
            sub_id = str(next(self._sub_ids))
            conn.subscriptions[sub_id] = notification
            return sub_id

        return subscribe

    def unsubscribe(self, params: Any, conn: Connection | None) -> bool:
        (sub_id,) = positional(params, 1, 1)
        if conn is None or not isinstance(sub_id, str | int):
            return False
        return conn.subscriptions.pop(str(sub_id), None) is not None

    def _on_new_head(self, header: Header) -> None:
        if not self.connections:
            return
        result = header_json(header)
        for conn in list(self.connections):
            for sub_id, method in list(conn.subscriptions.items()):
                message = {"jsonrpc": "2.0", "method": method, "params": {"subscription": sub_id, "result": result}}
                conn.push(orjson.dumps(message))

    # -- state --------------------------------------------------------------------------------

    def state_get_storage(self, params: Any, conn: Connection | None) -> str | None:
        key, at = positional(params, 1, 2)
        key = hex_bytes(key, "key", max_len=1024)
        at = opt_hash(at, "at")
        db = self.node.chain.db
        if at is None or at == self.node.chain.head.hash:
            value = db.state_get(key)
        else:
            value = db.read_at(self._header_at(at).state_root, key)
        return None if value is None else "0x" + value.hex()

    def state_get_read_proof(self, params: Any, conn: Connection | None) -> dict:
        keys, at = positional(params, 1, 2)
        if not isinstance(keys, list) or len(keys) > MAX_PROOF_KEYS:
            raise InvalidParams(f"keys must be an array of at most {MAX_PROOF_KEYS} hex keys")
        raw_keys = [hex_bytes(k, f"keys[{i}]", max_len=1024) for i, k in enumerate(keys)]
        header = self._header_at(opt_hash(at, "at"))
        proof = trie.prove(header.state_root, raw_keys, self.node.chain.db.node)
        return {"at": "0x" + header.hash.hex(), "proof": ["0x" + blob.hex() for blob in proof]}

    def state_get_runtime_version(self, params: Any, conn: Connection | None) -> dict:
        positional(params, 0, 1)
        v = executive.VERSION
        return {"specName": v.spec_name, "specVersion": v.spec_version, "transactionVersion": v.transaction_version}

    # -- author -------------------------------------------------------------------------------

    def author_submit_extrinsic(self, params: Any, conn: Connection | None) -> str:
        (raw,) = positional(params, 1, 1)
        limit = executive.MAX_EXTRINSIC_SIZE
        if isinstance(raw, str) and len(raw) > 2 + 2 * limit:
            raise InvalidTransaction("ExhaustsResources", f"extrinsic exceeds the {limit}-byte limit")
        return "0x" + self.node.submit(hex_bytes(raw, "extrinsic")).hex()

    def author_pending_extrinsics(self, params: Any, conn: Connection | None) -> list[str]:
        self._noargs(params)
        return ["0x" + raw.hex() for raw in self.node.pool.pending()]

    # -- phala --------------------------------------------------------------------------------

    def _block_range(self, params: Any) -> range:
        """Block numbers ``from..=to`` (at most MAX_CHANGES_RANGE), cut at the finalized head."""
        first, last = positional(params, 2, 2)
        first, last = block_number(first, "from"), block_number(last, "to")
        if last < first:
            raise InvalidParams("to must not be below from")
        if last - first >= MAX_CHANGES_RANGE:
            raise InvalidParams(f"at most {MAX_CHANGES_RANGE} blocks per call")
        return range(first, min(last, self.node.chain.head.number) + 1)

    def phala_get_headers(self, params: Any, conn: Connection | None) -> list[dict]:
        """Encoded headers of blocks ``from..=to`` with their justifications, for relayers
        and light clients (one call instead of two per block)."""
        db = self.node.chain.db
        out = []
        for n in self._block_range(params):
            block_hash = db.hash_of(n)
            header = db.header(block_hash)
            justification = db.justification(block_hash)
            out.append(
                {
                    "number": n,
                    "header": "0x" + encode(header).hex(),
                    "justification": None if justification is None else "0x" + encode(justification).hex(),
                }
            )
        return out

    def phala_get_storage_changes(self, params: Any, conn: Connection | None) -> list[dict]:
        db = self.node.chain.db
        out = []
        for n in self._block_range(params):
            block_hash = db.hash_of(n)
            changes = db.changes(n) or []
            encoded = encode(BlockChanges(n, block_hash, changes))
            out.append(
                {
                    "number": n,
                    "hash": "0x" + block_hash.hex(),
                    "changes": [["0x" + c.key.hex(), None if c.value is None else "0x" + c.value.hex()] for c in changes],
                    "encoded": "0x" + encoded.hex(),
                }
            )
        return out

    def phala_get_events(self, params: Any, conn: Connection | None) -> list[dict]:
        (at,) = positional(params, 0, 1)
        header = self._header_at(opt_hash(at, "at"))
        raw = self.node.chain.db.read_at(header.state_root, system.Events.key)
        if raw is None:
            return []
        try:
            records = system.Events.codec.decode(raw)
        except DecodeError as exc:
            raise RpcError(INTERNAL_ERROR, f"stored events do not decode: {exc}") from exc
        names = {p.index: p.name for p in executive.PALLETS}
        return [
            {
                "phase": r.phase,
                "pallet": names.get(type(r.event).__mro__[1].__variant_index__, "?"),
                "event": type(r.event).__name__,
                "fields": to_json(r.event),
            }
            for r in records
        ]

    def phala_mq_next_sequence(self, params: Any, conn: Connection | None) -> int:
        (origin,) = positional(params, 1, 1)
        raw = hex_bytes(origin, "origin", max_len=MAX_ORIGIN)
        try:
            decoded = mq.ORIGIN_CODEC.decode(raw)
        except DecodeError as exc:
            raise InvalidParams(f"origin is not a SCALE-encoded MessageOrigin: {exc}") from exc
        return self.node.mq_next_sequence(decoded)

    def engine_create_block(self, params: Any, conn: Connection | None) -> dict:
        create_empty, finalize, parent = positional(params, 2, 3)
        create_empty = boolean(create_empty, "createEmpty")
        boolean(finalize, "finalize")  # every dev block is finalized when made
        parent = opt_hash(parent, "parentHash")
        if parent is not None and parent != self.node.chain.head.hash:
            raise RpcError(SERVER_ERROR, "parentHash is not the head: this chain has no forks")
        header = self.node.produce_block(allow_empty=create_empty)
        if header is None:
            raise RpcError(SERVER_ERROR, "no transactions to include and createEmpty is false")
        return {"hash": "0x" + header.hash.hex(), "number": header.number}


async def serve(node: Node, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the RPC server; returns the runner and the port it listens on."""
    return await start_site(RpcServer(node).app(), host, port)
