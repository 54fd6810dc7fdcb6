"""Shared by the contract VM tests: a contract run on two executors at once, every result
compared, and the raw executor calls the harness does not expose.

:class:`Twins` is one contract (same source, id, arguments and senders) in two
:class:`~phala.contracts.harness.LocalContract` instances, so two executor processes. Every
command, batch and query runs on both and must give the same status, message, gas, value,
events and messages, and leave the same storage: the determinism every design class of the
VM promises; each method returns the first twin's results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phala.contracts import protocol as p
from phala.contracts.harness import LocalContract, Result
from phala.contracts.host import Executor
from phala.contracts.values import encode_plain
from phala.core.gas import COMMAND_GAS, QUERY_GAS

ALICE, BOB, CAROL = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32


def restart(contract: LocalContract, source: str) -> None:
    """Give ``contract`` a fresh executor holding its committed storage (``harness.storage``),
    as a worker does after a restart."""
    contract.executor.close()
    contract.executor = Executor()
    loaded = contract.executor.install(contract.contract_id, source)
    assert loaded.status == p.OK, loaded.message
    contract.executor.restore(contract.contract_id, sorted(contract.storage.items()))


class Twins:
    """One contract on two executors; see the module's docstring."""

    def __init__(self, source: str, *args: Any, sender: bytes = ALICE, gas_limit: int = COMMAND_GAS,
                 contract_id: bytes | None = None):
        self.source = source
        self.pair = [LocalContract(source, *args, sender=sender, gas_limit=gas_limit, contract_id=contract_id)
                     for _ in range(2)]

    def _same(self, results: list[list[Result]]) -> list[Result]:
        first, second = results
        assert first == second, f"the twins differ:\n{first}\n{second}"
        assert self.pair[0].storage == self.pair[1].storage, "the twins' storage differs"
        return first

    def command(self, method: str, *args: Any, sender: bytes = ALICE, gas_limit: int = COMMAND_GAS) -> Result:
        return self._same([[c.command(method, *args, sender=sender, gas_limit=gas_limit)] for c in self.pair])[0]

    def commands(self, calls: list[tuple[str, tuple, bytes]], gas_limit: int = COMMAND_GAS) -> list[Result]:
        return self._same([c.commands(calls, gas_limit=gas_limit) for c in self.pair])

    def query(self, method: str, *args: Any, sender: bytes | None = ALICE, gas_limit: int = QUERY_GAS) -> Result:
        return self._same([[c.query(method, *args, sender=sender, gas_limit=gas_limit)] for c in self.pair])[0]

    @property
    def storage(self) -> dict[bytes, bytes]:
        return self.pair[0].storage

    def restart(self, which: int = 1) -> None:
        restart(self.pair[which], self.source)

    def close(self) -> None:
        for contract in self.pair:
            contract.close()

    def __enter__(self) -> Twins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- raw executor calls (outcomes as bytes: nothing is decoded on this side) -------------------


def context(block: int, contract: bytes, sender: bytes | None = ALICE, index: int = 0) -> p.CallContext:
    return p.CallContext(sender, block, block * 6_000, contract, bytes([index % 256]) * 32)


def call(kind: int, method: str, args: list, ctx: p.CallContext, gas: int = COMMAND_GAS) -> p.Call:
    return p.Call(kind, method, encode_plain(args), ctx, gas)


@dataclass
class Raw:
    """One contract in one executor, driven with protocol calls; outcomes stay bytes."""

    executor: Executor
    contract: bytes
    source: str
    block: int = 0

    @classmethod
    def start(cls, source: str, contract: bytes, *args: Any, sender: bytes = ALICE) -> Raw:
        raw = cls(Executor(), contract, source)
        loaded = raw.executor.install(contract, source)
        assert loaded.status == p.OK, loaded.message
        built = raw.run([("init", list(args), sender)], kind=p.CONSTRUCTOR)[0][0]
        assert built.status == p.OK, built.message
        return raw

    def run(self, calls: list[tuple[str, list, bytes | None]], gas: int = COMMAND_GAS,
            kind: int = p.COMMAND) -> tuple[list[p.Outcome], list[tuple[bytes, bytes | None]]]:
        self.block += 1
        return self.executor.run(self.contract, [
            call(kind, method, args, context(self.block, self.contract, sender, i), gas)
            for i, (method, args, sender) in enumerate(calls)
        ])

    def command(self, method: str, *args: Any, sender: bytes = ALICE, gas: int = COMMAND_GAS) -> p.Outcome:
        return self.run([(method, list(args), sender)], gas)[0][0]

    def query(self, method: str, *args: Any, sender: bytes | None = ALICE, gas: int = QUERY_GAS) -> p.Outcome:
        return self.executor.query(self.contract, call(p.QUERY, method, list(args),
                                                       context(self.block, self.contract, sender), gas))

    def close(self) -> None:
        self.executor.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
