"""A local test harness: run a contract's commands and queries under pytest, in the same
sandbox the workers use (a real executor process), with no chain and no network.

    from phala.contracts.harness import LocalContract

    def test_transfer():
        token = LocalContract.from_file("examples/token.py", 1_000, sender=ALICE)
        result = token.command("transfer", BOB, 10, sender=ALICE)
        assert result.ok and result.value is True
        assert token.query("balance_of", BOB, sender=BOB).value == 10
        print(result.gas_used, result.events)

Each command runs at the next block number (the timestamp advancing 6 s a block), with a
random seed derived from the contract id, the block and the command's index, as a worker
would; a failed command reports its status and message and leaves the state as it was.
``storage`` mirrors the contract's committed storage, as a worker keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phala.core.gas import COMMAND_GAS, QUERY_GAS
from phala.core.hashing import blake2_256

from . import protocol as p
from .host import Executor
from .values import decode_plain, encode_plain, split_event

DEFAULT_GAS = COMMAND_GAS
BLOCK_MS = 6_000


@dataclass(frozen=True)
class Result:
    status: str  # "ok", "error", "out of gas", "limit exceeded", "refused"
    message: str
    gas_used: int
    value: Any
    events: list  # the event values (each also names the accounts it is for; see sdk.emit)
    messages: list

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class HarnessError(Exception):
    """The contract did not load or could not be constructed (the message says why)."""


class LocalContract:
    """One contract in its own executor; close it (or use ``with``) when done. Each
    command runs as a block of its own (``commands`` runs several in one block)."""

    def __init__(self, source: str, *args: Any, sender: bytes, gas_limit: int = DEFAULT_GAS,
                 contract_id: bytes | None = None):
        self.contract_id = contract_id or blake2_256(b"phala/harness" + source.encode())
        self.block_number = 0
        self.index = 0
        self.storage: dict[bytes, bytes] = {}
        self.executor = Executor()
        loaded = self.executor.install(self.contract_id, source)
        if loaded.status != p.OK:
            self.close()
            raise HarnessError(f"the contract does not load: {loaded.message}")
        self.interface = decode_plain(loaded.interface)
        constructors = [m for m, kind in self.interface["methods"].items() if kind == "constructor"]
        if len(constructors) != 1:
            self.close()
            raise HarnessError("the contract needs exactly one @constructor method")
        built = self._block([(p.CONSTRUCTOR, constructors[0], args, sender, gas_limit)])[0]
        if not built.ok:
            self.close()
            raise HarnessError(f"the constructor failed ({built.status}): {built.message}")

    @classmethod
    def from_file(cls, path: str | Path, *args: Any, sender: bytes, **kwargs: Any) -> LocalContract:
        return cls(Path(path).read_text(), *args, sender=sender, **kwargs)

    def _call(self, kind: int, method: str, args: tuple, sender: bytes | None, gas_limit: int) -> p.Call:
        seed = blake2_256(self.contract_id + self.block_number.to_bytes(4, "little") + self.index.to_bytes(4, "little"))
        context = p.CallContext(sender, self.block_number, self.block_number * BLOCK_MS, self.contract_id, seed)
        return p.Call(kind, method, encode_plain(list(args)), context, gas_limit)

    def _block(self, calls: list[tuple]) -> list[Result]:
        self.block_number += 1
        requests = []
        for kind, method, args, sender, gas_limit in calls:
            self.index += 1
            requests.append(self._call(kind, method, args, sender, gas_limit))
        outcomes, writes = self.executor.run(self.contract_id, requests)
        for key, value in writes:
            if value is None:
                self.storage.pop(key, None)
            else:
                self.storage[key] = value
        return [_result(o) for o in outcomes]

    def advance(self, blocks: int = 1) -> None:
        """Let ``blocks`` blocks pass without commands (deadlines, auction closes)."""
        self.block_number += blocks

    def command(self, method: str, *args: Any, sender: bytes, gas_limit: int = DEFAULT_GAS) -> Result:
        return self._block([(p.COMMAND, method, args, sender, gas_limit)])[0]

    def commands(self, calls: list[tuple[str, tuple, bytes]], gas_limit: int = DEFAULT_GAS) -> list[Result]:
        """Several commands ``(method, args, sender)`` in one block, in order."""
        return self._block([(p.COMMAND, method, tuple(args), sender, gas_limit) for method, args, sender in calls])

    def query(self, method: str, *args: Any, sender: bytes | None = None, gas_limit: int = QUERY_GAS) -> Result:
        return _result(self.executor.query(self.contract_id, self._call(p.QUERY, method, args, sender, gas_limit)))

    def handle(self, method: str, *args: Any, gas_limit: int = DEFAULT_GAS) -> Result:
        return self._block([(p.HANDLER, method, args, None, gas_limit)])[0]

    def close(self) -> None:
        self.executor.close()

    def __enter__(self) -> LocalContract:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _result(outcome: p.Outcome) -> Result:
    ok = outcome.status == p.OK
    return Result(
        p.STATUS_NAMES[outcome.status],
        outcome.message,
        outcome.gas_used,
        decode_plain(outcome.value) if ok else None,
        [decode_plain(split_event(e)[1]) for e in outcome.events],
        [decode_plain(m) for m in outcome.messages],
    )
