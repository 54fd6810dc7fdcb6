"""``phala contract deploy | call | list | info | reclaim | resume`` against a real in-process
node (instant seal) without workers: the test plays the gatekeeper and the cluster's workers,
sending what they would send (the cluster's keys, the constructor's and the commands' reports
with their messages as the cluster, a halt as one member worker) as their origins, signed
with keys whose public halves are on chain. So what is asserted is what the chain holds and how the CLI shows it: a
failed constructor's message, a failed command's message, a halted contract in ``list`` and
``info``, its fees reclaimed at once, and root resuming it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from phala.chain.runtime import contracts, mq, system
from phala.chain.runtime.frame import RuntimeCall
from phala.client import tx
from phala.client.contract_session import DEFAULT_GAS
from phala.client.rpc import RpcClient
from phala.client.units import format_amount
from phala.core.cluster import CLUSTER_PUBKEY_TOPIC, ClusterPubkey, cluster_id
from phala.core.codec import encode
from phala.core.contracts import (
    CONTRACT_PUBKEY_TOPIC,
    HALTED_TOPIC,
    REPORT_TOPIC,
    CommandReport,
    ConstructorFailed,
    ContractHalted,
    ContractPubkey,
    contract_id,
)
from phala.core.envelope import X25519Keypair
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair, dev_keypair
from phala.core.mq import (
    ClusterOrigin,
    GatekeeperOrigin,
    Message,
    MessageOrigin,
    WorkerOrigin,
    sign_message,
)
from phala.pherry.relayer import submit_unsigned

from .test_cli import assert_error, invoke
from .test_gatekeeper_cli import (  # noqa: F401 - the node fixture
    WORKERS,
    ThreadedNode,
    node,
    publish_master_pubkey,
    register_workers,
)

ALICE, BOB, CHARLIE = (dev_keypair(n) for n in ("Alice", "Bob", "Charlie"))
MASTER = Keypair.from_uri("//cli/master")
CLUSTER_KEY = Keypair.from_uri("//cli/cluster/0")  # the cluster's epoch-0 key, as published
# X25519 keys of the cluster and of the contracts, as their workers would publish them.
CLUSTER_ECDH = X25519Keypair.from_secret(blake2_256(b"cli/cluster/0/x25519")).public
CONTRACT_ECDH = X25519Keypair.from_secret(blake2_256(b"cli/contract/x25519")).public
C0 = cluster_id(0)
MEMBER = WORKERS[1]  # cluster 0's one worker
GAS = 1_000_000
FEE = format_amount(GAS * contracts.GAS_PRICE, 12, "PHA")  # what a command's gas limit reserves
COUNTER = """from phala.contracts.sdk import Contract, ContractError, command, constructor, query


class Counter(Contract):
    @constructor
    def init(self, ctx, start: int):
        if start < 0:
            raise ContractError("start must not be negative")
        self.count = start

    @command
    def bump(self, ctx, by: int) -> int:
        if by <= 0:
            raise ContractError("by must be positive")
        self.count = self.count + by
        return self.count

    @query
    def get(self, ctx) -> int:
        return self.count
