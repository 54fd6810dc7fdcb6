"""The executor launcher: executors are started by a process that was itself started before
the worker held any key, never forked from the key holder."""

from __future__ import annotations

import os
import time

import pytest

from phala.contracts import protocol as p
from phala.contracts.host import Executor
from phala.contracts.launcher import Launcher
from phala.contracts.values import encode_plain
from phala.core.gas import COMMAND_GAS

SOURCE = """
from phala.contracts.sdk import Contract, command, constructor

class Counter(Contract):
    @constructor
    def init(self, ctx):
        self.n = 0

    @command
    def bump(self, ctx) -> int:
        self.n += 1
        return self.n
"""
CONTRACT = b"\x02" * 32
CTX = p.CallContext(b"\x01" * 32, 1, 0, CONTRACT, b"\x03" * 32)
# an executor's environment: nothing else (the build cache's place, if this process has one)
EXECUTOR_ENV = {b"PATH", b"PYTHONHASHSEED", b"PHALA_EXECUTOR_SECCOMP"} | (
    {b"PHALA_BUILD_CACHE"} if "PHALA_BUILD_CACHE" in os.environ else set())


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def launcher():
    started = Launcher.start()
    yield started
    started.close()


def test_executors_are_the_launchers_children_not_ours(launcher):
    with Executor(launcher=launcher) as ex:
        assert parent_of(ex.proc.pid) == launcher.proc.pid != os.getpid()
        assert ex.hello.confinement == "rlimits+seccomp"
        assert ex.install(CONTRACT, SOURCE).status == p.OK
        built, _ = ex.run(CONTRACT, [p.Call(p.CONSTRUCTOR, "init", encode_plain([]), CTX, COMMAND_GAS)])
        bumped, writes = ex.run(CONTRACT, [p.Call(p.COMMAND, "bump", encode_plain([]), CTX, COMMAND_GAS)])
        assert [o.status for o in built + bumped] == [p.OK, p.OK]
        assert bumped[0].value == encode_plain(1) and writes == [(b"\x00n", encode_plain(1))]


def test_the_launcher_and_its_executors_inherit_no_environment(launcher, monkeypatch):
    monkeypatch.setenv("PHALA_HOST_SECRET", "canary")
    with Executor(launcher=launcher) as ex:
        for pid in (launcher.proc.pid, ex.proc.pid):
            with open(f"/proc/{pid}/environ", "rb") as f:
                names = sorted(entry.split(b"=", 1)[0] for entry in f.read().split(b"\0") if entry)
            assert b"PHALA_HOST_SECRET" not in names
            assert set(names) <= EXECUTOR_ENV


def test_the_watchdog_kills_a_launched_executor(launcher):
    ex = Executor(launcher=launcher)
    pid = ex.proc.pid
    ex.kill()
    deadline = time.monotonic() + 5
    while ex.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ex.proc.poll() is not None
    assert not os.path.exists(f"/proc/{pid}")  # reaped by the launcher, no zombie left
    ex.close()


def test_the_launcher_stops_when_the_worker_goes(launcher):
    launcher.sock.close()
    assert launcher.proc.wait(5) == 0
