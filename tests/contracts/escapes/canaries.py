"""Shared by the escape corpus: the canaries, the contract template, and one attempt.

Contract code runs in CPython compiled to WebAssembly under wasmtime. Inside the VM it can
do what Python does (walk class hierarchies, reach ``sys.modules``, call the runtime's
host functions directly); what it must never do is reach outside the instance. The
canaries are what lies outside, planted once per session (:func:`plant`):

* a secret of the host (pRuntime-like) process: :data:`HOST_SECRET`, a module-level value of
  this test process, and :data:`ENV_SECRET` in its environment (``PHALA_CANARY_SECRET``), set
  before any executor starts;
* another contract's state, twice: a ``Vault`` holding :data:`VICTIM_SECRET` in an executor
  of its own, and a ``Vault`` holding :data:`NEIGHBOUR_SECRET` installed next to the
  attacker, in the same executor process (what a worker does with the contracts it runs);
* a file: a temporary file holding :data:`FILE_SECRET`;
* a loopback port: a TCP listener on 127.0.0.1 that must never see a connection.

Every escape is a contract aimed at them (their path, port and ids are constants in its
source). :meth:`Canaries.attempt` runs it on two attacker executors: installs it, constructs
it (one block) and calls its ``attack`` command (the next block), checks that both gave the
same outcome (status, message, line, gas, value, events, messages and storage writes) and
that every canary is untouched, and returns the outcome; the tests then check it is exactly
what the VM does with that code.
"""

from __future__ import annotations

import os
import re
import socket
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phala.contracts import protocol as p
from phala.contracts.host import Executor, ExecutorAlarm
from phala.contracts.values import decode_plain, encode_plain

HOST_SECRET = "host-secret-7d1f0c5e"  # module-level secret of the host process
ENV_NAME = "PHALA_CANARY_SECRET"
ENV_SECRET = "env-secret-93ab27f4"
VICTIM_SECRET = "victim-secret-4be81a06"
NEIGHBOUR_SECRET = "neighbour-secret-71c3e95d"
FILE_SECRET = "file-secret-c05e2d91"
SECRETS = (HOST_SECRET, ENV_SECRET, VICTIM_SECRET, NEIGHBOUR_SECRET, FILE_SECRET)

ATTACKER = b"\x02" * 32
VICTIM = b"\x0b" * 32  # in an executor of its own
NEIGHBOUR = b"\x0e" * 32  # in the attacker's executors
SENDER = b"\x01" * 32
GAS = 10_000_000  # a trivial call uses about 0.4M (most of it the SDK's work at the call's start)
BIG_GAS = 1_000_000_000  # phala.core.gas.MAX_GAS_LIMIT

VAULT = '''
from phala.contracts.sdk import Contract, Mapping, constructor, query

HOST = Contract.__getattr__.__globals__["typing"].sys.modules["wit_world.imports.host"]


class Vault(Contract):
    notes = Mapping()

    @constructor
    def init(self, ctx, secret: str):
        self.secret = secret
        self.notes["secret"] = secret
        self.notes[1] = [secret, {"k": secret}]

    @query
    def peek(self, ctx) -> str:
        return self.secret

    @query
    def dump(self, ctx) -> list:
        """Every key and value of this contract's storage, read with the host functions."""
        out, after = [], ""
        while True:
            key = HOST.storage_next("", after)
            if key is None:
                return out
            out.append((key.encode("latin-1"), HOST.storage_get(key).encode("latin-1")))
            after = key
'''

TEMPLATE = '''\
from phala.contracts.sdk import AccountId, Contract, ContractError, command, constructor, handler, query

CANARY_FILE = {file!r}
CANARY_PORT = {port!r}
VICTIM = {victim!r}
NEIGHBOUR = {neighbour!r}
{module}

class Attacker(Contract):
{klass}
    @constructor
    def init(self, ctx):
        self.loot = None

    @command
    def attack(self, ctx):
{body}
'''

