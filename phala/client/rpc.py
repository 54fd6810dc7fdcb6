"""An async JSON-RPC 2.0 client for the node (``docs/rpc.md``), on aiohttp.

Calls go over HTTP (``POST /``); subscriptions open their own WebSocket on the same URL
with ``ws://`` (``wss://``) in place of ``http://`` (``https://``)::

    async with RpcClient("http://127.0.0.1:9944") as client:
        head = await client.call("chain_getFinalizedHead")
        async with client.subscribe(
            "chain_subscribeFinalizedHeads", "chain_unsubscribeFinalizedHeads"
        ) as heads:
            async for header in heads:
                ...

Errors: an error response raises :class:`RpcError` (code, message, data); a node that
cannot be reached, or that drops the connection, raises :class:`NodeUnreachable` (a
``ConnectionError``); a reply that is not JSON-RPC raises :class:`RpcProtocolError`.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import orjson
from yarl import URL

__all__ = [
    "DEFAULT_URL",
    "InvalidUrl",
    "NodeUnreachable",
    "RpcClient",
    "RpcError",
    "RpcProtocolError",
    "Subscription",
    "SubscriptionClosed",
    "call_sync",
    "http_url",
    "run",
    "ws_url",
]

DEFAULT_URL = "http://127.0.0.1:9944"
DEFAULT_TIMEOUT = 30.0
MAX_MESSAGE = 64 << 20

T = TypeVar("T")


class RpcError(Exception):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None):
        self.code, self.message, self.data = code, message, data
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.message} (code {self.code})"
        return f"{text}: {self.data}" if self.data is not None else text


class RpcProtocolError(Exception):
    """The reply is not a JSON-RPC 2.0 response (not JSON, wrong shape, HTTP error)."""


class InvalidUrl(ValueError):
    """A node URL that is not ``http(s)://HOST[:PORT]`` or ``ws(s)://HOST[:PORT]``."""


class NodeUnreachable(ConnectionError):
    """No node answers at the URL, or the connection broke or timed out."""


class SubscriptionClosed(NodeUnreachable):
    """The node closed a subscription's WebSocket."""


def _parse_url(url: str) -> URL:
    parsed = URL(url.strip())
    if parsed.scheme not in ("http", "https", "ws", "wss") or not parsed.host:
        raise InvalidUrl(f"RPC URL must be http://HOST:PORT or ws://HOST:PORT, got {url!r}")
    return parsed


def http_url(url: str) -> str:
    """The HTTP form of a node URL (``ws://`` becomes ``http://``)."""
    parsed = _parse_url(url)
    scheme = {"ws": "http", "wss": "https"}.get(parsed.scheme, parsed.scheme)
    return str(parsed.with_scheme(scheme))


def ws_url(url: str) -> str:
    """The WebSocket form of a node URL (``http://`` becomes ``ws://``)."""
    parsed = _parse_url(url)
    scheme = {"http": "ws", "https": "wss"}.get(parsed.scheme, parsed.scheme)
    return str(parsed.with_scheme(scheme))


def _unreachable(url: str, exc: BaseException) -> NodeUnreachable:
    if isinstance(exc, asyncio.TimeoutError):
        reason = "timed out"
    else:
        reason = str(exc) or type(exc).__name__
    return NodeUnreachable(f"cannot reach the node at {url}: {reason}")


