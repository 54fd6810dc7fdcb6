"""The contract language policy, run where the workers run it: inside the VM, through an
executor's ``check`` (what ``phala contract check`` does too). It refuses imports other
than the SDK's names and :data:`~phala.contracts.policy.PURE_MODULES`, ``global`` and
``nonlocal``, oversized and overly nested source, each with its line; everything else is
Python, and the VM contains it. The load then refuses a module body that fails and a
module that does not define exactly one contract class."""

from __future__ import annotations

import pytest

from phala.contracts import protocol as p
from phala.contracts.host import Executor
from phala.contracts.policy import MAX_NESTING, MAX_SOURCE_BYTES, PURE_MODULES

CONTRACT = """
from phala.contracts.sdk import Contract, constructor


class C(Contract):
    @constructor
    def init(self, ctx):
        pass
"""
MAY_IMPORT = "contracts may import from phala.contracts.sdk import ... and " + ", ".join(PURE_MODULES)
SDK_HAS = "(it has AccountId, Contract, ContractError, LimitExceeded, Mapping, Record, command, constructor, handler, query)"
STATE = "module and class values do not persist between blocks; keep state in self"

REFUSED = {  # source (put before a valid contract): (line, the policy's reason)
    "import os": (1, f"import of 'os': {MAY_IMPORT}"),
    "import json, os": (1, f"import of 'os': {MAY_IMPORT}"),
    "x = 1\nimport socket": (2, f"import of 'socket': {MAY_IMPORT}"),
    "import os.path": (1, f"import of 'os.path': {MAY_IMPORT}"),
    "import json.decoder": (1, f"import of 'json.decoder': {MAY_IMPORT}"),  # a pure module's submodule: not listed
    "from os import path": (1, f"import from 'os': {MAY_IMPORT}"),
    "from . import sdk": (1, "relative imports are not allowed"),
    "from .sdk import Contract": (1, "relative imports are not allowed"),
    "from phala.contracts import sdk": (1, f"import from 'phala.contracts': {MAY_IMPORT}"),
    "import phala.contracts.sdk": (1, f"import of 'phala.contracts.sdk': {MAY_IMPORT}"),
    "from __future__ import annotations": (1, f"import from '__future__': {MAY_IMPORT}"),
    "from phala.contracts.sdk import *": (1, f"the SDK has no '*' {SDK_HAS}"),
    "from phala.contracts.sdk import _mark": (1, f"the SDK has no '_mark' {SDK_HAS}"),
    "from phala.contracts.sdk import Context": (1, f"the SDK has no 'Context' {SDK_HAS}"),
    "from json import *": (1, "import * is not allowed"),
    "class A:\n    def f(self):\n        import os": (3, f"import of 'os': {MAY_IMPORT}"),
    "def f():\n    global x": (2, f"global is not allowed: {STATE}"),
    "def f():\n    x = 1\n    def g():\n        nonlocal x": (4, f"nonlocal is not allowed: {STATE}"),
    "x = (1,\n": (1, "syntax error: '(' was never closed"),
    "x = 1\ny = )": (2, "syntax error: unmatched ')'"),
    "x = " + "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1): (
        1, f"brackets nested more than {MAX_NESTING} levels deep"),
    "if 1:\n" + "".join(" " * (4 * i) + "if 1:\n" for i in range(1, MAX_NESTING + 2)) + " " * (4 * MAX_NESTING + 8)
    + "pass": (MAX_NESTING + 2, f"indented more than {MAX_NESTING} levels deep"),
    "x = 1\n" * (MAX_SOURCE_BYTES // 6 + 1): (1, f"the source is larger than {MAX_SOURCE_BYTES} bytes"),
}

