"""Contracts end to end: a node, a gatekeeper pRuntime and two worker pRuntimes (wk1, wk2) in
one cluster, each with its pherry (which records the worker's endpoint on chain), as real
processes over loopback; driven through the client SDK
(:class:`phala.client.contract_session.ContractSession`) and, once, through ``phala contract``
itself. In order:

1. the pRuntimes register; the first is made a gatekeeper, the other two form a cluster;
2. the example token is deployed (``init(1_000_000)`` from Alice): code uploaded, constructor
   sealed to the cluster's key, the contract's keys published, the constructor reported ok;
3. commands from two accounts (Alice → Bob 1000, Bob → Alice 100), each reported ok with its
   index, and its receipt readable by its sender only;
4. queries with access control: Bob reads his balance from a worker found through chain state
   (its registered endpoint); Alice reading Bob's balance is refused by the contract; Bob's
   events query returns the transfer Alice's command made to him and his own; Alice's
   commands are found on chain and listed with their receipts;
5. a query sent twice is refused the second time (replayed nonce);
6. a command sealed to the wrong key (the cluster's, not the contract's) is reported as an
   error that used no gas, and both workers' state hashes stay as they were;
7. a contract that loops forever is stopped by gas (out of gas, the whole limit used), and the
   token carries on (a transfer right after is ok), on both workers;
8. wk1 and wk2 show the same state hash for both contracts (``get_info`` ``contracts``);
   then ``phala contract`` (as processes) deploys another token, calls it, queries it (an
   answer, and a refusal by the contract), and lists events and commands;
9. wk2 (pRuntime and pherry) is SIGKILLed after a checkpoint; a command runs meanwhile on wk1
   alone; wk2 restarts with the contract state of its checkpoint (``get_info`` before any
   block arrives), refuses a query it answered before the kill, catches up to wk1's state hash
   and answers with the command it missed.

And ``make dev`` (``phala dev``) deploys the example token once: its id is printed and kept in
``<base path>/token``, the token answers a query, and a restart finds it there.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from phala.chain.runtime import cluster, gatekeeper
from phala.cli.gatekeeping import dispatch_as_root, gatekeeper_state
from phala.client.contract_session import ContractSession, QueryRefused
from phala.client.contracts import seal_command
from phala.contracts import protocol as p
from phala.core.cluster import cluster_id
from phala.core.contracts import QUERY_METHOD
from phala.core.gas import GAS_PRICE
from phala.core.keys import dev_keypair

from .helpers import wait_for
from .worker_helpers import (
    DevNetwork,
    Member,
    PhalaProcess,
    Processes,
    checkpoint_blocks,
    free_port,
    node_process,
    pherry_process,
    pruntime_process,
    run_phala_dev,
    worker_info,
    write_dev_spec,
)

pytestmark = pytest.mark.e2e

ALICE, BOB, CHARLIE = dev_keypair("Alice"), dev_keypair("Bob"), dev_keypair("Charlie")
SUDO = ALICE
BLOCK_TIME = 0.25
OPERATORS = {"gk": "//Charlie", "wk1": "//Dave", "wk2": "//Eve"}
CHECKPOINT_INTERVAL = {"gk": 100, "wk1": 100, "wk2": 4}  # wk2 resumes from a recent one
STEP = 30.0  # seconds any one step may take
TOKEN = Path(__file__).resolve().parents[2] / "examples" / "token.py"
AUCTION = TOKEN.with_name("auction.py")
VOTING = TOKEN.with_name("voting.py")
SPINNER = b"""
from phala.contracts.sdk import Contract, command, constructor, query


class Spinner(Contract):
    @constructor
    def init(self, ctx):
        self.spins = 0

    @command
    def spin(self, ctx) -> int:
        n = 0
        while True:
            n += 1
        return n

    @command
    def bump(self, ctx) -> int:
        self.spins += 1
        return self.spins

    @query
    def spins_so_far(self, ctx) -> int:
        return self.spins
