"""The canaries seen from the processes: what an executor holds, and what raw Python could
reach if it got out of the VM (the executor's own interpreter, the one that runs wasmtime,
confined exactly as the executor confines itself).

* The host's secrets (a module-level value of this process, an environment variable set
  before the executors started) are in no executor's environment or memory: each is a fresh
  interpreter started with a minimal environment, never a fork of the host.
* A contract's state is in the executor that runs it, and only there: the attacker's
  executors hold their neighbour's secret (installed next to the attacker, as on a worker)
  and not the victim's, which is in the victim's executor alone. Between contracts of one
  executor the wall is the VM: an instance reaches its own contract's storage only (see
  ``test_vm.py``).
* Under seccomp raw code cannot open the canary file or the host's and the victim's
  ``/proc`` files, read their memory (``process_vm_readv``, ``ptrace``), signal them, make a
  socket or connect to the canary port, nor run a program; without the filter it could.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .canaries import (
    ENV_NAME,
    ENV_SECRET,
    FILE_SECRET,
    HOST_SECRET,
    NEIGHBOUR_SECRET,
    VICTIM_SECRET,
)

# what an executor's environment holds: nothing else (the build cache's place, if this process has one)
EXECUTOR_ENV = {"PYTHONHASHSEED", "PATH", "PHALA_EXECUTOR_SECCOMP"} | ({"PHALA_BUILD_CACHE"} & set(os.environ))


def _memory(pid: int) -> bytes:
    """Every readable mapping of process ``pid`` (the test process is its parent)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if "r" not in perms or line.rstrip().endswith("[vvar]"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except OSError:
                continue
    return b"".join(chunks)


def test_executors_are_fresh_interpreters_with_a_minimal_environment(canaries):
    for executor in (*(host.executor for host in canaries.attackers), canaries.victim):
        pid = executor.proc.pid
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
        assert ENV_SECRET.encode() not in environ and ENV_NAME.encode() not in environ
        assert {item.split(b"=", 1)[0].decode() for item in environ.split(b"\0") if item} == EXECUTOR_ENV
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[1:5] == [b"-s", b"-P", b"-m", b"phala.contracts.executor"]
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f)
        assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1"
    assert os.environ[ENV_NAME] == ENV_SECRET  # the canary is planted in the host


def test_no_executor_holds_another_process_secret(canaries):
    victim = _memory(canaries.victim.proc.pid)
    assert VICTIM_SECRET.encode() in victim  # the control: the scan finds what is there
    for secret in (HOST_SECRET, ENV_SECRET, FILE_SECRET, NEIGHBOUR_SECRET):
        assert secret.encode() not in victim, secret
    for host in canaries.attackers:
        attacker = _memory(host.executor.proc.pid)
        assert NEIGHBOUR_SECRET.encode() in attacker  # the contract it runs next to the attacker
        for secret in (HOST_SECRET, ENV_SECRET, FILE_SECRET, VICTIM_SECRET):
            assert secret.encode() not in attacker, secret


RAW = r'''
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
from phala.contracts.executor import confine
file, host, victim, port, seccomp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
print("confinement", confine(seccomp=seccomp))

class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

def libc_call(name, *args):
    if getattr(libc, name)(*args) == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))

def read_memory(pid):
    buf = ctypes.create_string_buffer(64)
    local, remote = Iovec(ctypes.addressof(buf), 64), Iovec(0x400000, 64)
    libc_call("process_vm_readv", pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return buf.raw

def attempt(name, fn):
    try:
        result = fn()
    except OSError as exc:
        print(name, "refused", errno.errorcode.get(exc.errno, exc.errno))
    else:
        print(name, "ALLOWED", repr(result)[:200].replace("\n", " "))

attempt("open-file", lambda: open(file).read())
attempt("host-environ", lambda: open(f"/proc/{host}/environ", "rb").read())
attempt("host-mem", lambda: open(f"/proc/{host}/mem", "rb").read(1))
attempt("host-cmdline", lambda: open(f"/proc/{host}/cmdline", "rb").read())
attempt("victim-mem", lambda: open(f"/proc/{victim}/mem", "rb").read(1))
attempt("victim-environ", lambda: open(f"/proc/{victim}/environ", "rb").read())
attempt("victim-vm-read", lambda: read_memory(victim))
attempt("host-vm-read", lambda: read_memory(host))
attempt("victim-ptrace", lambda: libc_call("ptrace", 0x4206, victim, None, None))  # PTRACE_SEIZE: no stop
attempt("host-signal", lambda: os.kill(host, 0))
attempt("victim-signal", lambda: os.kill(victim, 0))
attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
attempt("connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=1))
attempt("listdir", lambda: os.listdir("/proc"))
sys.stdout.flush()
attempt("execve", lambda: os.execv("/bin/cat", ["/bin/cat", file]))  # last: it would replace this process
'''

ATTEMPTS = ("open-file", "host-environ", "host-mem", "host-cmdline", "victim-mem", "victim-environ", "victim-vm-read",
            "host-vm-read", "victim-ptrace", "host-signal", "victim-signal", "socket", "connect", "listdir", "execve")


def _raw(canaries, seccomp: bool) -> dict[str, str]:
    env = {"PYTHONHASHSEED": "0", "PATH": os.defpath, "PHALA_EXECUTOR_SECCOMP": "1"}  # as the executor's
    args = [str(canaries.file), str(os.getpid()), str(canaries.victim.proc.pid), str(canaries.port), "1" if seccomp else "0"]
    out = subprocess.run([sys.executable, "-s", "-P", "-c", RAW, *args], capture_output=True, text=True, env=env,
                         timeout=60)
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines() if " " in line)
    if not seccomp:  # execve ran cat on the file, in place of the process
        assert out.stdout.endswith(FILE_SECRET), out.stdout
        lines["execve"] = "ALLOWED"
    assert set(ATTEMPTS) <= set(lines), (out.stdout, out.stderr)
    return lines


def test_raw_code_under_seccomp_reaches_no_canary(canaries):
    lines = _raw(canaries, seccomp=True)
    assert lines.pop("confinement") == "rlimits+seccomp"
    assert lines == dict.fromkeys(ATTEMPTS, "refused EPERM")
    canaries.check([])  # the file, the port, the victim: untouched


def test_without_seccomp_the_same_code_reaches_the_canaries(canaries):
    """The control: the attempts above fail because of the filter. With rlimits alone the
    same raw code reads the file and the host's environment and memory, and connects to the port (which is then drained, so the corpus's check stays meaningful)."""
    lines = _raw(canaries, seccomp=False)
    assert lines["confinement"] == "rlimits"
    assert lines["open-file"].startswith("ALLOWED") and FILE_SECRET in lines["open-file"]
    assert lines["host-environ"].startswith("ALLOWED") and lines["host-mem"].startswith(("ALLOWED", "refused EIO"))
    assert lines["victim-environ"].startswith("ALLOWED")
    assert lines["socket"].startswith("ALLOWED") and lines["connect"].startswith("ALLOWED")
    assert lines["victim-vm-read"].startswith(("ALLOWED", "refused EFAULT"))  # reached it (0x400000 may be unmapped)
    conn, _ = canaries.listener.accept()
    conn.close()
    canaries.check([])


@pytest.mark.parametrize("name", ["HOST_SECRET", "ENV_SECRET"])
def test_the_host_secrets_are_planted(name):
    """The canaries are live: the host process holds both secrets."""
    assert {"HOST_SECRET": HOST_SECRET, "ENV_SECRET": os.environ.get(ENV_NAME)}[name]
