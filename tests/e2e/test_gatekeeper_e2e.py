"""Gatekeepers end to end: a node, two gatekeeper pRuntimes (gk1, gk2) and two worker
pRuntimes (wk1, wk2), each with its pherry, as real processes over loopback.

Root calls go through sudo (//Alice) with the client SDK, as ``phala gatekeeper`` and
``phala cluster`` send them. In order:

1. all four pRuntimes register;
2. gk1 is made a gatekeeper: it generates the master key and the chain publishes its public
   key, the one gk1 reports;
3. gk2 is made a gatekeeper: it receives the key history from gk1 and reports the same key;
4. a cluster of wk1 and wk2: both receive its key (epoch 0), whose public key is on chain;
5. a master key rotation: the chain counts rotation 1 and both gatekeepers hold its key;
6. wk2 is removed: epoch 1 is published, wk1 receives it and wk2 stays at epoch 0;
7. gk1's pRuntime (and its pherry) are SIGKILLed; gk2 alone serves wk2's return to the
   cluster (wk2 receives the history up to epoch 1) and answers a beacon round;
8. gk1 restarts from its data directory: it has its keys back from its sealed file before it
   syncs a block (master key of rotation 1 = the chain's), then catches up with the head;
9. every pRuntime is at a block of the chain (same hash), with no egress left behind and its
   message sequence where the chain has it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from phala.chain.runtime import cluster, gatekeeper
from phala.chain.runtime import mq as mq_pallet
from phala.cli.gatekeeping import (
    GatekeeperState,
    cluster_state,
    dispatch_as_root,
    gatekeeper_state,
    worker_records,
)
from phala.client.rpc import RpcClient
from phala.core.cluster import cluster_id
from phala.core.keys import dev_keypair
from phala.core.mq import WorkerOrigin

from .helpers import wait_for
from .worker_helpers import (
    DevNetwork,
    Member,
    PhalaProcess,
    Processes,
    free_port,
    node_process,
    pherry_process,
    pruntime_process,
    run_phala_dev,
    worker_info,
    write_dev_spec,
)

pytestmark = pytest.mark.e2e

SUDO = dev_keypair("Alice")
BLOCK_TIME = 0.25
CHECKPOINT_INTERVAL = 10  # gk1 resumes from a recent checkpoint after its SIGKILL
# Each relayer has its own operator, so their extrinsics never compete for a nonce with each
# other or with sudo.
OPERATORS = {"gk1": "//Bob", "gk2": "//Charlie", "wk1": "//Dave", "wk2": "//Eve"}
STEP = 30.0  # seconds any one step may take






def test_gatekeepers_end_to_end(tmp_path: Path, processes: Processes) -> None:
    spec = write_dev_spec(tmp_path / "spec.json")
    node_port = free_port()
    node = processes.add(
        node_process(processes.log_dir, spec, tmp_path / "node", node_port, block_time=BLOCK_TIME)
    )
    node_url = f"http://127.0.0.1:{node_port}"
    members = {}
    for name, operator in OPERATORS.items():
        port = free_port()  # fixed: gk1's pherry finds the restarted pRuntime where it was
        pruntime = pruntime_process(
            name, processes.log_dir, spec, tmp_path / name, port, CHECKPOINT_INTERVAL
        )
        pherry = pherry_process(
            f"{name}-pherry", processes.log_dir, node_url, f"http://127.0.0.1:{port}", operator
        )
        members[name] = Member(name, processes.add(pruntime), processes.add(pherry))
    try:
        asyncio.run(asyncio.wait_for(_scenario(node, members), 150))
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc}\n{processes.logs()}") from exc


async def _scenario(node: PhalaProcess, m: dict[str, Member]) -> None:
    gk1, gk2, wk1, wk2 = m["gk1"], m["gk2"], m["wk1"], m["wk2"]
    await asyncio.gather(
        *(asyncio.to_thread(p.start) for p in (node, *(x.pruntime for x in m.values())))
    )
    for member in m.values():
        member.pherry.start()
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session, RpcClient(node.url) as client:

        async def info(member: Member) -> dict:
            return await worker_info(session, member.url)

        async def until(
            what: str, check: Callable[[], Awaitable[Any]], timeout: float = STEP
        ) -> Any:
            return await wait_for(check, timeout, what, 0.1)

        async def root(call) -> None:  # noqa: ANN001
            outcome = await dispatch_as_root(client, SUDO, call, timeout=STEP)
            assert outcome.ok, f"{type(call).__name__}: {outcome.error}"

        async def chain_gk() -> GatekeeperState:
            return await gatekeeper_state(client)

        async def head() -> int:
            return (await gatekeeper_state(client)).header.number

        # -- 1. all four register --------------------------------------------------------------
        async def all_registered() -> bool:
            infos = [await info(x) for x in m.values()]
            return all(i["registered"] for i in infos)

        await until("all four pRuntimes to register", all_registered, 60)
        for member in m.values():
            member.identity = bytes.fromhex((await info(member))["identity"][2:])
        state = await chain_gk()
        records = await worker_records(client, [x.identity for x in m.values()], state.header.hash)
        assert all(r is not None and r.active for r in records.values()), records
        assert state.gatekeepers == [] and state.master_pubkey is None

        # -- 2. gk1: the master key is generated and published ------------------------------------
        await root(gatekeeper.register_gatekeeper(gk1.identity))

        async def published() -> bytes | None:
            return (await chain_gk()).master_pubkey

        master0 = await until("the master public key on chain", published)
        gk1_info = await until(
            "gk1 to report the master key",
            lambda: _reports(info(gk1), masterPubkey="0x" + master0.hex(), masterRotation=0),
        )
        assert gk1_info["role"] == "gatekeeper"

        # -- 3. gk2 receives the history ----------------------------------------------------------
        await root(gatekeeper.register_gatekeeper(gk2.identity))
        gk2_info = await until(
            "gk2 to receive the master key from gk1",
            lambda: _reports(info(gk2), masterPubkey="0x" + master0.hex(), masterRotation=0),
        )
        assert gk2_info["role"] == "gatekeeper"
        assert (await chain_gk()).gatekeepers == [gk1.identity, gk2.identity]
        for worker in (wk1, wk2):
            worker_view = await info(worker)
            assert worker_view["role"] == "worker" and "masterPubkey" not in worker_view, (
                worker_view
            )

        # -- 4. a cluster of wk1 and wk2 ----------------------------------------------------------
        await root(cluster.create_cluster([wk1.identity, wk2.identity]))
        cid = cluster_id(0)
        key = "0x" + cid.hex()
        for worker in (wk1, wk2):
            await until(
                f"{worker.name} to receive the cluster key of epoch 0",
                lambda w=worker: _holds(info(w), key, 0),
            )
        shown = await cluster_state(client, cid)
        assert shown is not None and shown.info.workers == [wk1.identity, wk2.identity]
        assert shown.epoch == 0 and len(shown.pubkeys) == 1, shown
        for gk in (gk1, gk2):
            assert "clusters" not in await info(
                gk
            )  # gatekeepers derive cluster keys; none is sent to them

        # -- 5. a master key rotation -------------------------------------------------------------
        await root(gatekeeper.rotate_master_key())

        async def rotated() -> Any:
            now = await chain_gk()
            return now if now.rotation == 1 and now.lock is None else None

        after = await until("the chain to record master key rotation 1", rotated)
        master1 = after.master_pubkey
        assert master1 is not None and master1 != master0
        assert after.history == [master0, master1]
        for gk in (gk1, gk2):
            await until(
                f"{gk.name} to adopt the key of rotation 1",
                lambda g=gk: _reports(info(g), masterPubkey="0x" + master1.hex(), masterRotation=1),
            )

        # -- 6. wk2 removed: epoch 1 for wk1 only -------------------------------------------------
        await root(cluster.remove_worker(cid, wk2.identity))

        async def epoch1_published() -> Any:
            now = await cluster_state(client, cid)
            return now if now is not None and len(now.pubkeys) == 2 else None

        epoch1 = await until("the public keys of epoch 1 on chain", epoch1_published)
        assert epoch1.info.workers == [wk1.identity] and epoch1.info.epoch_rotations == [0, 1]
        assert epoch1.pubkeys[1] != epoch1.pubkeys[0]
        await until("wk1 to receive the cluster key of epoch 1", lambda: _holds(info(wk1), key, 1))
        # wk2 dispatched the blocks that carried the new epoch's keys, and did not get it.
        published_at = epoch1.header.number
        wk2_info = await until(
            f"wk2 to dispatch #{published_at}", lambda: _at_least(info(wk2), published_at + 2)
        )
        assert wk2_info["clusters"] == {key: 0}, wk2_info

        # -- 7. gk1 down: gk2 alone serves --------------------------------------------------------
        gk1.pherry.kill()
        gk1.pruntime.kill()
        at_kill = await chain_gk()
        # A round asked for before the kill may have been answered by gk1 already; the next
        # one is asked for only after that, so while gk1 is down.
        asked_before = max(
            0 if at_kill.beacon is None else at_kill.beacon.round, at_kill.beacon_requested or 0
        )
        await root(cluster.add_worker(cid, wk2.identity))
        await until(
            "wk2 to receive the cluster key history up to epoch 1 from gk2 alone",
            lambda: _holds(info(wk2), key, 1),
        )

        async def beacon_answered() -> Any:
            beacon = (await chain_gk()).beacon
            return beacon if beacon is not None and beacon.round > asked_before else None

        await until(
            "gk2 alone to answer a beacon round asked for while gk1 is down", beacon_answered
        )
        assert not gk1.pruntime.running()

        # -- 8. gk1 restarts from its sealed state ------------------------------------------------
        await asyncio.to_thread(gk1.pruntime.start)
        restarted = await info(gk1)  # before its pherry brings it a single block
        assert restarted["masterPubkey"] == "0x" + master1.hex(), restarted
        assert restarted["masterRotation"] == 1, restarted
        assert "resumed from the checkpoint" in gk1.pruntime.stderr()
        gk1.pherry.start()
        target = await head()
        await until(f"gk1 to catch up with #{target}", lambda: _at_least(info(gk1), target), 45)
        assert (await info(gk1))["role"] == "gatekeeper"

        # -- 9. everyone agrees with the chain, nothing is stuck ----------------------------------
        target = await head()
        for member in m.values():
            final = await until(
                f"{member.name} to reach #{target} with its egress drained",
                lambda x=member: _drained(info(x), target),
            )
            number = final["blockNumber"]
            assert final["blockHash"] == await client.call("chain_getBlockHash", number), (
                member.name
            )
            origin = "0x" + mq_pallet.ORIGIN_CODEC.encode(WorkerOrigin(member.identity)).hex()
            chain_next = await client.call("phala_mqNextSequence", origin)
            assert final["nextSequence"] == chain_next, (
                member.name,
                final["nextSequence"],
                chain_next,
            )
        final_state = await chain_gk()
        assert final_state.rotation == 1 and final_state.master_pubkey == master1
        for gk in (gk1, gk2):
            assert (await info(gk))["masterPubkey"] == "0x" + master1.hex()
        for worker in (wk1, wk2):
            assert (await info(worker))["clusters"] == {key: 1}


async def _reports(reading: Awaitable[dict], **expected: Any) -> dict | None:
    got = await reading
    return got if all(got.get(k) == v for k, v in expected.items()) else None


async def _holds(reading: Awaitable[dict], cluster_key: str, epoch: int) -> dict | None:
    got = await reading
    return got if (got.get("clusters") or {}).get(cluster_key) == epoch else None


async def _at_least(reading: Awaitable[dict], number: int) -> dict | None:
    got = await reading
    return got if (got.get("blockNumber") or -1) >= number else None


async def _drained(reading: Awaitable[dict], number: int) -> dict | None:
    got = await _at_least(reading, number)
    return got if got is not None and got["pendingEgress"] == 0 else None


# -- make dev -------------------------------------------------------------------------------------


def test_make_dev_provisions_a_gatekeeper_and_a_worker(tmp_path: Path) -> None:
    run_phala_dev(tmp_path, _dev_scenario, 100, BLOCK_TIME)


async def _dev_scenario(dev: DevNetwork) -> None:
    worker_url = dev.worker_url
    async def provisioned() -> bool:
        return any("provisioning done" in line for line in dev.provision_lines())

    dev.start()
    await wait_for(provisioned, 60, "phala dev to provision the gatekeeper and the worker", 0.2)
    first = dev.provision_lines()
    assert any("made the first pRuntime a gatekeeper" in line for line in first), first
    assert any("created a cluster with the worker" in line for line in first), first
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        info = await worker_info(session, worker_url)
    assert info["clusters"] == {"0x" + cluster_id(0).hex(): 0}, info
    assert await asyncio.to_thread(dev.stop) == 0
    assert "stopping" in dev.output()

    # A restart finds everything done and does it again nowhere.
    dev.log.write_text("")
    dev.start()
    await wait_for(provisioned, 60, "the restarted phala dev to check its provisioning", 0.2)
    again = dev.provision_lines()
    assert any("is a gatekeeper already" in line for line in again), again
    assert any("is in cluster" in line and "already" in line for line in again), again
    assert not any("made the first" in line or "created a cluster" in line for line in again), again
    assert await asyncio.to_thread(dev.stop) == 0
