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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phala.core.hashing import blake2_256

from . import protocol as p
from .host import Executor
from .values import decode_plain

DEFAULT_GAS = 10_000_000
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
    """One contract instance in its own executor; close it (or use ``with``) when done."""

    def __init__(self, source: str, *args: Any, sender: bytes, gas_limit: int = DEFAULT_GAS,
                 contract_id: bytes | None = None):
        self.contract_id = contract_id or blake2_256(b"phala/harness" + source.encode())
        self.block_number = 0
        self.index = 0
        self.executor = Executor()
        loaded = self.executor.load(source, b"", gas_limit)
        if loaded.status != p.OK:
            self.close()
            raise HarnessError(f"the contract does not load: {loaded.message}")
        self.interface = decode_plain(loaded.value)
        constructors = [m for m, kind in self.interface["methods"].items() if kind == "constructor"]
        if len(constructors) != 1:
            self.close()
            raise HarnessError("the contract needs exactly one @constructor method")
        built = self._run(p.CONSTRUCTOR, constructors[0], args, sender, gas_limit)
        if not built.ok:
            self.close()
            raise HarnessError(f"the constructor failed ({built.status}): {built.message}")

    @classmethod
    def from_file(cls, path: str | Path, *args: Any, sender: bytes, **kwargs: Any) -> LocalContract:
        return cls(Path(path).read_text(), *args, sender=sender, **kwargs)

    def _run(self, kind: int, method: str, args: tuple, sender: bytes | None, gas_limit: int) -> Result:
        if kind != p.QUERY:
            self.block_number += 1
            self.index += 1
        seed = blake2_256(self.contract_id + self.block_number.to_bytes(4, "little") + self.index.to_bytes(4, "little"))
        context = p.CallContext(sender, self.block_number, self.block_number * BLOCK_MS, self.contract_id, seed)
        outcome = self.executor.call(kind, method, list(args), context, gas_limit)
        ok = outcome.status == p.OK
        return Result(
            p.STATUS_NAMES[outcome.status],
            outcome.message,
            outcome.gas_used,
            decode_plain(outcome.value) if ok else None,
            [decode_plain(e)[1] for e in outcome.events],
            [decode_plain(m) for m in outcome.messages],
        )

    def advance(self, blocks: int = 1) -> None:
        """Let ``blocks`` blocks pass without commands (deadlines, auction closes)."""
        self.block_number += blocks

    def command(self, method: str, *args: Any, sender: bytes, gas_limit: int = DEFAULT_GAS) -> Result:
        return self._run(p.COMMAND, method, args, sender, gas_limit)

    def query(self, method: str, *args: Any, sender: bytes | None = None, gas_limit: int = DEFAULT_GAS) -> Result:
        return self._run(p.QUERY, method, args, sender, gas_limit)

    def handle(self, method: str, *args: Any, gas_limit: int = DEFAULT_GAS) -> Result:
        return self._run(p.HANDLER, method, args, None, gas_limit)

    def close(self) -> None:
        self.executor.close()

    def __enter__(self) -> LocalContract:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
