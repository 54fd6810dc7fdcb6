"""Shared by the escape corpus: the canaries, the contract template, and one attempt.

Four canaries are planted once per session (:func:`plant`):

* a secret of the host (pRuntime-like) process: :data:`HOST_SECRET`, a module-level value of
  this test process, and :data:`ENV_SECRET` in its environment (``PHALA_CANARY_SECRET``), set
  before any executor starts;
* another contract's state: a ``Vault`` contract holding :data:`VICTIM_SECRET`, in an
  executor of its own;
* a file: a temporary file holding :data:`FILE_SECRET`;
* a loopback port: a TCP listener on 127.0.0.1 that must never see a connection.

Every escape is a contract aimed at them (their path, port and id are constants in its
source). :meth:`Canaries.attempt` loads it into the attacker's executor, constructs it and
calls its ``attack`` command, and checks the canaries are untouched before returning the
outcome, whose status and message the tests then check against the precise reason.
"""

from __future__ import annotations

import os
import socket
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from phala.contracts import protocol as p
from phala.contracts.host import Executor, ExecutorAlarm
from phala.contracts.values import decode_plain

HOST_SECRET = "host-secret-7d1f0c5e"  # module-level secret of the host process
ENV_NAME = "PHALA_CANARY_SECRET"
ENV_SECRET = "env-secret-93ab27f4"
VICTIM_SECRET = "victim-secret-4be81a06"
FILE_SECRET = "file-secret-c05e2d91"
SECRETS = (HOST_SECRET, ENV_SECRET, VICTIM_SECRET, FILE_SECRET)

CTX = p.CallContext(b"\x01" * 32, 7, 42_000, b"\x02" * 32, b"\x03" * 32)
VICTIM_CTX = p.CallContext(b"\x0a" * 32, 7, 42_000, b"\x0b" * 32, b"\x0c" * 32)
GAS = 1_000_000

VAULT = '''
from phala.contracts.sdk import Contract, constructor, query

class Vault(Contract):
    @constructor
    def init(self, ctx, secret: str):
        self.secret = secret

    @query
    def peek(self, ctx) -> str:
        return self.secret
'''

