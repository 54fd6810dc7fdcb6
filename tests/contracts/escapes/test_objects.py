"""Escapes through objects: format strings, exceptions and their tracebacks, decorators,
metaclasses and class keywords, descriptors and dunder methods, pickling, contract objects
that would have host code run their ``__repr__``/``__eq__``/``__hash__``/``__iter__``…,
instantiating the contract, and writing to SDK objects and the context's private fields."""

from __future__ import annotations

import pickle

import pytest

from phala.contracts import protocol as p

from .canaries import CTX, GAS, POLICY, SANDBOX, Escape, ids, run, source

FORMAT = [
    Escape("str-format-attribute", POLICY, "attribute 'format' is a forbidden builtin",
           "return '{0.__class__.__base__}'.format(ctx)"),
    Escape("str-format-via-builtin", POLICY, "attribute 'format' is a forbidden builtin",
           "return str.format('{0._random}', ctx)"),
    Escape("format-map", SANDBOX, "str.format_map is not available to contracts",
           "return '{c._random}'.format_map({'c': ctx})"),
    Escape("format-builtin", POLICY, "name 'format' is a forbidden builtin", "return format(ctx, '')"),
    Escape("percent-format", SANDBOX, "'%' formatting is not allowed", "return '%r' % (ctx,)"),
    Escape("percent-format-bytes", SANDBOX, "'%' formatting is not allowed", "return b'%s' % (b'x',)"),
    Escape("percent-format-inplace", SANDBOX, "'%' formatting is not allowed", "s = '%r'\ns %= (ctx,)\nreturn s"),
    Escape("fstring-format-spec", POLICY, "f-string format specs are not allowed", "return f'{ctx:>{10 ** 9}}'"),
    Escape("fstring-ascii-conversion", POLICY, "only !s and !r conversions are allowed", "return f'{ctx!a}'"),
    Escape("fstring-of-context", SANDBOX, "format of a Context: only plain values can be formated", "return f'{ctx}'"),
    Escape("fstring-repr-of-method", SANDBOX, "format of a method", "return f'{ctx.emit!r}'"),
    Escape("string-formatter", POLICY, "only 'from phala.contracts.sdk import …' is allowed",
           module="from string import Formatter"),
    Escape("str-of-contract", SANDBOX, "format of a Attacker", "return str(self)"),
    Escape("repr-of-context", SANDBOX, "format of a Context", "return repr(ctx)"),
]

EXCEPTIONS = [
    Escape("traceback-attribute", POLICY, "attribute '__traceback__' starts with '_'",
           "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return e.__traceback__.tb_frame.f_globals"),
    Escape("with-traceback", SANDBOX, "attribute 'with_traceback' of a ZeroDivisionError is not accessible",
           "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return e.with_traceback(None)"),
    Escape("exception-context", POLICY, "attribute '__context__' starts with '_'",
           "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return e.__context__"),
    Escape("catch-base-exception", POLICY, "only these exceptions can be caught",
           "try:\n    pass\nexcept BaseException:\n    pass"),
    Escape("catch-out-of-gas", POLICY, "only these exceptions can be caught",
           "try:\n    pass\nexcept OutOfGas:\n    pass"),
    Escape("catch-sandbox-violation", POLICY, "only these exceptions can be caught",
           "try:\n    pass\nexcept (ValueError, SandboxViolation):\n    pass"),
    Escape("bare-except", POLICY, "a bare 'except:' is not allowed", "try:\n    pass\nexcept:\n    pass"),
    Escape("except-star-group", POLICY, "TryStar is not allowed",
           "try:\n    pass\nexcept* ValueError as g:\n    return g.exceptions"),
    Escape("finally-sees-out-of-gas", POLICY, "'finally' is not allowed",
           "try:\n    pass\nfinally:\n    self.loot = 1"),
    Escape("swallow-out-of-gas", p.OUT_OF_GAS, "out of gas: the limit is 1000000",
           "while True:\n    try:\n        while True:\n            pass\n    except Exception:\n        pass"),
    Escape("swallow-sandbox-violation", SANDBOX, "attribute 'events' of a Context is not accessible",
           "try:\n    return ctx.events\nexcept Exception:\n    return 'swallowed'"),
    Escape("swallow-recursion-error", p.LIMIT, "RecursionError: maximum recursion depth exceeded",
           "f = lambda n: f(n + 1)\ntry:\n    f(0)\nexcept Exception:\n    return 'swallowed'"),
    Escape("raise-fake-out-of-gas", p.ERROR, "NameError: name 'OutOfGas' is not defined", "raise OutOfGas('fake')"),
    Escape("raise-system-exit", POLICY, "name 'SystemExit' is a forbidden builtin", "raise SystemExit(0)"),
    Escape("raise-keyboard-interrupt", POLICY, "name 'KeyboardInterrupt' is a forbidden builtin",
           "raise KeyboardInterrupt"),
    Escape("raise-generator-exit", POLICY, "name 'GeneratorExit' is a forbidden builtin", "raise GeneratorExit"),
    Escape("raise-contract-class", p.ERROR, "TypeError: exceptions must derive from BaseException", "raise Attacker"),
    Escape("args-carry-contract-object", p.ERROR, "ContractError: <Attacker>", "raise ContractError(self)"),
    Escape("args-carry-function-address", p.ERROR, "ValueError: <function>", "raise ValueError(lambda: 0)"),
    Escape("args-carry-deep-list", p.ERROR, "ValueError: <list>",
           "x = []\nfor i in range(20000):\n    x = [x]\nraise ValueError(x)"),
    Escape("args-carry-unprintable-int", p.ERROR, "ValueError: <int>", "raise ValueError(2 ** 20000)"),
    Escape("str-of-caught-exception", SANDBOX, "format of a ZeroDivisionError",
           "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return str(e)"),
]

