"""Fuzzing a node process over HTTP and WebSocket with a fixed seed: mutated signed
extrinsics and random or mutated JSON-RPC bodies. The node must answer every request with a
well-formed response (never an internal error), keep working, and end in exactly the state
that re-executing its blocks from genesis gives."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from phala.chain.blockchain import Blockchain
from phala.chain.db import ChainDB
from phala.chain.runtime import balances, sudo, system
from phala.chain.spec import UNIT, ChainSpec
from phala.core.codec import DecodeError
from phala.core.keys import dev_keypair
from phala.core.types import Extrinsic

from .helpers import (
    NodeProcess,
    Rpc,
    account_info,
    header_from_json,
    justification_from_hex,
    sign,
    unhex,
    xt_hash,
)

pytestmark = pytest.mark.e2e

SEED = 0x5EED
ROUNDS = 6
MUTANTS_PER_ROUND = 600  # extrinsics; a fifth of them over WebSocket
JSON_BODIES = 3000  # random and mutated JSON-RPC bodies; a third over WebSocket
SENDERS = [dev_keypair(n) for n in ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")]
TX_KINDS = {
    "Decode",
    "Call",
    "BadProof",
    "Stale",
    "Future",
    "AncientBirthBlock",
    "Payment",
    "ExhaustsResources",
}
# Codes a request may legitimately get; -32603 (internal error) is never one of them.
ALLOWED_CODES = {-32700, -32600, -32601, -32602, -32000, 1010, 1013, 1014, 1016}


class Observed:
    """Every response the node sent, checked for shape as it arrives."""

    def __init__(self) -> None:
        self.count = 0
        self.codes: dict[int, int] = {}

    def check(self, response: Any) -> None:
        items = response if isinstance(response, list) else [response]
        assert items, "empty batch response"
        for item in items:
            assert isinstance(item, dict) and item.get("jsonrpc") == "2.0", item
            self.count += 1
            if "error" in item:
                assert "result" not in item, item
                err = item["error"]
                code = err.get("code")
                assert code != -32603, f"internal error: {item}"
                assert code in ALLOWED_CODES, item
                assert isinstance(err.get("message"), str), item
                if code == 1010:
                    assert err["data"].split(":")[0] in TX_KINDS, item
                self.codes[code] = self.codes.get(code, 0) + 1
            else:
                assert "result" in item, item


# -- extrinsic mutations -------------------------------------------------------------------------


def mutate_extrinsic(rng: random.Random, raw: bytes, others: list[bytes]) -> bytes:
    b = bytearray(raw)
    op = rng.randrange(9)
    if op == 0:  # bit flips
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # truncation
        del b[rng.randrange(len(b)) :]
    elif op == 2:  # extension
        b += rng.randbytes(rng.randint(1, 64))
    elif op == 3:  # insertion
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 8))
    elif op == 4:  # deletion
        i = rng.randrange(len(b))
        del b[i : i + rng.randint(1, 8)]
    elif op == 5:  # a byte set to an edge value
        b[rng.randrange(len(b))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
    elif op == 6:  # splice with another extrinsic
        other = rng.choice(others)
        i, j = rng.randrange(len(b)), rng.randrange(len(other))
        b = b[:i] + other[j:]
    elif op == 7:  # random bytes
        b = bytearray(rng.randbytes(rng.randint(0, 300)))
    else:  # the same call from another signer position: swap the signer key
        b[2:34] = rng.choice(SENDERS).public_key
    return bytes(b)


# -- JSON-RPC bodies -----------------------------------------------------------------------------


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(12 if depth < 3 else 9)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.randint(-5, 2000)
    if choice == 3:
        return rng.choice((2**32, 2**53, 2**64, -(2**63), 10**30, 1.5, -0.0, 1e300))
    if choice == 4:
        return "0x" + rng.randbytes(rng.choice((0, 1, 16, 32, 33, 64))).hex()
    if choice == 5:
        return "0x" + "".join(
            rng.choice("0123456789abcdefxyzG ") for _ in range(rng.randint(0, 70))
        )
    if choice == 6:
        return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randint(0, 20)))
    if choice == 7:
        return rng.choice(
            ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "0x" + "00" * 32, "latest", "")
        )
    if choice == 8:
        return rng.randint(0, 20)
    if choice in (9, 10):
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        str(random_value(rng, 3)): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))
    }


def random_request(rng: random.Random, methods: list[str], known: dict[str, list]) -> Any:
    method = rng.choice(methods) if rng.random() < 0.9 else random_value(rng, 2)
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": rng.randint(1, 10**6), "method": method}
    r = rng.random()
    if r < 0.3 and isinstance(method, str) and method in known:
        request["params"] = list(known[method])  # plausible parameters
    elif r < 0.9:
        request["params"] = [random_value(rng, 1) for _ in range(rng.randint(0, 3))]
    elif r < 0.95:
        request["params"] = random_value(rng, 1)
    # Damage the envelope now and then.
    r = rng.random()
    if r < 0.05:
        del request["jsonrpc"]
    elif r < 0.1:
        request["id"] = random_value(rng, 2)
    elif r < 0.13:
        del request["id"]  # a notification: no response
    elif r < 0.16:
        request["jsonrpc"] = random_value(rng, 2)
    return request


def random_body(rng: random.Random, methods: list[str], known: dict[str, list]) -> bytes:
    r = rng.random()
    if r < 0.1:
        return json.dumps(
            [random_request(rng, methods, known) for _ in range(rng.randint(1, 5))]
        ).encode()
    if r < 0.15:
        return rng.randbytes(rng.randint(0, 200))
    if r < 0.18:
        depth = rng.randint(500, 3000)
        return b"[" * depth + b"]" * depth
    body = bytearray(json.dumps(random_request(rng, methods, known)).encode())
    if r < 0.4 and body:  # textual damage
        for _ in range(rng.randint(1, 4)):
            op, i = rng.randrange(3), rng.randrange(len(body))
            if op == 0:
                body[i] = rng.choice(b'{}[]",:0x\\ aZ\x00\xff')
            elif op == 1:
                del body[i:]
            else:
                body[i:i] = rng.choice((b"{", b'"', b",", b"null", b"\\u0000", b"1e999"))
            if not body:
                break
    return bytes(body)


# -- the test ----------------------------------------------------------------------------------


def test_fuzz_rpc(start_node: Callable[..., NodeProcess], tmp_path: Path) -> None:
    node = start_node(seal="manual")
    asyncio.run(asyncio.wait_for(_fuzz(node, tmp_path), timeout=150))
    assert node.running()


async def _ws_exchange(
    ws: aiohttp.ClientWebSocketResponse, bodies: list[bytes], seen: Observed, binary: bool
) -> None:
    """Send ``bodies`` on the WebSocket, then a marker request; check every response that
    comes back before the marker's (notifications are skipped)."""
    for body in bodies:
        if binary:
            await ws.send_bytes(body)
        else:
            await ws.send_str(body.decode("utf-8", errors="replace"))
    await ws.send_str('{"jsonrpc": "2.0", "id": "marker", "method": "system_health"}')
    async with asyncio.timeout(60):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data = orjson.loads(msg.data)
            if isinstance(data, dict) and data.get("method") in (
                "chain_newHead",
                "chain_finalizedHead",
            ):
                continue
            seen.check(data)
            if isinstance(data, dict) and data.get("id") == "marker":
                assert data["result"]["peers"] == 0
                return


