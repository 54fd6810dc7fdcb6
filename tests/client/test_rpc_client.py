"""The RPC client and the typed reads against an in-process fake node (no chain needed)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from phala.chain.runtime import balances, system
from phala.client import chain, tx
from phala.client.chain import VerificationError
from phala.client.describe import dispatch_outcome
from phala.client.rpc import (
    NodeUnreachable,
    RpcClient,
    RpcError,
    RpcProtocolError,
    call_sync,
    http_url,
    ws_url,
)
from phala.core.types import Extrinsic

from .fake_node import ALICE, ALICE_INFO, BOB, FakeNode


def with_node(test: Callable[[RpcClient, FakeNode], Awaitable[None]], node: FakeNode | None = None) -> None:
    async def main() -> None:
        fake = node or FakeNode()
        url = await fake.start()
        try:
            async with RpcClient(url, timeout=10) as client:
                await asyncio.wait_for(test(client, fake), 20)
        finally:
            await fake.stop()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_urls() -> None:
    assert ws_url("http://127.0.0.1:9944") == "ws://127.0.0.1:9944"
    assert ws_url("https://node.example:8443/rpc") == "wss://node.example:8443/rpc"
    assert http_url("ws://127.0.0.1:9944") == "http://127.0.0.1:9944"
    for bad in ("127.0.0.1:9944", "ftp://x", "http://"):
        with pytest.raises(ValueError, match="RPC URL"):
            RpcClient(bad)


def test_call_and_errors() -> None:
    async def check(client: RpcClient, node: FakeNode) -> None:
        assert await client.call("chain_getFinalizedHead") == "0x" + node.head.hash.hex()
        with pytest.raises(RpcError) as err:
            await client.call("always_fails")
        assert (err.value.code, err.value.message, err.value.data) == (1010, "Invalid Transaction", "Payment: cannot pay")
        assert "1010" in str(err.value) and "Payment" in str(err.value)
        with pytest.raises(RpcError) as err:
            await client.call("no_such_method")
        assert err.value.code == -32601

    with_node(check)


def test_unreachable_node() -> None:
    port = free_port()

    async def main() -> None:
        async with RpcClient(f"http://127.0.0.1:{port}", timeout=5) as client:
            with pytest.raises(NodeUnreachable, match=f"cannot reach the node at http://127.0.0.1:{port}"):
                await client.call("system_health")
            with pytest.raises(ConnectionError):
                async with client.subscribe("chain_subscribeFinalizedHeads", "chain_unsubscribeFinalizedHeads"):
                    pass

    asyncio.run(main())
    with pytest.raises(NodeUnreachable):
        call_sync(f"http://127.0.0.1:{port}", "system_health", timeout=5)


def test_non_json_reply_is_a_protocol_error() -> None:
    async def main() -> None:
        app = web.Application()

        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=502, text="bad gateway")

        app.router.add_post("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            async with RpcClient(f"http://127.0.0.1:{runner.addresses[0][1]}") as client:
                with pytest.raises(RpcProtocolError, match="HTTP 502"):
                    await client.call("system_health")
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_subscription_yields_notifications_and_unsubscribes() -> None:
    async def check(client: RpcClient, node: FakeNode) -> None:
        async with client.subscribe("chain_subscribeFinalizedHeads", "chain_unsubscribeFinalizedHeads") as sub:
            assert sub.id in node.subscribers
            node.seal([])
            node.seal([])
            numbers = []
            async for obj in sub:
                numbers.append(chain.header_from_json(obj).number)
                if len(numbers) == 2:
                    break
            assert numbers == [1, 2]
        await asyncio.sleep(0.1)
        assert not node.subscribers

    with_node(check)


def test_headers_blocks_and_events() -> None:
    async def check(client: RpcClient, node: FakeNode) -> None:
        genesis = node.head
        block = node.seal([b"\x01" * 120, b"\x02" * 120])
        assert await chain.finalized_head(client) == block.hash
        assert await chain.block_hash(client, 0) == genesis.hash
        assert await chain.block_hash(client, 5) is None
        assert await chain.get_header(client) == block
        assert await chain.get_header(client, genesis.hash) == genesis
        signed = await chain.get_block(client, block.hash)
        assert signed.block.header == block and signed.block.extrinsics == node.bodies[block.hash]
        evs = await chain.events(client, block.hash)
        assert [e.phase for e in evs] == [0, 1, None]
        assert evs[0].name == "System.ExtrinsicSuccess"
        props = await chain.properties(client)
        assert (props.ss58_format, props.token_symbol, props.token_decimals) == (30, "PHA", 12)
        # A body that does not match the header's extrinsics root is refused.
        node.bodies[block.hash] = [b"\x01" * 120]
        with pytest.raises(VerificationError, match="extrinsics root"):
            await chain.get_block(client, block.hash)

    with_node(check)


def test_verified_storage_and_account_info() -> None:
    async def check(client: RpcClient, node: FakeNode) -> None:
        key = system.Account.key(ALICE.public_key)
        missing = system.Account.key(BOB.public_key)
        proven = await chain.verified_storage(client, [key, missing])
        assert proven.header == node.head
        assert proven[missing] is None and proven[key] is not None
        assert await chain.account_info(client, ALICE.public_key) == ALICE_INFO
        assert await chain.account_info(client, ALICE.ss58_address(30)) == ALICE_INFO
        assert await chain.account_info(client, BOB.public_key) == system.AccountInfo()

    with_node(check)


def tamper_proof(method: str, result: Any) -> Any:
    if method != "state_getReadProof":
        return result
    blobs = result["proof"]
    last = blobs[-1]
    blobs[-1] = last[:-2] + ("00" if last[-2:] != "00" else "01")
    return result


def test_tampered_proof_is_refused() -> None:
    node = FakeNode()
    node.tamper = tamper_proof

    async def check(client: RpcClient, node: FakeNode) -> None:
        with pytest.raises(VerificationError, match="proof does not verify"):
            await chain.account_info(client, ALICE.public_key)

    with_node(check, node)


def test_header_that_lies_about_its_hash_is_refused() -> None:
    node = FakeNode()

    def lie(method: str, result: Any) -> Any:
        if method == "chain_getHeader" and result:
            result["stateRoot"] = "0x" + "00" * 32
        return result

    node.tamper = lie

    async def check(client: RpcClient, node: FakeNode) -> None:
        with pytest.raises(VerificationError, match="hashes to"):
            await chain.account_info(client, ALICE.public_key)

    with_node(check, node)


def test_submit_and_wait_finalized() -> None:
    async def check(client: RpcClient, node: FakeNode) -> None:
        head = await chain.get_header(client)
        call = balances.transfer_keep_alive(BOB.public_key, 10**12)
        tx_hash = await tx.submit(client, ALICE, call, tip=2)
        xt = Extrinsic.decode(node.submitted[0])
        assert (xt.nonce, xt.tip, xt.signer) == (ALICE_INFO.nonce, 2, ALICE.public_key)
        block_hash, events = await tx.wait_finalized(client, tx_hash, timeout=10, since=head.number + 1)
        assert block_hash == node.head.hash
        assert [e.name for e in events] == ["System.ExtrinsicSuccess"]
        assert dispatch_outcome(events).ok

    with_node(check)


def test_wait_finalized_finds_an_inclusion_that_came_before_the_wait() -> None:
    async def check(client: RpcClient, node: FakeNode) -> None:
        head = await chain.get_header(client)
        node.fail_next_block = True
        tx_hash = await tx.submit(client, ALICE, balances.transfer_allow_death(BOB.public_key, 1))
        await asyncio.sleep(0.3)  # sealed before anyone waits
        node.seal([])
        block_hash, events = await tx.wait_finalized(client, tx_hash, timeout=10, since=head.number + 1)
        assert block_hash == node.headers[head.number + 1].hash
        outcome = dispatch_outcome(events)
        assert outcome is not None and outcome.error == "Balances.InsufficientBalance"

    with_node(check)


def test_mortal_submission_signs_over_the_finalized_head() -> None:
    async def check(client: RpcClient, node: FakeNode) -> None:
        for _ in range(3):
            node.seal([])
        head = node.head
        await tx.submit(client, ALICE, balances.transfer_keep_alive(BOB.public_key, 1), mortal_period=64)
        xt = Extrinsic.decode(node.submitted[0])
        assert xt.era.period == 64 and xt.era.birth(head.number + 1) == head.number

    with_node(check)


def test_wait_finalized_times_out() -> None:
    async def check(client: RpcClient, node: FakeNode) -> None:
        with pytest.raises(TimeoutError, match="not in a finalized block within 0.3 s"):
            await tx.wait_finalized(client, b"\x00" * 32, timeout=0.3)

    with_node(check)


def test_storage_changes() -> None:
    node = FakeNode()

    async def check(client: RpcClient, node: FakeNode) -> None:
        node.seal([])
        node.seal([])
        changes = await chain.storage_changes(client, 1, 5000)
        assert [c.number for c in changes] == [1, 2]
        assert changes[0].block_hash == node.headers[1].hash
        assert changes[0].changes[0].key == b"key1" and changes[0].changes[1].value is None

        def lie(method: str, result: Any) -> Any:
            if method == "phala_getStorageChanges":
                result[0]["changes"][0][1] = "0x00"
            return result

        node.tamper = lie
        with pytest.raises(VerificationError, match="disagree"):
            await chain.storage_changes(client, 0, 1)

    with_node(check, node)