DECORATORS = [
    Escape("custom-decorator", POLICY, "only the SDK's decorators are allowed",
           module="def evil(f):\n    return f\n", klass="@evil\ndef x(self, ctx):\n    pass\n"),
    Escape("decorator-returning-builtin", POLICY, "only the SDK's decorators are allowed",
           klass="@len\ndef x(self, ctx):\n    pass\n"),
    Escape("decorator-expression", POLICY, "only the SDK's decorators are allowed",
           klass="@(lambda f: f)\ndef x(self, ctx):\n    pass\n"),
    Escape("decorator-attribute", POLICY, "only the SDK's decorators are allowed",
           klass="@command.x\ndef x(self, ctx):\n    pass\n"),
    Escape("class-decorator", POLICY, "class decorators are not allowed",
           module="@command\nclass Other(Contract):\n    pass\n"),
    Escape("sdk-decorator-on-builtin", SANDBOX, "@command applies to a method, once", klass="x = command(len)\n"),
    Escape("sdk-decorator-on-sdk-class", SANDBOX, "@command applies to a method, once", "command(Contract)"),
    Escape("sdk-decorator-on-bound-method", SANDBOX, "@query applies to a method, once", "query(ctx.emit)"),
    Escape("sdk-decorator-twice", SANDBOX, "@command applies to a method, once",
           klass="@command\n@command\ndef x(self, ctx):\n    pass\n"),
]

METACLASSES = [
    Escape("metaclass-keyword", POLICY, "class keywords (such as metaclass=) are not allowed",
           module="class Other(Contract, metaclass=len):\n    pass\n"),
    Escape("class-keyword", POLICY, "class keywords (such as metaclass=) are not allowed",
           module="class Other(Contract, extra=1):\n    pass\n"),
    Escape("metaclass-global", POLICY, "name '__metaclass__' starts with '_'", module="__metaclass__ = len"),
    Escape("exception-subclass", SANDBOX, "class Boom may derive only from the SDK's Contract",
           module="class Boom(Exception):\n    pass\n"),
    Escape("contract-error-mixin", SANDBOX, "class Mixed may derive only from the SDK's Contract",
           module="class Mixed(Contract, ContractError):\n    pass\n"),
    Escape("baseless-class", SANDBOX, "class Plain must derive from the SDK's Contract", module="class Plain:\n    pass\n"),
    Escape("computed-base", POLICY, "a base class must be a plain name",
           module="class Other([Contract][0]):\n    pass\n"),
    Escape("starred-bases", POLICY, "a base class must be a plain name",
           module="BASES = [Contract]\nclass Other(*BASES):\n    pass\n"),
    Escape("class-in-method", POLICY, "classes are allowed only at the top level",
           "class Inner(Contract):\n    pass"),
    Escape("instantiate-contract", SANDBOX, "contracts are instantiated by the runtime, not by contract code",
           "return Attacker()"),
    Escape("instantiate-sdk-contract", SANDBOX, "contracts are instantiated by the runtime", "return Contract()"),
    Escape("patch-the-class", SANDBOX, "a type cannot be modified by contract code",
           "Attacker.peek = lambda s, c: 1"),
]

