"""Escapes through objects: format strings, exceptions and their tracebacks, decorators,
metaclasses and class keywords, descriptors and dunder methods, pickling, contract objects
that would have host code run their ``__repr__``/``__eq__``/``__hash__``/``__iter__``...,
instantiating the contract, and writing to SDK objects and the context's private fields.

In the VM all of this is ordinary Python inside the instance: dunders, metaclasses and
decorators run, a repr shows an address in the VM's own memory, the context can be
rewritten (it is the call's own view). What crosses to the host is only the encoded plain
outcome, so no contract object ever reaches host code: returning, storing, emitting or
sending one is an error of the call. Each case ends exactly as stated, the same on two
executors, and reaches no canary.
"""

from __future__ import annotations

import pickle

import pytest

from phala.contracts import protocol as p
from phala.contracts.vm.engine import MEMORY_LIMIT
from phala.core.gas import COMMAND_GAS

from .canaries import ATTACKER, LOAD, POLICY, Escape, call, ids, run, source

FORMAT = [
    Escape("str-format-attribute", p.OK, "", "return '{0.__class__.__base__}'.format(ctx)", value="<class 'object'>"),
    Escape("str-format-via-builtin", p.ERROR, "AttributeError: 'Context' object has no attribute '_random'", "return str.format('{0._random}', ctx)"),
    Escape("format-map", p.ERROR, "AttributeError: 'Context' object has no attribute '_random'", "return '{c._random}'.format_map({'c': ctx})"),
    Escape("format-builtin", p.OK, "'<phala.contracts.sdk.Context object at 0x", "return format(ctx, '')"),
    Escape("percent-format", p.OK, "'<phala.contracts.sdk.Context object at 0x", "return '%r' % (ctx,)"),
    Escape("percent-format-bytes", p.OK, "", "return b'%s' % (b'x',)", value=b'x'),
    Escape("percent-format-inplace", p.OK, "'<phala.contracts.sdk.Context object at 0x", "s = '%r'\ns %= (ctx,)\nreturn s"),
    Escape("fstring-format-spec", p.ERROR, "TypeError: unsupported format string passed to Context.__format__", "return f'{ctx:>{10 ** 9}}'"),
    Escape("fstring-ascii-conversion", p.OK, "'<phala.contracts.sdk.Context object at 0x", "return f'{ctx!a}'"),
    Escape("fstring-of-context", p.OK, "'<phala.contracts.sdk.Context object at 0x", "return f'{ctx}'"),
    Escape("fstring-repr-of-method", p.OK, "'<bound method Context.emit of <phala.contracts.sdk.Context object at 0x", "return f'{ctx.emit!r}'"),
    Escape("string-formatter", p.OK, "", module="from string import Formatter", value=None),
    Escape("str-of-contract", p.OK, "'<contract.Attacker object at 0x", "return str(self)"),
    Escape("repr-of-context", p.OK, "'<phala.contracts.sdk.Context object at 0x", "return repr(ctx)"),
]