LOAD_REFUSED = {  # refused by the load, after the policy: (line, message)
    "x = 1 / 0": (1, "the module body failed: line 1: ZeroDivisionError: division by zero"),
    "\nx = __import__('os')": (2, "the module body failed: line 2: ImportError: contracts may not import 'os'"),
    "x = open('/etc/passwd')": (1, "the module body failed: line 1: ContractError: open() is not available to "
                                   "contracts"),
    "x = exec('import os')": (1, "the module body failed: line 1: ImportError: contracts may not import 'os'"),
}
NOT_ONE_CLASS = {  # whole modules
    "no class": ("x = 1", "policy: a contract module defines exactly one Contract class"),
    "two classes": (CONTRACT + CONTRACT.replace("class C", "class D"),
                    "policy: a contract module defines exactly one Contract class"),
    "two constructors": (CONTRACT + "\n    @constructor\n    def again(self, ctx):\n        pass\n",
                         "policy: a contract has at most one @constructor"),
}

ALLOWED = [  # refused under RestrictedPython; plain Python in the VM
    "x = 1.5", "x = 2j", "x = 1 / 2", "x = ().__class__", "_y = 1", "def _f():\n    pass", "def f(_a):\n    pass",
    "def f():\n    yield 1", "async def f():\n    pass", "x = [y := 1]", "match 1:\n    case 1:\n        pass",
    "try:\n    pass\nexcept:\n    pass", "try:\n    pass\nexcept BaseException:\n    pass",
    "try:\n    pass\nfinally:\n    pass", "x = f'{1:>99}'", "x = f'{1!a}'", "def evil(f):\n    return f\n@evil\ndef g():\n"
    "    pass", "class M(type):\n    pass\nclass A(metaclass=M):\n    pass", "def f():\n    class A:\n        pass",
    "x = eval", "x = exec", "x = open", "x = getattr", "x = type", "x = hash('a')", "x = id", "x = globals()",
    "x = vars()", "\u0430 = 1", "x = ...", "x = 1 < 2 < 3", "x = lambda: (yield)", "class W:\n    def __enter__(self):"
    "\n        return self\n    def __exit__(self, *a):\n        pass\nwith W() as w:\n    pass",
    "import math", "import json as j", "from itertools import chain as c", "from typing import Any",
    "from phala.contracts.sdk import Mapping, Record", "x = " + "(" * MAX_NESTING + "1" + ")" * MAX_NESTING,
]


@pytest.fixture(scope="module")
def executor():
    with Executor() as ex:
        yield ex


@pytest.mark.parametrize("source", sorted(REFUSED), ids=lambda s: s[:40])
def test_refused_by_the_policy_with_the_line(executor, source):
    line, reason = REFUSED[source]
    loaded = executor.check(source + "\n" + CONTRACT)
    assert (loaded.status, loaded.line, loaded.message) == (p.REFUSED, line, f"policy: line {line}: {reason}"[:1000])
    assert loaded.interface == b""


@pytest.mark.parametrize("source", sorted(LOAD_REFUSED))
def test_refused_by_the_load_with_the_line(executor, source):
    line, message = LOAD_REFUSED[source]
    loaded = executor.check(source + "\n" + CONTRACT)
    assert (loaded.status, loaded.line, loaded.message) == (p.REFUSED, line, message)


@pytest.mark.parametrize("name", sorted(NOT_ONE_CLASS))
def test_a_module_defines_one_contract_class(executor, name):
    source, message = NOT_ONE_CLASS[name]
    assert (executor.check(source).status, executor.check(source).message) == (p.REFUSED, message)


@pytest.mark.parametrize("source", ALLOWED, ids=lambda s: s[:40])
def test_allowed(executor, source):
    loaded = executor.check(source + "\n" + CONTRACT)
    assert (loaded.status, loaded.message) == (p.OK, "")


def test_the_check_keeps_nothing_and_installs_nothing(executor):
    assert executor.check(CONTRACT).status == p.OK
    outcomes, _ = executor.run(b"\x01" * 32, [])
    assert outcomes == []
    contract = b"\x07" * 32
    assert executor.install(contract, CONTRACT).status == p.OK
    refused = executor.check("import os\n" + CONTRACT)
    assert refused.status == p.REFUSED
    assert executor.install(contract, CONTRACT).status == p.OK  # the installed contract is untouched


def test_a_deeply_nested_expression_is_refused_by_the_policy(executor):
    loaded = executor.check("y = " + "+".join(["1"] * 5000) + "\n" + CONTRACT)
    assert loaded.status == p.REFUSED and loaded.message.startswith("policy: line 1: "), loaded.message