DESCRIPTORS = [
    Escape("property", POLICY, "name 'property' is a forbidden builtin", klass="x = property(len)\n"),
    Escape("classmethod", POLICY, "name 'classmethod' is a forbidden builtin", klass="x = classmethod(len)\n"),
    Escape("staticmethod", POLICY, "name 'staticmethod' is a forbidden builtin", klass="x = staticmethod(len)\n"),
    Escape("dunder-get", POLICY, "function '__get__' starts with '_'", klass="def __get__(self, o, t):\n    pass\n"),
    Escape("dunder-set-name", POLICY, "function '__set_name__' starts with '_'",
           klass="def __set_name__(self, o, n):\n    pass\n"),
    Escape("dunder-getattribute", POLICY, "function '__getattribute__' starts with '_'",
           klass="def __getattribute__(self, n):\n    pass\n"),
    Escape("dunder-init-subclass", POLICY, "function '__init_subclass__' starts with '_'",
           klass="def __init_subclass__(cls):\n    pass\n"),
    Escape("dunder-by-assignment", POLICY, "name '__eq__' starts with '_'", klass="__eq__ = len\n"),
    Escape("dunder-by-locals", POLICY, "name 'locals' is a forbidden builtin", klass="locals()['__eq__'] = len\n"),
]

HOST_CODE = [  # objects whose dunders would run in whatever host code touched them
    Escape("dunder-repr", POLICY, "function '__repr__' starts with '_'", klass="def __repr__(self):\n    return 'x'\n"),
    Escape("dunder-eq", POLICY, "function '__eq__' starts with '_'", klass="def __eq__(self, o):\n    return True\n"),
    Escape("dunder-hash", POLICY, "function '__hash__' starts with '_'", klass="def __hash__(self):\n    return 0\n"),
    Escape("dunder-iter", POLICY, "function '__iter__' starts with '_'", klass="def __iter__(self):\n    return self\n"),
    Escape("dunder-len", POLICY, "function '__len__' starts with '_'", klass="def __len__(self):\n    return 1\n"),
    Escape("dunder-index", POLICY, "function '__index__' starts with '_'", klass="def __index__(self):\n    return 1\n"),
    Escape("dunder-del", POLICY, "function '__del__' starts with '_'", klass="def __del__(self):\n    pass\n"),
    Escape("return-contract-object", p.ERROR, "not a plain value: value is a Attacker, not a plain value",
           "return self"),
    Escape("emit-contract-object", p.ERROR, "not a plain value: [1] is a Attacker", "ctx.emit(self)"),
    Escape("send-contract-object-to-victim", p.ERROR, "not a plain value: [1] is a Attacker", "ctx.send(VICTIM, self)"),
    Escape("store-contract-object", p.ERROR, "not a plain value: ['loot'] is a Attacker", "self.loot = [1, self][1]"),
    Escape("store-context", p.ERROR, "not a plain value: ['loot'] is a Context", "self.loot = ctx"),
    Escape("store-set", p.ERROR, "not a plain value: ['loot'] is a set", "self.loot = {1, 2}"),
    Escape("store-range", p.ERROR, "not a plain value: ['loot'] is a range", "self.loot = range(3)"),
    Escape("store-function", p.ERROR, "not a plain value: ['loot'][0] is a function", "self.loot = [lambda: 0]"),
    Escape("dict-with-object-key", SANDBOX, "a set or dict key must be a plain value, not a Attacker",
           "return {self: 1}"),
    Escape("dict-key-by-assignment", SANDBOX, "a set or dict key must be a plain value, not a Context",
           "d = {}\nd[ctx] = 1\nreturn d"),
    Escape("dict-comprehension-object-key", SANDBOX, "a set or dict key must be a plain value, not a function",
           "return {f: 1 for f in [lambda: 0]}"),
    Escape("set-of-functions", SANDBOX, "a set or dict key must be a plain value, not a Builtin", "return {len, sorted}"),
    Escape("set-of-lambdas-unpacked", SANDBOX, "a set or dict key must be a plain value, not a function",
           "fs = [(lambda: 0) for i in range(300)]\nreturn [fs.index(f) for f in list({*fs})]"),
    Escape("set-comprehension-of-methods", SANDBOX, "a set or dict key must be a plain value, not a method",
           "return len({m for m in [self.attack, self.init]})"),
    Escape("set-builtin-of-functions", SANDBOX, "a set or dict key must be a plain value, not a function",
           "return len(set([lambda: 0]))"),
    Escape("dict-view-union", SANDBOX, "set operations on dict views are not allowed",
           "return list({1: 2}.keys() | [lambda: 0])"),
    Escape("lookup-by-object", SANDBOX, "a set or dict key must be a plain value, not a Attacker", "return {}[self]"),
    Escape("get-by-object", SANDBOX, "a set or dict key must be a plain value, not a Attacker", "return {}.get(self)"),
    Escape("sorted-key-returns-object", SANDBOX, "sort of a Attacker: only plain values can be sorted",
           "return sorted([2, 1], key=lambda v: self)"),
    Escape("sorted-objects", SANDBOX, "sort of a function", "return sorted([lambda: 0, lambda: 1])"),
    Escape("max-with-key-object", SANDBOX, "compar of a Context", "return max([1, 2], key=lambda v: ctx)"),
    Escape("compare-objects", SANDBOX, "compar of a Attacker: only plain values can be compared", "return self == self"),
    Escape("contains-object", SANDBOX, "compar of a function", "f = lambda: 0\nreturn f in [f]"),
    Escape("index-of-object", SANDBOX, "compar of a function", "f = lambda: 0\nreturn [f].index(f)"),
    Escape("len-of-object", p.ERROR, "TypeError: object of type 'Attacker' has no len()", "return len(self)"),
    Escape("iterate-object", p.ERROR, "TypeError: 'Attacker' object is not iterable", "return [x for x in self]"),
    Escape("object-as-index", p.ERROR, "TypeError: list indices must be integers or slices, not Attacker",
           "return [1, 2][self]"),
]

