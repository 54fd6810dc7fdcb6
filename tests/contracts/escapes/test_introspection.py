"""Escapes through introspection: class hierarchy walks, frames and generators, function
internals, the reflective builtins, imports and ``exec``, unicode look-alike names, each
aimed at the canaries (see :mod:`.canaries`).

Under RestrictedPython these were refused by name. In the VM only imports are refused (by
the policy, with the line); the rest is plain Python inside the instance: a hierarchy walk
reaches ``object.__subclasses__()``, a function its ``__globals__``, ``eval`` and ``exec``
run (with the contract's own builtins, whose ``open`` and ``__import__`` refuse), a frame's
``f_back`` is ``None`` at the call's edge. Each ends exactly as stated, the same on two
executors, and reaches no canary; returning a non-plain object is an error of the call.
"""

from __future__ import annotations

import pytest

from phala.contracts import protocol as p

from .canaries import POLICY, Escape, ids, run

HIERARCHY = [
    Escape("tuple-class-bases-subclasses", p.ERROR, "PlainValueError: [0] is a type, not a plain value", "return ().__class__.__bases__[0].__subclasses__()"),
    Escape("class-attribute", p.ERROR, "PlainValueError: value is a type, not a plain value", "return ''.__class__"),
    Escape("via-type", p.ERROR, "PlainValueError: value is a type, not a plain value", "return type(())"),
    Escape("via-type-bases", p.ERROR, "PlainValueError: [0] is a type, not a plain value", "return type(()).__bases__"),
    Escape("via-base", p.ERROR, "PlainValueError: value is a type, not a plain value", "return ContractError.__base__"),
    Escape("via-mro-dunder", p.ERROR, "AttributeError: __mro__", "return self.__mro__"),
    Escape("mro-of-builtin", p.ERROR, "PlainValueError: [0] is a type, not a plain value", "return int.mro()"),
    Escape("mro-of-sdk-class", p.ERROR, "PlainValueError: [0] is a type, not a plain value", "return Contract.mro()"),
    Escape("mro-of-contract", p.ERROR, "AttributeError: the contract has no field 'mro' (never assigned)", "return self.mro()"),
    Escape("subclasses-without-underscores", p.ERROR, "AttributeError: type object 'Exception' has no attribute 'subclasses'", "return Exception.subclasses()"),
    Escape("object-builtin", p.ERROR, "PlainValueError: value is a type, not a plain value", "return object"),
    Escape("super", p.ERROR, "PlainValueError: value is a super, not a plain value", "return super()"),
    Escape("builtin-wrapped-function", p.ERROR, "AttributeError: 'builtin_function_or_method' object has no attribute 'func'", "return len.func"),
    Escape("charged-method-internals", p.ERROR, "AttributeError: 'builtin_function_or_method' object has no attribute 'guards'", "return 'x'.upper.guards"),
]

FRAMES = [
    Escape("generator-gi-frame", p.ERROR, "AttributeError: 'NoneType' object has no attribute 'f_globals'", "g = (x for x in [1])\nreturn g.gi_frame.f_back.f_globals"),
    Escape("generator-gi-code", p.ERROR, "PlainValueError: value is a code, not a plain value", "g = (x for x in [1])\nreturn g.gi_code"),
    Escape("frame-f-back", p.ERROR, "AttributeError: 'Context' object has no attribute 'f_back'", "return ctx.f_back"),
    Escape("frame-f-globals", p.ERROR, "AttributeError: 'Context' object has no attribute 'f_globals'", "return ctx.f_globals"),
    Escape("frame-f-builtins", p.ERROR, "AttributeError: 'Context' object has no attribute 'f_builtins'", "return ctx.f_builtins"),
    Escape("coroutine-cr-frame", p.ERROR, "AttributeError: 'Context' object has no attribute 'cr_frame'", "return ctx.cr_frame"),
    Escape("traceback-tb-frame", p.ERROR, "AttributeError: 'ZeroDivisionError' object has no attribute 'tb_frame'", "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return e.tb_frame"),
    Escape("generator-yieldfrom", p.OK, "", "g = (x for x in [1])\nreturn g.gi_yieldfrom", value=None),
    Escape("generator-send", p.OK, "", "g = (x for x in [1])\nreturn g.send(None)", value=1),
    Escape("generator-throw", p.ERROR, "ValueError: ", "g = (x for x in [1])\nreturn g.throw(ValueError)"),
    Escape("next-on-generator", p.OK, "", "return next(x for x in [1])", value=1),
    Escape("sys-getframe", p.ERROR, "NameError: name 'sys' is not defined", "return sys._getframe(1).f_globals"),
    Escape("sys-modules", p.ERROR, "NameError: name 'sys' is not defined", "return sys.modules"),
    Escape("yield-generator", p.OK, "", klass="def gen(self):\n    yield 1\n", value=None),
    Escape("async-coroutine", p.OK, "", klass="async def co(self):\n    pass\n", value=None),
    Escape("await-in-genexp", p.ERROR, "PlainValueError: [0] is a async_generator, not a plain value", "return [(await x for x in [1])]"),
]

