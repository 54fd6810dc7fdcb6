"""Helpers for the worker end-to-end tests: node, pRuntime and pherry as real processes
(``python -m phala …``) with their output in files, fixed loopback ports that survive a
restart, a dev chain spec both the node and the pRuntimes pin, and a small pRuntime client.
Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from phala.chain.runtime import registry
from phala.chain.spec import ChainSpec, now_ms

from .helpers import PhalaProcess, Rpc, unhex

START_TIMEOUT = 60.0


def free_port() -> int:
    """A loopback port that is free now, chosen below the kernel's ephemeral range.

    Restarted processes must come back on the port their peers know, so ``--port 0`` does
    not do for them; and a port inside the ephemeral range could be taken, while its owner
    is down, by the local end of some client connection (even by a client's connection to
    that very port: TCP self-connect)."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10_000, max(low, 10_001)) if low > 11_000 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free loopback port")


def write_dev_spec(path: Path, start_time_ms: int | None = None) -> Path:
    """The dev chain spec with a fixed start time, so every process that reads the file
    computes the same genesis (``ChainSpec.dev()`` alone starts the clock at each call)."""
    start = now_ms() // 1000 * 1000 if start_time_ms is None else start_time_ms
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ChainSpec.dev(start_time_ms=start).to_json())
    return path


def node_process(
    log_dir: Path,
    spec: Path,
    base_path: Path,
    port: int,
    seal: str = "interval",
    block_time: float = 0.2,
) -> PhalaProcess:
    """A dev node (Alice authors, every block final) on ``spec`` and a fixed RPC port."""
    flags = {"interval": ["--block-time", str(block_time)], "instant": ["--instant-seal"],
             "manual": ["--manual-seal"]}[seal]  # fmt: skip
    args = ["node", "--dev", "--chain", str(spec), "--base-path", str(base_path),
            "--rpc-host", "127.0.0.1", "--rpc-port", str(port), *flags]  # fmt: skip
    return PhalaProcess("node", args, log_dir, rb"RPC listening on (http://\S+)")


def pruntime_process(
    tag: str,
    log_dir: Path,
    spec: Path,
    data_dir: Path,
    port: int = 0,
    checkpoint_interval: int = 100,
) -> PhalaProcess:
    args = ["pruntime", "--chain", str(spec), "--data-dir", str(data_dir), "--host", "127.0.0.1",
            "--port", str(port), "--checkpoint-interval", str(checkpoint_interval)]  # fmt: skip
    return PhalaProcess(tag, args, log_dir, rb"pRuntime listening on (http://\S+)")


def pherry_process(
    tag: str,
    log_dir: Path,
    node_url: str,
    pruntime_url: str,
    operator: str,
    batch: int | None = None,
    endpoint: str | None = None,
) -> PhalaProcess:
    """A pherry; with ``endpoint`` it also records that URL on chain as the worker's endpoint."""
    args = ["pherry", "--node", node_url, "--pruntime", pruntime_url, "--operator", operator]
    if batch is not None:
        args += ["--batch", str(batch)]
    if endpoint is not None:
        args += ["--endpoint", endpoint]
    return PhalaProcess(tag, args, log_dir)


class Processes:
    """Every process a test starts, SIGKILLed at teardown whatever happens."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.all: list[PhalaProcess] = []

    def add(self, process: PhalaProcess) -> PhalaProcess:
        self.all.append(process)
        return process

    def kill_all(self) -> None:
        for process in reversed(self.all):
            with contextlib.suppress(Exception):
                process.kill()

    def logs(self, lines: int = 15) -> str:
        """The last stderr lines of every run of every process (for failure messages)."""
        parts = []
        for process in self.all:
            for run in range(1, process.runs + 1):
                tail = "\n".join(process.stderr(run).splitlines()[-lines:])
                parts.append(f"--- {process.tag} run {run} ---\n{tail}")
        return "\n".join(parts)


# -- reading the worker and the chain -----------------------------------------------------------


async def worker_info(session: aiohttp.ClientSession, url: str) -> dict:
    """The pRuntime's ``/get_info`` answer."""
    async with session.get(f"{url}/get_info") as resp:
        body = await resp.json()
    assert "error" not in body, body
    return body


async def finalized_number(rpc: Rpc) -> int:
    return int((await rpc.call("chain_getHeader"))["number"], 16)


async def registered_worker(
    rpc: Rpc, identity: bytes, at: str | None = None
) -> registry.WorkerInfo | None:
    """``Registry.Workers[identity]`` read from the node, decoded."""
    raw = await rpc.call("state_getStorage", "0x" + registry.Workers.key(identity).hex(), at)
    return None if raw is None else registry.Workers.codec.decode(unhex(raw))


def checkpoint_blocks(data_dir: Path) -> list[int]:
    """The block numbers of the sealed checkpoints in a pRuntime's data directory (the file
    of block N is named after N + 1)."""
    return sorted(
        int(p.name[len("checkpoint-") : -len(".sealed")]) - 1
        for p in (data_dir / "checkpoints").glob("checkpoint-*.sealed")
    )


@dataclass
class Member:
    """One pRuntime of a test network with its pherry (and its data directory)."""

    name: str
    pruntime: PhalaProcess
    pherry: PhalaProcess
    data_dir: Path | None = None
    identity: bytes = b""

    @property
    def url(self) -> str:
        return self.pruntime.url


class DevNetwork:
    """``phala dev`` as a process in its own session (so that whatever it leaves behind can be
    killed by process group), its output in a file."""

    def __init__(self, base: Path, log: Path, ports: list[int], block_time: float):
        self.base, self.log, self.ports, self.block_time = base, log, ports, block_time
        self.proc: subprocess.Popen | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[2]}"

    def start(self) -> None:
        rpc, gk, wk = self.ports
        args = [
            "dev",
            "--base-path",
            str(self.base),
            "--block-time",
            str(self.block_time),
            "--rpc-port",
            str(rpc),
            "--pruntime-port",
            str(gk),
            "--worker-port",
            str(wk),
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "phala", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def provision_lines(self) -> list[str]:
        return [
            line.split("| ", 1)[1]
            for line in self.output().splitlines()
            if line.lstrip().startswith("provision |")
        ]

    def stop(self) -> int:
        """SIGTERM ``phala dev`` (it stops its children) and wait for it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill_group(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def run_phala_dev(
    tmp_path: Path, scenario: Callable[[DevNetwork], Awaitable[None]], timeout: float, block_time: float
) -> None:
    """Run ``scenario(dev)`` against a ``phala dev`` on free ports, within ``timeout``
    seconds; on failure the error carries the tail of its output; its processes are killed
    at the end whatever happens."""
    dev = DevNetwork(tmp_path / "dev", tmp_path / "dev.log", [free_port() for _ in range(3)], block_time)
    try:
        asyncio.run(asyncio.wait_for(scenario(dev), timeout))
    except Exception as exc:
        tail = "\n".join(dev.output().splitlines()[-60:])
        raise AssertionError(f"{type(exc).__name__}: {exc}\n--- phala dev ---\n{tail}") from exc
    finally:
        dev.kill_group()
