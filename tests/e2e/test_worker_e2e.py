"""The worker end to end: a node, pRuntimes and their pherry relayers as real processes.

1. Registration: a worker follows an interval-sealed node, is registered by its relayer, reports
   itself online, and the registry holds it as active and acknowledged.
2. Crash and catch up: on a manual-seal node fed with blocks (and transfers) by the test, one
   worker's pherry, then its pRuntime (resuming from its newest checkpoint), then the node are
   SIGKILLed while that worker is catching up, behind the head, and restarted; a reference
   worker runs untouched beside it. Both end at the same block with the same state hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from phala.chain.runtime import balances
from phala.chain.spec import UNIT
from phala.core.keys import dev_keypair

from .helpers import Rpc, RpcFailure, sign, unhex, wait_for
from .worker_helpers import (
    PhalaProcess,
    Processes,
    checkpoint_blocks,
    finalized_number,
    free_port,
    node_process,
    pherry_process,
    pruntime_process,
    registered_worker,
    worker_info,
    write_dev_spec,
)

pytestmark = pytest.mark.e2e

ALICE, CHARLIE = dev_keypair("Alice"), dev_keypair("Charlie")
RECEIVERS = [dev_keypair(n).public_key for n in ("Dave", "Eve", "Ferdie")]
# Blocks per dispatch of the killed worker's relayer, so that its catch-up takes many steps.
VICTIM_BATCH = 5
CHECKPOINT_INTERVAL = 5




def run(scenario, procs: Processes, timeout: float) -> None:
    """Run ``scenario`` within ``timeout``; a failure carries the processes' last log lines."""
    try:
        asyncio.run(asyncio.wait_for(scenario, timeout))
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc}\n{procs.logs()}") from exc


async def start_all(*procs: PhalaProcess) -> None:
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))


# -- 1. registration ----------------------------------------------------------------------------


def test_worker_registers_end_to_end(tmp_path: Path, processes: Processes) -> None:
    spec = write_dev_spec(tmp_path / "spec.json")
    node = processes.add(node_process(processes.log_dir, spec, tmp_path / "node", port=0))
    worker = processes.add(
        pruntime_process("pruntime", processes.log_dir, spec, tmp_path / "worker")
    )
    run(_registration(node, worker, processes), processes, timeout=75)


async def _registration(node: PhalaProcess, worker: PhalaProcess, procs: Processes) -> None:
    await start_all(node, worker)
    procs.add(pherry_process("pherry", procs.log_dir, node.url, worker.url, "//Alice")).start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        rpc = Rpc(session, node.url)
        genesis = await rpc.call("chain_getBlockHash", 0)

        async def registered_and_drained() -> dict | None:
            info = await worker_info(session, worker.url)
            return info if info["registered"] and info["pendingEgress"] == 0 else None

        info = await wait_for(
            registered_and_drained, 45, "the worker to register and drain its egress", 0.1
        )
        assert info["initialized"] and info["genesisHash"] == genesis
        assert info["nextSequence"] == 1  # one message signed: worker_online
        identity = unhex(info["identity"])

        # The chain holds it as active and acknowledged (the worker dropped its egress only
        # after its own verified state showed the chain had accepted worker_online).
        record = await registered_worker(rpc, identity, info["blockHash"])
        assert record is not None, "Registry.Workers has no entry for the worker"
        assert record.active and record.acknowledged
        assert record.info.identity == identity
        assert record.info.ecdh == unhex(info["ecdh"])
        assert record.info.genesis_hash == unhex(genesis)
        assert record.info.operator == ALICE.public_key
        assert record.registered_at <= info["blockNumber"]

        # The WorkerOnline event, between registration and the block the worker is at.
        online = []
        for number in range(record.registered_at, info["blockNumber"] + 1):
            block_hash = await rpc.call("chain_getBlockHash", number)
            for event in await rpc.call("phala_getEvents", block_hash):
                if event["event"] == "WorkerOnline":
                    online.append((number, event["fields"]))
        assert len(online) == 1, online
        number, fields = online[0]
        assert fields["identity"] == info["identity"]
        assert record.registered_at <= fields["synced_to"] < number

        # The worker keeps following the chain.
        head = await finalized_number(rpc)

        async def followed() -> bool:
            return (await worker_info(session, worker.url))["blockNumber"] >= head

        await wait_for(followed, 20, f"the worker to reach #{head}", 0.1)


# -- 2. crash and catch up ----------------------------------------------------------------------