FUNCTIONS = [
    Escape("function-globals", p.ERROR, "PlainValueError: ['__loader__'] is a type, not a plain value", "f = lambda: 0\nreturn f.__globals__['__builtins__']"),
    Escape("function-code", p.ERROR, "PlainValueError: value is a code, not a plain value", "f = lambda: 0\nreturn f.__code__"),
    Escape("function-closure", p.ERROR, "PlainValueError: value is a Context, not a plain value", "x = ctx\nf = lambda: x\nreturn f.__closure__[0].cell_contents"),
    Escape("py2-func-globals", p.ERROR, "AttributeError: 'function' object has no attribute 'func_globals'", "f = lambda: 0\nreturn f.func_globals"),
    Escape("code-co-consts", p.ERROR, "AttributeError: 'function' object has no attribute 'co_code'", "f = lambda: 0\nreturn f.co_code"),
    Escape("method-func", p.ERROR, "PlainValueError: value is a function, not a plain value", "return self.attack.__func__"),
    Escape("py2-im-func", p.ERROR, "AttributeError: 'function' object has no attribute 'im_func'", "return self.attack.im_func"),
    Escape("bound-self-of-sdk", p.ERROR, "PlainValueError: value is a Context, not a plain value", "return ctx.emit.__self__"),
    Escape("sdk-method-defaults", p.OK, "", "return self.attack.phala_kind", value="command"),
    Escape("hook-by-name", p.ERROR, "NameError: name '_getattr_' is not defined", "return _getattr_(ctx, '_random')"),
]

REFLECTION = [
    Escape("getattr", p.ERROR, "AttributeError: 'Context' object has no attribute '_random'", "return getattr(ctx, '_random')"),
    Escape("setattr", p.OK, "", "setattr(ctx, 'sender', VICTIM)", value=None),
    Escape("delattr", p.OK, "", "delattr(ctx, 'sender')", value=None),
    Escape("hasattr", p.OK, "", "return hasattr(ctx, '_random')", value=False),
    Escape("vars", p.OK, "'contract_id': b'\\x02\\x02", "return vars(ctx)", value=dict),
    Escape("dir", p.OK, "'random_bytes', 'send', 'sender', 'timestamp']", "return dir(ctx)", value=list),
    Escape("globals", p.ERROR, "PlainValueError: ['__loader__'] is a type, not a plain value", "return globals()['__builtins__']"),
    Escape("locals", p.ERROR, "PlainValueError: ['self'] is a Attacker, not a plain value", "return locals()"),
    Escape("type-three-arguments", p.ERROR, "PlainValueError: value is a type, not a plain value", "return type('Evil', (Contract,), {'peek': lambda s: 1})"),
    Escape("object-new", p.ERROR, "PlainValueError: value is a Attacker, not a plain value", "return Attacker.__new__(Attacker)"),
    Escape("object-new-via-object", p.OK, "", "o = object\nreturn 1", value=1),
    Escape("id-address", p.OK, "", "return id(ctx)", value=int),  # an address in the VM's memory
    Escape("hash-address", p.OK, "", "return hash(self)", value=int),
    Escape("memoryview", p.ERROR, "PlainValueError: value is a memoryview, not a plain value", "return memoryview(b'x')"),
    Escape("callable-probe", p.OK, "", "return callable(ctx)", value=False),
]