"""
CODE_HASH = blake2_256(COUNTER.encode())


@dataclass
class Chain:
    """The node with cluster 0 ready for contracts, and the off-chain senders' sequences."""

    node: ThreadedNode
    ks: str
    sequences: dict

    @property
    def url(self) -> str:
        return self.node.url

    def send(self, key: Keypair, origin: MessageOrigin, topic: bytes, payload: bytes) -> None:
        """What a pRuntime sends: ``payload`` on ``topic`` as ``origin``, signed by ``key``."""
        name = encode(origin, MessageOrigin)
        seq = self.sequences.get(name, 0)
        self.sequences[name] = seq + 1
        signed = sign_message(key, self.node.genesis, Message(origin, topic, payload), seq)

        async def go() -> None:
            async with RpcClient(self.url) as client:
                since = self.node.node.chain.head.number + 1
                tx_hash = await submit_unsigned(client, mq.sync_offchain_message(signed))
                await tx.wait_finalized(client, tx_hash, 10, since=since)

        asyncio.run(go())
        failed = self.events(mq.OffchainMessageFailed)
        assert failed == [], failed

    def as_cluster(self, topic: bytes, payload: bytes) -> None:
        self.send(CLUSTER_KEY, ClusterOrigin(C0), topic, payload)

    def halt(self, contract: bytes, reason: str) -> None:
        """The member's watchdog fired: it halts the contract, as itself."""
        payload = encode(ContractHalted(contract, reason))
        self.send(MEMBER, WorkerOrigin(MEMBER.public_key), HALTED_TOPIC, payload)

    def report(self, contract: bytes, index: int, status: int = 0, message: str = "",
               gas_used: int = 1_000) -> None:  # fmt: skip
        self.as_cluster(REPORT_TOPIC, encode(CommandReport(contract, index, status, gas_used, message)))

    def submit(self, signer: Keypair, call: RuntimeCall) -> None:
        async def go() -> None:
            async with RpcClient(self.url) as client:
                since = self.node.node.chain.head.number + 1
                await tx.wait_finalized(client, await tx.submit(client, signer, call), 10, since=since)

        asyncio.run(go())
        assert [e for e in self.events(system.ExtrinsicFailed)] == []

    def events(self, kind: type) -> list:
        return [r.event for r in self.node.read(system.Events) if isinstance(r.event, kind)]

    def read(self, item, key):  # noqa: ANN001, ANN201
        chain = self.node.node.chain
        raw = chain.db.read_at(chain.head.state_root, item.key(key))
        return item.default if raw is None else item.codec.decode(raw)

    def reserved(self, who: Keypair) -> int:
        return self.read(system.Account, who.public_key).data.reserved

    def instantiate(self, salt: bytes, deployer: Keypair = ALICE) -> bytes:
        """Upload COUNTER (once) and instantiate it, as a deploy would (the sealed arguments
        are a stand-in: nothing opens them here)."""
        if self.read(contracts.Code, CODE_HASH) is None:
            self.submit(deployer, contracts.upload_code(COUNTER.encode()))
        self.submit(deployer, contracts.instantiate(CODE_HASH, C0, salt, b"sealed args", GAS))
        return contract_id(deployer.public_key, CODE_HASH, C0, salt)


@pytest.fixture
def ready(node: ThreadedNode, tmp_path: Path) -> Chain:  # noqa: F811
    """Gatekeeper WORKERS[0] with the master key MASTER, cluster 0 = [MEMBER] with its
    epoch-0 keys (CLUSTER_KEY) published."""
    ks = str(tmp_path / "ks")
    register_workers(node)
    assert invoke("gatekeeper", "register", "0x" + WORKERS[0].public_key.hex(), "--rpc", node.url,
                  "--keystore", ks).exit_code == 0  # fmt: skip
    publish_master_pubkey(node, WORKERS[0], MASTER)
    assert invoke("cluster", "create", "--worker", "0x" + MEMBER.public_key.hex(), "--rpc",
                  node.url, "--keystore", ks).exit_code == 0  # fmt: skip
    chain = Chain(node, ks, {})
    keys = ClusterPubkey(C0, 0, CLUSTER_KEY.public_key, CLUSTER_ECDH)
    chain.send(MASTER, GatekeeperOrigin(), CLUSTER_PUBKEY_TOPIC, encode(keys))
    return chain


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


class Background:
    """``phala *args`` run in a thread: it waits on the chain while the test plays the
    workers."""

    def __init__(self, *args: str):
        self.box: dict = {}
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args: str) -> None:
        try:
            self.box["result"] = invoke(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.box["error"] = exc

    def result(self):  # noqa: ANN201
        self.thread.join(60)
        assert not self.thread.is_alive(), "the command did not finish"
        if "error" in self.box:
            raise self.box["error"]
        return self.box["result"]

    def wait_until(self, check: Callable[[], bool], timeout: float = 30.0) -> None:
        """Until ``check()`` holds; fails with the command's output if it ended first."""
        deadline = time.monotonic() + timeout
        while not check():
            if not self.thread.is_alive():
                got = self.result()
                raise AssertionError(f"the command ended first ({got.exception!r}): {got.output}")
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)


def hex_of(contract: bytes) -> str:
    return "0x" + contract.hex()


def publish_contract_keys(chain: Chain, contract: bytes) -> None:
    keys = ContractPubkey(contract, 0, Keypair.from_uri("//cli/contract").public_key, CONTRACT_ECDH)
    chain.as_cluster(CONTRACT_PUBKEY_TOPIC, encode(keys))


# -- deploy and call show the workers' message --------------------------------------------------


