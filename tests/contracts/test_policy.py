"""The contract language policy: what is refused at compile time, and why."""

from __future__ import annotations

import pytest

from phala.contracts.policy import PolicyError, compile_contract

REFUSED = {
    "import os": "Import is not allowed",
    "from os import path": "only 'from phala.contracts.sdk import",
    "from phala.contracts.sdk import *": "'import *' is not allowed",
    "from phala.contracts.sdk import _secret": "starts with '_'",
    "x = 1.5": "float and complex",
    "x = 2j": "float and complex",
    "x = 1 / 2": "true division",
    "x = 1\nx /= 2": "true division",
    "x = ().__class__": "starts with '_'",
    "x = _y": "starts with '_'",
    "def _f():\n    pass": "starts with '_'",
    "def f(_a):\n    pass": "starts with '_'",
    "def f():\n    global x": "Global is not allowed",
    "def f():\n    x = 1\n    def g():\n        nonlocal x": "Nonlocal is not allowed",
    "with a as b:\n    pass": "With is not allowed",
    "def f():\n    yield 1": "Yield is not allowed",
    "async def f():\n    pass": "AsyncFunctionDef is not allowed",
    "x = [y := 1]": "NamedExpr is not allowed",
    "match x:\n    case 1:\n        pass": "Match is not allowed",
    "try:\n    pass\nexcept:\n    pass": "bare 'except:'",
    "try:\n    pass\nexcept BaseException:\n    pass": "only these exceptions can be caught",
    "try:\n    pass\nexcept (ValueError, SystemExit):\n    pass": "only these exceptions can be caught",
    "try:\n    pass\nfinally:\n    pass": "'finally' is not allowed",
    "x = f'{y:>99999}'": "format specs",
    "x = f'{y!a}'": "only !s and !r",
    "@evil\ndef f():\n    pass": "only the SDK's decorators",
    "class A(metaclass=M):\n    pass": "class keywords",
    "def f():\n    class A:\n        pass": "only at the top level",
    "class A(b.c):\n    pass": "a base class must be a plain name",
    "x = eval('1')": "forbidden builtin",
    "x = exec": "forbidden builtin",
    "x = open('/etc/passwd')": "forbidden builtin",
    "x = getattr(a, 'b')": "forbidden builtin",
    "x = type(a)": "forbidden builtin",
    "x = hash('a')": "forbidden builtin",
    "x = id(a)": "forbidden builtin",
    "x = globals()": "forbidden builtin",
    "x = vars()": "forbidden builtin",
    "\u0430 = 1": "not ASCII",
    "x = ...": "... is not allowed",
    "x = 1 < 2 < 3": "chained comparisons",
    "x = a @ b": "'@' is not allowed",
    "lambda: (yield)": "Yield is not allowed",
    "x = (1,\n": "syntax error",
}


@pytest.mark.parametrize("source", sorted(REFUSED))
def test_refused_with_a_reason(source):
    with pytest.raises(PolicyError) as info:
        compile_contract(source)
    assert REFUSED[source] in str(info.value)


def test_lookalike_names_normalise_to_what_they_imitate():
    # Python folds compatibility characters (NFKC): a fullwidth 'ｅｖａｌ' is 'eval'.
    with pytest.raises(PolicyError, match="forbidden builtin"):
        compile_contract("x = \uff45\uff56\uff41\uff4c('1')")


def test_the_line_is_reported():
    with pytest.raises(PolicyError) as info:
        compile_contract("x = 1\ny = 2\nz = 1.0\n")
    assert info.value.line == 3


def test_ordinary_contract_code_compiles():
    compile_contract(
        "from phala.contracts.sdk import Contract, command\n"
        "class C(Contract):\n"
        "    @command\n"
        "    def f(self, ctx, n: int) -> list[int]:\n"
        "        out = [i * i for i in range(n) if i % 2 == 0]\n"
        "        self.total += sum(out)\n"
        "        d = {}\n"
        "        d['k'] = f'{n!r} items'\n"
        "        try:\n"
        "            x = out[n]\n"
        "        except (IndexError, KeyError) as e:\n"
        "            x = -1\n"
        "        return sorted(out, key=lambda v: -v)\n"
    )


def test_oversized_source_is_refused():
    with pytest.raises(PolicyError, match="larger than"):
        compile_contract("x = 1\n" * 100_000)
