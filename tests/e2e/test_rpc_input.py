"""What a node process does with large, bad and abusive input over JSON-RPC. Every refused
request must leave the head (hash and state root) and the transaction pool as they were."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from phala.chain.runtime import balances, executive, system
from phala.chain.spec import UNIT
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair, dev_keypair
from phala.core.types import Era

from .helpers import NodeProcess, Rpc, account_info, head_snapshot, sign, unhex, xt_hash

pytestmark = pytest.mark.e2e

ALICE, BOB, CHARLIE, DAVE, EVE = (
    dev_keypair(n) for n in ("Alice", "Bob", "Charlie", "Dave", "Eve")
)
NOBODY = Keypair.from_uri("//e2e/nobody")  # not endowed
MAX = executive.MAX_EXTRINSIC_SIZE


def run(coro_fn: Callable[[Rpc], Any], node: NodeProcess, timeout: float = 120) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            await coro_fn(Rpc(session, node.url))

    asyncio.run(asyncio.wait_for(main(), timeout))


def error_of(response: Any) -> dict:
    assert isinstance(response, dict) and "error" in response, response
    assert "result" not in response
    return response["error"]


async def refused(rpc: Rpc, request: bytes | tuple, code: int, kind: str | None = None) -> dict:
    """Send ``request`` (a raw body, or ``(method, params)``), expect error ``code`` (and,
    for 1010, ``data`` starting with ``kind``), and check that head and pool are unchanged."""
    before = await head_snapshot(rpc)
    if isinstance(request, bytes):
        response = await rpc.raw(request)
    else:
        method, params = request
        response = await rpc.raw(
            orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
        )
    if isinstance(response, list):  # a batch: every entry is refused alike
        errors = [error_of(r) for r in response]
    else:
        errors = [error_of(response)]
    for err in errors:
        assert err["code"] == code, (request if isinstance(request, tuple) else request[:80], err)
        assert isinstance(err["message"], str) and err["message"]
        if kind is not None:
            assert isinstance(err.get("data"), str) and err["data"].startswith(kind + ":"), err
    assert await head_snapshot(rpc) == before
    return errors[0]


def remark_of_size(kp: Keypair, size: int, nonce: int, genesis: bytes, rng: random.Random) -> bytes:
    """A signed ``system.remark`` extrinsic of exactly ``size`` bytes."""
    length = size - 120
    while True:
        raw = sign(kp, system.remark(rng.randbytes(max(0, length))), nonce, genesis)
        if len(raw) == size:
            return raw
        length += size - len(raw)


def test_large_remark_included_and_oversize_refused(start_node: Callable[..., NodeProcess]) -> None:
    node = start_node(seal="manual")

    async def scenario(rpc: Rpc) -> None:
        rng = random.Random(7)
        genesis = unhex(await rpc.call("chain_getBlockHash", 0))
        data = rng.randbytes(64 * 1024)
        raw = sign(ALICE, system.remark(data), 0, genesis)
        assert await rpc.call("author_submitExtrinsic", "0x" + raw.hex()) == xt_hash(raw)
        block = await rpc.call("engine_createBlock", False, True)
        assert block["number"] == 1
        got = await rpc.call("chain_getBlock", block["hash"])
        assert got["block"]["extrinsics"] == ["0x" + raw.hex()]
        events = await rpc.call("phala_getEvents", block["hash"])
        remarked = [e for e in events if e["event"] == "Remarked"]
        assert remarked and remarked[0]["fields"]["hash"] == "0x" + blake2_256(data).hex()
        assert any(e["event"] == "ExtrinsicSuccess" and e["phase"] == 0 for e in events)
        assert await rpc.call("author_pendingExtrinsics") == []

        # One byte over the limit, and far over it (refused before decoding the hex).
        for size in (MAX + 1, 2 * MAX, 1 << 20):
            big = remark_of_size(ALICE, size, 1, genesis, rng)
            err = await refused(
                rpc, ("author_submitExtrinsic", ["0x" + big.hex()]), 1010, "ExhaustsResources"
            )
            assert str(MAX) in err["data"] and "exceeds" in err["data"], err
        # Exactly at the limit is fine.
        edge = remark_of_size(ALICE, MAX, 1, genesis, rng)
        assert await rpc.call("author_submitExtrinsic", "0x" + edge.hex()) == xt_hash(edge)
        block = await rpc.call("engine_createBlock", False, True)
        got = await rpc.call("chain_getBlock", block["hash"])
        assert got["block"]["extrinsics"] == ["0x" + edge.hex()]
        assert (await account_info(rpc, ALICE.public_key)).nonce == 2

    run(scenario, node)


def test_bad_input_refused_without_side_effects(start_node: Callable[..., NodeProcess]) -> None:
    node = start_node(seal="manual")

    async def scenario(rpc: Rpc) -> None:
        genesis = unhex(await rpc.call("chain_getBlockHash", 0))
        # Alice's nonce 0 is used; the head is at #5 so that short eras born at 0 are over.
        transfer0 = sign(ALICE, balances.transfer_keep_alive(BOB.public_key, UNIT), 0, genesis)
        await rpc.call("author_submitExtrinsic", "0x" + transfer0.hex())
        for _ in range(5):
            await rpc.call("engine_createBlock", True, True)
        head = await rpc.call("chain_getHeader")
        assert int(head["number"], 16) == 5
        # A valid mortal extrinsic stays pooled throughout, so "unchanged" is not "empty".
        era = Era.mortal(64, 5)
        birth = unhex(await rpc.call("chain_getBlockHash", era.birth(5)))
        pooled = sign(
            BOB, balances.transfer_keep_alive(CHARLIE.public_key, UNIT), 0, genesis, era, birth
        )
        await rpc.call("author_submitExtrinsic", "0x" + pooled.hex())
        assert await rpc.call("author_pendingExtrinsics") == ["0x" + pooled.hex()]

        # -- the envelope ------------------------------------------------------------------
        for body in (
            b"{",
            b"",
            b"\xff\xfe",
            b'{"jsonrpc": "2.0", "id": 1, "method": "system_health"',
            b"[1,",
        ):
            await refused(rpc, body, -32700)
        for body in (
            b"42", b'"system_health"', b"null", b"true", b"[]", b"[1, 2]", b'[{"jsonrpc": "1.0"}]',
            b'{"id": 1, "method": "system_health"}',
            b'{"jsonrpc": "2.0", "id": 1}',
            b'{"jsonrpc": "2.0", "id": [1], "method": "system_health"}',
            b'{"jsonrpc": "2.0", "id": true, "method": "system_health"}',
            b'{"jsonrpc": "2.0", "id": 1, "method": 5}',
            b"[" + b",".join([b'{"jsonrpc":"2.0","id":1,"method":"system_health"}'] * 1001) + b"]",
        ):  # fmt: skip
            await refused(rpc, body, -32600)
        await refused(rpc, b'"' + b"x" * (5 << 20) + b'"', -32600)  # over the 4 MiB body limit
        for method in ("nope_nothing", "", "system_health ", "SYSTEM_HEALTH", "x" * 10_000):
            await refused(rpc, (method, []), -32601)

        # -- parameters --------------------------------------------------------------------
        for method, params in (
            ("system_health", [1]),
            ("system_accountNextIndex", []),
            ("system_accountNextIndex", ["not-an-address"]),
            ("system_accountNextIndex", [12]),
            ("chain_getBlockHash", ["x"]),
            ("chain_getBlockHash", [-1]),
            ("chain_getBlockHash", [True]),
            ("chain_getBlockHash", [2**32]),
            ("chain_getBlockHash", [1.5]),
            ("chain_getHeader", [123]),
            ("chain_getHeader", ["0x1234"]),
            ("chain_getBlock", [{"hash": 1}]),
            ("state_getStorage", [42]),
            ("state_getStorage", ["0xzz"]),
            ("state_getStorage", ["0x00", "0x00"]),
            ("state_getStorage", ["0x00", "0x" + "11" * 32]),  # an unknown block
            ("state_getReadProof", ["0x00"]),
            ("state_getReadProof", [["0x00"] * 1001]),
            ("author_submitExtrinsic", []),
            ("author_submitExtrinsic", [123]),
            ("author_submitExtrinsic", ["abc"]),
            ("author_submitExtrinsic", ["0x0"]),
            ("author_submitExtrinsic", ["0x" + pooled.hex(), 1]),
            ("engine_createBlock", ["yes", True]),
            ("engine_createBlock", [True]),
            ("engine_createBlock", [True, True, "0x" + "22" * 32 + "00"]),
            ("phala_getStorageChanges", [5, 1]),
            ("phala_getStorageChanges", [0, 5000]),
            ("phala_getStorageChanges", ["0xzz", 1]),
            ("phala_getEvents", ["0x" + "33" * 32]),
            ("chain_unsubscribeNewHeads", []),
        ):
            await refused(rpc, (method, params), -32602)
        await refused(
            rpc,
            b'{"jsonrpc": "2.0", "id": 1, "method": "chain_getHeader", "params": {"hash": null}}',
            -32602,
        )
        await refused(
            rpc,
            b'{"jsonrpc": "2.0", "id": 1, "method": "chain_getHeader", "params": "0x00"}',
            -32602,
        )

        # -- extrinsics --------------------------------------------------------------------
        valid = sign(ALICE, balances.transfer_keep_alive(BOB.public_key, UNIT), 1, genesis)
        flipped = bytearray(valid)
        flipped[40] ^= 0x04  # inside the signature
        bad_address = bytearray(valid)
        bad_address[1] = 0xFF
        for raw, kind in (
            (b"", "Decode"),
            (b"\x00", "Decode"),
            (bytes(200), "Decode"),
            (b"\x04" + valid[102:], "Call"),  # unsigned: a transfer cannot be
            (bytes(bad_address), "Decode"),
            (valid[:60], "Decode"),
            (valid[:102], "Decode"),  # cut after the signed extra: no call
            (valid[:-1], "Call"),  # the call is cut short
            (valid + b"\x00", "Call"),  # trailing bytes after the call
            (valid[:102] + b"\xff\x00", "Call"),  # no such pallet
            (valid[:102] + b"\x03\x00" * 2000 + valid[102:], "Call"),  # sudo(sudo(…)) too deep
            (bytes(flipped), "BadProof"),
            (sign(ALICE, balances.transfer_keep_alive(BOB.public_key, UNIT), 1, b"\x11" * 32), "BadProof"),
            (sign(ALICE, balances.transfer_keep_alive(BOB.public_key, UNIT), 0, genesis), "Stale"),
            # An era of 4 blocks born at genesis ended at #4. As in Substrate, the birth block
            # is recomputed in the current period (#4), so the signature no longer matches.
            (sign(ALICE, balances.transfer_keep_alive(BOB.public_key, UNIT), 1, genesis, Era(4, 0)), "BadProof"),
            # An era whose birth lies ahead of the next block.
            (sign(ALICE, balances.transfer_keep_alive(BOB.public_key, UNIT), 1, genesis, Era(64, 40)), "AncientBirthBlock"),
            (sign(NOBODY, balances.transfer_keep_alive(BOB.public_key, UNIT), 0, genesis), "Payment"),
            (sign(DAVE, balances.transfer_keep_alive(BOB.public_key, UNIT), 0, genesis, tip=10**30), "Payment"),
        ):  # fmt: skip
            await refused(rpc, ("author_submitExtrinsic", ["0x" + raw.hex()]), 1010, kind)
        await refused(rpc, ("author_submitExtrinsic", ["0x" + pooled.hex()]), 1013)
        replacement = sign(BOB, balances.transfer_keep_alive(DAVE.public_key, UNIT), 0, genesis)
        await refused(rpc, ("author_submitExtrinsic", ["0x" + replacement.hex()]), 1014)
        # A batch of bad extrinsics: each refused, nothing pooled.
        await refused(rpc, orjson.dumps([
            {"jsonrpc": "2.0", "id": i, "method": "author_submitExtrinsic", "params": ["0x" + raw.hex()]}
            for i, raw in enumerate((bytes(flipped), valid[:-1] + b"\x01", bytes(200)))
        ]), 1010)  # fmt: skip
        # The refusals used no nonce: Alice's next is still 1, and it goes in.
        assert await rpc.call("system_accountNextIndex", ALICE.ss58_address()) == 1

        # -- floods ------------------------------------------------------------------------
        # One account's future transactions (nonces with a gap) are capped...
        futures = [sign(CHARLIE, system.remark(b"f"), n, genesis) for n in range(100, 165)]
        for raw in futures[:-1]:
            await rpc.call("author_submitExtrinsic", "0x" + raw.hex())
        err = await refused(rpc, ("author_submitExtrinsic", ["0x" + futures[-1].hex()]), 1016)
        assert "future" in err["message"]
        # ... and so is the pool. Eve fills it with a ready chain of transfers.
        pending = len(await rpc.call("author_pendingExtrinsics"))
        rejected: dict | None = None
        nonce = 0
        while rejected is None:
            assert nonce <= 20_000, "the pool never filled up"
            raws = [
                sign(EVE, balances.transfer_keep_alive(BOB.public_key, UNIT), nonce + i, genesis)
                for i in range(1000)
            ]
            responses = await rpc.batch(
                [("author_submitExtrinsic", ["0x" + r.hex()]) for r in raws]
            )
            for i, response in enumerate(responses):
                if "error" in response:
                    rejected = response["error"]
                    assert rejected["code"] == 1016, rejected
                    assert "full" in rejected["message"]
                    assert all("error" in r and r["error"]["code"] == 1016 for r in responses[i:])
                    last_refused = raws[i]
                    break
                pending += 1
            nonce += 1000
        assert len(await rpc.call("author_pendingExtrinsics")) == pending
        await refused(rpc, ("author_submitExtrinsic", ["0x" + last_refused.hex()]), 1016)
        assert (await account_info(rpc, EVE.public_key)).nonce == 0

    run(scenario, node, timeout=150)