# How an escape ends: POLICY is refused at load by the policy (``policy: line N: ...``), LOAD
# is refused at load otherwise (the module body failed, no contract class); the others are
# the outcome of the ``attack`` call (p.OK, p.ERROR, p.LIMIT, p.OUT_OF_GAS).
POLICY, LOAD = "policy", "load"
NOTHING = object()


def source(body: str = "", module: str = "", klass: str = "", canaries: Canaries | None = None) -> str:
    """The attacker contract: ``body`` is the ``attack`` command's, ``module`` and ``klass``
    go at module level and in the class body."""
    return TEMPLATE.format(
        file=str(canaries.file) if canaries else "/nonexistent",
        port=canaries.port if canaries else 0,
        victim=VICTIM,
        neighbour=NEIGHBOUR,
        module=textwrap.dedent(module),
        klass=textwrap.indent(textwrap.dedent(klass), " " * 4) if klass.strip() else "",
        body=textwrap.indent(textwrap.dedent(body).strip() or "pass", " " * 8),
    )


def first_line(part: str, body: str = "", module: str = "", klass: str = "") -> int:
    """The line of the source where ``part`` ("module", "klass" or "body") begins."""
    marker = "MARKER_4c1d"
    parts = {"body": body, "module": module, "klass": klass}
    parts[part] = marker + "\n" + textwrap.dedent(parts[part])
    lines = source(**parts).split("\n")
    return next(i for i, line in enumerate(lines, 1) if marker in line)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended on one executor: the first step that was not OK (the install's
    refusal, the constructor's failure) or the attack's outcome; ``writes`` are the storage
    writes of the attack's block."""

    step: str  # "install", "init" or "attack"
    status: int
    message: str
    line: int
    gas_used: int
    value: bytes
    events: tuple[bytes, ...]
    messages: tuple[bytes, ...]
    writes: tuple[tuple[bytes, bytes | None], ...]

    def decoded(self) -> Any:
        return decode_plain(self.value)


class Host:
    """One attacker executor, with the neighbour vault installed next to the attacker."""

    def __init__(self, neighbour_storage: list[tuple[bytes, bytes]] | None = None):
        self.executor = Executor()
        loaded = self.executor.install(NEIGHBOUR, VAULT)
        assert loaded.status == p.OK, loaded.message
        if neighbour_storage is None:
            outcomes, writes = self.executor.run(NEIGHBOUR, [call(p.CONSTRUCTOR, "init", [NEIGHBOUR_SECRET],
                                                                  NEIGHBOUR)])
            assert outcomes[0].status == p.OK, outcomes[0].message
            neighbour_storage = [(k, v) for k, v in writes if v is not None]
        else:
            self.executor.restore(NEIGHBOUR, neighbour_storage)
        self.neighbour_storage = sorted(neighbour_storage)

    def attempt(self, src: str, gas: int) -> tuple[Outcome, list[p.Outcome]]:
        """Install ``src`` afresh (no storage), construct it, attack: how it ended, and every
        outcome on the way (for the secret scan)."""
        ex = self.executor
        ex.remove(ATTACKER)
        loaded = ex.install(ATTACKER, src)
        if loaded.status != p.OK:
            return Outcome("install", loaded.status, loaded.message, loaded.line, 0, b"", (), (), ()), []
        seen = []
        for step, kind, block in (("init", p.CONSTRUCTOR, 1), ("attack", p.COMMAND, 2)):
            outcomes, writes = ex.run(ATTACKER, [call(kind, step, [], ATTACKER, gas, block)])
            outcome = outcomes[0]
            seen.append(outcome)
            if outcome.status != p.OK or step == "attack":
                return Outcome(step, outcome.status, outcome.message, 0, outcome.gas_used, outcome.value,
                               tuple(outcome.events), tuple(outcome.messages), tuple(writes)), seen
        raise AssertionError("unreachable")

    def check_neighbour(self) -> None:
        """The vault next to the attacker: same secret, same storage, key for key."""
        ctx = context(NEIGHBOUR, 9)
        peek = self.executor.query(NEIGHBOUR, p.Call(p.QUERY, "peek", encode_plain([]), ctx, GAS))
        assert peek.status == p.OK and decode_plain(peek.value) == NEIGHBOUR_SECRET, peek
        dump = self.executor.query(NEIGHBOUR, p.Call(p.QUERY, "dump", encode_plain([]), ctx, GAS))
        assert dump.status == p.OK, dump
        assert sorted(decode_plain(dump.value)) == [tuple(kv) for kv in self.neighbour_storage]

    def close(self) -> None:
        self.executor.close()


def context(contract: bytes, block: int) -> p.CallContext:
    return p.CallContext(SENDER, block, block * 6_000, contract, bytes([block]) * 32)


def call(kind: int, method: str, args: list, contract: bytes, gas: int = GAS, block: int = 1) -> p.Call:
    return p.Call(kind, method, encode_plain(args), context(contract, block), gas)


_ADDRESS = re.compile(r"0x([0-9a-f]+)")


@dataclass
class Canaries:
    file: Path
    file_stat: tuple[int, int]
    listener: socket.socket
    port: int
    victim: Executor
    victim_storage: list[tuple[bytes, bytes]]
    attackers: list[Host] = field(default_factory=list)

    def attempt(self, src: str, gas: int = GAS) -> Outcome:
        """Run ``src`` on both attacker executors (see the module's docstring): the outcome,
        the same on both, after checking every canary."""
        results = []
        for i, host in enumerate(self.attackers):
            try:
                results.append(host.attempt(src, gas))
            except ExecutorAlarm as exc:  # a crash or the watchdog: the escape broke the sandbox
                self.attackers[i] = Host(host.neighbour_storage)
                raise AssertionError(f"the attack brought the executor down: {exc}") from exc
        (first, seen), (second, _) = results
        assert first == second, f"the two executors disagree:\n{first}\n{second}"
        self.check([first], seen)
        return first

    def check(self, outcomes: list[Outcome], seen: list[p.Outcome] = ()) -> None:
        """Every canary is untouched."""
        blobs = [b"".join([o.message.encode(), o.value, *o.events, *o.messages,
                           *(k + (v or b"") for k, v in o.writes)]) for o in outcomes]
        blobs += [b"".join([o.message.encode(), o.value, *o.events, *o.messages]) for o in seen]
        for blob in blobs:
            for secret in SECRETS:
                assert secret.encode() not in blob, f"a secret leaked into an outcome: {blob[:300]!r}"
        for o in outcomes:  # addresses in messages are the VM's (wasm32), never the host's
            for address in _ADDRESS.findall(o.message):
                assert int(address, 16) < 1 << 32, f"a host address leaked: {o.message}"
        # the file: same content, not rewritten
        assert self.file.read_text() == FILE_SECRET
        stat = self.file.stat()
        assert (stat.st_mtime_ns, stat.st_size) == self.file_stat
        # the port: nothing ever connected
        try:
            conn, peer = self.listener.accept()
        except BlockingIOError:
            pass
        else:
            conn.close()
            raise AssertionError(f"something connected to the canary port from {peer}")
        # the other contracts: the same secret and storage, in their own executor and next door
        peek = self.victim.query(VICTIM, call(p.QUERY, "peek", [], VICTIM, GAS, 9))
        assert peek.status == p.OK and decode_plain(peek.value) == VICTIM_SECRET, peek
        dump = self.victim.query(VICTIM, call(p.QUERY, "dump", [], VICTIM, GAS, 9))
        assert dump.status == p.OK and sorted(decode_plain(dump.value)) == [tuple(kv) for kv in self.victim_storage]
        for host in self.attackers:
            host.check_neighbour()
        # the host: its secrets are where they were
        assert os.environ.get(ENV_NAME) == ENV_SECRET and HOST_SECRET == "host-secret-7d1f0c5e"

    @property
    def attacker(self) -> Executor:
        return self.attackers[0].executor


def plant(tmp: Path) -> Canaries:
    """Plant the canaries; the environment secret first, so every executor starts after it."""
    os.environ[ENV_NAME] = ENV_SECRET
    path = tmp / "canary.txt"
    path.write_text(FILE_SECRET)
    os.chmod(path, 0o644)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    victim = Executor()
    assert victim.install(VICTIM, VAULT).status == p.OK
    outcomes, writes = victim.run(VICTIM, [call(p.CONSTRUCTOR, "init", [VICTIM_SECRET], VICTIM)])
    assert outcomes[0].status == p.OK, outcomes[0].message
    stat = path.stat()
    canaries = Canaries(
        file=path, file_stat=(stat.st_mtime_ns, stat.st_size), listener=listener, port=listener.getsockname()[1],
        victim=victim, victim_storage=sorted((k, v) for k, v in writes if v is not None),
    )
    canaries.attackers = [Host(), Host()]
    return canaries


def pull_up(canaries: Canaries) -> None:
    for host in canaries.attackers:
        host.close()
    canaries.victim.close()
    canaries.listener.close()
    os.environ.pop(ENV_NAME, None)


@dataclass(frozen=True)
class Escape:
    """One known escape: its contract code (``body`` of the attack, or ``module``/``klass``
    code) and exactly how it ends: ``status`` is POLICY, LOAD or the attack's outcome status;
    ``reason`` must appear in the message (for POLICY, right after ``policy: line N: ``, N
    being ``line`` counted from the first line of the part the refused code is in: the only
    non-empty one, or ``part``). For a successful attack ``reason`` must appear in the repr of
    its value, and ``value``, if given, is that value (or its type)."""

    name: str
    status: str | int
    reason: str
    body: str = ""
    module: str = ""
    klass: str = ""
    gas: int = GAS
    line: int = 1
    part: str = ""
    value: Any = NOTHING


def expected_line(escape: Escape) -> int:
    part = escape.part or next(name for name in ("module", "klass", "body") if getattr(escape, name).strip())
    return first_line(part, escape.body, escape.module, escape.klass) + escape.line - 1


def check_outcome(escape: Escape, outcome: Outcome) -> None:
    """The outcome is exactly what ``escape`` says."""
    where = f"{escape.name}: {outcome.step}: {p.STATUS_NAMES[outcome.status]}: {outcome.message!r}"
    if escape.status == POLICY:
        assert outcome.step == "install" and outcome.status == p.REFUSED, where
        line = expected_line(escape)
        assert outcome.message.startswith(f"policy: line {line}: {escape.reason}"), (where, line)
        assert outcome.line == line, where
    elif escape.status == LOAD:
        assert outcome.step == "install" and outcome.status == p.REFUSED, where
        assert escape.reason in outcome.message, where
    else:
        assert outcome.step == "attack" and outcome.status == escape.status, where
        assert outcome.gas_used <= escape.gas, where
    if outcome.status == p.OK:
        assert outcome.message == "", where
        value = outcome.decoded()
        assert not escape.reason or escape.reason in repr(value), (where, value)
        if isinstance(escape.value, type):
            assert type(value) is escape.value, (where, value)
        elif escape.value is not NOTHING:
            assert value == escape.value, (where, value)
    elif escape.status not in (POLICY, LOAD):
        assert escape.reason in outcome.message, where
    if outcome.status != p.OK:  # a failure carries nothing and changes nothing
        assert (outcome.value, outcome.events, outcome.messages) == (b"", (), ()), where
        assert not outcome.writes, where
    if outcome.status == p.OUT_OF_GAS:
        assert outcome.gas_used == escape.gas and outcome.message == f"out of gas (limit {escape.gas})", where


def run(canaries: Canaries, escape: Escape) -> Outcome:
    outcome = canaries.attempt(source(escape.body, escape.module, escape.klass, canaries), escape.gas)
    check_outcome(escape, outcome)
    return outcome


def ids(escapes: list[Escape]) -> list[str]:
    names = [e.name for e in escapes]
    assert len(set(names)) == len(names), "escape names repeat"
    return names
