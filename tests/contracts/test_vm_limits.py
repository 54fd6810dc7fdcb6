"""The classes of work the VM's design names, each as a contract command run on two
executors (:class:`~tests.contracts.support.Twins`): the same status, message and gas on
both, gas within the limit, the limit within the schedule (``MAX_GAS_LIMIT``), no watchdog
(an alarm fails the test), and the executors carry on after it.

Under RestrictedPython each class was work done in C that the guards had to price. In the
VM the interpreter's C code is WebAssembly too, so fuel counts it, and every limit is an
outcome of the one call: out of gas, ``MemoryError`` at the memory cap (limit exceeded), a
``RecursionError`` (limit exceeded) or the VM's stack running out (a trap: limit exceeded).
"""

from __future__ import annotations

import textwrap

import pytest

from phala.core.gas import COMMAND_GAS, MAX_GAS_LIMIT

from .support import ALICE, Twins

OOG, LIMIT, OK, ERROR = "out of gas", "limit exceeded", "ok", "error"
STACK = "the VM stopped the call: wasm trap: call stack exhausted"
MEMORY = "MemoryError: "
BIG = MAX_GAS_LIMIT

# name: (body of the command, gas limit, status, message; for "ok", the value)
CALLABLES = {  # builtins that take a callable and call it from C, as often as the iterable says
    "filter_emit": ("return len(list(filter(ctx.emit, range(3 * 10 ** 6))))", BIG, OOG, None),
    "map_emit": ("return len(list(map(ctx.emit, range(3 * 10 ** 6))))", BIG, OOG, None),
    "filterfalse_emit": ("return len(list(itertools.filterfalse(ctx.emit, range(10 ** 9))))", COMMAND_GAS, OOG, None),
    "sorted_key": ("return len(sorted(range(10 ** 7), key=lambda v: -v))", COMMAND_GAS, OOG, None),
    "list_sort_key": ("l = list(range(10 ** 6))\nl.sort(key=lambda v: [v] * 100)", BIG, OOG, None),
    "max_key": ("return max(range(10 ** 9), key=lambda v: v)", COMMAND_GAS, OOG, None),
    "reduce": ("return functools.reduce(lambda a, b: a ^ b, range(10 ** 9))", COMMAND_GAS, OOG, None),
    "starmap": ("return sum(itertools.starmap(operator.mul, zip(range(10 ** 9), range(10 ** 9))))", COMMAND_GAS,
                OOG, None),
    "accumulate": ("return list(itertools.accumulate(range(10 ** 9)))[-1]", COMMAND_GAS, OOG, None),
    "dropwhile": ("return list(itertools.dropwhile(lambda v: True, range(10 ** 9)))", COMMAND_GAS, OOG, None),
    "groupby_key": ("return len(list(itertools.groupby(range(10 ** 9), key=lambda v: v)))", COMMAND_GAS, OOG, None),
    "re_sub_callable": ("return len(re.sub('x', lambda m: 'yy', 'x' * 10 ** 7))", BIG, OOG, None),
    "any_map": ("return any(map(lambda v: v < 0, range(10 ** 9)))", COMMAND_GAS, OOG, None),
    "dict_fromkeys_map": ("return len(dict.fromkeys(map(lambda v: v, range(10 ** 9))))", COMMAND_GAS, OOG, None),
}

SETS = {  # set operations over huge iterables: each element is hashed, compared, stored
    "union": ("return len(set().union(range(10 ** 9)))", BIG, OOG, None),
    "frozenset": ("return len(frozenset(range(10 ** 9)))", BIG, OOG, None),
    "isdisjoint": ("return set().isdisjoint(range(10 ** 9))", COMMAND_GAS, OOG, None),
    "intersection": ("return len({1}.intersection(range(2, 10 ** 9)))", COMMAND_GAS, OOG, None),
    "difference": ("return len({1}.difference(range(2, 10 ** 9)))", COMMAND_GAS, OOG, None),
    "symmetric_difference_update": ("s = set()\ns.symmetric_difference_update(range(10 ** 9))", COMMAND_GAS, OOG,
                                    None),
    "subset_of_frozen": ("return frozenset(range(10 ** 8)) <= {1}", COMMAND_GAS, OOG, None),
    "issubset_stops_early": ("return {1}.issubset(range(10 ** 9))", COMMAND_GAS, OK, True),  # it finds 1 at once
    "issuperset_stops_early": ("return {1}.issuperset(range(10 ** 9))", COMMAND_GAS, OK, False),
}