EXCEPTIONS = [
    Escape("traceback-attribute", p.ERROR, "PlainValueError: ['__builtins__']['__loader__'] is a type, not a plain value", "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return e.__traceback__.tb_frame.f_globals"),
    Escape("with-traceback", p.ERROR, "PlainValueError: value is a ZeroDivisionError, not a plain value", "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return e.with_traceback(None)"),
    Escape("exception-context", p.OK, "", "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return e.__context__", value=None),
    Escape("catch-base-exception", p.OK, "", "try:\n    pass\nexcept BaseException:\n    pass", value=None),
    Escape("catch-out-of-gas", p.OK, "", "try:\n    pass\nexcept OutOfGas:\n    pass", value=None),
    Escape("catch-sandbox-violation", p.OK, "", "try:\n    pass\nexcept (ValueError, SandboxViolation):\n    pass", value=None),
    Escape("bare-except", p.OK, "", "try:\n    pass\nexcept:\n    pass", value=None),
    Escape("except-star-group", POLICY, "syntax error: 'break', 'continue' and 'return' cannot appear in an except* block", "try:\n    pass\nexcept* ValueError as g:\n    return g.exceptions", line=4),
    Escape("finally-sees-out-of-gas", p.OK, "", "try:\n    pass\nfinally:\n    self.loot = 1", value=None),
    Escape("swallow-out-of-gas", p.OUT_OF_GAS, "out of gas", "while True:\n    try:\n        while True:\n            pass\n    except Exception:\n        pass"),
    Escape("swallow-sandbox-violation", p.OK, "", "try:\n    return ctx.events\nexcept Exception:\n    return 'swallowed'", value=[]),
    Escape("swallow-recursion-error", p.OK, "", "f = lambda n: f(n + 1)\ntry:\n    f(0)\nexcept Exception:\n    return 'swallowed'", value="swallowed"),
    Escape("raise-fake-out-of-gas", p.ERROR, "NameError: name 'OutOfGas' is not defined", "raise OutOfGas('fake')"),
    Escape("raise-system-exit", p.ERROR, "SystemExit: 0", "raise SystemExit(0)"),
    Escape("raise-keyboard-interrupt", p.ERROR, "KeyboardInterrupt: ", "raise KeyboardInterrupt"),
    Escape("raise-generator-exit", p.ERROR, "GeneratorExit: ", "raise GeneratorExit"),
    Escape("raise-contract-class", p.ERROR, "TypeError: exceptions must derive from BaseException", "raise Attacker"),
    Escape("args-carry-contract-object", p.ERROR, "ContractError: <contract.Attacker object at 0x", "raise ContractError(self)"),
    Escape("args-carry-function-address", p.ERROR, "ValueError: <function Attacker.attack.<locals>.<lambda> at 0x", "raise ValueError(lambda: 0)"),
    Escape("args-carry-deep-list", p.OUT_OF_GAS, "out of gas", "x = []\nfor i in range(20000):\n    x = [x]\nraise ValueError(x)"),
    Escape("args-carry-unprintable-int", p.ERROR, "ValueError: <the message cannot be shown>", "raise ValueError(2 ** 20000)"),
    Escape("str-of-caught-exception", p.OK, "", "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return str(e)", value="division by zero"),
]

DECORATORS = [
    Escape("custom-decorator", p.OK, "", module="def evil(f):\n    return f\n", klass="@evil\ndef x(self, ctx):\n    pass\n", value=None),
    Escape("decorator-returning-builtin", LOAD, "the module body failed: line 10: TypeError: object of type 'function' has no len()", klass="@len\ndef x(self, ctx):\n    pass\n"),
    Escape("decorator-expression", p.OK, "", klass="@(lambda f: f)\ndef x(self, ctx):\n    pass\n", value=None),
    Escape("decorator-attribute", LOAD, "the module body failed: line 10: AttributeError: 'function' object has no attribute 'x'", klass="@command.x\ndef x(self, ctx):\n    pass\n"),
    Escape("class-decorator", LOAD, "the module body failed: line 7: ContractError: @command applies to a method, once", module="@command\nclass Other(Contract):\n    pass\n"),
    Escape("sdk-decorator-on-builtin", LOAD, "the module body failed: line 10: ContractError: @command applies to a method, once", klass="x = command(len)\n"),
    Escape("sdk-decorator-on-sdk-class", p.ERROR, "ContractError: @command applies to a method, once", "command(Contract)"),
    Escape("sdk-decorator-on-bound-method", p.ERROR, "ContractError: @query applies to a method, once", "query(ctx.emit)"),
    Escape("sdk-decorator-twice", LOAD, "the module body failed: line 10: ContractError: @command applies to a method, once", klass="@command\n@command\ndef x(self, ctx):\n    pass\n"),
]

METACLASSES = [
    Escape("metaclass-keyword", LOAD, "the module body failed: line 7: TypeError: len() takes exactly one argument (3 given)", module="class Other(Contract, metaclass=len):\n    pass\n"),
    Escape("class-keyword", LOAD, "the module body failed: line 7: TypeError: Other.__init_subclass__() takes no keyword arguments", module="class Other(Contract, extra=1):\n    pass\n"),
    Escape("metaclass-global", p.OK, "", module="__metaclass__ = len", value=None),
    Escape("exception-subclass", p.OK, "", module="class Boom(Exception):\n    pass\n", value=None),
    Escape("contract-error-mixin", LOAD, "policy: a contract module defines exactly one Contract class", module="class Mixed(Contract, ContractError):\n    pass\n"),
    Escape("baseless-class", p.OK, "", module="class Plain:\n    pass\n", value=None),
    Escape("computed-base", LOAD, "policy: a contract module defines exactly one Contract class", module="class Other([Contract][0]):\n    pass\n"),
    Escape("starred-bases", LOAD, "policy: a contract module defines exactly one Contract class", module="BASES = [Contract]\nclass Other(*BASES):\n    pass\n"),
    Escape("class-in-method", p.OK, "", "class Inner(Contract):\n    pass", value=None),
    Escape("instantiate-contract", p.ERROR, "PlainValueError: value is a Attacker, not a plain value", "return Attacker()"),
    Escape("instantiate-sdk-contract", p.ERROR, "PlainValueError: value is a Contract, not a plain value", "return Contract()"),
    Escape("patch-the-class", p.OK, "", "Attacker.peek = lambda s, c: 1", value=None),
]