def test_deploy_waits_for_the_constructor_and_shows_why_it_failed(ready: Chain, tmp_path: Path) -> None:
    source = tmp_path / "counter.py"
    source.write_text(COUNTER)
    contract = contract_id(ALICE.public_key, CODE_HASH, C0, b"negative")
    deploy = Background(
        "contract", "deploy", str(source), "--cluster", "0", "--from", "//Alice", "--args=-1",
        "--salt", "negative", "--rpc", ready.url, "--keystore", ready.ks, "--timeout", "30",
    )  # fmt: skip
    deploy.wait_until(lambda: ready.read(contracts.Contracts, contract) is not None)
    why = "start must not be negative"
    ready.report(contract, 0, status=1, message=why)
    result = deploy.result()
    assert_error(
        result,
        f"the constructor failed (error): {why}; contract {hex_of(contract)} is on chain but "
        "accepts no commands",
    )
    assert f"code 0x{CODE_HASH.hex()}" in result.stdout and "uploaded" in result.stdout
    assert "constructor init(-1): error" in result.stdout
    assert "keys of epoch" not in result.stdout  # the workers publish none for it
    assert ready.read(contracts.ContractStatus, contract) == ConstructorFailed(why)
    shown = ok("contract", "info", hex_of(contract), "--rpc", ready.url)
    assert f"status: constructor failed: {why}" in shown and "keys: not published" in shown
    assert f"{hex_of(contract)} (#0): constructor failed" in ok("contract", "list", "--rpc", ready.url)
    # No command is even sealed for it.
    assert_error(
        invoke("contract", "call", hex_of(contract), "bump", "1", "--from", "//Bob",
               "--rpc", ready.url, "--keystore", ready.ks),
        f"constructor failed, so it accepts no commands: {why}",
    )  # fmt: skip


def test_a_failed_command_shows_the_workers_message_and_a_halt_ends_the_wait(ready: Chain) -> None:
    contract = ready.instantiate(b"counter")
    ready.report(contract, 0)
    publish_contract_keys(ready, contract)
    call = ["contract", "call", hex_of(contract), "bump", "--from", "//Bob", "--no-receipt",
            "--rpc", ready.url, "--keystore", ready.ks, "--timeout", "30"]  # fmt: skip
    job = Background(*call[:4], "0", *call[4:])
    job.wait_until(lambda: ready.read(contracts.CommandCount, contract) == 2)
    ready.report(contract, 1, status=1, message="by must be positive", gas_used=321)
    result = job.result()
    assert_error(result, "the command failed (error): by must be positive")
    assert "reported in block #" in result.stdout and f"gas used 321 of {DEFAULT_GAS:,}" in result.stdout
    # The workers halt the contract while a command awaits its report: the wait ends there.
    job = Background(*call[:4], "5", *call[4:])
    job.wait_until(lambda: ready.read(contracts.CommandCount, contract) == 3)
    reason = "the watchdog fired: bump ran past 10 s"
    ready.halt(contract, reason)
    assert_error(
        job.result(),
        f"contract {hex_of(contract)} was halted by its workers in block #",
        f"before command 2 was reported: {reason}; its pending fees can be reclaimed at once",
    )
    assert_error(invoke(*call[:4], "5", *call[4:]), f"is halted (its workers stopped running it: {reason})")


# -- list, info, reclaim, resume ---------------------------------------------------------------


