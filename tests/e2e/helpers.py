"""Helpers for the end-to-end tests: node processes on loopback ports, a small JSON-RPC
client over aiohttp (HTTP and WebSocket), extrinsic signing and decoding of what the node
returns. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from phala.chain.runtime import system
from phala.chain.runtime.executive import VERSION
from phala.chain.runtime.frame import RuntimeCall
from phala.core.codec import decode, encode
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair
from phala.core.storage_keys import storage_prefix
from phala.core.types import DigestItem, Era, Extrinsic, Header, Justification, signing_payload

START_TIMEOUT = 60.0
ACCOUNT_PREFIX = storage_prefix("System", "Account")
TOTAL_ISSUANCE_KEY = storage_prefix("Balances", "TotalIssuance")

_LISTENING = re.compile(rb"RPC listening on (http://\S+)")


class PhalaProcess:
    """One ``python -m phala ARGS`` process; each run writes ``<tag>-<run>.out/.err`` in
    ``log_dir``. ``ready`` (bytes regex, group 1 = URL) is waited for on stdout at start."""

    def __init__(self, tag: str, args: Sequence[str], log_dir: Path, ready: bytes | None = None):
        self.tag = tag
        self.args = list(args)
        self.log_dir = log_dir
        self.ready = re.compile(ready) if ready is not None else None
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.runs = 0

    def log_path(self, stream: str, run: int | None = None) -> Path:
        return self.log_dir / f"{self.tag}-{self.runs if run is None else run}.{stream}"

    def start(self, timeout: float = START_TIMEOUT) -> PhalaProcess:
        assert not self.running(), f"{self.tag} already runs"
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out, err = self.log_path("out"), self.log_path("err")
        with out.open("wb") as o, err.open("wb") as e:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "phala", *self.args],
                stdout=o,
                stderr=e,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        if self.ready is None:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.ready.search(out.read_bytes())
            if found:
                self.url = found.group(1).decode().rstrip("/")
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.tag} exited with {self.proc.returncode}:\n{self.stderr_tail()}"
                )
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.tag} was not ready within {timeout}s:\n{self.stderr_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process (if it runs) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stderr(self, run: int | None = None) -> str:
        path = self.log_path("err", run)
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr_tail(self, lines: int = 30) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


def node_args(base_path: Path, seal: str, block_time: float) -> list[str]:
    """``phala node --dev`` on a free loopback port (it prints the port it got)."""
    flags = {
        "interval": ["--block-time", str(block_time)],
        "instant": ["--instant-seal"],
        "manual": ["--manual-seal"],
    }
    return [
        "node", "--dev", "--rpc-host", "127.0.0.1",
        "--base-path", str(base_path), "--rpc-port", "0", *flags[seal],
    ]  # fmt: skip


class NodeProcess(PhalaProcess):
    """One node process; its stdout and stderr go to files next to its base path."""

    def __init__(
        self, base_path: Path, seal: str = "interval", block_time: float = 0.2, tag: str = "node"
    ):
        super().__init__(tag, node_args(base_path, seal, block_time), base_path.parent, _LISTENING.pattern)
        self.base_path = base_path
        self.seal = seal
        self.block_time = block_time

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]


# -- JSON-RPC ---------------------------------------------------------------------------------


class RpcFailure(Exception):
    def __init__(self, error: dict):
        super().__init__(f"{error.get('code')}: {error.get('message')} ({error.get('data')})")
        self.code = error.get("code")
        self.message = error.get("message")
        self.data = error.get("data")


class Rpc:
    """JSON-RPC over HTTP with an aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, url: str):
        self.session = session
        self.url = url
        self._ids = 0

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    async def post(self, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
        async with self.session.post(
            self.url, data=body, headers={"Content-Type": content_type}
        ) as resp:
            raw = await resp.read()
            return resp.status, (orjson.loads(raw) if raw else None)

    async def raw(self, body: bytes) -> Any:
        return (await self.post(body))[1]

    async def request(self, method: str, *params: Any) -> dict:
        """The whole response object (result or error)."""
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": self._next_id(), "method": method, "params": list(params)}
        )
        response = await self.raw(body)
        assert isinstance(response, dict), response
        return response

    async def call(self, method: str, *params: Any) -> Any:
        response = await self.request(method, *params)
        if "error" in response:
            raise RpcFailure(response["error"])
        return response["result"]

    async def batch(self, calls: Iterable[tuple[str, list]]) -> list[dict]:
        """Responses in the order of ``calls``."""
        requests = [
            {"jsonrpc": "2.0", "id": self._next_id(), "method": m, "params": p} for m, p in calls
        ]
        if not requests:
            return []
        responses = await self.raw(orjson.dumps(requests))
        by_id = {r["id"]: r for r in responses}
        return [by_id[r["id"]] for r in requests]


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll an async ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class HeadFollower:
    """A WebSocket subscription to finalized (or new) heads, kept in ``headers``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws_url: str,
        method: str = "chain_subscribeFinalizedHeads",
    ):
        self.session = session
        self.ws_url = ws_url
        self.method = method
        self.headers: list[dict] = []
        self.changed = asyncio.Event()
        self.closed = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> HeadFollower:
        self.ws = await self.session.ws_connect(self.ws_url, max_msg_size=8 << 20)
        await self.ws.send_bytes(
            orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": self.method, "params": []})
        )
        async with asyncio.timeout(30):
            reply = orjson.loads((await self.ws.receive()).data)
        assert isinstance(reply.get("result"), str), reply
        self.subscription = reply["result"]
        self._task = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = orjson.loads(msg.data)
                params = data.get("params")
                if isinstance(params, dict) and params.get("subscription") == self.subscription:
                    self.headers.append(params["result"])
                    self.changed.set()
        finally:
            self.closed.set()
            self.changed.set()

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.ws is not None:
            await self.ws.close()

    @property
    def last_number(self) -> int:
        return int(self.headers[-1]["number"], 16) if self.headers else -1

    async def wait_number(self, number: int, timeout: float) -> dict:
        """Wait until a head numbered at least ``number`` is reported."""
        deadline = time.monotonic() + timeout
        while self.last_number < number:
            if self.closed.is_set():
                raise AssertionError("the subscription closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out waiting for head #{number} (at #{self.last_number})"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.changed.wait()
        return self.headers[-1]


# -- chain data ---------------------------------------------------------------------------------


def unhex(text: str) -> bytes:
    assert text.startswith("0x"), text
    return bytes.fromhex(text[2:])


def header_from_json(obj: dict) -> Header:
    """Rebuild a header from its JSON form and check it hashes to the ``hash`` it claims."""
    header = Header(
        parent_hash=unhex(obj["parentHash"]),
        number=int(obj["number"], 16),
        state_root=unhex(obj["stateRoot"]),
        extrinsics_root=unhex(obj["extrinsicsRoot"]),
        timestamp=obj["timestamp"],
        author=unhex(obj["author"]),
        digest=[decode(DigestItem, unhex(log)) for log in obj["digest"]["logs"]],
    )
    assert header.hash == unhex(obj["hash"]), "header JSON does not hash to its hash"
    return header


def justification_from_hex(text: str) -> Justification:
    return decode(Justification, unhex(text))


def sign(
    kp: Keypair,
    call: RuntimeCall,
    nonce: int,
    genesis: bytes,
    era: Era = Era(),  # noqa: B008 - frozen
    birth: bytes | None = None,
    tip: int = 0,
) -> bytes:
    """An encoded signed extrinsic (``birth`` defaults to the genesis hash)."""
    encoded = encode(call, RuntimeCall)
    payload = signing_payload(
        encoded, era, nonce, tip, VERSION.spec_version, VERSION.transaction_version, genesis,
        genesis if birth is None else birth,
    )  # fmt: skip
    return Extrinsic(kp.public_key, kp.sign(payload), era, nonce, tip, encoded).encode()


def xt_hash(raw: bytes) -> str:
    return "0x" + blake2_256(raw).hex()


def account_key(who: bytes) -> bytes:
    return system.Account.key(who)


def decode_account(raw: bytes | None) -> system.AccountInfo:
    return system.AccountInfo() if raw is None else system.Account.codec.decode(raw)


async def account_info(rpc: Rpc, who: bytes, at: str | None = None) -> system.AccountInfo:
    value = await rpc.call("state_getStorage", "0x" + account_key(who).hex(), at)
    return decode_account(None if value is None else unhex(value))


async def head_snapshot(rpc: Rpc) -> tuple[str, str, list[str]]:
    """(head hash, head state root, pending extrinsics): what a refused request must not change."""
    header, pending = await asyncio.gather(
        rpc.call("chain_getHeader"), rpc.call("author_pendingExtrinsics")
    )
    return header["hash"], header["stateRoot"], pending


async def all_accounts(rpc: Rpc, upto: int) -> dict[bytes, system.AccountInfo]:
    """Every System.Account entry at block ``upto``, rebuilt from the storage changes of
    blocks 0..upto (the latest write of each key wins; None deletes)."""
    latest: dict[bytes, bytes | None] = {}
    for first in range(0, upto + 1, 1000):
        last = min(first + 999, upto)
        for block in await rpc.call("phala_getStorageChanges", first, last):
            for key, value in block["changes"]:
                k = unhex(key)
                if k.startswith(ACCOUNT_PREFIX):
                    latest[k] = None if value is None else unhex(value)
    return {
        system.Account.decode_key(k): decode_account(v) for k, v in latest.items() if v is not None
    }