SDK_OBJECTS = [
    Escape("write-sender", SANDBOX, "a Context cannot be modified by contract code", "ctx.sender = VICTIM"),
    Escape("delete-sender", SANDBOX, "a Context cannot be modified by contract code", "del ctx.sender"),
    Escape("write-block-number", SANDBOX, "a Context cannot be modified", "ctx.block_number += 1"),
    Escape("context-private-random", POLICY, "attribute '_random' starts with '_'", "return ctx._random.seed"),
    Escape("context-private-read-only", POLICY, "attribute '_read_only' starts with '_'", "ctx._read_only = False"),
    Escape("context-events-list", SANDBOX, "attribute 'events' of a Context is not accessible",
           "ctx.events.append({'forged': True})"),
    Escape("context-messages-list", SANDBOX, "attribute 'messages' of a Context is not accessible",
           "return ctx.messages"),
    Escape("context-public-set", SANDBOX, "attribute 'public' of a Context is not accessible", "return ctx.public"),
    Escape("context-dict", POLICY, "attribute '__dict__' starts with '_'", "return ctx.__dict__"),
    Escape("write-sdk-method", SANDBOX, "a method cannot be modified", "ctx.emit.x = 1"),
    Escape("write-sdk-class", SANDBOX, "a type cannot be modified", "Contract.new = 1"),
    Escape("write-sdk-error-class", SANDBOX, "a type cannot be modified", "ContractError.args = 1"),
    Escape("write-sdk-account-id", SANDBOX, "a AccountIdType cannot be modified", "AccountId.x = 1"),
    Escape("write-builtin", SANDBOX, "a Builtin cannot be modified", "len.func = sorted"),
    Escape("write-string", SANDBOX, "a str cannot be modified", "CANARY_FILE.x = 1"),
    Escape("write-tuple-item", SANDBOX, "a tuple cannot be modified", "t = (1,)\nt[0] = 2"),
    Escape("read-builtin-real-type", SANDBOX, "attribute 'real' of a Builtin is not accessible", "return list.real"),
    Escape("generic-alias-constructor", SANDBOX, "is an annotation: call list(...) to make one",
           "return list[int](range(10))"),
    Escape("generic-alias-set", SANDBOX, "is an annotation: call set(...) to make one",
           "return len(set[int]([lambda: 0]))"),
    Escape("generic-alias-dict", SANDBOX, "is an annotation: call dict(...) to make one",
           "return dict[int, int]([(ctx, 1)])"),
]

