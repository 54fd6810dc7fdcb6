"""``phala dev``: the local network in one command: a dev node, a pRuntime and its pherry.

Each runs as its own process (as in production); their log lines are shown with a prefix.
A process that exits is restarted after a pause; Ctrl-C stops all three. State lives in
one directory (default ``.phala-dev``), so the network resumes where it stopped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from phala.chain.spec import ChainSpec

from .common import handle_errors


def _pump(name: str, proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(f"{name:>8} | {line}")
        sys.stdout.flush()


class Child:
    def __init__(self, name: str, args: list[str]):
        self.name, self.args = name, args
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "phala", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        threading.Thread(target=_pump, args=(self.name, self.proc), daemon=True).start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@handle_errors
def dev(
    base: Annotated[Path, typer.Option("--base-path", help="Where the network keeps its state.")] = Path(".phala-dev"),
    rpc_port: Annotated[int, typer.Option("--rpc-port", help="Node RPC port.")] = 9944,
    pruntime_port: Annotated[int, typer.Option("--pruntime-port", help="pRuntime HTTP port.")] = 8000,
    block_time: Annotated[float, typer.Option("--block-time", min=0.05, help="Seconds between blocks.")] = 1.0,
) -> None:
    """Run the local network: dev node, one pRuntime and its pherry (Ctrl-C stops it)."""
    base.mkdir(parents=True, exist_ok=True)
    spec_path = base / "spec.json"
    if not spec_path.exists():
        spec_path.write_text(ChainSpec.dev().to_json())
    spec = str(spec_path)
    rpc = f"http://127.0.0.1:{rpc_port}"
    children = [
        Child("node", ["node", "--dev", "--chain", spec, "--base-path", str(base / "node"),
                       "--rpc-port", str(rpc_port), "--block-time", str(block_time)]),
        Child("pruntime", ["pruntime", "--chain", spec, "--data-dir", str(base / "worker"),
                           "--port", str(pruntime_port)]),
        Child("pherry", ["pherry", "--node", rpc, "--pruntime", f"http://127.0.0.1:{pruntime_port}",
                         "--operator", "//Alice", "--endpoint", f"http://127.0.0.1:{pruntime_port}"]),
    ]
    print(f"local network in {base}: node RPC {rpc}, pRuntime http://127.0.0.1:{pruntime_port}")
    for child in children:
        child.start()
    try:
        while True:
            time.sleep(0.5)
            for child in children:
                if child.proc and child.proc.poll() is not None:
                    child.restarts += 1
                    print(f"{child.name:>8} | exited with {child.proc.returncode}; restarting")
                    time.sleep(min(5, child.restarts))
                    child.start()
    except KeyboardInterrupt:
        print("stopping")
    finally:
        for child in reversed(children):
            child.stop()