def test_list_info_reclaim_and_resume(ready: Chain) -> None:
    url, ks = ready.url, ready.ks
    assert "no contracts yet" in ok("contract", "list", "--rpc", url)
    contract = ready.instantiate(b"a")
    ready.report(contract, 0)
    other = ready.instantiate(b"b", deployer=CHARLIE)  # its constructor not reported yet
    for who in (BOB, BOB, CHARLIE):
        ready.submit(who, contracts.command(contract, b"sealed", GAS))
    listed = ok("contract", "list", "--rpc", url)
    assert f"contract {hex_of(contract)} (#0): active" in listed
    assert f"contract {hex_of(other)} (#1): pending" in listed
    assert f"  code 0x{CODE_HASH.hex()}, cluster 0x{C0.hex()} (#0)\n" in listed
    assert f"  deployed by {ALICE.ss58_address(30)} in block #" in listed
    assert "4 command(s), 3 pending fee(s)" in listed and "1 command(s), 1 pending fee(s)" in listed
    assert "proof verified" in listed
    shown = ok("contract", "info", hex_of(contract), "--rpc", url)
    assert "status: active" in shown and "4 command(s)" in shown and "3 pending fee(s):" in shown
    assert f"#1: {FEE} reserved from {BOB.ss58_address(30)} in block #" in shown
    assert "reclaimable from block #" in shown and "reclaimable now" not in shown
    assert "phala contract resume" not in shown
    # Nothing reclaimable yet; nothing at all for a command with no pending fee.
    reclaim = ["contract", "reclaim", hex_of(contract), "--rpc", url, "--keystore", ks]
    assert_error(invoke(*reclaim, "--from", "//Bob"),
                 "none of this account's 2 pending fee(s)", "is reclaimable yet")  # fmt: skip
    assert_error(invoke(*reclaim, "--from", "//Bob", "--index", "9"), "command 9 of contract")
    assert_error(invoke(*reclaim, "--from", "//Bob", "--index", "1"), "may still be reported")

    # The workers halt it.
    reason = "the memory watchdog fired"
    ready.halt(contract, reason)
    assert f"contract {hex_of(contract)} (#0): halted" in ok("contract", "list", "--rpc", url)
    shown = ok("contract", "info", hex_of(contract), "--rpc", url)
    assert f"status: halted: {reason}" in shown and shown.count("reclaimable now") == 3
    assert f"phala contract reclaim {hex_of(contract)} --from ACCOUNT" in shown
    assert f"phala contract resume {hex_of(contract)}" in shown
    # Each payer takes back their own, at once.
    assert_error(invoke(*reclaim, "--from", "//Bob", "--index", "3"),
                 f"was paid by 0x{CHARLIE.public_key.hex()}")  # fmt: skip
    out = ok(*reclaim, "--from", "//Bob")
    assert f"command #1: {FEE} back" in out and f"command #2: {FEE} back" in out
    both = format_amount(2 * GAS * contracts.GAS_PRICE, 12, "PHA")
    assert f"success: {both} back to {BOB.ss58_address(30)}" in out
    assert ready.reserved(BOB) == 0
    assert ready.read(contracts.PendingFees, (contract, 1)) is None
    assert ready.read(contracts.PendingFees, (contract, 2)) is None
    assert_error(invoke(*reclaim, "--from", "//Bob"), "was paid by this account (1 pending in all)")
    assert f"command #3: {FEE} back" in ok(*reclaim, "--from", "//Charlie", "--index", "3")
    assert "0 pending fee(s)" in ok("contract", "info", hex_of(contract), "--rpc", url)

    # Root resumes it.
    resume = ["contract", "resume", hex_of(contract), "--rpc", url, "--keystore", ks]
    assert_error(invoke(*resume, "--sudo", "//Bob"), "is not the sudo key")
    out = ok(*resume)
    assert "Contracts.Resumed" in out and f"success: contract {hex_of(contract)} is active again" in out
    assert ready.read(contracts.ContractStatus, contract) is None
    assert f"contract {hex_of(contract)} (#0): active" in ok("contract", "list", "--rpc", url)
    assert_error(invoke(*resume), "Contracts.NotHalted: The contract is not halted")
    assert_error(invoke("contract", "resume", hex_of(other), "--rpc", url, "--keystore", ks),
                 "Contracts.NotHalted")  # fmt: skip


def test_bad_input_and_unknown_contracts(ready: Chain) -> None:
    url, ks = ready.url, ready.ks
    unknown = "0x" + "cd" * 32
    keystore = ["--keystore", ks]
    for args in (["info", unknown], ["reclaim", unknown, "--from", "//Bob", *keystore]):
        assert_error(invoke("contract", *args, "--rpc", url), f"no contract has id {unknown}")
    assert_error(invoke("contract", "resume", unknown, "--rpc", url, *keystore), "Contracts.ContractNotFound")
    for args in (["info", "0x12"], ["reclaim", "0x12", "--from", "//Bob", *keystore],
                 ["resume", "nothex", *keystore]):  # fmt: skip
        assert_error(invoke("contract", *args, "--rpc", url), "invalid contract id")
    assert invoke("contract", "reclaim", unknown, "--rpc", url).exit_code == 2  # no --from
    assert invoke("contract", "reclaim", unknown, "--from", "//Bob", "--index", "-1").exit_code == 2