"""
SPIN_GAS = 300_000






def test_contracts_end_to_end(tmp_path: Path, processes: Processes) -> None:
    spec = write_dev_spec(tmp_path / "spec.json")
    node_port = free_port()
    node = processes.add(
        node_process(processes.log_dir, spec, tmp_path / "node", node_port, block_time=BLOCK_TIME)
    )
    node_url = f"http://127.0.0.1:{node_port}"
    members = {}
    for name, operator in OPERATORS.items():
        port = free_port()  # fixed: wk2's pherry and its endpoint on chain outlive its restart
        url = f"http://127.0.0.1:{port}"
        pruntime = pruntime_process(
            name, processes.log_dir, spec, tmp_path / name, port, CHECKPOINT_INTERVAL[name]
        )
        pherry = pherry_process(
            f"{name}-pherry", processes.log_dir, node_url, url, operator, endpoint=url
        )
        members[name] = Member(
            name, processes.add(pruntime), processes.add(pherry), tmp_path / name
        )
    timings: list[tuple[str, float]] = []
    try:
        asyncio.run(asyncio.wait_for(_scenario(node, members, timings), 120))
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc}\n{processes.logs()}") from exc
    finally:
        print("\n".join(f"{what}: {seconds:.1f}s" for what, seconds in timings))


async def _scenario(
    node: PhalaProcess, m: dict[str, Member], timings: list[tuple[str, float]]
) -> None:
    gk, wk1, wk2 = m["gk"], m["wk1"], m["wk2"]
    started = last = time.monotonic()

    def lap(what: str) -> None:
        nonlocal last
        now = time.monotonic()
        timings.append((what, now - last))
        last = now

    await asyncio.gather(
        *(asyncio.to_thread(x.start) for x in (node, *(y.pruntime for y in m.values())))
    )
    for member in m.values():
        member.pherry.start()
    timeout = aiohttp.ClientTimeout(total=20)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        ContractSession(node.url, timeout=STEP, poll=0.1) as session,
    ):
        client = session.client

        async def info(member: Member) -> dict:
            return await worker_info(http, member.url)

        async def until(
            what: str, check: Callable[[], Awaitable[Any]], timeout: float = STEP
        ) -> Any:
            return await wait_for(check, timeout, what, 0.1)

        async def root(call) -> None:  # noqa: ANN001
            outcome = await dispatch_as_root(client, SUDO, call, timeout=STEP)
            assert outcome.ok, f"{type(call).__name__}: {outcome.error}"

        async def state_hashes(contract: bytes, *workers: Member) -> list[str | None]:
            out = []
            for worker in workers:
                running = (await info(worker)).get("contracts") or {}
                entry = running.get("0x" + contract.hex())
                out.append(None if entry is None else entry["stateHash"])
            return out

        async def same_state(contract: bytes, at_least: int) -> str | None:
            """The state hash both workers show once both dispatched block ``at_least``."""
            infos = [await info(w) for w in (wk1, wk2)]
            if any((i.get("blockNumber") or -1) < at_least for i in infos):
                return None
            hashes = await state_hashes(contract, wk1, wk2)
            return hashes[0] if hashes[0] is not None and hashes[0] == hashes[1] else None

        # -- 1. a gatekeeper and a cluster of two workers ------------------------------------------
        async def all_registered() -> bool:
            return all([(await info(x))["registered"] for x in m.values()])

        await until("the three pRuntimes to register", all_registered, 60)
        for member in m.values():
            member.identity = bytes.fromhex((await info(member))["identity"][2:])
        await root(gatekeeper.register_gatekeeper(gk.identity))
        await until(
            "the master public key on chain",
            lambda: _value(gatekeeper_state(client), "master_pubkey"),
        )
        await root(cluster.create_cluster([wk1.identity, wk2.identity]))
        cid = cluster_id(0)
        for worker in (wk1, wk2):
            await until(
                f"{worker.name} to receive the cluster key",
                lambda w=worker: _holds(info(w), "0x" + cid.hex()),
            )

        async def endpoints_on_chain() -> bool:
            records = await session.cluster_endpoints(cid)
            return all(r is not None and r.endpoint for _, r in records) or None

        await until("both workers' endpoints on chain", endpoints_on_chain)
        lap("registration, gatekeeper, cluster")

        # -- 2. deploy the token -------------------------------------------------------------------
        deployed = await session.deploy(TOKEN, cid, [1_000_000], ALICE, salt=b"e2e")
        token = deployed.contract
        assert deployed.uploaded and not deployed.existed and deployed.constructor == "init"
        assert deployed.report is not None and deployed.report.ok, deployed.report
        assert deployed.keys.epoch == 0 and await session.contract_keys(token) == deployed.keys
        lap("deploy the token")

        # -- 3. commands from two accounts ---------------------------------------------------------
        a = await session.call(token, "transfer", [BOB.public_key, 1000], ALICE)
        b = await session.call(token, "transfer", [ALICE.public_key, 100], BOB)
        assert (a.index, a.status, b.index, b.status) == (1, p.OK, 2, p.OK), (a, b)
        assert 0 < a.gas_used < a.gas_limit
        receipt = await session.receipt(token, a.index, ALICE, min_block=a.block_number)
        assert receipt.ok and receipt.value["status"] == "ok", receipt
        assert receipt.value["value"] is True
        assert receipt.value["events"] == [
            {"event": "transfer", "from": ALICE.public_key, "to": BOB.public_key, "amount": 1000}
        ]
        not_his = await session.receipt(token, a.index, BOB, min_block=a.block_number)
        assert not_his.status == p.REFUSED and "only the command's sender" in not_his.message
        lap("two commands and their receipts")

        # -- 4. queries with access control --------------------------------------------------------
        bob = await session.query(
            token, "balance_of", [BOB.public_key], BOB, min_block=b.block_number
        )
        assert (bob.status, bob.value) == (p.OK, 900), bob
        assert bob.worker.url in (wk1.url, wk2.url)  # found through its endpoint on chain
        assert bob.block_number >= b.block_number
        at = await session.client.call("chain_getBlockHash", bob.block_number)
        assert "0x" + bob.block_hash.hex() == at  # the answer names a block of the chain
        nosy = await session.query(
            token, "balance_of", [BOB.public_key], ALICE, wk2.url, min_block=b.block_number
        )
        assert nosy.status == p.ERROR and "only the account itself" in nosy.message, nosy
        assert nosy.value is None
        alice = await session.query(
            token, "balance_of", [ALICE.public_key], ALICE, wk2.url, min_block=b.block_number
        )
        assert (alice.value, alice.worker.identity) == (999_100, wk2.identity)
        # Events for the accounts concerned: Bob sees Alice's transfer to him and his own.
        seen, _ = await session.events(token, BOB, min_block=b.block_number)
        assert [(e.index, e.event["from"], e.event["amount"]) for e in seen] == [
            (1, ALICE.public_key, 1000),
            (2, BOB.public_key, 100),
        ]
        # Alice's own commands, found on chain, with their receipts.
        sent = await session.sent_commands(token, ALICE)
        assert [(c.index, c.receipt["status"]) for c in sent] == [(1, "ok")]
        lap("queries and events")

        # -- 4b. the other two examples: a sealed-bid auction and a private vote ------------------
        head = b.block_number
        auction = (await session.deploy(AUCTION, cid, ["vase", head + 40], ALICE, salt=b"e2e")).contract
        bid1 = await session.call(auction, "bid", [30], BOB)
        bid2 = await session.call(auction, "bid", [45], CHARLIE)
        assert (bid1.status, bid2.status) == (p.OK, p.OK)
        hidden = await session.query(auction, "result", [], BOB, min_block=bid2.block_number)
        assert "has not closed yet" in hidden.message
        mine = await session.query(auction, "my_bid", [], BOB, min_block=bid2.block_number)
        assert mine.value == 30  # Bob sees his own bid, not Charlie's
        vote = (await session.deploy(VOTING, cid, ["Ship it?", ["yes", "no"], head + 40], ALICE, salt=b"e2e")).contract
        for voter, choice in ((ALICE, "yes"), (BOB, "no"), (CHARLIE, "yes")):
            assert (await session.call(vote, "vote", [choice], voter)).status == p.OK
        early = await session.query(vote, "tally", [], BOB)
        assert "secret until the deadline" in early.message
        closed = await session.call(auction, "close", [], ALICE)  # may still be open: retry below
        while closed.status != p.OK:
            await asyncio.sleep(0.5)
            closed = await session.call(auction, "close", [], ALICE)
        won = await session.query(auction, "result", [], BOB, min_block=closed.block_number)
        assert won.value == {"bidder": CHARLIE.public_key, "amount": 45}, won
        tally = await session.query(vote, "tally", [], BOB, min_block=closed.block_number)
        assert tally.value == {"yes": 2, "no": 1}, tally
        lap("auction and vote")

        # -- 5. a replayed query -------------------------------------------------------------------
        before = await until(
            "both workers at the same state", lambda: same_state(token, b.block_number)
        )
        prepared = await session.prepare_query(
            QUERY_METHOD, token, "total_supply", [], ALICE, wk1.url
        )
        assert (await session.send_query(prepared)).value == 1_000_000
        with pytest.raises(QueryRefused, match="replayed"):
            await session.send_query(prepared)

        # -- 6. a command sealed to the wrong key --------------------------------------------------
        _, cluster_keys = await session.cluster_ecdh(cid)
        wrong = seal_command(
            cluster_keys.ecdh, await session.genesis_hash(), token, ALICE, "transfer",
            [BOB.public_key, 5],
        )  # fmt: skip
        bad = await session.submit_command(token, wrong, ALICE)
        assert (bad.status, bad.gas_used) == (p.ERROR, 0), bad.report
        assert bad.report.refunded == bad.gas_limit * GAS_PRICE
        bad_receipt = await session.receipt(token, bad.index, ALICE, min_block=bad.block_number)
        assert bad_receipt.value["status"] == "error"
        assert "does not open" in bad_receipt.value["message"], bad_receipt.value
        assert (
            await until(
                "both workers past the bad command",
                lambda: same_state(token, bad.report.block_number),
            )
            == before
        )
        lap("replayed query, command sealed to the wrong key")

        # -- 7. an infinite loop stopped by gas ----------------------------------------------------
        spinner = await session.deploy(SPINNER, cid, [], BOB, salt=b"spin")
        assert spinner.report is not None and spinner.report.ok
        spun = await session.call(spinner.contract, "spin", [], BOB, gas_limit=SPIN_GAS)
        assert (spun.status, spun.gas_used) == (p.OUT_OF_GAS, SPIN_GAS), spun.report
        spun_receipt = await session.receipt(
            spinner.contract, spun.index, BOB, wk1.url, min_block=spun.block_number
        )
        assert spun_receipt.value["status"] == "out of gas", spun_receipt.value
        after = await session.call(token, "transfer", [BOB.public_key, 1], ALICE)
        assert after.ok, after.report
        bumped = await session.call(spinner.contract, "bump", [], BOB)
        assert bumped.ok  # the spinner itself carries on too

        # -- 8. the same state on both workers -----------------------------------------------------
        last_block = bumped.report.block_number
        token_hash = await until("the same token state", lambda: same_state(token, last_block))
        await until("the same spinner state", lambda: same_state(spinner.contract, last_block))
        assert token_hash != before
        for worker in (wk1, wk2):
            entry = ((await info(worker)).get("contracts") or {})["0x" + spinner.contract.hex()]
            assert entry["halted"] is None, (worker.name, entry)  # stopped by gas, not halted
        lap("a loop stopped by gas, the token carries on, the same state on both workers")

        # -- the same through `phala contract` -------------------------------------------------------
        out = await _cli("deploy", str(TOKEN), "--cluster", "0", "--args", "5000", "--from", "//Bob",
                         "--salt", "cli", "--rpc", node.url)  # fmt: skip
        assert "constructor init(5000): ok" in out and "keys of epoch 0 published" in out, out
        cli_token = out.split("success: contract ")[1].split()[0]
        out = await _cli("call", cli_token, "transfer", "//Alice", "50", "--from", "//Bob",
                         "--rpc", node.url)  # fmt: skip
        assert "command #1 transfer(" in out and "reported in block" in out, out
        assert "returned true" in out and "success" in out, out
        included = int(out.split(" in block #")[1].split()[0])
        cli_id = bytes.fromhex(cli_token[2:])
        await until("both workers past the CLI's command", lambda: same_state(cli_id, included))
        out = await _cli(
            "query", cli_token, "balance_of", "//Bob", "--as", "//Bob", "--rpc", node.url
        )
        assert out.splitlines()[0] == "4950" and "answered by worker" in out, out
        out = await _cli("query", cli_token, "balance_of", "//Bob", "--as", "//Alice",
                         "--rpc", node.url, code=1)  # fmt: skip
        assert "error: the query failed (error)" in out and "only the account itself" in out, out
        out = await _cli("events", cli_token, "--as", "//Alice", "--rpc", node.url)
        assert "events for" in out and '"amount": 50' in out and "#1" in out, out
        out = await _cli("events", cli_token, "--as", "//Bob", "--commands", "--rpc", node.url)
        assert "from their receipts" in out and " ok " in out, out
        lap("the same through the CLI")

        # -- 9. wk2 killed and restarted -----------------------------------------------------------
        await until(
            f"wk2 to checkpoint at #{last_block} or later",
            lambda: _checkpointed(wk2.data_dir, last_block),
        )
        early = await session.prepare_query(QUERY_METHOD, token, "total_supply", [], BOB, wk2.url)
        assert (await session.send_query(early)).ok
        wk2.pherry.kill()
        wk2.pruntime.kill()
        missed = await session.call(token, "transfer", [BOB.public_key, 7], ALICE)
        assert missed.ok  # reported by wk1 alone
        [wk1_hash] = await state_hashes(token, wk1)
        await asyncio.to_thread(wk2.pruntime.start)
        assert "resumed from the checkpoint" in wk2.pruntime.stderr()
        restored = await info(wk2)  # before its pherry brings it a block
        assert (restored.get("contracts") or {})["0x" + token.hex()]["stateHash"] == token_hash
        assert token_hash != wk1_hash
        with pytest.raises(QueryRefused, match="replayed"):
            await session.send_query(early)  # nonces outlive the restart
        wk2.pherry.start()
        await until(
            "wk2 to catch up to wk1's state hash",
            lambda: same_state(token, missed.report.block_number),
            45,
        )
        assert (await state_hashes(token, wk2)) == [wk1_hash]
        caught_up = await session.query(
            token, "balance_of", [BOB.public_key], BOB, wk2.url,
            min_block=missed.report.block_number,
        )  # fmt: skip
        assert caught_up.value == 900 + 1 + 7, caught_up
        await until(
            "the same spinner state after the restart",
            lambda: same_state(spinner.contract, last_block),
        )
        lap("wk2 killed, restarted, caught up")
    timings.append(("total", time.monotonic() - started))


async def _cli(*args: str, code: int = 0) -> str:
    """``phala contract ARGS`` as a process; its stdout and stderr, once it exited with ``code``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "phala", "contract", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), STEP)
    text = out.decode(errors="replace")
    assert proc.returncode == code, (
        f"phala contract {' '.join(args)} exited {proc.returncode}:\n{text}"
    )
    return text