@dataclass
class Producer:
    """Makes blocks on a manual-seal node: a steady background loop (every third block holds a
    transfer, so state changes) and bursts on demand. Survives the node going away."""

    rpc: Rpc
    genesis: bytes
    pace: float = 0.05
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    made: int = 0
    submitted: int = 0  # transfers the pool accepted
    included: int = 0  # transfers followed by a block the node reported made
    unreachable: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def block(self, with_transfer: bool) -> None:
        if with_transfer:
            nonce = await self.rpc.call("system_accountNextIndex", "0x" + CHARLIE.public_key.hex())
            amount = UNIT + self.rng.randrange(UNIT)
            call = balances.transfer_keep_alive(self.rng.choice(RECEIVERS), amount)
            await self.rpc.call(
                "author_submitExtrinsic", "0x" + sign(CHARLIE, call, nonce, self.genesis).hex()
            )
            self.submitted += 1
        await self.rpc.call("engine_createBlock", True, True)
        self.made += 1
        self.included += with_transfer

    async def loop(self) -> None:
        while not self.stop.is_set():
            try:
                await self.block(self.made % 3 == 0)
            except (aiohttp.ClientError, OSError):
                self.unreachable += 1  # the node is down: keep trying
                await asyncio.sleep(0.1)
            await asyncio.sleep(self.pace)

    async def burst(self, count: int) -> int:
        """``count`` blocks in one batch request; returns the new head number."""
        responses = await self.rpc.batch([("engine_createBlock", [True, True])] * count)
        for response in responses:
            if "error" in response:
                raise RpcFailure(response["error"])
        self.made += count
        return responses[-1]["result"]["number"]


@dataclass
class Worker:
    name: str
    pruntime: PhalaProcess
    pherry: PhalaProcess
    data_dir: Path


def test_worker_crash_and_catch_up(tmp_path: Path, processes: Processes) -> None:
    spec = write_dev_spec(tmp_path / "spec.json")
    # Fixed ports: the relayers find the restarted node and pRuntime where they were.
    node_port = free_port()
    node = processes.add(
        node_process(processes.log_dir, spec, tmp_path / "node", node_port, "manual")
    )

    def worker(name: str, operator: str, interval: int, batch: int | None) -> Worker:
        port, data_dir = free_port(), tmp_path / name
        pruntime = pruntime_process(
            f"{name}-pruntime", processes.log_dir, spec, data_dir, port, interval
        )
        pherry = pherry_process(
            f"{name}-pherry", processes.log_dir, f"http://127.0.0.1:{node_port}",
            f"http://127.0.0.1:{port}", operator, batch,
        )  # fmt: skip
        return Worker(name, processes.add(pruntime), processes.add(pherry), data_dir)

    # Two operators: the relayers' register_worker extrinsics do not compete for nonces.
    victim = worker("victim", "//Bob", CHECKPOINT_INTERVAL, VICTIM_BATCH)
    reference = worker("reference", "//Alice", 100, None)
    run(_crash_and_catch_up(node, victim, reference), processes, timeout=85)


async def _crash_and_catch_up(node: PhalaProcess, victim: Worker, reference: Worker) -> None:
    await start_all(node, victim.pruntime, reference.pruntime)
    reference.pherry.start()
    victim.pherry.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    async with session:
        rpc = Rpc(session, node.url)
        producer = Producer(rpc, unhex(await rpc.call("chain_getBlockHash", 0)))
        loop = asyncio.ensure_future(producer.loop())
        try:
            await _kills(session, rpc, producer, node, victim, reference)
        finally:
            producer.stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(loop, 10)
        loop.result()  # anything but the node being unreachable fails the test

        # -- the end: no more blocks; both workers reach the head -----------------------------
        head = await rpc.call("chain_getHeader")
        head_number = int(head["number"], 16)

        async def both_at_head() -> list[dict] | None:
            infos = [await worker_info(session, w.pruntime.url) for w in (victim, reference)]
            return infos if all(i["blockNumber"] == head_number for i in infos) else None

        infos = await wait_for(
            both_at_head, 30, f"both workers to reach the head #{head_number}", 0.1
        )
        victim_info, reference_info = infos
        for info in infos:
            assert info["blockHash"] == head["hash"]
            assert info["registered"] and info["pendingEgress"] == 0
            record = await registered_worker(rpc, unhex(info["identity"]), head["hash"])
            assert record is not None and record.active and record.acknowledged
        assert victim_info["identity"] != reference_info["identity"]
        assert victim_info["stateHash"] == reference_info["stateHash"], (
            f"at #{head_number} the restarted worker's state hash differs from the reference's"
        )
        assert victim_info["nextSequence"] == reference_info["nextSequence"] == 1
        charlie = await rpc.call("system_accountNextIndex", "0x" + CHARLIE.public_key.hex())
        # A transfer is lost only if the node died between its submission and the next block.
        assert 0 < producer.included <= charlie <= producer.submitted
        assert producer.unreachable > 0  # the producer did see the node die