IMPORTS = [
    Escape("import-os", POLICY, "import of 'os': contracts may import", module="import os"),
    Escape("import-socket-at-port", POLICY, "import of 'socket': contracts may import", "import socket\nsocket.create_connection(('127.0.0.1', CANARY_PORT))"),
    Escape("import-the-sdk-module", POLICY, "import of 'phala.contracts.sdk': contracts may import", module="import phala.contracts.sdk"),
    Escape("from-package-import-module", POLICY, "import from 'phala.contracts': contracts may import", module="from phala.contracts import sdk"),
    Escape("relative-import", POLICY, "relative imports are not allowed", module="from . import sdk"),
    Escape("future-import", POLICY, "import from '__future__': contracts may import", module="from __future__ import annotations"),
    Escape("import-star", POLICY, "the SDK has no '*'", module="from phala.contracts.sdk import *"),
    Escape("sdk-internals", POLICY, "the SDK has no 'SandboxViolation'", module="from phala.contracts.sdk import SandboxViolation"),
    Escape("sdk-private-module", POLICY, "the SDK has no 'guards'", module="from phala.contracts.sdk import guards"),
    Escape("sdk-private-name", POLICY, "the SDK has no '_mark'", module="from phala.contracts.sdk import _mark"),
    Escape("dunder-import", p.ERROR, "ImportError: contracts may not import 'os'", "return __import__('os').environ"),
    Escape("builtins-dict", p.ERROR, "ContractError: open() is not available to contracts", "return __builtins__['open'](CANARY_FILE)"),
    Escape("importlib", p.ERROR, "NameError: name 'importlib' is not defined", "return importlib.import_module('os').environ['PHALA_CANARY_SECRET']"),
    Escape("builtins-module-open", p.ERROR, "NameError: name 'builtins' is not defined", "return builtins.open(CANARY_FILE).read()"),
    Escape("builtins-module", p.ERROR, "NameError: name 'builtins' is not defined", "return builtins.dict"),
    Escape("open-the-file", p.ERROR, "ContractError: open() is not available to contracts", "return open(CANARY_FILE).read()"),
    Escape("host-module-secret", POLICY, "import of 'tests.contracts.escapes.canaries': contracts may import", "import tests.contracts.escapes.canaries as host\nreturn host.HOST_SECRET"),
    Escape("victim-class", p.ERROR, "NameError: name 'Vault' is not defined", "return Vault.secret"),
    Escape("victim-through-sdk", POLICY, "the SDK has no 'Vault'", module="from phala.contracts.sdk import Vault"),
]

EXEC = [
    Escape("exec", p.ERROR, "ImportError: contracts may not import 'os'", "exec('import os')"),
    Escape("eval", p.ERROR, "ContractError: open() is not available to contracts", "return eval('open(CANARY_FILE).read()')"),
    Escape("compile", p.ERROR, "PlainValueError: value is a code, not a plain value", "return compile('1', 'x', 'eval')"),
    Escape("exec-as-value", p.OK, "", "f = [exec][0]", value=None),
    Escape("exec-as-attribute", p.ERROR, "AttributeError: 'Context' object has no attribute 'exec'", "return ctx.exec"),
    Escape("breakpoint", p.ERROR, "ContractError: breakpoint() is not available to contracts", "breakpoint()"),
    Escape("print", p.ERROR, "ContractError: print() is not available to contracts", "print(CANARY_FILE)"),
    Escape("input", p.ERROR, "ContractError: input() is not available to contracts", "return input()"),
]

UNICODE = [
    Escape("cyrillic-e-eval", p.ERROR, "NameError: name '\u0435val' is not defined", "return \u0435val('1')"),
    Escape("cyrillic-o-open", p.ERROR, "NameError: name '\u043epen' is not defined", "return \u043epen(CANARY_FILE)"),
    Escape("fullwidth-eval", p.OK, "", "return \uff45\uff56\uff41\uff4c('1')", value=1),
    Escape("modifier-e-eval", p.OK, "", "return \u1d49val('1')", value=1),
    Escape("math-bold-eval", p.OK, "", "return \U0001d41e\U0001d42f\U0001d41a\U0001d425('1')", value=1),
    Escape("fullwidth-open", p.ERROR, "ContractError: open() is not available to contracts", "return \uff4f\uff50\uff45\uff4e(CANARY_FILE)"),
    Escape("fullwidth-underscores", POLICY, "syntax error: invalid character '\uff3f' (U+FF3F)", "return ctx.\uff3f\uff3fclass\uff3f\uff3f"),
    Escape("fullwidth-format-attribute", p.OK, "", "return '{0.__class__}'.\uff46ormat(ctx)", value="<class 'phala.contracts.sdk.Context'>"),
    Escape("cyrillic-attribute", p.ERROR, "AttributeError: 'Context' object has no attribute 's\u0435nder'", "return ctx.s\u0435nder"),
    Escape("cyrillic-function-name", p.OK, "", klass="def p\u0435ek(self):\n    pass\n", value=None),
]

ALL = HIERARCHY + FRAMES + FUNCTIONS + REFLECTION + IMPORTS + EXEC + UNICODE


@pytest.mark.parametrize("escape", ALL, ids=ids(ALL))
def test_escape(canaries, escape):
    run(canaries, escape)
