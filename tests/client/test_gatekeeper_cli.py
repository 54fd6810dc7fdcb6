"""``phala gatekeeper …`` and ``phala cluster …``: bad input gives one clear error line before
any node is contacted; against a real in-process node (instant seal, no pRuntime), the root
calls go through sudo and what the chain refuses is named. The master public key a gatekeeper
would publish is sent here by the test itself, signed with the worker's identity key."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from phala.chain.blockchain import Blockchain
from phala.chain.consensus import DevConsensus
from phala.chain.db import ChainDB
from phala.chain.node import Node
from phala.chain.rpc import serve
from phala.chain.runtime import gatekeeper, mq, registry
from phala.chain.spec import ChainSpec
from phala.cli.common import CliError
from phala.cli.gatekeeping import parse_cluster, parse_identity
from phala.client import tx
from phala.client.rpc import RpcClient
from phala.core.attestation import (
    SIM_ATTESTATION_URI,
    WorkerRegistrationInfo,
    report_data,
    sign_sim_quote,
)
from phala.core.cluster import cluster_id
from phala.core.codec import encode
from phala.core.gatekeeper import MASTER_PUBKEY_TOPIC, MasterPubkeyAnnounce
from phala.core.keys import Keypair, dev_keypair
from phala.core.mq import Message, WorkerOrigin, sign_message
from phala.pherry.relayer import submit_unsigned

from .test_cli import assert_error, dead_url, invoke

START = 1_767_225_600_000
CHARLIE = dev_keypair("Charlie")
WORKERS = [Keypair.from_uri(f"//cli/worker/{i}") for i in range(3)]
HEX = "0x" + "ab" * 32


# -- bad input: refused before any node is contacted --------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["gatekeeper", "register", "0x1234"], "invalid identity '0x1234'"),
        (["gatekeeper", "register", "not-an-id"], "expected 0x followed by 64 hex digits"),
        (["gatekeeper", "unregister", "0x" + "zz" * 32], "invalid identity"),
        (["gatekeeper", "register", HEX, "--sudo", "not a valid secret"], "cannot use the signer"),
        (["gatekeeper", "rotate", "--sudo", "nobody-stored"], "no account named 'nobody-stored'"),
        (["cluster", "create"], "at least one worker"),
        (["cluster", "create", "--worker", "0x12"], "invalid worker identity '0x12'"),
        (["cluster", "create", "--worker", HEX, "--worker", HEX], "listed more than once"),
        (["cluster", "add-worker", "0xnothex", HEX], "invalid cluster '0xnothex'"),
        (["cluster", "add-worker", HEX, "5Grw"], "invalid worker identity"),
        (["cluster", "remove-worker", "#1", HEX], "invalid cluster"),
        (["cluster", "show", "abc"], "invalid cluster 'abc'"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = invoke(
        *args, "--rpc", dead_url(), *(["--keystore", str(tmp_path)] if args[1] != "show" else [])
    )
    assert_error(result, fragment)


def test_missing_arguments_are_usage_errors() -> None:
    assert invoke("gatekeeper", "register").exit_code == 2
    assert invoke("cluster", "add-worker", HEX).exit_code == 2
    assert (
        invoke("gatekeeper", "status", "--timeout", "1").exit_code == 2
    )  # status takes no timeout


def test_unreachable_node() -> None:
    url = dead_url()
    assert_error(invoke("gatekeeper", "status", "--node", url), f"cannot reach the node at {url}")
    assert_error(invoke("cluster", "show", "--rpc", url), "cannot reach the node")
    assert_error(invoke("gatekeeper", "register", HEX, "--rpc", url), "cannot reach the node")


def test_id_parsing() -> None:
    alice = dev_keypair("Alice")
    assert parse_identity("0x" + alice.public_key.hex()) == alice.public_key
    assert parse_identity(alice.ss58_address(30)) == alice.public_key
    assert parse_cluster(HEX.upper().replace("0X", "0x")) == bytes.fromhex("ab" * 32)
    assert parse_cluster("0") == cluster_id(0) and parse_cluster(" 2 ") == cluster_id(2)
    for bad in ("", "0x", "1.5", "0x" + "ab" * 31):
        with pytest.raises(CliError):
            parse_cluster(bad)


# -- against a real node ------------------------------------------------------------------------


class ThreadedNode:
    """A real dev node (instant seal, Alice authors and is sudo) with its RPC server, on its
    own event loop in a thread, for the synchronous CLI."""

    def __init__(self, path: Path):
        self.spec = ChainSpec.dev(start_time_ms=START)
        self.node = Node(
            Blockchain(ChainDB(path), self.spec), DevConsensus([dev_keypair("Alice")], "instant")
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> str:
        self.runner, port = await serve(self.node, "127.0.0.1", 0)
        self.task = asyncio.ensure_future(self.node.run())
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        self.task.cancel()
        await self.runner.cleanup()

    def __enter__(self) -> ThreadedNode:
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.node.close()

    @property
    def genesis(self) -> bytes:
        return self.node.chain.genesis_hash

    def read(self, item):  # noqa: ANN001, ANN201
        raw = self.node.chain.db.read_at(self.node.chain.head.state_root, item.key)
        return item.default if raw is None else item.codec.decode(raw)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ThreadedNode]:
    with ThreadedNode(tmp_path / "db") as n:
        yield n


def register_workers(node: ThreadedNode) -> None:
    """Register :data:`WORKERS` with sim quotes, relayed by Charlie."""
    sim_key = Keypair.from_uri(SIM_ATTESTATION_URI)

    async def go() -> None:
        async with RpcClient(node.url) as client:
            for worker in WORKERS:
                info = WorkerRegistrationInfo(
                    1, worker.public_key, worker.public_key, node.genesis, None
                )
                call = registry.register_worker(info, sign_sim_quote(sim_key, report_data(info)))
                await tx.wait_finalized(client, await tx.submit(client, CHARLIE, call), 10, since=1)

    asyncio.run(go())


def publish_master_pubkey(node: ThreadedNode, gatekeeper_key: Keypair, master: Keypair) -> None:
    """What the first gatekeeper's pRuntime sends once it generated the master key."""
    payload = encode(MasterPubkeyAnnounce(master.public_key, bytes(32)))
    message = Message(WorkerOrigin(gatekeeper_key.public_key), MASTER_PUBKEY_TOPIC, payload)
    signed = sign_message(gatekeeper_key, node.genesis, message, 0)

    async def go() -> None:
        async with RpcClient(node.url) as client:
            since = node.node.chain.head.number + 1
            tx_hash = await submit_unsigned(client, mq.sync_offchain_message(signed))
            await tx.wait_finalized(client, tx_hash, 10, since=since)

    asyncio.run(go())


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_gatekeeper_and_cluster_commands_against_a_node(node: ThreadedNode, tmp_path: Path) -> None:
    url, ks = node.url, str(tmp_path / "ks")
    gk, w1, w2 = (w.public_key for w in WORKERS)
    status = ok("gatekeeper", "status", "--rpc", url)
    assert "no gatekeepers yet" in status and "none" in status and "proof verified" in status

    # Refused by the chain: named with what the error means.
    assert_error(
        invoke("gatekeeper", "register", "0x" + gk.hex(), "--rpc", url, "--keystore", ks),
        "Gatekeeper.WorkerNotRegistered: No worker is registered with this identity",
    )
    # Not the sudo key: refused before anything is submitted.
    assert_error(
        invoke("gatekeeper", "rotate", "--sudo", "//Bob", "--rpc", url, "--keystore", ks),
        "is not the sudo key",
        dev_keypair("Alice").ss58_address(30),
    )

    register_workers(node)
    out = ok("gatekeeper", "register", WORKERS[0].ss58_address(30), "--node", url, "--keystore", ks)
    assert "Gatekeeper.GatekeeperRegistered" in out and "Sudo.Sudid" in out
    assert f"0x{gk.hex()} is a gatekeeper" in out and "it is the first" in out
    assert node.read(gatekeeper.Gatekeepers) == [gk]
    assert_error(
        invoke("gatekeeper", "register", "0x" + gk.hex(), "--rpc", url, "--keystore", ks),
        "Gatekeeper.AlreadyGatekeeper",
    )
    assert_error(
        invoke("gatekeeper", "unregister", "0x" + gk.hex(), "--rpc", url, "--keystore", ks),
        "Gatekeeper.CannotRemoveLastGatekeeper",
    )
    assert_error(
        invoke("gatekeeper", "rotate", "--rpc", url, "--keystore", ks), "Gatekeeper.NoMasterKey"
    )
    assert_error(
        invoke("cluster", "create", "--worker", "0x" + w1.hex(), "--rpc", url, "--keystore", ks),
        "Cluster.NoMasterKey",
    )
    status = ok("gatekeeper", "status", "--rpc", url)
    assert (
        "0x" + gk.hex() in status and "active, sim" in status and "not published it yet" in status
    )

    master = Keypair.from_uri("//cli/master")
    publish_master_pubkey(node, WORKERS[0], master)
    status = ok("gatekeeper", "status", "--rpc", url)
    assert "0x" + master.public_key.hex() in status and "key of rotation 0" in status

    # Clusters.
    assert "no clusters yet" in ok("cluster", "show", "--rpc", url)
    out = ok("cluster", "create", "--worker", "0x" + w1.hex(), "--rpc", url, "--keystore", ks)
    first = cluster_id(0)
    assert "Cluster.ClusterCreated" in out and f"created cluster 0x{first.hex()}" in out
    shown = ok("cluster", "show", "--rpc", url)
    assert f"cluster 0x{first.hex()} (#0)" in shown and "in epoch 0; 1 member(s)" in shown
    assert "0x" + w1.hex() in shown and "not published yet" in shown
    out = ok("cluster", "add-worker", "0", "0x" + w2.hex(), "--rpc", url, "--keystore", ks)
    assert "Cluster.WorkerAdded" in out
    assert_error(
        invoke("cluster", "add-worker", "0", "0x" + w2.hex(), "--rpc", url, "--keystore", ks),
        "Cluster.AlreadyInCluster",
    )
    out = ok(
        "cluster",
        "remove-worker",
        "0x" + first.hex(),
        "0x" + w2.hex(),
        "--rpc",
        url,
        "--keystore",
        ks,
    )
    assert "Cluster.WorkerRemoved" in out and "now in epoch 1" in out
    shown = ok("cluster", "show", "0x" + first.hex(), "--rpc", url)
    assert "in epoch 1; 1 member(s)" in shown and "0x" + w2.hex() not in shown
    assert_error(invoke("cluster", "show", "1", "--rpc", url), "no cluster has id")
    assert_error(
        invoke("cluster", "remove-worker", "0", "0x" + w2.hex(), "--rpc", url, "--keystore", ks),
        "Cluster.NotAMember",
    )

    # A rotation: requested, and the lock holds until a gatekeeper answers.
    out = ok("gatekeeper", "rotate", "--rpc", url, "--keystore", ks)
    assert (
        "Gatekeeper.MasterKeyRotationRequested" in out
        and "rotation 1 requested from 1 gatekeeper" in out
    )
    assert "rotation 1 in progress" in ok("gatekeeper", "status", "--rpc", url)
    assert_error(
        invoke("gatekeeper", "rotate", "--rpc", url, "--keystore", ks),
        "Gatekeeper.RotationInProgress",
    )


def test_dev_needs_three_ports(tmp_path: Path) -> None:
    result = invoke("dev", "--base-path", str(tmp_path / "dev"), "--worker-port", "9944")
    assert_error(result, "three different ports")
    assert not (tmp_path / "dev").exists()  # refused before anything is created or started