DESCRIPTORS = [
    Escape("property", p.OK, "", klass="x = property(len)\n", value=None),
    Escape("classmethod", p.OK, "", klass="x = classmethod(len)\n", value=None),
    Escape("staticmethod", p.OK, "", klass="x = staticmethod(len)\n", value=None),
    Escape("dunder-get", p.OK, "", klass="def __get__(self, o, t):\n    pass\n", value=None),
    Escape("dunder-set-name", p.OK, "", klass="def __set_name__(self, o, n):\n    pass\n", value=None),
    Escape("dunder-getattribute", p.OK, "", klass="def __getattribute__(self, n):\n    pass\n", value=None),
    Escape("dunder-init-subclass", p.OK, "", klass="def __init_subclass__(cls):\n    pass\n", value=None),
    Escape("dunder-by-assignment", p.OK, "", klass="__eq__ = len\n", value=None),
    Escape("dunder-by-locals", p.OK, "", klass="locals()['__eq__'] = len\n", value=None),
]

HOST_CODE = [
    Escape("dunder-repr", p.OK, "", klass="def __repr__(self):\n    return 'x'\n", value=None),
    Escape("dunder-eq", p.OK, "", klass="def __eq__(self, o):\n    return True\n", value=None),
    Escape("dunder-hash", p.OK, "", klass="def __hash__(self):\n    return 0\n", value=None),
    Escape("dunder-iter", p.OK, "", klass="def __iter__(self):\n    return self\n", value=None),
    Escape("dunder-len", p.OK, "", klass="def __len__(self):\n    return 1\n", value=None),
    Escape("dunder-index", p.OK, "", klass="def __index__(self):\n    return 1\n", value=None),
    Escape("dunder-del", p.OK, "", klass="def __del__(self):\n    pass\n", value=None),
    Escape("return-contract-object", p.ERROR, "PlainValueError: value is a Attacker, not a plain value", "return self"),
    Escape("emit-contract-object", p.ERROR, "PlainValueError: [1] is a Attacker, not a plain value", "ctx.emit(self)"),
    Escape("send-contract-object-to-victim", p.ERROR, "PlainValueError: [1] is a Attacker, not a plain value", "ctx.send(VICTIM, self)"),
    Escape("store-contract-object", p.ERROR, "PlainValueError: value is a Attacker, not a plain value", "self.loot = [1, self][1]"),
    Escape("store-context", p.ERROR, "PlainValueError: value is a Context, not a plain value", "self.loot = ctx"),
    Escape("store-set", p.ERROR, "PlainValueError: value is a set, not a plain value", "self.loot = {1, 2}"),
    Escape("store-range", p.ERROR, "PlainValueError: value is a range, not a plain value", "self.loot = range(3)"),
    Escape("store-function", p.ERROR, "PlainValueError: [0] is a function, not a plain value", "self.loot = [lambda: 0]"),
    Escape("dict-with-object-key", p.ERROR, "PlainValueError: value has a key of type Attacker", "return {self: 1}"),
    Escape("dict-key-by-assignment", p.ERROR, "PlainValueError: value has a key of type Context", "d = {}\nd[ctx] = 1\nreturn d"),
    Escape("dict-comprehension-object-key", p.ERROR, "PlainValueError: value has a key of type function", "return {f: 1 for f in [lambda: 0]}"),
    Escape("set-of-functions", p.ERROR, "PlainValueError: value is a set, not a plain value", "return {len, sorted}"),
    Escape("set-of-lambdas-unpacked", p.OUT_OF_GAS, "out of gas", "fs = [(lambda: 0) for i in range(300)]\nreturn [fs.index(f) for f in list({*fs})]"),
    Escape("set-comprehension-of-methods", p.OK, "", "return len({m for m in [self.attack, self.init]})", value=2),
    Escape("set-builtin-of-functions", p.OK, "", "return len(set([lambda: 0]))", value=1),
    Escape("dict-view-union", p.ERROR, "] is a function, not a plain value",  # its place in the set: its address
           "return list({1: 2}.keys() | [lambda: 0])"),
    Escape("lookup-by-object", p.ERROR, "KeyError: <contract.Attacker object at 0x", "return {}[self]"),
    Escape("get-by-object", p.OK, "", "return {}.get(self)", value=None),
    Escape("sorted-key-returns-object", p.ERROR, "TypeError: '<' not supported between instances of 'Attacker' and 'Attacker'", "return sorted([2, 1], key=lambda v: self)"),
    Escape("sorted-objects", p.ERROR, "TypeError: '<' not supported between instances of 'function' and 'function'", "return sorted([lambda: 0, lambda: 1])"),
    Escape("max-with-key-object", p.ERROR, "TypeError: '>' not supported between instances of 'Context' and 'Context'", "return max([1, 2], key=lambda v: ctx)"),
    Escape("compare-objects", p.OK, "", "return self == self", value=True),
    Escape("contains-object", p.OK, "", "f = lambda: 0\nreturn f in [f]", value=True),
    Escape("index-of-object", p.OK, "", "f = lambda: 0\nreturn [f].index(f)", value=0),
    Escape("len-of-object", p.ERROR, "TypeError: object of type 'Attacker' has no len()", "return len(self)"),
    Escape("iterate-object", p.ERROR, "TypeError: 'Attacker' object is not iterable", "return [x for x in self]"),
    Escape("object-as-index", p.ERROR, "TypeError: list indices must be integers or slices, not Attacker", "return [1, 2][self]"),
]