async def _value(reading: Awaitable[Any], name: str) -> Any:
    return getattr(await reading, name)


async def _holds(reading: Awaitable[dict], cluster_key: str) -> dict | None:
    got = await reading
    return got if (got.get("clusters") or {}).get(cluster_key) == 0 else None


async def _checkpointed(data_dir: Path, number: int) -> bool | None:
    blocks = checkpoint_blocks(data_dir)
    return True if blocks and blocks[-1] >= number else None


# -- make dev -------------------------------------------------------------------------------------


def test_make_dev_deploys_the_example_token(tmp_path: Path) -> None:
    run_phala_dev(tmp_path, _dev_token, 110, BLOCK_TIME)


async def _dev_token(dev: DevNetwork) -> None:
    rpc = dev.rpc_url
    async def provisioned() -> bool:
        return any("provisioning done" in line for line in dev.provision_lines())

    dev.start()
    await wait_for(provisioned, 60, "phala dev to provision and deploy the token", 0.2)
    token = (dev.base / "token").read_text().strip()
    deployed = [line for line in dev.provision_lines() if "deployed the example token" in line]
    assert len(deployed) == 1 and deployed[0].endswith(f"contract {token}"), dev.provision_lines()
    contract = bytes.fromhex(token[2:])
    async with ContractSession(rpc, timeout=STEP) as session:
        info = await session.contract_info(contract)
        assert info is not None and (info.deployer, info.cluster) == (
            ALICE.public_key,
            cluster_id(0),
        )
        # The worker is found from its endpoint on chain, as the README's tour does.
        answer = await session.query(contract, "balance_of", [ALICE.public_key], ALICE)
        assert (answer.status, answer.value) == (p.OK, 1_000_000), answer
    assert await asyncio.to_thread(dev.stop) == 0

    # A restart finds the token there and deploys nothing.
    dev.log.write_text("")
    dev.start()
    await wait_for(provisioned, 60, "the restarted phala dev to check its provisioning", 0.2)
    again = dev.provision_lines()
    assert f"the example token is deployed already: contract {token}" in again, again
    assert not any("deployed the example token" in line for line in again), again
    assert await asyncio.to_thread(dev.stop) == 0
