"""``phala dev``: the local network in one command: a dev node, two pRuntimes (a gatekeeper
and a worker), a pherry for each, and a provisioning step that gives them their roles.

Each of node, pRuntimes and pherries runs as its own process (as in production); their log
lines are shown with a prefix. A process that exits is restarted after a pause; Ctrl-C stops
them all. State lives in one directory (default ``.phala-dev``), so the network resumes where
it stopped.

The provisioning step (:class:`Provisioner`, a thread of ``phala dev``) uses the client SDK:
it waits until both pRuntimes are registered on chain, makes the first a gatekeeper through
sudo, waits for the master public key, creates a cluster holding the second, waits until
that worker holds the cluster key, and deploys the example token (``examples/token.py``,
``init(1_000_000)`` from //Alice, with a fixed salt) in that cluster; it prints the token's
contract id and writes it to ``<base path>/token``. It reads chain state before each step
and skips what is already done, so a restart of ``phala dev`` (or of any process) does
nothing twice.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import aiohttp
import typer

from phala.chain.runtime import cluster, gatekeeper
from phala.chain.spec import ChainSpec
from phala.client.chain import VerificationError
from phala.client.contract_session import ContractClientError, ContractSession
from phala.client.rpc import NodeUnreachable, RpcClient, RpcError, RpcProtocolError
from phala.contracts.vm.build import local_contract_runtime
from phala.core.keys import Keypair, dev_keypair

from .common import CliError, handle_errors
from .gatekeeping import dispatch_as_root, gatekeeper_state, worker_cluster, worker_records

NAME_WIDTH = 10
SUDO = "Alice"  # the dev chain's sudo key
GATEKEEPER_OPERATOR, WORKER_OPERATOR = "//Bob", "//Charlie"  # pay for the registrations
# The example token make dev deploys: the same id on every run (deployer, code, cluster, salt).
TOKEN_SOURCE = Path(__file__).resolve().parents[2] / "examples" / "token.py"
TOKEN_DEPLOYER = "Alice"
TOKEN_SALT = b"phala-dev/token"
TOKEN_SUPPLY = 1_000_000

T = TypeVar("T")


def _pump(name: str, proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(f"{name:>{NAME_WIDTH}} | {line}")
        sys.stdout.flush()


class Child:
    def __init__(self, name: str, args: list[str]):
        self.name, self.args = name, args
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "phala", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=_pump, args=(self.name, self.proc), daemon=True).start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# -- provisioning -------------------------------------------------------------------------------

RETRYABLE = (
    NodeUnreachable,
    RpcError,
    RpcProtocolError,
    VerificationError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    CliError,
    ContractClientError,
)


class Stopped(Exception):
    """``phala dev`` is stopping."""


class Provisioner:
    """Makes the first pRuntime a gatekeeper and puts the second in a cluster, once both are
    registered, then deploys the example token there; each step only if chain state shows it
    is not done yet."""

    def __init__(
        self,
        rpc: str,
        gatekeeper_url: str,
        worker_url: str,
        sudo: Keypair,
        poll: float = 0.5,
        say: Callable[[str], None] | None = None,
        token_file: Path | None = None,
    ):
        self.rpc, self.gatekeeper_url, self.worker_url = rpc, gatekeeper_url, worker_url
        self.sudo = sudo
        self.token_file = token_file
        self.poll = poll
        self.say = say or self._print
        self.stop = threading.Event()
        self.done = threading.Event()

    @staticmethod
    def _print(text: str) -> None:
        sys.stdout.write(f"{'provision':>{NAME_WIDTH}} | {text}\n")
        sys.stdout.flush()

    def run(self) -> None:
        """Provision, starting over after any failure (a process restarting, the node down)."""
        backoff = 1.0
        while not self.stop.is_set() and not self.done.is_set():
            try:
                asyncio.run(self.provision())
                self.done.set()
            except Stopped:
                return
            except Exception as exc:  # say it and start over: the network runs on meanwhile
                reason = (str(exc) or type(exc).__name__) if isinstance(exc, RETRYABLE) else repr(exc)
                self.say(f"retrying in {backoff:.0f}s: {reason}")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="provision", daemon=True)
        thread.start()
        return thread

    async def _until(self, what: str, check: Callable[[], Awaitable[T | None]]) -> T:
        """Poll ``check`` until it returns a value; say every 30 s that it is still waiting."""
        started = last = time.monotonic()
        while True:
            if self.stop.is_set():
                raise Stopped
            value = await check()
            if value is not None and value is not False:
                return value
            if time.monotonic() - last > 30:
                last = time.monotonic()
                self.say(f"still waiting for {what} ({last - started:.0f}s)")
            await asyncio.sleep(self.poll)

    async def provision(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session, RpcClient(self.rpc) as client:

            async def info(url: str) -> dict | None:
                try:
                    async with session.get(f"{url}/get_info") as resp:
                        body = await resp.json(content_type=None)
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                    return None  # not up yet, or restarting
                return None if not isinstance(body, dict) or "error" in body else body

            async def identity(url: str) -> bytes | None:
                got = await info(url)
                return None if got is None else bytes.fromhex(got["identity"][2:])

            gk = await self._until(
                f"the gatekeeper pRuntime at {self.gatekeeper_url}",
                lambda: identity(self.gatekeeper_url),
            )
            wk = await self._until(
                f"the worker pRuntime at {self.worker_url}", lambda: identity(self.worker_url)
            )

            async def both_registered() -> bool:
                head = (await gatekeeper_state(client)).header.hash
                records = await worker_records(client, [gk, wk], head)
                return all(r is not None and r.active for r in records.values())

            await self._until("both pRuntimes to be registered on chain", both_registered)
            self.say(f"both pRuntimes are registered: gatekeeper 0x{gk.hex()}, worker 0x{wk.hex()}")

            # 1. the gatekeeper
            state = await gatekeeper_state(client)
            if gk in state.gatekeepers:
                self.say("the gatekeeper pRuntime is a gatekeeper already")
            else:
                await self._root(
                    client,
                    gatekeeper.register_gatekeeper(gk),
                    "made the first pRuntime a gatekeeper",
                )

            async def master_pubkey() -> bytes | None:
                return (await gatekeeper_state(client)).master_pubkey

            master = await self._until("the master public key on chain", master_pubkey)
            self.say(f"master public key on chain: 0x{master.hex()}")

            # 2. the cluster
            held = await worker_cluster(client, wk)
            if held is not None:
                self.say(f"the worker is in cluster 0x{held.hex()} already")
            else:
                await self._root(
                    client, cluster.create_cluster([wk]), "created a cluster with the worker"
                )
                held = await worker_cluster(client, wk)
                if held is None:
                    raise CliError("the cluster was created but the worker is in none")

            async def epoch_held() -> int | None:
                got = await info(self.worker_url)
                return None if got is None else (got.get("clusters") or {}).get("0x" + held.hex())

            epoch = await self._until(
                f"the worker to receive cluster 0x{held.hex()}'s key", epoch_held
            )
            self.say(f"the worker holds cluster 0x{held.hex()}'s key (epoch {epoch})")

            # 3. the example token
            await self._deploy_token(client, held)
            self.say("provisioning done")

    async def _deploy_token(self, client: RpcClient, cluster_id: bytes) -> None:
        if not TOKEN_SOURCE.exists():
            self.say(f"{TOKEN_SOURCE} is not there: no example token deployed")
            return
        deployer = dev_keypair(TOKEN_DEPLOYER)
        async with ContractSession(client, timeout=60, poll=self.poll) as session:
            deployed = await session.deploy(
                TOKEN_SOURCE.read_bytes(),
                cluster_id,
                [TOKEN_SUPPLY],
                deployer,
                salt=TOKEN_SALT,
                exist_ok=True,
            )
        token = "0x" + deployed.contract.hex()
        if deployed.existed:
            self.say(f"the example token is deployed already: contract {token}")
        elif deployed.report is not None and not deployed.report.ok:
            report = deployed.report
            why = f": {report.message}" if report.message else ""
            raise CliError(f"the example token's constructor failed ({report.status_name}){why}")
        else:
            self.say(
                f"deployed the example token (examples/token.py, init({TOKEN_SUPPLY}) from "
                f"//{TOKEN_DEPLOYER}) in block #{deployed.block_number}: contract {token}"
            )
        if self.token_file is not None:
            self.token_file.write_text(token + "\n")

    async def _root(self, client: RpcClient, call, done: str) -> None:  # noqa: ANN001
        outcome = await dispatch_as_root(client, self.sudo, call, timeout=60)
        where = f"in block #{outcome.number}"
        if not outcome.ok:
            raise CliError(f"the root call {where} failed: {outcome.error}")
        self.say(f"{done} ({where})")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# -- the command --------------------------------------------------------------------------------


def children(
    base: Path, spec: str, rpc_port: int, gk_port: int, wk_port: int, block_time: float
) -> list[Child]:
    rpc = f"http://127.0.0.1:{rpc_port}"
    out = [
        Child(
            "node",
            [
                "node",
                "--dev",
                "--chain",
                spec,
                "--base-path",
                str(base / "node"),
                "--rpc-port",
                str(rpc_port),
                "--block-time",
                str(block_time),
            ],
        )
    ]
    roles = (
        ("gatekeeper", "gk-pherry", gk_port, GATEKEEPER_OPERATOR),
        ("worker", "wk-pherry", wk_port, WORKER_OPERATOR),
    )
    for name, pherry, port, operator in roles:
        url = f"http://127.0.0.1:{port}"
        out.append(
            Child(
                name,
                ["pruntime", "--chain", spec, "--data-dir", str(base / name), "--port", str(port)],
            )
        )
        out.append(
            Child(
                pherry,
                [
                    "pherry",
                    "--node",
                    rpc,
                    "--pruntime",
                    url,
                    "--operator",
                    operator,
                    "--endpoint",
                    url,
                ],
            )
        )
    return out


@handle_errors
def dev(
    base: Annotated[
        Path, typer.Option("--base-path", help="Where the network keeps its state.")
    ] = Path(".phala-dev"),
    rpc_port: Annotated[
        int, typer.Option("--rpc-port", min=1, max=65535, help="Node RPC port.")
    ] = 9944,
    pruntime_port: Annotated[
        int,
        typer.Option(
            "--pruntime-port",
            min=1,
            max=65535,
            help="HTTP port of the first pRuntime (the gatekeeper).",
        ),
    ] = 8000,
    worker_port: Annotated[
        int,
        typer.Option(
            "--worker-port", min=1, max=65535, help="HTTP port of the second pRuntime (the worker)."
        ),
    ] = 8001,
    block_time: Annotated[
        float, typer.Option("--block-time", min=0.05, help="Seconds between blocks.")
    ] = 1.0,
) -> None:
    """Run the local network: dev node, a gatekeeper and a worker pRuntime with a pherry each,
    provisioned with the master key, a cluster and the example token (Ctrl-C stops it)."""
    if len({rpc_port, pruntime_port, worker_port}) < 3:
        raise CliError(
            "--rpc-port, --pruntime-port and --worker-port must be three different ports"
        )
    base.mkdir(parents=True, exist_ok=True)
    spec_path = base / "spec.json"
    if not spec_path.exists():
        spec_path.write_text(ChainSpec.dev(contract_runtime=local_contract_runtime()).to_json())
    procs = children(base, str(spec_path), rpc_port, pruntime_port, worker_port, block_time)
    rpc = f"http://127.0.0.1:{rpc_port}"
    gk_url, wk_url = f"http://127.0.0.1:{pruntime_port}", f"http://127.0.0.1:{worker_port}"
    print(
        f"local network in {base}: node RPC {rpc}, gatekeeper pRuntime {gk_url}, worker pRuntime {wk_url}"
    )
    provisioner = Provisioner(
        rpc, gk_url, wk_url, dev_keypair(SUDO), poll=min(1.0, block_time), token_file=base / "token"
    )
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` and `timeout` stop the children too
    try:
        for child in procs:
            child.start()
        provisioner.start()
        while True:
            time.sleep(0.5)
            for child in procs:
                if child.proc and child.proc.poll() is not None:
                    child.restarts += 1
                    print(
                        f"{child.name:>{NAME_WIDTH}} | exited with {child.proc.returncode}; restarting"
                    )
                    time.sleep(min(5, child.restarts))
                    child.start()
    except KeyboardInterrupt:
        print("stopping")
    finally:
        provisioner.stop.set()
        for child in reversed(procs):
            child.stop()
