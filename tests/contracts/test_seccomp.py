"""The executor's last walls, tested on a path that skips the AST policy: raw Python in a
process confined exactly as the executor confines itself. open, socket and execve fail
under seccomp (EPERM), and the rlimits are in place."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
