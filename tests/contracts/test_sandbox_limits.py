"""The issue's resource bombs, each in a real executor process: each fails by gas or by a
hard limit, with the same status and gas used on two executors, and the executor (and the
contract's other commands) carry on."""

from __future__ import annotations

import pytest

from phala.contracts import protocol as p
from phala.contracts.host import Executor

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

CTX = p.CallContext(b"\x01" * 32, 1, 0, b"\x02" * 32, b"\x03" * 32)
GAS = 1_000_000
BOMBS = {
    "sum_range": p.LIMIT,
    "repeat_str": p.LIMIT,
    "big_power": p.LIMIT,
    "big_bytes": p.LIMIT,
    "huge_sorted": p.OUT_OF_GAS,
    "deep_repr": p.LIMIT,
    "forever": p.OUT_OF_GAS,
    "recurse": p.LIMIT,
}


@pytest.fixture(scope="module")
def executors():
    pair = [Executor(), Executor()]
    for ex in pair:
        assert ex.load(SOURCE).status == p.OK
        assert ex.call(p.CONSTRUCTOR, "init", [], CTX, GAS).status == p.OK
    yield pair
    for ex in pair:
        ex.close()


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_each_bomb_fails_the_same_way_on_two_executors(executors, bomb):
    outcomes = [ex.call(p.COMMAND, bomb, [], CTX, GAS) for ex in executors]
    assert outcomes[0] == outcomes[1]  # status, message, gas used: all identical
    outcome = outcomes[0]
    assert outcome.status == BOMBS[bomb], outcome.message
    assert outcome.gas_used <= GAS and outcome.state == b""
    # The executor carries on, and the failed command changed nothing.
    for ex in executors:
        before = ex.call(p.QUERY, "get", [], CTX, GAS).value
        assert ex.call(p.COMMAND, "bump", [], CTX, GAS).status == p.OK
        assert ex.call(p.QUERY, "get", [], CTX, GAS).value != before


def test_out_of_gas_uses_exactly_the_limit(executors):
    for limit in (1000, 12345):
        outcome = executors[0].call(p.COMMAND, "forever", [], CTX, limit)
        assert (outcome.status, outcome.gas_used) == (p.OUT_OF_GAS, limit)


def test_the_executor_is_confined():
    with Executor() as ex:
        assert ex.hello.confinement == "rlimits+seccomp"
