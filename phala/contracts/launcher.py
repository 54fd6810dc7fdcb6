"""The executor launcher: a process started before the worker loads any key, which starts
every executor afterwards, so no executor is ever forked from the process that holds keys.

The pRuntime starts it first thing (:meth:`Launcher.start`), as a fresh interpreter with a
minimal environment, connected by a Unix socket pair. For each contract the worker asks it
for an executor (:meth:`Launcher.spawn`); the launcher starts ``python -m
phala.contracts.executor`` itself, then passes the worker the executor's pid and the ends of
its stdin, stdout and stderr pipes over the socket (``SCM_RIGHTS``). The launcher never
receives anything but one-byte requests, holds no secrets, and reaps its children.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

SPAWN = b"S"
EXECUTOR_ENV = {"PYTHONHASHSEED": "0", "PATH": os.defpath,
                **{k: v for k, v in os.environ.items() if k == "PHALA_BUILD_CACHE"}}


def executor_argv() -> list[str]:
    return [sys.executable, "-s", "-P", "-m", "phala.contracts.executor"]


class LauncherError(Exception):
    """The launcher is gone or answered nonsense."""


class Launcher:
    """The worker's side of the launcher process."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen):
        self.sock, self.proc = sock, proc

    @classmethod
    def start(cls) -> Launcher:
        """Start the launcher. Call it before loading any key: the launcher is forked from
        this process, and everything it starts later comes from the launcher."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        proc = subprocess.Popen(
            [sys.executable, "-s", "-P", "-m", "phala.contracts.launcher", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], env=dict(EXECUTOR_ENV), close_fds=True,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        return cls(ours, proc)

    def spawn(self, seccomp: bool = True) -> tuple[int, int, int, int]:
        """A new executor: ``(pid, stdin fd, stdout fd, stderr fd)``, the fds now ours."""
        try:
            self.sock.sendall(SPAWN + (b"1" if seccomp else b"0"))
            message, fds, _, _ = socket.recv_fds(self.sock, 16, 3)
        except OSError as exc:
            raise LauncherError(f"the executor launcher is gone: {exc}") from exc
        if len(message) != 8 or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            raise LauncherError("the executor launcher answered nonsense")
        return (int.from_bytes(message, "little"), *fds)

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(sock: socket.socket) -> None:
    """The launcher process: start an executor per request, hand over its pipes."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    while True:
        request = sock.recv(2)
        if len(request) != 2 or request[:1] != SPAWN:
            return  # the worker closed its end (or broke the protocol): stop
        env = dict(EXECUTOR_ENV, PHALA_EXECUTOR_SECCOMP="1" if request[1:] == b"1" else "0")
        proc = subprocess.Popen(
            executor_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, close_fds=True,
        )
        fds = [proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno()]
        socket.send_fds(sock, [proc.pid.to_bytes(8, "little")], fds)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    serve(sock)


if __name__ == "__main__":
    main()