PICKLING = [
    Escape("import-pickle", POLICY, "Import is not allowed", "import pickle\nreturn pickle.dumps(ctx)"),
    Escape("from-pickle", POLICY, "only 'from phala.contracts.sdk import …' is allowed", module="from pickle import loads"),
    Escape("import-marshal", POLICY, "Import is not allowed", "import marshal\nreturn marshal.loads(b'')"),
    Escape("copyreg", POLICY, "Import is not allowed", module="import copyreg"),
    Escape("dunder-reduce", POLICY, "function '__reduce__' starts with '_'",
           klass="def __reduce__(self):\n    return (len, ('x',))\n"),
    Escape("dunder-reduce-ex", POLICY, "function '__reduce_ex__' starts with '_'",
           klass="def __reduce_ex__(self, v):\n    return (len, ('x',))\n"),
    Escape("dunder-setstate", POLICY, "function '__setstate__' starts with '_'",
           klass="def __setstate__(self, s):\n    pass\n"),
]

ALL = FORMAT + EXCEPTIONS + DECORATORS + METACLASSES + DESCRIPTORS + HOST_CODE + SDK_OBJECTS + PICKLING


@pytest.mark.parametrize("escape", ALL, ids=ids(ALL))
def test_refused(canaries, escape):
    run(canaries, escape)


def test_swallowing_the_memory_watchdog_fails_and_records_nothing(canaries):
    """Running out of address space is not deterministic (where it happens depends on the
    process), so it is no outcome at all: catching the MemoryError does not help, the host
    kills the executor and raises the alarm, and the canaries are untouched."""
    body = "keep = []\ntry:\n    while True:\n        keep.append([0] * (1 << 24))\nexcept Exception:\n    return 'swallowed'"
    with pytest.raises(AssertionError, match="brought the executor down: the memory watchdog fired"):
        canaries.attempt(source(body, canaries=canaries), 10_000_000)
    canaries.check([])


def test_a_pickle_offered_as_state_is_refused(canaries):
    """The state crosses as canonical plain values, never as a pickle: a pickled object
    offered as a contract's state is refused (it used to kill the executor), and nothing in it
    runs."""
    blob = pickle.dumps({"loot": "x"})
    outcome = canaries.attempt(source("return 1", canaries=canaries), state=blob)
    assert outcome.status == p.REFUSED and outcome.message.startswith("bad state: plain value: unknown tag 128")


def test_state_that_is_not_a_dict_of_attributes_is_refused(canaries):
    outcome = canaries.attempt(source("return 1", canaries=canaries), state=bytes([6, 0]))  # an empty list
    assert (outcome.status, outcome.message) == (p.REFUSED, "bad state: not a dict of attributes")


def test_pickled_arguments_are_refused(canaries):
    assert canaries.attacker.load(source("return 1", canaries=canaries)).status == p.OK
    assert canaries.attacker.call(p.CONSTRUCTOR, "init", [], CTX, GAS).status == p.OK
    outcome = canaries.attacker.request(p.Call(p.COMMAND, "attack", pickle.dumps(["x"]), CTX, GAS))
    assert outcome.status == p.ERROR and outcome.message.startswith("DecodeError: plain value: unknown tag 128")
    canaries.check([outcome])