async def _fuzz(node: NodeProcess, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    seen = Observed()
    accepted: dict[str, bytes] = {}  # hash -> raw, for every extrinsic the node took
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        rpc = Rpc(session, node.url)
        genesis_hex = await rpc.call("chain_getBlockHash", 0)
        genesis = unhex(genesis_hex)
        ws = await session.ws_connect(node.ws_url, max_msg_size=8 << 20)

        async def submit_http(raws: list[bytes]) -> None:
            responses = await rpc.batch(
                [("author_submitExtrinsic", ["0x" + r.hex()]) for r in raws]
            )
            for raw, response in zip(raws, responses, strict=True):
                seen.check(response)
                if "result" in response:
                    assert response["result"] == xt_hash(raw)
                    accepted[response["result"]] = raw

        # -- mutated extrinsics ----------------------------------------------------------------
        for _ in range(ROUNDS):
            bases = []
            for kp in SENDERS:
                nonce = await rpc.call("system_accountNextIndex", kp.ss58_address())
                dest = rng.choice(SENDERS).public_key
                call = rng.choice((
                    balances.transfer_keep_alive(dest, rng.randint(1, 5) * UNIT),
                    balances.transfer_allow_death(dest, rng.randint(1, 5) * UNIT),
                    system.remark(rng.randbytes(rng.randint(0, 300))),
                    sudo.sudo(balances.force_set_balance(dest, 10 * UNIT)),  # only Alice may
                ))  # fmt: skip
                bases.append(sign(kp, call, nonce, genesis, tip=rng.choice((0, 0, 1, 10**9))))
            mutants = [
                mutate_extrinsic(rng, rng.choice(bases), bases) for _ in range(MUTANTS_PER_ROUND)
            ]
            mutants += bases + bases  # the originals too, twice: accepted, then 1013
            rng.shuffle(mutants)
            over_ws = MUTANTS_PER_ROUND // 5
            for i in range(over_ws, len(mutants), 100):
                await submit_http(mutants[i : i + 100])
            ws_bodies = [
                orjson.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": f"x{i}",
                        "method": "author_submitExtrinsic",
                        "params": ["0x" + raw.hex()],
                    }
                )
                for i, raw in enumerate(mutants[:over_ws])
            ]
            before = seen.count
            await _ws_exchange(ws, ws_bodies, seen, binary=False)
            assert seen.count == before + over_ws + 1
            # The WebSocket answers do not tell which were accepted; the pool does.
            for raw in await rpc.call("author_pendingExtrinsics"):
                accepted.setdefault(xt_hash(unhex(raw)), unhex(raw))
            block = await rpc.call("engine_createBlock", True, True)
            assert block["number"] >= 1

        # -- random and mutated JSON-RPC bodies -----------------------------------------------
        methods = (await rpc.call("rpc_methods"))["methods"]
        head = await rpc.call("chain_getHeader")
        known = {
            "chain_getBlockHash": [1],
            "chain_getBlock": [head["hash"]],
            "chain_getHeader": [head["parentHash"]],
            "state_getStorage": [
                "0x" + system.Account.key(SENDERS[0].public_key).hex(),
                head["hash"],
            ],
            "state_getReadProof": [["0x" + system.Account.key(SENDERS[1].public_key).hex()]],
            "system_accountNextIndex": [SENDERS[2].ss58_address()],
            "phala_getStorageChanges": [0, 3],
            "phala_getEvents": [head["hash"]],
            "author_submitExtrinsic": ["0x" + mutate_extrinsic(rng, bases[0], bases).hex()],
            "engine_createBlock": [False, True],
        }
        bodies = [random_body(rng, methods, known) for _ in range(JSON_BODIES)]
        over_ws = JSON_BODIES // 3
        for body in bodies[over_ws:]:
            status, response = await rpc.post(body)
            if response is None:
                assert status == 204  # only notifications get no answer
            else:
                assert status == 200
                seen.check(response)
        for i in range(0, over_ws, 100):
            chunk = bodies[i : i + 100]
            await _ws_exchange(ws, chunk, seen, binary=(i // 100) % 2 == 1)
        await ws.close()

        # -- the node still works, and its state is what its blocks imply ---------------------
        assert await rpc.call("system_health") == {
            "peers": 0,
            "isSyncing": False,
            "shouldHavePeers": False,
        }
        for raw in await rpc.call("author_pendingExtrinsics"):
            accepted.setdefault(xt_hash(unhex(raw)), unhex(raw))
        before = int((await rpc.call("chain_getHeader"))["number"], 16)
        block = await rpc.call("engine_createBlock", True, True)
        assert block["number"] == before + 1
        assert await rpc.call("author_pendingExtrinsics") == []
        assert seen.codes.get(1010, 0) > ROUNDS * MUTANTS_PER_ROUND // 2
        assert {-32700, -32600, -32601, -32602, 1013} <= set(seen.codes)

        await _replay_and_compare(rpc, tmp_path, genesis_hex, accepted)


async def _replay_and_compare(
    rpc: Rpc, tmp_path: Path, genesis_hex: str, accepted: dict[str, bytes]
) -> None:
    """Re-execute every block the node made on a fresh in-process chain from the same
    genesis: each must import (same state root), and the extrinsics in them must be exactly
    those the node accepted, with every sender's nonces gapless."""
    genesis_header = header_from_json(await rpc.call("chain_getHeader", genesis_hex))
    spec = ChainSpec.dev(start_time_ms=genesis_header.timestamp)
    reference = Blockchain(ChainDB(tmp_path / "replay"), spec)
    try:
        assert "0x" + reference.genesis_hash.hex() == genesis_hex, "the node's dev genesis differs"
        head = header_from_json(await rpc.call("chain_getHeader"))
        included: dict[str, bytes] = {}
        for number in range(1, head.number + 1):
            block = await rpc.call("chain_getBlock", await rpc.call("chain_getBlockHash", number))
            header = header_from_json(block["block"]["header"])
            extrinsics = [unhex(x) for x in block["block"]["extrinsics"]]
            reference.import_block(
                header, extrinsics, justification_from_hex(block["justification"])
            )
            for raw in extrinsics:
                included[xt_hash(raw)] = raw
        assert reference.head == head
        assert set(included) == set(accepted)
        nonces: dict[bytes, list[int]] = {}
        for raw in included.values():
            try:
                xt = Extrinsic.decode(raw)
            except DecodeError as exc:  # pragma: no cover - the node accepted it
                raise AssertionError(f"an included extrinsic does not decode: {exc}") from exc
            nonces.setdefault(xt.signer, []).append(xt.nonce)
        for signer, used in nonces.items():
            assert sorted(used) == list(range(len(used)))
            assert (await account_info(rpc, signer)).nonce == len(used)
    finally:
        reference.db.close()
