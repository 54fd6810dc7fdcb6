"""The pRuntime's HTTP API (aiohttp), for its relayer.

Requests are SCALE-encoded request records, sent either as a binary body
(``Content-Type: application/octet-stream``) or as JSON ``{"scale": "0x…"}``. Answers are
JSON; every answer carries ``at``, the last block the worker dispatched (a relayer can
withhold blocks, so a reader must know how fresh an answer is). Errors are
``{"error": reason}`` with status 400 (bad input), 409 (wrong state) or 413 (too large).

| endpoint | request | answer |
| --- | --- | --- |
| ``/get_info`` | – | sync heights, registered, role, keys, pending egress, enclave, state hash |
| ``/init_runtime`` | ``InitRuntimeRequest`` | the registration: info and attestation (hex SCALE) |
| ``/get_runtime_info`` | – | the same registration, for a worker already initialised |
| ``/sync_header`` | ``SyncHeaderRequest`` | the new finalized header number |
| ``/dispatch_blocks`` | ``DispatchBlocksRequest`` | the last dispatched block |
| ``/get_egress_messages`` | – | signed messages not yet seen on chain (hex SCALE) |
| ``/sign_endpoint`` | ``SignEndpointRequest`` | counter and signature for ``update_worker_endpoint`` |
| ``/contract_query`` | a sealed signed query (``phala.core.contracts``) | ``{"answer": "0x…"}``: the sealed answer |

``/contract_query`` is the public endpoint clients use; its body is the sealed query itself
(binary, or JSON ``{"scale": "0x…"}``) and a refused query is a 400 with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from phala.core.attestation import AttestationReport
from phala.core.codec import AccountId, DecodeError, codec_of, decode, encode
from phala.core.mq import SignedMessage
from phala.core.types import BlockChanges, Header, Justification

from .queries import QueryError, QueryService
from .runtime import Worker, WorkerError

log = logging.getLogger("phala.pruntime.api")

MAX_BODY = 256 << 20  # a batch of blocks with their storage changes


@dataclass(frozen=True)
class InitRuntimeRequest:
    genesis: Header
    authority_proof: list[bytes]
    operator: AccountId | None


@dataclass(frozen=True)
class SyncHeaderRequest:
    headers: list[Header]
    justification: Justification


@dataclass(frozen=True)
class DispatchBlocksRequest:
    blocks: list[BlockChanges]


@dataclass(frozen=True)
class SignEndpointRequest:
    endpoint: bytes | None


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


class PRuntimeApi:
    def __init__(self, worker: Worker, on_dispatched=None):
        self.worker = worker
        self.on_dispatched = on_dispatched  # e.g. the checkpoint policy
        self.lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        routes = {
            "get_info": self.get_info,
            "init_runtime": self.init_runtime,
            "get_runtime_info": self.get_runtime_info,
            "sync_header": self.sync_header,
            "dispatch_blocks": self.dispatch_blocks,
            "get_egress_messages": self.get_egress_messages,
            "sign_endpoint": self.sign_endpoint,
            "contract_query": self.contract_query,
        }
        for name, handler in routes.items():
            app.router.add_post(f"/{name}", self._wrap(handler))
            app.router.add_get(f"/{name}", self._wrap(handler))
        return app

    # -- plumbing -----------------------------------------------------------------------------

    def _wrap(self, handler):
        async def run(request: web.Request) -> web.Response:
            try:
                async with self.lock:  # one request at a time: the worker is a state machine
                    result = await handler(request)
                result.setdefault("at", self._at())
                return web.Response(body=orjson.dumps(result), content_type="application/json")
            except WorkerError as exc:
                return self._error(exc.code, exc.message)
            except web.HTTPRequestEntityTooLarge:
                return self._error(413, f"request body exceeds {MAX_BODY} bytes")
            except Exception:
                log.exception("internal error")
                return self._error(500, "internal error")

        return run

    def _error(self, status: int, message: str) -> web.Response:
        body = {"error": message, "at": self._at()}
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    def _at(self) -> dict | None:
        chain = self.worker.chain
        if chain is None or chain.dispatched is None:
            return None
        return {"number": chain.dispatched.number, "hash": _hex(chain.dispatched.hash)}

    @staticmethod
    async def _raw(request: web.Request) -> bytes:
        """The request's bytes: a binary body, or JSON ``{"scale": "0x…"}``."""
        body = await request.read()
        if request.content_type == "application/octet-stream":
            return body
        try:
            obj = orjson.loads(body)
            text = obj["scale"]
            if not isinstance(text, str) or not text.startswith("0x"):
                raise ValueError
            return bytes.fromhex(text[2:])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise WorkerError('body must be SCALE bytes or JSON {"scale": "0x…"}') from exc

    @classmethod
    async def _decode(cls, request: web.Request, tp: type) -> Any:
        raw = await cls._raw(request)
        try:
            return decode(tp, raw)
        except DecodeError as exc:
            raise WorkerError(f"cannot decode {tp.__name__}: {exc}") from exc

    def _registration(self) -> dict:
        reg = self.worker.current_registration()
        return {
            "info": _hex(encode(reg.info)),
            "attestation": _hex(codec_of(AttestationReport).encode(reg.attestation)),
            "identity": _hex(reg.info.identity),
            "ecdh": _hex(reg.info.ecdh),
            "genesisHash": _hex(reg.info.genesis_hash),
            "enclave": self.worker.enclave.kind,
        }

    # -- endpoints ----------------------------------------------------------------------------

    async def get_info(self, request: web.Request) -> dict:
        return self.worker.info()

    async def init_runtime(self, request: web.Request) -> dict:
        req = await self._decode(request, InitRuntimeRequest)
        self.worker.init_runtime(req.genesis, req.authority_proof, req.operator)
        return {"registration": self._registration()}

    async def get_runtime_info(self, request: web.Request) -> dict:
        return {"registration": self._registration()}

    async def sync_header(self, request: web.Request) -> dict:
        req = await self._decode(request, SyncHeaderRequest)
        last = self.worker.sync_header(req.headers, req.justification)
        return {"headerNumber": last.number, "headerHash": _hex(last.hash)}

    async def dispatch_blocks(self, request: web.Request) -> dict:
        req = await self._decode(request, DispatchBlocksRequest)
        try:
            last, count = self.worker.dispatch_blocks(req.blocks)
        finally:
            if self.on_dispatched is not None:
                self.on_dispatched()
        return {"blockNumber": last.number, "blockHash": _hex(last.hash), "dispatched": count,
                "stateHash": _hex(self.worker.state_hash())}

    async def get_egress_messages(self, request: web.Request) -> dict:
        codec = codec_of(SignedMessage)
        return {"messages": [_hex(codec.encode(m)) for m in self.worker.egress_messages()]}

    async def sign_endpoint(self, request: web.Request) -> dict:
        req = await self._decode(request, SignEndpointRequest)
        counter, signature = self.worker.sign_endpoint(req.endpoint)
        return {"counter": counter, "signature": _hex(signature)}

    async def contract_query(self, request: web.Request) -> dict:
        sealed = await self._raw(request)
        queries = next((r for r in self.worker.roles if isinstance(r, QueryService)), None)
        if queries is None:
            raise WorkerError("this pRuntime answers no contract queries", 409)
        try:
            answer = queries.answer(sealed)
        except QueryError as exc:
            raise WorkerError(f"query refused: {exc}") from exc
        return {"answer": _hex(answer)}
