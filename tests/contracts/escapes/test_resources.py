"""Escapes through work done in C that gas did not see, and through what trusted code does
with a contract's values after it returns: ``str.join``/``str.replace`` blowups, integer to
string conversions, starred unpacking, iterators consumed by methods, comparisons and
hashing of big or deeply nested values, and outputs too big to encode or to frame. Each ends
by gas, by a hard limit or by a refusal, never by the executor dying or the watchdog; the
canaries are checked as for every escape."""

from __future__ import annotations

import pytest

from phala.contracts import protocol as p
from phala.contracts.values import decode_plain

from .canaries import POLICY, SANDBOX, Escape, ids, run, source

DEEP_TUPLE = "t = ()\nfor i in range(2000):\n    t = (t,)\n"
WIDE = "a = 'x' * (1 << 22)\nb = 'x' * (1 << 22)\n"

STRINGS = [
    Escape("join-blowup", p.LIMIT, "join would make 1000001000 elements", "return ('x' * 1000000).join(['a'] * 1000)"),
    Escape("replace-blowup", p.LIMIT, "replace would make 100100000 elements",
           "return ('a' * 100000).replace('a', 'b' * 1000)"),
    Escape("replace-empty-needle", p.LIMIT, "replace would make 100020000 elements",
           "return ('a' * 10000).replace('', 'b' * 10000)"),
    Escape("center-padding", p.LIMIT, "padding would make 1000000000 elements", "return 'x'.center(10 ** 9)"),
    Escape("zfill-padding", p.LIMIT, "padding would make 1000000000 elements", "return '1'.zfill(10 ** 9)"),
    Escape("to-bytes", p.LIMIT, "to_bytes would make 1000000000 elements", "return (1).to_bytes(10 ** 9, 'little')"),
    Escape("join-of-generator", p.OUT_OF_GAS, "out of gas", "return ''.join('x' for i in range(10 ** 9))"),
    Escape("int-to-str", p.ERROR, "ValueError: Exceeds the limit (4300 digits) for integer string conversion",
           "return str(10 ** 5000)"),
    Escape("int-repr", p.ERROR, "Exceeds the limit (4300 digits)", "return repr(10 ** 5000)"),
    Escape("int-in-fstring", p.ERROR, "Exceeds the limit (4300 digits)", "return f'{10 ** 5000}'"),
    Escape("str-to-int", p.ERROR, "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits",
           "return int('9' * 5000)"),
    Escape("hex-str-to-huge-int", p.LIMIT, "int would make an integer of 400000 bits; the limit is 65536",
           "return int('f' * 100000, 16).bit_length()"),
    Escape("binary-str-to-huge-int", p.LIMIT, "int would make an integer of 100000 bits", "return int('1' * 100000, 2)"),
    Escape("long-division-loop", p.OUT_OF_GAS, "out of gas",
           "x = (1 << 65000) - 1\ny = (1 << 32000) - 3\nwhile True:\n    z = x // y"),
    Escape("long-modulo-loop", p.OUT_OF_GAS, "out of gas",
           "x = (1 << 65000) - 1\ny = (1 << 32000) - 3\nwhile True:\n    z = divmod(x, y)"),
    Escape("codec-import", SANDBOX, "the codec 'idna' is not available to contracts", "return 'x'.encode('idna')"),
    Escape("codec-import-keyword", SANDBOX, "the codec 'uu_codec' is not available",
           "return b'x'.decode(encoding='uu_codec')"),
    Escape("codec-through-bytes", SANDBOX, "the codec 'rot13' is not available", "return bytes('x', 'rot13')"),
    Escape("codec-error-handler-import", SANDBOX, "codec errors must be one of",
           "return '\\u1234'.encode('ascii', 'namereplace')"),
]

UNMETERED = [
    Escape("starred-list", p.OUT_OF_GAS, "out of gas", "return len([*range(10 ** 7)])"),
    Escape("starred-tuple", p.OUT_OF_GAS, "out of gas", "return len((*range(10 ** 7),))"),
    Escape("starred-set", p.OUT_OF_GAS, "out of gas", "return len({*range(10 ** 7)})"),
    Escape("starred-call", p.OUT_OF_GAS, "out of gas", "return max(*range(10 ** 7))"),
    Escape("generic-alias-list", SANDBOX, "list[<builtin int>] is an annotation", "return len(list[int](range(10 ** 7)))"),
    Escape("extend-with-zip", p.OUT_OF_GAS, "out of gas", "l = []\nl.extend(zip(range(10 ** 7)))"),
    Escape("update-with-enumerate", p.OUT_OF_GAS, "out of gas", "s = set()\ns.update(enumerate(range(10 ** 7)))"),
    Escape("slice-assign-iterator", p.OUT_OF_GAS, "out of gas", "l = []\nl[:] = zip(range(10 ** 7))"),
    Escape("slice-copy-loop", p.OUT_OF_GAS, "out of gas", "x = [0] * (1 << 22)\nl = []\nwhile True:\n    l[:] = x"),
    Escape("delete-front-loop", p.OUT_OF_GAS, "out of gas", "l = [0] * (1 << 22)\nwhile True:\n    del l[0]"),
    Escape("count-wide-lists", p.LIMIT, "compar of a value with more than 1048576 elements",
           "x = [0] * (1 << 21)\ny = [0] * (1 << 21)\nreturn ([x] * 1000).count(y)"),
    Escape("count-long-strings", p.OUT_OF_GAS, "out of gas", WIDE + "return ([a] * 1000).count(b)"),
    Escape("sort-long-strings", p.OUT_OF_GAS, "out of gas", WIDE + "l = [a, b] * 1000\nl.sort()"),
    Escape("sorted-long-strings", p.OUT_OF_GAS, "out of gas", WIDE + "return len(sorted([a, b] * 1000))"),
    Escape("max-long-strings", p.OUT_OF_GAS, "out of gas", WIDE + "return len(max([a, b] * 1000))"),
    Escape("sorted-key-long-strings", p.OUT_OF_GAS, "out of gas",
           WIDE + "return len(sorted(range(2000), key=lambda i: a if i % 2 else b))"),
    Escape("hash-shared-tuple", p.OUT_OF_GAS, "out of gas", "inner = (0,) * (1 << 20)\nreturn {(inner,) * 1000: 1}"),
]

