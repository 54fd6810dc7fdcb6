"""A node process under load: signed transfers over HTTP, finality over WebSocket, a storage
proof checked against a finalized header, then SIGKILL in the middle of a load of transfers
and a restart on the same base path that must keep everything that was reported final."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from phala.chain.runtime import balances
from phala.chain.spec import UNIT
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair, dev_keypair
from phala.core.trie import ProofError, verify_proof
from phala.core.types import Extrinsic

from .helpers import (
    TOTAL_ISSUANCE_KEY,
    HeadFollower,
    NodeProcess,
    Rpc,
    account_info,
    account_key,
    all_accounts,
    decode_account,
    header_from_json,
    sign,
    unhex,
    wait_for,
    xt_hash,
)

pytestmark = pytest.mark.e2e

SENDERS = [dev_keypair(n) for n in ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")]
FRESH = [Keypair.from_uri(f"//e2e/fresh/{i}") for i in range(4)]
RECEIVERS = [k.public_key for k in SENDERS + FRESH]
FIRST_ROUND = 8  # transfers per sender before the load
LOAD_BATCH = 5  # transfers per sender per HTTP request during the load


@dataclass
class Ledger:
    """What the test sent and what it saw finalized."""

    genesis: bytes
    nonces: dict[bytes, int] = field(default_factory=dict)  # next nonce per sender
    sent: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # hash -> (sender, nonce)
    accepted: set[str] = field(default_factory=set)  # the node returned the hash
    seen_in: dict[str, tuple[int, str]] = field(default_factory=dict)  # hash -> (number, block)
    finalized: dict[int, str] = field(default_factory=dict)  # what the WebSocket reported

    def transfer(self, rng: random.Random, kp: Keypair) -> bytes:
        nonce = self.nonces[kp.public_key]
        self.nonces[kp.public_key] = nonce + 1
        dest = rng.choice([r for r in RECEIVERS if r != kp.public_key])
        raw = sign(
            kp, balances.transfer_keep_alive(dest, UNIT + rng.randrange(UNIT)), nonce, self.genesis
        )
        self.sent[xt_hash(raw)] = (kp.public_key, nonce)
        return raw


async def submit_batch(rpc: Rpc, ledger: Ledger, raws: list[bytes]) -> None:
    responses = await rpc.batch([("author_submitExtrinsic", ["0x" + raw.hex()]) for raw in raws])
    for raw, response in zip(raws, responses, strict=True):
        assert "error" not in response, response
        assert response["result"] == xt_hash(raw)
        ledger.accepted.add(response["result"])


async def index_blocks(rpc: Rpc, follower: HeadFollower, ledger: Ledger) -> None:
    """Record every finalized head the WebSocket reports, and which submitted extrinsics
    each block holds (fetched from the node while it runs)."""
    done = 0
    while True:
        while done < len(follower.headers):
            header = follower.headers[done]
            done += 1
            number = int(header["number"], 16)
            ledger.finalized[number] = header["hash"]
            block = await rpc.call("chain_getBlock", header["hash"])
            assert block["block"]["header"] == header
            for raw in block["block"]["extrinsics"]:
                ledger.seen_in[xt_hash(unhex(raw))] = (number, header["hash"])
        if follower.closed.is_set():
            return
        follower.changed.clear()
        if done == len(follower.headers):
            await follower.changed.wait()


async def check_read_proof(rpc: Rpc, header_json: dict) -> None:
    """A proof from ``state_getReadProof`` verifies against the finalized header's root and
    gives the same values as ``state_getStorage`` at that block."""
    header = header_from_json(header_json)  # the hash is recomputed from the fields
    keys = [account_key(k.public_key) for k in SENDERS + FRESH] + [TOTAL_ISSUANCE_KEY]
    result = await rpc.call(
        "state_getReadProof", ["0x" + k.hex() for k in keys], header_json["hash"]
    )
    assert result["at"] == header_json["hash"]
    values = verify_proof(header.state_root, [unhex(b) for b in result["proof"]], keys)
    for key in keys:
        direct = await rpc.call("state_getStorage", "0x" + key.hex(), header_json["hash"])
        assert values[key] == (None if direct is None else unhex(direct))
    assert decode_account(values[keys[0]]).data.free > 0
    # A proof does not verify against another block's root.
    parent = header_from_json(await rpc.call("chain_getHeader", header_json["parentHash"]))
    if parent.state_root != header.state_root:
        with pytest.raises(ProofError, match="missing node"):
            verify_proof(parent.state_root, [unhex(b) for b in result["proof"]], keys)


def test_transfers_finality_proof_and_crash_recovery(
    start_node: Callable[..., NodeProcess],
) -> None:
    node = start_node(seal="interval", block_time=0.2)
    asyncio.run(asyncio.wait_for(_scenario(node), timeout=150))


async def _scenario(node: NodeProcess) -> None:
    rng = random.Random(20240601)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        rpc = Rpc(session, node.url)
        genesis = unhex(await rpc.call("chain_getBlockHash", 0))
        ledger = Ledger(genesis)
        for kp in SENDERS:
            ledger.nonces[kp.public_key] = await rpc.call(
                "system_accountNextIndex", kp.ss58_address()
            )

        async with HeadFollower(session, node.ws_url) as follower:
            indexer = asyncio.ensure_future(index_blocks(rpc, follower, ledger))

            # -- transfers from several accounts, some in batches, some one by one -----------
            first: list[bytes] = []
            for _ in range(FIRST_ROUND):
                first += [ledger.transfer(rng, kp) for kp in SENDERS]
            await submit_batch(rpc, ledger, first[: len(first) // 2])
            for raw in first[len(first) // 2 :]:
                assert await rpc.call("author_submitExtrinsic", "0x" + raw.hex()) == xt_hash(raw)
                ledger.accepted.add(xt_hash(raw))
            for kp in SENDERS:  # the pool counts what it holds
                pooled = await rpc.call("system_accountNextIndex", "0x" + kp.public_key.hex())
                onchain = (await account_info(rpc, kp.public_key)).nonce
                assert onchain <= pooled <= ledger.nonces[kp.public_key]

            async def first_round_final() -> bool:
                return all(xt_hash(raw) in ledger.seen_in for raw in first)

            await wait_for(first_round_final, 60, "the first transfers to be finalized")
            events = await rpc.call("phala_getEvents", ledger.seen_in[xt_hash(first[0])][1])
            assert any(e["event"] == "Transfer" for e in events)
            await check_read_proof(rpc, follower.headers[-1])

            # -- a load of transfers, and SIGKILL while it is in flight -----------------------
            stop_load = asyncio.Event()

            async def load() -> None:
                while not stop_load.is_set():
                    raws = [ledger.transfer(rng, kp) for kp in SENDERS for _ in range(LOAD_BATCH)]
                    try:
                        await submit_batch(rpc, ledger, raws)
                    except (aiohttp.ClientError, TimeoutError):
                        return  # the node died under us; these may or may not be in

            loader = asyncio.ensure_future(load())
            load_start = follower.last_number

            first_hashes = {xt_hash(raw) for raw in first}

            async def load_finalized() -> bool:
                if loader.done():
                    loader.result()  # raises what went wrong
                    raise AssertionError("the load stopped while the node was up")
                blocks_with_load = {
                    n for h, (n, _) in ledger.seen_in.items() if h not in first_hashes
                }
                return follower.last_number >= load_start + 5 and len(blocks_with_load) >= 2

            await wait_for(load_finalized, 60, "load transfers to be finalized")
            node.kill()  # SIGKILL, with requests in flight
            stop_load.set()
            async with asyncio.timeout(30):
                await follower.closed.wait()  # everything sent before the kill has arrived
                await loader
            # The indexer stops at the first block it can no longer fetch.
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with asyncio.timeout(10):
                    await indexer
            indexer.cancel()
            reported = {int(h["number"], 16): h["hash"] for h in follower.headers}
        assert all(ledger.finalized[n] == h for n, h in reported.items() if n in ledger.finalized)
        last_reported = max(reported)
        assert last_reported > load_start

        # -- restart on the same base path ------------------------------------------------
        node.start()
        rpc = Rpc(session, node.url)
        assert await rpc.call("chain_getBlockHash", 0) == "0x" + genesis.hex()
        head = await rpc.call("chain_getHeader")
        head_number = int(head["number"], 16)
        assert head_number >= last_reported
        for number, block_hash in reported.items():
            assert await rpc.call("chain_getBlockHash", number) == block_hash, (
                f"block #{number} changed"
            )
        assert await rpc.call("chain_getBlockHash", last_reported) == reported[last_reported]

        # Every block up to the head, from the restarted node.
        included: dict[str, int] = {}
        for number in range(1, head_number + 1):
            block_hash = await rpc.call("chain_getBlockHash", number)
            block = await rpc.call("chain_getBlock", block_hash)
            header_from_json(block["block"]["header"])
            for raw in block["block"]["extrinsics"]:
                h = xt_hash(unhex(raw))
                assert h in ledger.sent, f"block #{number} holds an extrinsic nobody sent"
                assert h not in included, "an extrinsic was included twice"
                included[h] = number
        # A transfer seen in a finalized block is still in that block.
        for h, (number, _) in ledger.seen_in.items():
            assert included.get(h) == number
        # Nonces add up: each sender's included transfers are exactly nonces 0..nonce-1.
        # Accepted transfers that the crash dropped from the pool all come after those.
        for kp in SENDERS:
            who = kp.public_key
            nonce = (await account_info(rpc, who, head["hash"])).nonce
            in_chain = sorted(n for h, (s, n) in ledger.sent.items() if s == who and h in included)
            assert in_chain == list(range(nonce))
            assert nonce >= FIRST_ROUND
            lost = [
                n
                for h, (s, n) in ledger.sent.items()
                if s == who and h in ledger.accepted and h not in included
            ]
            assert all(n >= nonce for n in lost)
            assert await rpc.call("system_accountNextIndex", kp.ss58_address()) == nonce

        # Total issuance equals the sum of every account's free + reserved at one block.
        accounts = await all_accounts(rpc, head_number)
        assert {k.public_key for k in SENDERS} <= set(accounts)
        issuance = await rpc.call("state_getStorage", "0x" + TOTAL_ISSUANCE_KEY.hex(), head["hash"])
        total = balances.TotalIssuance.codec.decode(unhex(issuance))
        assert total == sum(a.data.free + a.data.reserved for a in accounts.values())

        # -- the chain goes on: new blocks, and a new transfer gets in ---------------------
        async with HeadFollower(session, node.ws_url) as follower:
            await follower.wait_number(head_number + 3, 30)
            alice = SENDERS[0]
            nonce = await rpc.call("system_accountNextIndex", alice.ss58_address())
            raw = sign(
                alice, balances.transfer_keep_alive(FRESH[0].public_key, UNIT), nonce, genesis
            )
            assert Extrinsic.decode(raw).nonce == nonce
            h = await rpc.call("author_submitExtrinsic", "0x" + raw.hex())
            assert h == "0x" + blake2_256(raw).hex()

            async def included_after_restart() -> bool:
                return (await account_info(rpc, alice.public_key)).nonce > nonce

            await wait_for(included_after_restart, 30, "a transfer after the restart")
            assert (await account_info(rpc, alice.public_key)).nonce == nonce + 1
        node.stop()
