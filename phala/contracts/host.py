"""The host side of an executor: spawn it, talk to it, stop it when it misbehaves.

:class:`Executor` starts ``python -m phala.contracts.executor`` as a fresh interpreter with
a fixed hash seed and a minimal environment (it inherits no secrets: the host never passes
keys, and the executor is started before the worker loads any), reads its greeting, and
exchanges frames of :mod:`phala.contracts.protocol` over its stdin and stdout.

The watchdogs are the last line: gas bounds the work of every call, but if a call takes
longer than ``timeout`` seconds anyway, or the executor runs out of its address space, the
outcome is not deterministic. The executor is killed
and :class:`ExecutorAlarm` raised: the worker must stop serving that contract and raise an
alarm, never record a result.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterable
from typing import Any

from phala.core.codec import DecodeError, decode, encode

from . import protocol as p
from .launcher import Launcher, LauncherError, executor_argv

WATCHDOG_SECONDS = 10.0
START_SECONDS = 120.0
F_SETPIPE_SZ = 1031  # Linux's fcntl command
PIPE_BYTES = 1 << 20  # the first executor on a machine may compile the runtime


class ExecutorAlarm(Exception):
    """The executor broke the protocol, died, or ran past the watchdog: stop serving the
    contract and raise an alarm (the message says which)."""


class _LaunchedProcess:
    """An executor the launcher started (not our child): the parts of ``Popen`` we use."""

    def __init__(self, pid: int, stdin: int, stdout: int, stderr: int):
        self.pid = pid
        self.stdin, self.stdout, self.stderr = os.fdopen(stdin, "wb"), os.fdopen(stdout, "rb"), os.fdopen(stderr, "rb")
        self._dead = False

    def poll(self) -> int | None:
        if self._dead:
            return -1
        try:
            os.kill(self.pid, 0)  # the launcher reaps its children: a dead one is gone
        except ProcessLookupError:
            self._dead = True
            return -1
        return None

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("executor", timeout)
            time.sleep(0.01)
        return -1


class Executor:
    """One executor process (one per worker). With a ``launcher`` (what a pRuntime uses),
    the launcher starts it; without, this process does (tests, the harness, benches)."""

    def __init__(self, timeout: float = WATCHDOG_SECONDS, seccomp: bool = True, launcher: Launcher | None = None):
        env = {
            "PYTHONHASHSEED": "0",
            "PATH": os.defpath,
            "PHALA_EXECUTOR_SECCOMP": "1" if seccomp else "0",
            **{k: v for k, v in os.environ.items() if k == "PHALA_BUILD_CACHE"},
        }
        self.timeout = timeout
        if launcher is not None:
            try:
                self.proc = _LaunchedProcess(*launcher.spawn(seccomp))
            except LauncherError as exc:
                raise ExecutorAlarm(str(exc)) from exc
        else:
            self.proc = subprocess.Popen(
                executor_argv(),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                close_fds=True,
            )
        for stream in (self.proc.stdin, self.proc.stdout):  # room for a block's calls and outcomes in flight
            try:
                fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:
                pass  # the system's limit for pipes is lower: the default size works too, only slower
        self._inbox = bytearray()  # what the executor wrote and we have not decoded yet
        self._expected = 0  # outcomes of queued calls not read yet
        self._early: list[p.Outcome] = []  # outcomes read before they were asked for
        self.hello = decode(p.Hello, self._read(START_SECONDS))
        if self.hello.version != p.PROTOCOL_VERSION:
            self.close()
            raise ExecutorAlarm(f"executor speaks protocol {self.hello.version}, not {p.PROTOCOL_VERSION}")

    def _fill(self, timeout: float | None) -> bool:
        """Read what the executor has written into the frame buffer, waiting at most
        ``timeout`` seconds (None: not at all) for something to arrive. False if nothing came."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], 0 if timeout is None else max(timeout, 0))
        if not ready:
            return False
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            err = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.stderr else ""
            self.kill()
            raise ExecutorAlarm(f"the executor died: {err or 'no output'}")
        self._inbox += chunk
        return True

    def _frame(self) -> bytes | None:
        """The next whole frame in the buffer, if there is one."""
        if len(self._inbox) < 4:
            return None
        size = int.from_bytes(self._inbox[:4], "little")
        if size > p.MAX_FRAME:
            self.kill()
            raise ExecutorAlarm(f"the executor sent a {size}-byte frame")
        if len(self._inbox) < 4 + size:
            return None
        data = bytes(self._inbox[4 : 4 + size])
        del self._inbox[: 4 + size]
        return data

    def _read(self, timeout: float) -> bytes:
        """The next frame, waiting at most ``timeout`` seconds for the executor (the
        watchdog: past it the executor is killed and ExecutorAlarm raised)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            if not self._fill(deadline - time.monotonic()) and time.monotonic() >= deadline:
                self.kill()
                raise ExecutorAlarm(f"the executor ran past the {timeout:.0f} s watchdog")

    def _send(self, request: p.Request | bytes) -> None:
        """Write one request (or its encoding). While the executor's input is full, take in
        what it has written, so neither side can block the other however much is in flight."""
        if self.proc.poll() is not None:
            raise ExecutorAlarm("the executor is not running")
        body = request if isinstance(request, bytes) else encode(request, p.Request)
        if len(body) > p.MAX_FRAME:
            raise ExecutorAlarm(f"a {len(body)}-byte request is larger than a frame")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        data = memoryview(len(body).to_bytes(4, "little") + body)
        fd_in, fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while data:
            readable, writable, _ = select.select([fd_out], [fd_in], [], max(deadline - time.monotonic(), 0))
            if readable:
                self._fill(None)
            if writable:
                try:
                    written = os.write(fd_in, data[:select.PIPE_BUF])  # never blocks once writable
                except BrokenPipeError as exc:
                    self.kill()
                    raise ExecutorAlarm("the executor closed its input") from exc
                data = data[written:]
                deadline = time.monotonic() + self.timeout
            elif not readable and time.monotonic() >= deadline:
                self.kill()
                raise ExecutorAlarm(f"the executor took no input for {self.timeout:.0f} s (the watchdog)")

    def _receive(self, kind: type) -> Any:
        try:
            if kind is p.Outcome:
                return p.decode_outcome(self._read(self.timeout))
            return decode(kind, self._read(self.timeout))
        except DecodeError as exc:
            self.kill()
            raise ExecutorAlarm(f"the executor sent a malformed {kind.__name__}: {exc}") from exc

    def check(self, source: str) -> p.Loaded:
        """Run the workers' checks on ``source`` in a fresh instance; nothing is kept."""
        self._settle()
        self._send(p.Check(source))
        return self._receive(p.Loaded)

    def install(self, contract: bytes, source: str) -> p.Loaded:
        self._settle()
        self._send(p.Install(contract, source))
        return self._receive(p.Loaded)

    def restore(self, contract: bytes, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Give an installed contract its committed storage (after a restart)."""
        items = list(entries)
        self._settle()
        for start in range(0, len(items), p.WRITES_PER_FRAME):
            self._send(p.Restore(contract, items[start : start + p.WRITES_PER_FRAME]))
            ack = self._receive(p.Ack)
            if not ack.ok:
                raise ExecutorAlarm(f"the executor refused the storage: {ack.message}")

    def run(self, contract: bytes, calls: list[p.Call]) -> tuple[list[p.Outcome], list[tuple[bytes, bytes | None]]]:
        """Run one block's calls of a contract: each call's outcome, and the block's storage
        writes (committed in the executor): :meth:`queue` for each, then :meth:`commit`.
        Outcomes of calls queued before are kept for :meth:`outcomes`."""
        self._settle()
        earlier, self._early = self._early, []
        for call in calls:
            self.queue(contract, call)
        outcomes = self.outcomes()
        self._early = earlier
        return outcomes, self.commit(contract)

    def queue(self, contract: bytes, call: p.Call) -> None:
        """Start a call of the contract's open block (one is opened by its first call); its
        outcome is read later, in order, by :meth:`outcomes`. The executor runs it while the
        worker goes on with the block."""
        self._send(p.encode_enqueue(contract, call))
        self._expected += 1

    def _settle(self) -> None:
        """Read the outcomes of queued calls that are still to come (replies come in request
        order, so they precede the answer to any other request)."""
        while self._expected:
            self._early.append(self._receive(p.Outcome))
            self._expected -= 1

    def outcomes(self) -> list[p.Outcome]:
        """The outcomes of every queued call, in the order they were queued."""
        self._settle()
        done, self._early = self._early, []
        return done

    def next_outcome(self) -> p.Outcome:
        """The outcome of the earliest queued call not taken yet (waiting for it, within the
        watchdog)."""
        if self._early:
            return self._early.pop(0)
        if not self._expected:
            raise ExecutorAlarm("no call is queued")
        self._expected -= 1
        return self._receive(p.Outcome)

    def commit(self, contract: bytes) -> list[tuple[bytes, bytes | None]]:
        """Close the contract's open block (after :meth:`outcomes`): its storage writes,
        committed in the executor."""
        self._settle()
        self._send(p.Commit(contract))
        writes: list[tuple[bytes, bytes | None]] = []
        while True:
            chunk = self._receive(p.Writes)
            writes += chunk.entries
            if chunk.last:
                return writes

    def query(self, contract: bytes, call: p.Call) -> p.Outcome:
        self._settle()
        self._send(p.Query(contract, call))
        return self._receive(p.Outcome)

    def remove(self, contract: bytes) -> None:
        self._settle()
        self._send(p.Remove(contract))
        self._receive(p.Ack)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