TEMPLATE = '''\
from phala.contracts.sdk import AccountId, Contract, ContractError, command, constructor, handler, query

CANARY_FILE = {file!r}
CANARY_PORT = {port!r}
VICTIM = {victim!r}
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

# the statuses an escape may end with: a policy refusal at load, a sandbox refusal at run
POLICY, SANDBOX = "policy", "sandbox"


def source(body: str = "", module: str = "", klass: str = "", canaries: Canaries | None = None) -> str:
    """The attacker contract: ``body`` is the ``attack`` command's, ``module`` and ``klass``
    go at module level and in the class body."""
    return TEMPLATE.format(
        file=str(canaries.file) if canaries else "/nonexistent",
        port=canaries.port if canaries else 0,
        victim=canaries.victim_id if canaries else b"\x00" * 32,
        module=textwrap.dedent(module),
        klass=textwrap.indent(textwrap.dedent(klass), " " * 4) if klass.strip() else "",
        body=textwrap.indent(textwrap.dedent(body).strip() or "pass", " " * 8),
    )


@dataclass
class Canaries:
    file: Path
    file_stat: tuple[int, int]
    listener: socket.socket
    port: int
    victim: Executor
    victim_id: bytes
    victim_state: bytes
    attacker: Executor
    executors: list[Executor] = field(default_factory=list)

    def attempt(self, src: str, gas: int = GAS, state: bytes = b"") -> p.Outcome:
        """Load ``src`` in the attacker's executor and run ``init`` then ``attack``: the first
        outcome that is not OK (or the attack's), after checking every canary."""
        outcomes = []
        try:
            outcome = self.attacker.load(src, state, gas)
            outcomes.append(outcome)
            if outcome.status == p.OK:
                outcome = self.attacker.call(p.CONSTRUCTOR, "init", [], CTX, gas)
                outcomes.append(outcome)
            if outcome.status == p.OK:
                outcome = self.attacker.call(p.COMMAND, "attack", [], CTX, gas)
                outcomes.append(outcome)
        except ExecutorAlarm as exc:  # a crash or the watchdog: the escape broke the sandbox
            self.attacker = self.spawn()
            raise AssertionError(f"the attack brought the executor down: {exc}") from exc
        self.check(outcomes)
        return outcome

    def spawn(self) -> Executor:
        executor = Executor()
        self.executors.append(executor)
        return executor

    def check(self, outcomes: list[p.Outcome]) -> None:
        """Every canary is untouched."""
        for outcome in outcomes:
            blob = b"".join(
                [outcome.message.encode(), outcome.value, outcome.state, *outcome.events, *outcome.messages]
            )
            for secret in SECRETS:
                assert secret.encode() not in blob, f"a secret leaked into an outcome: {outcome}"
            assert " at 0x" not in outcome.message, f"an address leaked: {outcome.message}"
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
        # the other contract: same committed state, same secret
        peek = self.victim.call(p.QUERY, "peek", [], VICTIM_CTX, GAS)
        assert peek.status == p.OK and decode_plain(peek.value) == VICTIM_SECRET
        assert peek.state == self.victim_state
        # the host: its secrets are where they were
        assert os.environ.get(ENV_NAME) == ENV_SECRET and HOST_SECRET == "host-secret-7d1f0c5e"


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
    assert victim.load(VAULT).status == p.OK
    built = victim.call(p.CONSTRUCTOR, "init", [VICTIM_SECRET], VICTIM_CTX, GAS)
    assert built.status == p.OK, built.message
    stat = path.stat()
    canaries = Canaries(
        file=path, file_stat=(stat.st_mtime_ns, stat.st_size), listener=listener,
        port=listener.getsockname()[1], victim=victim, victim_id=VICTIM_CTX.contract_id,
        victim_state=built.state, attacker=victim,  # replaced just below
    )
    canaries.executors.append(victim)
    canaries.attacker = canaries.spawn()
    return canaries


def pull_up(canaries: Canaries) -> None:
    for executor in canaries.executors:
        executor.close()
    canaries.listener.close()
    os.environ.pop(ENV_NAME, None)


@dataclass(frozen=True)
class Escape:
    """One known escape: its contract code (``body`` of the attack, or ``module``/``klass``
    code), and the precise reason it must be refused: ``status`` is POLICY (refused at load by
    the policy), SANDBOX (refused while running), or an outcome status (p.ERROR, p.LIMIT,
    p.OUT_OF_GAS); ``reason`` must appear in the message."""

    name: str
    status: str | int
    reason: str
    body: str = ""
    module: str = ""
    klass: str = ""
    gas: int = GAS


def check_refusal(escape: Escape, outcome: p.Outcome) -> None:
    """The outcome is the refusal ``escape`` names, for the reason it names."""
    where = f"{escape.name}: {p.STATUS_NAMES[outcome.status]}: {outcome.message!r}"
    if escape.status == POLICY:
        assert outcome.status == p.REFUSED and outcome.message.startswith("policy: "), where
    elif escape.status == SANDBOX:
        assert outcome.status == p.REFUSED and outcome.message.startswith("sandbox: "), where
    else:
        assert outcome.status == escape.status, where
    assert escape.reason in outcome.message, where
    assert outcome.value == b"" and outcome.state == b"", where  # a failure carries nothing


def run(canaries: Canaries, escape: Escape) -> p.Outcome:
    outcome = canaries.attempt(source(escape.body, escape.module, escape.klass, canaries), escape.gas)
    check_refusal(escape, outcome)
    return outcome


def ids(escapes: list[Escape]) -> list[str]:
    names = [e.name for e in escapes]
    assert len(set(names)) == len(names), "escape names repeat"
    return names