X = "x = (1 << 65536) - 1\n"
UNARY = {  # unary operators on 65,536-bit ints, again and again (each makes a new 8 KiB int)
    "negate": (X + "while True:\n    -x", BIG, OOG, None),
    "invert": (X + "while True:\n    ~x", BIG, OOG, None),
    "absolute": ("x = -(1 << 65536) + 1\nwhile True:\n    abs(x)", BIG, OOG, None),
    "plus": (X + "while True:\n    +x", BIG, OOG, None),
    "not": (X + "while True:\n    not x", COMMAND_GAS, OOG, None),
    "invert_grows": (X + "while True:\n    x = ~(x << 1)", BIG, OOG, None),  # ever longer, until gas ends it
}

STRINGS = {  # str.strip / startswith and friends with huge or many arguments
    "strip_huge_chars": ("return len(('x' * 10 ** 6).strip('y' * 10 ** 6))", COMMAND_GAS, OK, 10 ** 6),
    "lstrip_huge_chars": ("s = 'ab' * 10 ** 6\nwhile True:\n    s.lstrip('c' * 10 ** 5 + 'a')", BIG, OOG, None),
    "startswith_many": ("return ('x' * 10 ** 6).startswith(('x' * 10 ** 5 + 'y',) * 10 ** 5)", COMMAND_GAS, OK,
                        False),
    "endswith_many": ("return ('x' * 10 ** 6).endswith(tuple('y' + 'x' * i for i in range(10 ** 4)))", BIG, OK,
                      False),
    "startswith_huge": ("s = 'x' * 10 ** 7\nwhile True:\n    s.startswith(s)", BIG, OOG, None),
    "find_pathological": ("s = 'a' * 10 ** 6\nwhile True:\n    s.find('a' * 5000 + 'b')", BIG, OOG, None),
    "count": ("s = 'ab' * 10 ** 6\nwhile True:\n    s.count('ab')", COMMAND_GAS, OOG, None),
    "split": ("return len(('x,' * 10 ** 8).split(','))", BIG, OOG, None),
}

EXTEND = {  # list.extend of 2**27 items: 512 MiB of pointers, past the memory cap at once
    "extend_range": ("l = []\nl.extend(range(2 ** 27))\nreturn len(l)", COMMAND_GAS, LIMIT, MEMORY),
    "extend_iterator": ("l = []\nl.extend(iter(range(2 ** 27)))\nreturn len(l)", COMMAND_GAS, LIMIT, MEMORY),
    "extend_fits_until_gas_ends": ("l = []\nl.extend(range(2 ** 24))\nreturn len(l)", BIG, OOG, None),
    "extend_caught": ("l = []\ntry:\n    l.extend(range(2 ** 27))\nexcept MemoryError:\n    return len(l)",
                      COMMAND_GAS, OK, 0),
}

ALIASES = {  # generic aliases are callable: list[int](...) is list(...)
    "list": ("return list[int](range(5))", COMMAND_GAS, OK, [0, 1, 2, 3, 4]),
    "list_huge": ("return len(list[int](range(10 ** 9)))", COMMAND_GAS, LIMIT, MEMORY),
    "dict_huge": ("return len(dict[int, int](zip(range(10 ** 9), range(10 ** 9))))", COMMAND_GAS, OOG, None),
    "set_huge": ("return len(set[int](range(10 ** 9)))", COMMAND_GAS, OOG, None),
    "tuple_huge": ("return len(tuple[int, ...](range(10 ** 9)))", COMMAND_GAS, OOG, None),
    "nested_repr": ("a = int\nfor i in range(100000):\n    a = list[a]\nreturn len(repr(a))", BIG, LIMIT, STACK),
}