def _result(reply: Any, req_id: int) -> Any:
    """The result of a response object, or raise its error."""
    if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
        raise RpcProtocolError("the node's reply is not a JSON-RPC 2.0 response")
    if "error" in reply:
        err = reply["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int):
            raise RpcProtocolError("the node's error response is malformed")
        raise RpcError(err["code"], str(err.get("message", "")), err.get("data"))
    if reply.get("id") != req_id or "result" not in reply:
        raise RpcProtocolError("the node's response does not answer the request")
    return reply["result"]


class RpcClient:
    """A connection to one node. Use as an async context manager, or call :meth:`close`."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT):
        self.url = http_url(url)
        self.ws_url = ws_url(url)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session, created on first use (inside the running event loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def next_id(self) -> int:
        return next(self._ids)

    async def call(self, method: str, *params: Any) -> Any:
        """Call ``method`` over HTTP and return its result.

        Raises :class:`RpcError`, :class:`NodeUnreachable` or :class:`RpcProtocolError`.
        """
        req_id = self.next_id()
        body = orjson.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": list(params)})
        try:
            async with self.session().post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _unreachable(self.url, exc) from exc
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RpcProtocolError(
                f"the node at {self.url} answered HTTP {status} with a body that is not JSON"
            ) from exc
        return _result(reply, req_id)

    def subscribe(self, method: str, unsubscribe_method: str, *params: Any) -> Subscription:
        """A subscription over WebSocket: an async iterator of notification results.

        Use it as ``async with client.subscribe(...) as sub: async for x in sub`` so that the
        subscription is cancelled and its socket closed when the block ends.
        """
        return Subscription(self, method, unsubscribe_method, list(params))


class Subscription:
    """One subscription on its own WebSocket; iterate it for the notifications' results."""

    def __init__(self, client: RpcClient, method: str, unsubscribe_method: str, params: list):
        self.client = client
        self.method = method
        self.unsubscribe_method = unsubscribe_method
        self.params = params
        self.id: str | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._backlog: collections.deque[Any] = collections.deque()

    async def __aenter__(self) -> Subscription:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        if self._ws is None:
            await self.open()
        while True:
            if self._backlog:
                return self._backlog.popleft()
            message = await self._receive()
            result = self._notification(message)
            if result is not _NOTHING:
                return result

    async def open(self) -> None:
        """Connect and subscribe. Raises :class:`NodeUnreachable` or :class:`RpcError`."""
        if self._ws is not None:
            return
        url = self.client.ws_url
        try:
            self._ws = await self.client.session().ws_connect(url, heartbeat=30, max_msg_size=MAX_MESSAGE)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _unreachable(url, exc) from exc
        req_id = self.client.next_id()
        request = {"jsonrpc": "2.0", "id": req_id, "method": self.method, "params": self.params}
        early: list[Any] = []
        try:
            await self._ws.send_str(orjson.dumps(request).decode())
            while True:
                message = await self._receive()
                if isinstance(message, dict) and "method" in message and "id" not in message:
                    early.append(message)  # a notification that overtook the reply
                    continue
                self.id = str(_result(message, req_id))
                break
        except BaseException:
            await self.close()
            raise
        for message in early:
            result = self._notification(message)
            if result is not _NOTHING:
                self._backlog.append(result)

    async def _receive(self) -> Any:
        assert self._ws is not None
        try:
            msg = await self._ws.receive()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _unreachable(self.client.ws_url, exc) from exc
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            try:
                return orjson.loads(msg.data)
            except orjson.JSONDecodeError as exc:
                raise RpcProtocolError("the node sent a WebSocket message that is not JSON") from exc
        raise SubscriptionClosed(f"the node at {self.client.ws_url} closed the subscription")

    def _notification(self, message: Any) -> Any:
        """The result of a notification for this subscription, else ``_NOTHING``."""
        if not isinstance(message, dict):
            return _NOTHING
        params = message.get("params")
        if "id" in message or not isinstance(params, dict):
            return _NOTHING  # a reply (to the unsubscribe call) or something else
        if str(params.get("subscription")) != self.id or "result" not in params:
            return _NOTHING
        return params["result"]

    async def close(self) -> None:
        """Unsubscribe (best effort) and close the socket."""
        ws, self._ws = self._ws, None
        if ws is None:
            return
        if self.id is not None and not ws.closed:
            request = {
                "jsonrpc": "2.0",
                "id": self.client.next_id(),
                "method": self.unsubscribe_method,
                "params": [self.id],
            }
            try:
                await ws.send_str(orjson.dumps(request).decode())
            except (aiohttp.ClientError, OSError, RuntimeError):
                pass
        await ws.close()


_NOTHING = object()


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion from synchronous code (the CLI)."""

    async def main() -> T:
        return await coro

    return asyncio.run(main())


def call_sync(url: str, method: str, *params: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """One call from synchronous code: open a client, call, close."""

    async def once() -> Any:
        async with RpcClient(url, timeout=timeout) as client:
            return await client.call(method, *params)

    return asyncio.run(once())
