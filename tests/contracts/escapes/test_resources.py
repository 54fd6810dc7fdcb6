"""Escapes through work done in C that gas might not see, and through what trusted code
does with a contract's values after it returns: ``str.join``/``str.replace`` blowups,
integer to string conversions, starred unpacking, iterators consumed by methods, comparisons
and hashing of big or deeply nested values, and outputs too big to encode or to frame.

Under RestrictedPython each needed a guard. In the VM the interpreter's C code is
WebAssembly too, so fuel counts it: each ends by gas, by the memory cap (a ``MemoryError``
inside the call), by the VM's stack (a trap), or by the SDK's output limits, exactly as
stated, the same on two executors, and never by the executor dying or the watchdog. The
canaries are checked as for every escape.
"""

from __future__ import annotations

import pytest

from phala.contracts import protocol as p
from phala.core.gas import COMMAND_GAS

from .canaries import GAS, LOAD, POLICY, Escape, ids, run, source

DEEP_TUPLE = "t = ()\nfor i in range(2000):\n    t = (t,)\n"
WIDE = "a = 'x' * (1 << 22)\nb = 'x' * (1 << 22)\n"

STRINGS = [
    Escape("join-blowup", p.LIMIT, "MemoryError: ", "return ('x' * 1000000).join(['a'] * 1000)"),
    Escape("replace-blowup", p.OUT_OF_GAS, "out of gas", "return ('a' * 100000).replace('a', 'b' * 1000)"),
    Escape("replace-empty-needle", p.OUT_OF_GAS, "out of gas", "return ('a' * 10000).replace('', 'b' * 10000)"),
    Escape("center-padding", p.LIMIT, "MemoryError: ", "return 'x'.center(10 ** 9)"),
    Escape("zfill-padding", p.LIMIT, "MemoryError: ", "return '1'.zfill(10 ** 9)"),
    Escape("to-bytes", p.LIMIT, "MemoryError: ", "return (1).to_bytes(10 ** 9, 'little')"),
    Escape("join-of-generator", p.OUT_OF_GAS, "out of gas", "return ''.join('x' for i in range(10 ** 9))"),
    Escape("int-to-str", p.ERROR, "ValueError: Exceeds the limit (4300 digits) for integer string conversion; use sys.set_int_max_str_digits() to increase the limit", "return str(10 ** 5000)"),
    Escape("int-repr", p.ERROR, "ValueError: Exceeds the limit (4300 digits) for integer string conversion; use sys.set_int_max_str_digits() to increase the limit", "return repr(10 ** 5000)"),
    Escape("int-in-fstring", p.ERROR, "ValueError: Exceeds the limit (4300 digits) for integer string conversion; use sys.set_int_max_str_digits() to increase the limit", "return f'{10 ** 5000}'"),
    Escape("str-to-int", p.ERROR, "ValueError: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit", "return int('9' * 5000)"),
    Escape("hex-str-to-huge-int", p.OK, "", "return int('f' * 100000, 16).bit_length()", value=400000),
    Escape("binary-str-to-huge-int", p.OK, "", "return int('1' * 100000, 2)", value=2 ** 100000 - 1),
    Escape("long-division-loop", p.OUT_OF_GAS, "out of gas (limit 10000000)", "x = (1 << 65000) - 1\ny = (1 << 32000) - 3\nwhile True:\n    z = x // y"),
    Escape("long-modulo-loop", p.OUT_OF_GAS, "out of gas (limit 10000000)", "x = (1 << 65000) - 1\ny = (1 << 32000) - 3\nwhile True:\n    z = divmod(x, y)"),
    Escape("codec-import", p.LIMIT, "the VM stopped the call: wasm trap: wasm `unreachable` instruction executed", "return 'x'.encode('idna')"),
    Escape("codec-import-keyword", p.LIMIT, "the VM stopped the call: wasm trap: wasm `unreachable` instruction executed", "return b'x'.decode(encoding='uu_codec')"),
    Escape("codec-through-bytes", p.LIMIT, "the VM stopped the call: wasm trap: wasm `unreachable` instruction executed", "return bytes('x', 'rot13')"),
    Escape("codec-error-handler-import", p.ERROR, 'ImportError: PyCapsule_Import could not import module "unicodedata"', "return '\\u1234'.encode('ascii', 'namereplace')"),
]