SDK_OBJECTS = [
    Escape("write-sender", p.OK, "", "ctx.sender = VICTIM", value=None),
    Escape("delete-sender", p.OK, "", "del ctx.sender", value=None),
    Escape("write-block-number", p.OK, "", "ctx.block_number += 1", value=None),
    Escape("context-private-random", p.ERROR, "AttributeError: 'Context' object has no attribute '_random'", "return ctx._random.seed"),
    Escape("context-private-read-only", p.OK, "", "ctx._read_only = False", value=None),
    Escape("context-events-list", p.ERROR, "TypeError: can't concat dict to bytes", "ctx.events.append({'forged': True})"),
    Escape("context-messages-list", p.OK, "", "return ctx.messages", value=[]),
    Escape("context-public-set", p.ERROR, "AttributeError: 'Context' object has no attribute 'public'", "return ctx.public"),
    Escape("context-dict", p.OK, "'_read_only': False", "return ctx.__dict__", value=dict),
    Escape("write-sdk-method", p.ERROR, "AttributeError: 'method' object has no attribute 'x' and no __dict__ for setting new attributes", "ctx.emit.x = 1"),
    Escape("write-sdk-class", p.OK, "", "Contract.new = 1", value=None),
    Escape("write-sdk-error-class", p.OK, "", "ContractError.args = 1", value=None),
    Escape("write-sdk-account-id", p.OK, "", "AccountId.x = 1", value=None),
    Escape("write-builtin", p.ERROR, "AttributeError: 'builtin_function_or_method' object has no attribute 'func' and no __dict__ for setting new attributes", "len.func = sorted"),
    Escape("write-string", p.ERROR, "AttributeError: 'str' object has no attribute 'x' and no __dict__ for setting new attributes", "CANARY_FILE.x = 1"),
    Escape("write-tuple-item", p.ERROR, "TypeError: 'tuple' object does not support item assignment", "t = (1,)\nt[0] = 2"),
    Escape("read-builtin-real-type", p.ERROR, "AttributeError: type object 'list' has no attribute 'real'", "return list.real"),
    Escape("generic-alias-constructor", p.OK, "", "return list[int](range(10))", value=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    Escape("generic-alias-set", p.OK, "", "return len(set[int]([lambda: 0]))", value=1),
    Escape("generic-alias-dict", p.ERROR, "PlainValueError: value has a key of type Context", "return dict[int, int]([(ctx, 1)])"),
]

PICKLING = [
    Escape("import-pickle", POLICY, "import of 'pickle': contracts may import", "import pickle\nreturn pickle.dumps(ctx)"),
    Escape("from-pickle", POLICY, "import from 'pickle': contracts may import", module="from pickle import loads"),
    Escape("import-marshal", POLICY, "import of 'marshal': contracts may import", "import marshal\nreturn marshal.loads(b'')"),
    Escape("copyreg", POLICY, "import of 'copyreg': contracts may import", module="import copyreg"),
    Escape("dunder-reduce", p.OK, "", klass="def __reduce__(self):\n    return (len, ('x',))\n", value=None),
    Escape("dunder-reduce-ex", p.OK, "", klass="def __reduce_ex__(self, v):\n    return (len, ('x',))\n", value=None),
    Escape("dunder-setstate", p.OK, "", klass="def __setstate__(self, s):\n    pass\n", value=None),
]

ALL = FORMAT + EXCEPTIONS + DECORATORS + METACLASSES + DESCRIPTORS + HOST_CODE + SDK_OBJECTS + PICKLING


@pytest.mark.parametrize("escape", ALL, ids=ids(ALL))
def test_escape(canaries, escape):
    run(canaries, escape)


SWALLOW = "keep = []\ntry:\n    while True:\n        keep.append(bytes(100 << 20))\nexcept Exception:\n    return len(keep)"


def test_the_memory_cap_is_a_memory_error_the_contract_may_catch(canaries):
    """The old memory watchdog (the executor's address space) was no outcome at all. Now
    the instance's linear memory is capped (``engine.MEMORY_LIMIT``): passing it raises
    MemoryError inside the call, at the same allocation on every executor, so catching it
    is deterministic too; uncaught it is the call's limit."""
    gas = 400_000_000  # filling the blocks is metered, about a unit a byte
    caught = canaries.attempt(source(SWALLOW, canaries=canaries), gas)
    blocks = (MEMORY_LIMIT - (16 << 20)) // (100 << 20)  # the runtime itself takes about 13 MiB
    assert (caught.status, caught.message, caught.decoded()) == (p.OK, "", blocks)
    uncaught = canaries.attempt(source(SWALLOW.replace("except Exception", "except KeyError"), canaries=canaries),
                                gas)
    assert (uncaught.status, uncaught.message) == (p.LIMIT, "MemoryError: ")
    assert max(caught.gas_used, uncaught.gas_used) < gas


def _attack_over(canaries, entries, args=None):
    """Install the attacker (``return self.loot``), construct it, give it ``entries`` of
    storage as a worker restoring it would, and attack: both executors' outcomes."""
    outcomes = []
    for host in canaries.attackers:
        ex = host.executor
        ex.remove(ATTACKER)
        assert ex.install(ATTACKER, source("return self.loot", canaries=canaries)).status == p.OK
        assert ex.run(ATTACKER, [call(p.CONSTRUCTOR, "init", [], ATTACKER)])[0][0].status == p.OK
        ex.restore(ATTACKER, entries)
        attack = call(p.COMMAND, "attack", [], ATTACKER, COMMAND_GAS, 2)
        if args is not None:
            attack = p.Call(attack.kind, attack.method, args, attack.context, attack.gas_limit)
        outcomes.append(ex.run(ATTACKER, [attack])[0][0])
    assert outcomes[0] == outcomes[1]
    canaries.check([])
    return outcomes[0]


def test_a_pickle_offered_as_storage_is_refused(canaries):
    """State crosses as canonical plain values, never as a pickle: a pickled object in the
    contract's storage fails the call that reads it, and nothing in it runs."""
    outcome = _attack_over(canaries, [(b"\x00loot", pickle.dumps({"loot": "x"}))])
    assert (outcome.status, outcome.message) == (p.ERROR, "DecodeError: plain value: unknown tag 128")


def test_storage_that_is_not_canonical_is_refused_when_read(canaries):
    outcome = _attack_over(canaries, [(b"\x00loot", bytes.fromhex("030400"))])  # 0 written with a byte
    assert (outcome.status, outcome.message) == (p.ERROR, "DecodeError: plain value: non-canonical int")
    ignored = _attack_over(canaries, [(b"\xffnot a key the SDK makes", b"\x80")])  # never read
    assert (ignored.status, ignored.value) == (p.OK, b"\x00")  # the constructor's None


def test_pickled_arguments_are_refused(canaries):
    outcome = _attack_over(canaries, [], args=pickle.dumps(["x"]))
    assert (outcome.status, outcome.message) == (p.ERROR, "DecodeError: plain value: unknown tag 128")
