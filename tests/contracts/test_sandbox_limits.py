"""The issue's resource bombs, each in a real executor process: each fails by gas or by a
limit of the VM, with the same status, message and gas on two executors, and the executors
(and the contract's other commands) carry on, the failed command having changed nothing."""

from __future__ import annotations

import pytest

from phala.core.gas import MAX_GAS_LIMIT

from .support import Twins

SOURCE = '''
from phala.contracts.sdk import Contract, constructor, command, query

class Bombs(Contract):
    @constructor
    def init(self, ctx):
        self.count = 0

    @command
    def bump(self, ctx) -> int:
        self.count += 1
        return self.count

    @query
    def get(self, ctx) -> int:
        return self.count

    @command
    def sum_range(self, ctx) -> int:
        self.count = -1  # reverted with the failure
        return sum(range(10**12))

    @command
    def repeat_str(self, ctx) -> int:
        return len("x" * 10**9)

    @command
    def big_power(self, ctx) -> int:
        return 10 ** 10 ** 8

    @command
    def big_bytes(self, ctx) -> int:
        return len(bytes(10**10))

    @command
    def huge_sorted(self, ctx) -> int:
        return len(sorted(range(10**7)))

    @command
    def deep_repr(self, ctx) -> int:
        x = []
        for i in range(100000):
            x = [x]
        return len(repr(x))

    @command
    def forever(self, ctx) -> int:
        while True:
            pass

    @command
    def recurse(self, ctx) -> int:
        return self.recurse(ctx)
'''


GAS = 10_000_000
BOMBS = {  # name: (gas limit, status, message)
    "sum_range": (GAS, "out of gas", f"out of gas (limit {GAS})"),
    "repeat_str": (GAS, "limit exceeded", "MemoryError: "),  # 1 GB: past the memory cap at once
    "big_power": (GAS, "out of gas", f"out of gas (limit {GAS})"),
    "big_bytes": (GAS, "error", "OverflowError: cannot fit 'int' into an index-sized integer"),  # wasm32
    "huge_sorted": (GAS, "out of gas", f"out of gas (limit {GAS})"),
    "deep_repr": (MAX_GAS_LIMIT, "limit exceeded", "the VM stopped the call: wasm trap: call stack exhausted"),
    "forever": (GAS, "out of gas", f"out of gas (limit {GAS})"),
    "recurse": (GAS, "limit exceeded", "RecursionError: maximum recursion depth exceeded"),
}


@pytest.fixture(scope="module")
def twins():
    with Twins(SOURCE) as pair:
        yield pair


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_each_bomb_fails_the_same_way_on_two_executors(twins, bomb):
    gas, status, message = BOMBS[bomb]
    result = twins.command(bomb, gas_limit=gas)  # compared with the other executor's: all identical
    assert (result.status, result.message) == (status, message)
    assert result.gas_used <= gas and result.value is None and not result.events
    # The executors carry on, and the failed command changed nothing.
    before = twins.query("get").value
    assert twins.command("bump").value == before + 1
    assert twins.query("get").value == before + 1


def test_out_of_gas_uses_exactly_the_limit(twins):
    for limit in (1000, 12345, 1_000_000):
        result = twins.command("forever", gas_limit=limit)
        assert (result.status, result.gas_used, result.message) == ("out of gas", limit, f"out of gas (limit {limit})")


def test_the_executor_is_confined(twins):
    for contract in twins.pair:
        assert contract.executor.hello.confinement == "rlimits+seccomp"