async def _kills(
    session: aiohttp.ClientSession,
    rpc: Rpc,
    producer: Producer,
    node: PhalaProcess,
    victim: Worker,
    reference: Worker,
) -> None:
    victim_url = victim.pruntime.url

    async def info() -> dict:
        return await worker_info(session, victim_url)

    async def position() -> int:
        number = (await info())["blockNumber"]
        return -1 if number is None else number

    async def reaches(number: int, what: str, timeout: float = 30) -> None:
        async def past() -> bool:
            return await position() >= number

        await wait_for(past, timeout, f"the {what} worker to reach #{number}", 0.05)

    # -- both workers sync and register (so no later restart changes what they sign) -----------
    async def both_registered() -> bool:
        infos = [await worker_info(session, w.pruntime.url) for w in (victim, reference)]
        return all(i["registered"] and i["pendingEgress"] == 0 for i in infos)

    await wait_for(both_registered, 40, "both workers to register and drain their egress", 0.1)
    assert checkpoint_blocks(victim.data_dir), "the victim sealed no checkpoint"

    async def mid_catch_up(start: int, head: int, ready=lambda pos: True) -> bool:
        """Poll the victim until it has dispatched past ``start`` (its relayer is at work on
        the blocks up to ``head``) but is still more than two relayer batches behind ``head``;
        False if it got closer than that first."""
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:
            pos = await position()
            if head - pos <= 2 * VICTIM_BATCH:
                return False
            if pos > start and ready(pos):
                return True
            await asyncio.sleep(0.002)
        raise AssertionError(f"the victim did not start catching up from #{start} to #{head}")

    # -- 1. SIGKILL the victim's pherry in the middle of a catch-up -----------------------------
    # Kill first, then read: the worker cannot move without its relayer (beyond a request in
    # flight, which the read would include), so position-after-kill < head-before-kill proves
    # the worker was behind at the kill.
    for attempt in range(5):  # noqa: B007 - reported below
        start = await position()
        head_before = await producer.burst(60)
        if not await mid_catch_up(start, head_before):
            continue
        victim.pherry.kill()
        at_kill = await position()
        if at_kill < head_before:
            break
        victim.pherry.start()  # it caught up between the read and the kill: try again
    else:
        raise AssertionError("the victim was never behind the head when its pherry was killed")
    pherry_kill = (attempt, at_kill, head_before)

    # -- 2. SIGKILL the victim's pRuntime mid-catch-up, after it sealed a checkpoint on the way -
    # The chain moves on without the relayer; the restarted one has many batches to bring in.
    head_now = await producer.burst(150)
    victim.pherry.start()
    # Here the kill comes after the read, so ask for a margin: between the answer and the
    # signal its relayer can land at most one more dispatch of VICTIM_BATCH blocks.
    start = at_kill
    for _ in range(5):
        if await mid_catch_up(
            start, head_now, lambda pos: max(checkpoint_blocks(victim.data_dir)) > at_kill
        ):
            victim.pruntime.kill()
            break
        start = await position()
        head_now = await producer.burst(60)
    else:
        raise AssertionError("never found the victim mid-catch-up with a fresh checkpoint")
    checkpoints = checkpoint_blocks(victim.data_dir)
    assert at_kill < checkpoints[-1] < head_now
    assert victim.pherry.running()  # the relayer outlives its pRuntime
    await asyncio.to_thread(victim.pruntime.start)
    assert victim.pruntime.url == victim_url
    resumed = re.findall(r"resumed from the checkpoint at #(\d+)", victim.pruntime.stderr())
    assert resumed == [str(checkpoints[-1])], (resumed, checkpoints)
    assert await position() >= checkpoints[-1]  # it did not start again from genesis
    await reaches(head_now, "restarted-pRuntime")

    # -- 3. SIGKILL the node while the victim catches up -----------------------------------------
    # As for pherry: with the node gone no new block reaches the worker, so its position read
    # after the kill bounds its position at the kill.
    for attempt in range(5):  # noqa: B007 - reported below
        start = await position()
        head_before = await producer.burst(60)
        head_hash = await rpc.call("chain_getBlockHash", head_before)
        if not await mid_catch_up(start, head_before):
            continue
        node.kill()
        at_kill = await position()
        await asyncio.to_thread(node.start)
        if at_kill < head_before:
            break
    else:
        raise AssertionError("the victim was never behind the head when the node was killed")
    node_kill = (attempt, at_kill, head_before)
    assert await rpc.call("chain_getBlockHash", head_before) == head_hash, "a final block changed"
    restart_head = await finalized_number(rpc)
    assert restart_head >= head_before
    for worker in (victim, reference):
        assert worker.pherry.running() and worker.pruntime.running(), worker.name
    # Both relayers reconnect by themselves and the workers follow the restarted node.
    await reaches(restart_head + 10, "node-restart")
    for w in (victim, reference):

        async def followed(w: Worker = w) -> bool:
            return (await worker_info(session, w.pruntime.url))["blockNumber"] >= restart_head + 10

        await wait_for(followed, 30, f"the {w.name} worker to follow the restarted node", 0.1)
    print(
        f"pherry kill {pherry_kill}, node kill {node_kill}, pRuntime resumed at #{checkpoints[-1]}"
    )
