"""The executor's last walls. The executor is the process that runs wasmtime: it loads the
compiled runtime, then confines itself (rlimits and a seccomp filter) before it reads any
contract code. Raw Python in a process confined exactly the same way cannot open files,
make sockets or run programs (EPERM); and the VM works under the filter: every way a call
can end (a result, out of gas, a trap, the memory cap, a refused WASI call) ends the same,
with the same gas, with the filter as without it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from phala.contracts import protocol as p
from phala.contracts.host import Executor
from phala.core.gas import MAX_GAS_LIMIT

from .support import Raw

RAW = r'''
import errno, os, socket, sys
from phala.contracts.executor import confine
how = confine(seccomp=True)
print("confinement", how)
def attempt(name, fn):
    try:
        fn()
    except OSError as exc:
        print(name, "refused", errno.errorcode.get(exc.errno, exc.errno))
    else:
        print(name, "ALLOWED")
attempt("open", lambda: open(sys.argv[1]).read())
attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
attempt("execve", lambda: os.execv("/bin/true", ["/bin/true"]))
attempt("fork", lambda: os.fork())
'''


@pytest.fixture
def canary_file(tmp_path):
    path = tmp_path / "canary.txt"
    path.write_text("the host's secret")
    return path


def test_open_socket_execve_fail_under_seccomp(canary_file):
    env = {"PYTHONHASHSEED": "0", "PATH": os.defpath}
    out = subprocess.run(
        [sys.executable, "-s", "-P", "-c", RAW, str(canary_file)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert lines["confinement"] == "rlimits+seccomp", out.stderr
    for call in ("open", "socket", "execve", "fork"):
        assert lines[call] == "refused EPERM", (call, out.stdout, out.stderr)
    assert "the host's secret" not in out.stdout


def test_without_seccomp_the_same_code_would_succeed(canary_file):
    """The control: the attempts above fail because of the filter, not by accident."""
    env = {"PYTHONHASHSEED": "0", "PATH": os.defpath}
    code = RAW.replace("confine(seccomp=True)", "'none'").replace('attempt("fork", lambda: os.fork())', "")
    code = code.replace('attempt("execve", lambda: os.execv("/bin/true", ["/bin/true"]))', "")
    out = subprocess.run([sys.executable, "-c", code, str(canary_file)], capture_output=True, text=True, env=env, timeout=60)
    assert "open ALLOWED" in out.stdout and "socket ALLOWED" in out.stdout


VM_WORK = """
from phala.contracts.sdk import Contract, Mapping, command, constructor

SYS = Contract.__getattr__.__globals__["typing"].sys


class Work(Contract):
    entries = Mapping()

    @constructor
    def init(self, ctx):
        self.n = 0

    @command
    def store(self, ctx, n: int) -> int:
        for i in range(n):
            self.entries[i] = "x" * i
        self.n += n
        return len(self.entries.keys())

    @command
    def spin(self, ctx):
        while True:
            pass

    @command
    def deep(self, ctx):
        f = range(1)
        for i in range(150000):
            f = filter(None, f)
        return list(f)

    @command
    def grow(self, ctx):
        keep = []
        while True:
            keep.append(bytes(16 << 20))

    @command
    def clock(self, ctx):
        return SYS.modules["time"].time()
"""
CALLS = [("store", [200], 100_000_000), ("spin", [], 5_000_000), ("deep", [], MAX_GAS_LIMIT),
         ("grow", [], MAX_GAS_LIMIT), ("clock", [], 5_000_000), ("store", [3], 100_000_000)]


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f)}


def test_wasmtime_runs_under_the_filter_as_without_it():
    outcomes = {}
    for seccomp in (True, False):
        with Raw(Executor(seccomp=seccomp), b"\x05" * 32, VM_WORK) as raw:
            status = _status(raw.executor.proc.pid)
            assert raw.executor.hello.confinement == ("rlimits+seccomp" if seccomp else "rlimits")
            assert status["Seccomp"] == ("2" if seccomp else "0")
            assert raw.executor.install(raw.contract, VM_WORK).status == p.OK
            assert raw.run([("init", [], None)], kind=p.CONSTRUCTOR)[0][0].status == p.OK
            outcomes[seccomp] = [raw.run([(method, args, b"\x01" * 32)], gas) for method, args, gas in CALLS]
    assert outcomes[True] == outcomes[False]
    statuses = [(o[0][0].status, o[0][0].message) for o in outcomes[True]]
    assert statuses == [
        (p.OK, ""), (p.OUT_OF_GAS, "out of gas (limit 5000000)"),
        (p.LIMIT, "the VM stopped the call: wasm trap: call stack exhausted"), (p.LIMIT, "MemoryError: "),
        (p.LIMIT, "the VM stopped the call: wasm trap: wasm `unreachable` instruction executed"), (p.OK, ""),
    ]