UNMETERED = [
    Escape("starred-list", p.OUT_OF_GAS, "out of gas", "return len([*range(10 ** 7)])"),
    Escape("starred-tuple", p.OUT_OF_GAS, "out of gas", "return len((*range(10 ** 7),))"),
    Escape("starred-set", p.OUT_OF_GAS, "out of gas", "return len({*range(10 ** 7)})"),
    Escape("starred-call", p.OUT_OF_GAS, "out of gas", "return max(*range(10 ** 7))"),
    Escape("generic-alias-list", p.OUT_OF_GAS, "out of gas", "return len(list[int](range(10 ** 7)))"),
    Escape("extend-with-zip", p.OUT_OF_GAS, "out of gas", "l = []\nl.extend(zip(range(10 ** 7)))"),
    Escape("update-with-enumerate", p.OUT_OF_GAS, "out of gas", "s = set()\ns.update(enumerate(range(10 ** 7)))"),
    Escape("slice-assign-iterator", p.OUT_OF_GAS, "out of gas", "l = []\nl[:] = zip(range(10 ** 7))"),
    Escape("slice-copy-loop", p.OUT_OF_GAS, "out of gas", "x = [0] * (1 << 22)\nl = []\nwhile True:\n    l[:] = x"),
    Escape("delete-front-loop", p.OUT_OF_GAS, "out of gas", "l = [0] * (1 << 22)\nwhile True:\n    del l[0]"),
    Escape("count-wide-lists", p.OUT_OF_GAS, "out of gas", "x = [0] * (1 << 21)\ny = [0] * (1 << 21)\nreturn ([x] * 1000).count(y)"),
    Escape("count-long-strings", p.OUT_OF_GAS, "out of gas", WIDE + "return ([a] * 1000).count(b)"),
    Escape("sort-long-strings", p.OUT_OF_GAS, "out of gas", WIDE + "l = [a, b] * 1000\nl.sort()"),
    Escape("sorted-long-strings", p.OUT_OF_GAS, "out of gas", WIDE + "return len(sorted([a, b] * 1000))"),
    Escape("max-long-strings", p.OUT_OF_GAS, "out of gas", WIDE + "return len(max([a, b] * 1000))"),
    Escape("sorted-key-long-strings", p.OUT_OF_GAS, "out of gas", WIDE + "return len(sorted(range(2000), key=lambda i: a if i % 2 else b))"),
    Escape("hash-shared-tuple", p.OUT_OF_GAS, "out of gas", "inner = (0,) * (1 << 20)\nreturn {(inner,) * 1000: 1}"),
]

DEEP = [
    Escape("deep-tuple-dict-display", p.OUT_OF_GAS, "out of gas", DEEP_TUPLE.replace("2000", "300000") + "return {t: 1}"),
    Escape("deep-tuple-set-display", p.ERROR, "PlainValueError: value is a set, not a plain value", DEEP_TUPLE + "return {t}"),
    Escape("deep-tuple-get", p.OK, "", DEEP_TUPLE + "return {}.get(t)", value=None),
    Escape("deep-tuple-lookup", p.OUT_OF_GAS, "out of gas", DEEP_TUPLE + "return {}[t]"),
    Escape("deep-tuple-store", p.OK, "", DEEP_TUPLE + "d = {}\nd[t] = 1", value=None),
    Escape("deep-tuple-set-add", p.OK, "", DEEP_TUPLE + "set().add(t)", value=None),
    Escape("deep-tuple-intersection", p.OK, "", DEEP_TUPLE + "return len({1}.intersection([t]))", value=0),
    Escape("deep-tuple-isinstance", p.OK, "", DEEP_TUPLE + "return isinstance(1, (t,))", value=False),
    Escape("deep-tuple-contains", p.OK, "", DEEP_TUPLE + "return t in {}", value=False),
    Escape("deep-tuple-sort", p.ERROR, "PlainValueError: " + "[0]" * 64 + " is nested more than 64 levels deep", DEEP_TUPLE + "return sorted([t, t])"),
    Escape("deep-source-binop", POLICY, "a statement with more than 256 operators", "return " + "+".join(["1"] * 5000)),
    Escape("deep-source-attribute", POLICY, "a statement with more than 256 operators", "return ctx" + ".a" * 5000),
    Escape("deep-source-unary", POLICY, "a statement with more than 256 operators", "return " + "-" * 5000 + "1"),
    # 300 nested lambdas marshal to 841 KB (each level's qualified name holds all above it):
    # running that module in every fresh instance would cost more than MODULE_FUEL.
    Escape("deep-source-lambda", LOAD, "the module body needs more than 20000000 fuel", "return " + "lambda: " * 300 + "1"),
]