DEEP = [  # hashing a deeply nested tuple overflowed the C stack: the executor died
    Escape("deep-tuple-dict-display", p.LIMIT, "a set or dict key nested more than 64 levels deep",
           DEEP_TUPLE.replace("2000", "300000") + "return {t: 1}"),  # deep enough to overflow the C stack
    Escape("deep-tuple-set-display", p.LIMIT, "a set or dict key nested more than 64 levels deep", DEEP_TUPLE + "return {t}"),
    Escape("deep-tuple-get", p.LIMIT, "a set or dict key nested more than 64 levels deep", DEEP_TUPLE + "return {}.get(t)"),
    Escape("deep-tuple-lookup", p.LIMIT, "a set or dict key nested more than 64 levels deep", DEEP_TUPLE + "return {}[t]"),
    Escape("deep-tuple-store", p.LIMIT, "a set or dict key nested more than 64 levels deep",
           DEEP_TUPLE + "d = {}\nd[t] = 1"),
    Escape("deep-tuple-set-add", p.LIMIT, "a set or dict key nested more than 64 levels deep", DEEP_TUPLE + "set().add(t)"),
    Escape("deep-tuple-intersection", p.LIMIT, "a set or dict key nested more than 64 levels deep",
           DEEP_TUPLE + "return len({1}.intersection([t]))"),
    Escape("deep-tuple-isinstance", SANDBOX, "isinstance takes builtin types or contract classes",
           DEEP_TUPLE + "return isinstance(1, (t,))"),
    Escape("deep-tuple-contains", p.LIMIT, "compar of a value nested more than 64 levels deep", DEEP_TUPLE + "return t in {}"),
    Escape("deep-tuple-sort", p.LIMIT, "sort of a value nested more than 64 levels deep", DEEP_TUPLE + "return sorted([t, t])"),
    Escape("deep-source-binop", POLICY, "the code is nested too deeply", "return " + "+".join(["1"] * 5000)),
    Escape("deep-source-attribute", POLICY, "the code is nested too deeply", "return ctx" + ".a" * 5000),
    Escape("deep-source-unary", POLICY, "the code is nested too deeply", "return " + "-" * 5000 + "1"),
    Escape("deep-source-lambda", POLICY, "the code is nested too deeply", "return " + "lambda: " * 300 + "1"),
]

OUTPUTS = [  # encoded after the call, outside the meter, and framed to the host
    Escape("return-beyond-the-frame", p.LIMIT, "the return value would encode to more than 1048576 bytes",
           "return 'x' * 9000000"),
    Escape("return-shared-list", p.LIMIT, "the return value would encode to more than 1048576 bytes",
           "return [[0] * (1 << 20)] * 1024"),
    Escape("state-shared-list", p.LIMIT, "the state would encode to more than 1048576 bytes",
           "self.loot = [[0] * (1 << 20)] * 1024"),
    Escape("events-shared-string", p.LIMIT, "the events would encode to more than",
           "x = 'x' * 100000\nfor i in range(100):\n    ctx.emit(x)"),
    Escape("messages-to-the-victim", p.LIMIT, "the messages would encode to more than",
           "x = 'x' * 600000\nctx.send(VICTIM, x)\nctx.send(VICTIM, x)"),
]

ALL = STRINGS + UNMETERED + DEEP + OUTPUTS


@pytest.mark.parametrize("escape", ALL, ids=ids(ALL))
def test_refused(canaries, escape):
    run(canaries, escape)


@pytest.mark.parametrize("needle", ["None", "(1,)", "'x'", "[]"])
def test_membership_in_a_huge_range_is_answered_without_scanning(canaries, needle):
    """``None in range(10**12)`` scanned the range in C, unmetered, past the watchdog."""
    outcome = canaries.attempt(source(f"return [{needle} in range(10 ** 12), {needle} not in range(10 ** 12)]",
                                      canaries=canaries))
    assert outcome.status == p.OK and decode_plain(outcome.value) == [False, True]
    assert outcome.gas_used < 50


def test_the_language_still_works(canaries):
    """The control: plain sets, dicts, unpacking, sorting, the allowed codecs."""
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
    assert decode_plain(outcome.value) == [
        [(3, "a"), 1, 2], {"a": 1, "b": 2}, {"a": 1, "b": 1}, True, [0, 1, 2, "a", "b"], "bb", 3, [3, 2, 1], 1, 2,
        "é".encode(), b"\xe9", "x", b"x", b"x", 255, 10**30 // 7, (-4, 1),
    ]