DEEP = {  # deep nesting: C recursion in the interpreter, stopped by the VM's stack
    "filters_150k": ("f = range(10)\nfor i in range(150000):\n    f = filter(None, f)\nreturn list(f)", BIG, LIMIT,
                     STACK),
    "generators_200k": ("g = iter(range(10))\nfor i in range(200000):\n    g = (x for x in g)\nreturn list(g)",
                        BIG, OOG, None),  # making them costs more than the largest limit
    "generators_50k_next": ("g = iter(range(10))\nfor i in range(50000):\n    g = (x for x in g)\nreturn next(g)",
                            BIG, LIMIT, STACK),
    "generators_50k_list": ("g = iter(range(10))\nfor i in range(50000):\n    g = (x for x in g)\nreturn list(g)",
                            BIG, OK, list(range(10))),  # list() iterates them without recursing in C
    "list_repr_200k": ("x = []\nfor i in range(200000):\n    x = [x]\nreturn len(repr(x))", BIG, LIMIT, STACK),
    "list_compare_200k": ("x = []\ny = []\nfor i in range(200000):\n    x = [x]\n    y = [y]\nreturn x == y", BIG,
                          LIMIT, STACK),
    "dict_repr_200k": ("x = {}\nfor i in range(200000):\n    x = {1: x}\nreturn len(repr(x))", BIG, LIMIT, STACK),
    "tuple_hash_300k": ("t = ()\nfor i in range(300000):\n    t = (t,)\nreturn hash(t)", BIG, LIMIT, STACK),
    "filters_freed": ("f = range(10)\nfor i in range(150000):\n    f = filter(None, f)\ndel f", BIG, LIMIT, STACK),
    "recursion": ("f = lambda n: f(n + 1)\nreturn f(0)", COMMAND_GAS, LIMIT,
                  "RecursionError: maximum recursion depth exceeded"),
    "recursion_caught": ("f = lambda n: f(n + 1)\ntry:\n    f(0)\nexcept RecursionError:\n    return 'caught'",
                         COMMAND_GAS, OK, "caught"),
}

CLASSES = {"callables": CALLABLES, "sets": SETS, "unary": UNARY, "strings": STRINGS, "extend": EXTEND,
           "aliases": ALIASES, "deep": DEEP}
CASES = {f"{group}_{name}": case for group, cases in CLASSES.items() for name, case in cases.items()}

SOURCE = '''
import functools
import itertools
import operator
import re

from phala.contracts.sdk import Contract, command, constructor, query


class Limits(Contract):
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
''' + "".join(f"\n    @command\n    def {name}(self, ctx):\n        self.count = -1  # reverted with the failure\n"
              + textwrap.indent(body, " " * 8) + "\n" for name, (body, *_) in CASES.items())


@pytest.fixture(scope="module")
def twins():
    with Twins(SOURCE) as pair:
        yield pair


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_class_ends_the_same_way_on_two_executors(twins, name):
    _body, gas, status, expected = CASES[name]
    assert gas <= MAX_GAS_LIMIT
    before = twins.query("get").value
    result = twins.command(name, gas_limit=gas)  # the twins compare status, message, gas, value, storage
    assert result.status == status, result
    assert result.gas_used <= gas
    if status == OOG:
        assert (result.gas_used, result.message) == (gas, f"out of gas (limit {gas})")
    elif status == OK:
        assert (result.message, result.value) == ("", expected), result
    else:
        assert result.message == expected, result
    # a failed command changed nothing (it set count to -1 first), and the executors carry on
    assert twins.query("get").value == (-1 if status == OK else before)
    assert twins.command("bump").value == twins.query("get").value


def test_out_of_gas_uses_exactly_the_limit(twins):
    for limit in (1_000, 12_345, 400_000):
        result = twins.command("unary_negate", gas_limit=limit)
        assert (result.status, result.gas_used) == (OOG, limit)


def test_a_call_ends_whatever_the_interpreter_was_doing(twins):
    """Fuel runs out anywhere, even inside one long C call (a sort of 10**7 items, a regular
    expression over 10**7 characters): the call ends there, and the next one is fine."""
    for name in ("callables_sorted_key", "callables_re_sub_callable"):
        result = twins.command(name, gas_limit=5_000_000)
        assert (result.status, result.gas_used) == (OOG, 5_000_000)
    assert twins.command("bump", sender=ALICE).ok