OUTPUTS = [
    Escape("return-beyond-the-frame", p.LIMIT, "LimitExceeded: the return value would pass the 1048576-byte output limit of a call", "return 'x' * 9000000", gas=COMMAND_GAS),
    Escape("return-shared-list", p.OUT_OF_GAS, "out of gas", "return [[0] * (1 << 20)] * 1024", gas=COMMAND_GAS),
    Escape("state-shared-list", p.OUT_OF_GAS, "out of gas", "self.loot = [[0] * (1 << 20)] * 1024", gas=COMMAND_GAS),
    Escape("events-shared-string", p.LIMIT, "LimitExceeded: the events would pass the 1048576-byte output limit of a call", "x = 'x' * 100000\nfor i in range(100):\n    ctx.emit(x)"),
    Escape("messages-to-the-victim", p.LIMIT, "LimitExceeded: the messages would pass the 1048576-byte output limit of a call", "x = 'x' * 600000\nctx.send(VICTIM, x)\nctx.send(VICTIM, x)"),
]

ALL = STRINGS + UNMETERED + DEEP + OUTPUTS


@pytest.mark.parametrize("escape", ALL, ids=ids(ALL))
def test_escape(canaries, escape):
    run(canaries, escape)


@pytest.mark.parametrize("needle", ["None", "(1,)", "'x'", "[]"])
def test_membership_in_a_huge_range_is_bounded_by_gas(canaries, needle):
    """``None in range(10**12)`` scanned the range in C, unmetered, past the watchdog; the
    guards answered it without scanning. In the VM the scan is metered: it runs out of gas,
    the same on both executors."""
    outcome = canaries.attempt(source(f"return [{needle} in range(10 ** 12), {needle} not in range(10 ** 12)]",
                                      canaries=canaries))
    assert (outcome.status, outcome.gas_used, outcome.message) == (p.OUT_OF_GAS, GAS, f"out of gas (limit {GAS})")
    ints = canaries.attempt(source("return [5 in range(10 ** 12), 10 ** 12 in range(10 ** 12)]", canaries=canaries))
    assert (ints.status, ints.decoded()) == (p.OK, [True, False])  # ints are answered without scanning


def test_the_language_still_works(canaries):
    """The control: plain sets, dicts, unpacking, sorting, the built-in codecs."""
    body = """
    s = {1, 2, (3, 'a')}
    d = {'a': 1, **{'b': 2}}
    l = [3, 1, 2]
    l.sort(key=lambda v: -v)
    return [sorted(s, key=str), d, {k: 1 for k in 'ab'}, {x for x in [1, 1]} == {1}, [*range(3), *'ab'],
            max(['a', 'bb'], key=len), min(3, 4), l, [1, [2]].index([2]), {1: 2}.get(1),
            'é'.encode(), 'é'.encode('latin-1'), b'x'.decode('ascii'), bytes('x', 'utf8'), 'x'.encode('LATIN1'),
            int('ff', 16), 10 ** 30 // 7, divmod(-7, 2)]
    """
    outcome = canaries.attempt(source(body, canaries=canaries))
    assert outcome.status == p.OK, outcome.message
    assert outcome.decoded() == [
        [(3, "a"), 1, 2], {"a": 1, "b": 2}, {"a": 1, "b": 1}, True, [0, 1, 2, "a", "b"], "bb", 3, [3, 2, 1], 1, 2,
        "é".encode(), b"\xe9", "x", b"x", b"x", 255, 10**30 // 7, (-4, 1),
    ]
