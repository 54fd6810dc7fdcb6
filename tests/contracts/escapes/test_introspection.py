"""Escapes through introspection: class hierarchy walks, frames and generators, function
internals, the reflective builtins, imports and ``exec``, unicode look-alike names. Each is
aimed at the canaries (see :mod:`.canaries`) and must be refused for the reason named."""

from __future__ import annotations

import pytest

from phala.contracts import protocol as p

from .canaries import POLICY, SANDBOX, Escape, ids, run

HIERARCHY = [
    Escape("tuple-class-bases-subclasses", POLICY, "attribute '__subclasses__' starts with '_'",
           "return ().__class__.__bases__[0].__subclasses__()"),
    Escape("class-attribute", POLICY, "attribute '__class__' starts with '_'", "return ''.__class__"),
    Escape("via-type", POLICY, "name 'type' is a forbidden builtin", "return type(())"),
    Escape("via-type-bases", POLICY, "attribute '__bases__' starts with '_'", "return type(()).__bases__"),
    Escape("via-base", POLICY, "attribute '__base__' starts with '_'", "return ContractError.__base__"),
    Escape("via-mro-dunder", POLICY, "attribute '__mro__' starts with '_'", "return self.__mro__"),
    Escape("mro-of-builtin", SANDBOX, "attribute 'mro' of a Builtin is not accessible", "return int.mro()"),
    Escape("mro-of-sdk-class", SANDBOX, "attribute 'mro' of a type is not accessible", "return Contract.mro()"),
    Escape("mro-of-contract", SANDBOX, "Attacker has no attribute 'mro'", "return self.mro()"),
    Escape("subclasses-without-underscores", SANDBOX, "attribute 'subclasses' of a type is not accessible",
           "return Exception.subclasses()"),
    Escape("object-builtin", POLICY, "name 'object' is a forbidden builtin", "return object"),
    Escape("super", POLICY, "name 'super' is a forbidden builtin", "return super()"),
    Escape("builtin-wrapped-function", SANDBOX, "attribute 'func' of a Builtin is not accessible",
           "return len.func"),
    Escape("charged-method-internals", SANDBOX, "attribute 'guards' of a _ChargedMethod is not accessible",
           "return 'x'.upper.guards"),
]

FRAMES = [
    Escape("generator-gi-frame", POLICY, '"gi_frame" is a restricted name',
           "g = (x for x in [1])\nreturn g.gi_frame.f_back.f_globals"),
    Escape("generator-gi-code", POLICY, '"gi_code" is a restricted name', "g = (x for x in [1])\nreturn g.gi_code"),
    Escape("frame-f-back", POLICY, '"f_back" is a restricted name', "return ctx.f_back"),
    Escape("frame-f-globals", POLICY, '"f_globals" is a restricted name', "return ctx.f_globals"),
    Escape("frame-f-builtins", POLICY, '"f_builtins" is a restricted name', "return ctx.f_builtins"),
    Escape("coroutine-cr-frame", POLICY, '"cr_frame" is a restricted name', "return ctx.cr_frame"),
    Escape("traceback-tb-frame", POLICY, '"tb_frame" is a restricted name',
           "try:\n    1 // 0\nexcept ZeroDivisionError as e:\n    return e.tb_frame"),
    Escape("generator-yieldfrom", POLICY, '"gi_yieldfrom" is a restricted name',
           "g = (x for x in [1])\nreturn g.gi_yieldfrom"),
    Escape("generator-send", SANDBOX, "attribute 'send' of a generator is not accessible",
           "g = (x for x in [1])\nreturn g.send(None)"),
    Escape("generator-throw", SANDBOX, "attribute 'throw' of a generator is not accessible",
           "g = (x for x in [1])\nreturn g.throw(ValueError)"),
    Escape("next-on-generator", POLICY, "name 'next' is a forbidden builtin", "return next(x for x in [1])"),
    Escape("sys-getframe", POLICY, "attribute '_getframe' starts with '_'", "return sys._getframe(1).f_globals"),
    Escape("sys-modules", p.ERROR, "NameError: name 'sys' is not defined", "return sys.modules"),
    Escape("yield-generator", POLICY, "Yield is not allowed", klass="def gen(self):\n    yield 1\n"),
    Escape("async-coroutine", POLICY, "AsyncFunctionDef is not allowed", klass="async def co(self):\n    pass\n"),
    Escape("await-in-genexp", POLICY, "Await is not allowed", "return [(await x for x in [1])]"),
]

FUNCTIONS = [
    Escape("function-globals", POLICY, "attribute '__globals__' starts with '_'",
           "f = lambda: 0\nreturn f.__globals__['__builtins__']"),
    Escape("function-code", POLICY, "attribute '__code__' starts with '_'", "f = lambda: 0\nreturn f.__code__"),
    Escape("function-closure", POLICY, "attribute '__closure__' starts with '_'",
           "x = ctx\nf = lambda: x\nreturn f.__closure__[0].cell_contents"),
    Escape("py2-func-globals", SANDBOX, "attribute 'func_globals' of a function is not accessible",
           "f = lambda: 0\nreturn f.func_globals"),
    Escape("code-co-consts", POLICY, '"co_code" is a restricted name', "f = lambda: 0\nreturn f.co_code"),
    Escape("method-func", POLICY, "attribute '__func__' starts with '_'", "return self.attack.__func__"),
    Escape("py2-im-func", SANDBOX, "attribute 'im_func' of a method is not accessible", "return self.attack.im_func"),
    Escape("bound-self-of-sdk", POLICY, "attribute '__self__' starts with '_'", "return ctx.emit.__self__"),
    Escape("sdk-method-defaults", SANDBOX, "attribute 'phala_kind' of a method is not accessible",
           "return self.attack.phala_kind"),
    Escape("hook-by-name", POLICY, "name '_getattr_' starts with '_'", "return _getattr_(ctx, '_random')"),
]

REFLECTION = [
    Escape("getattr", POLICY, "name 'getattr' is a forbidden builtin", "return getattr(ctx, '_random')"),
    Escape("setattr", POLICY, "name 'setattr' is a forbidden builtin", "setattr(ctx, 'sender', VICTIM)"),
    Escape("delattr", POLICY, "name 'delattr' is a forbidden builtin", "delattr(ctx, 'sender')"),
    Escape("hasattr", POLICY, "name 'hasattr' is a forbidden builtin", "return hasattr(ctx, '_random')"),
    Escape("vars", POLICY, "name 'vars' is a forbidden builtin", "return vars(ctx)"),
    Escape("dir", POLICY, "name 'dir' is a forbidden builtin", "return dir(ctx)"),
    Escape("globals", POLICY, "name 'globals' is a forbidden builtin", "return globals()['__builtins__']"),
    Escape("locals", POLICY, "name 'locals' is a forbidden builtin", "return locals()"),
    Escape("type-three-arguments", POLICY, "name 'type' is a forbidden builtin",
           "return type('Evil', (Contract,), {'peek': lambda s: 1})"),
    Escape("object-new", POLICY, "attribute '__new__' starts with '_'", "return Attacker.__new__(Attacker)"),
    Escape("object-new-via-object", POLICY, "name 'object' is a forbidden builtin", "o = object\nreturn 1"),
    Escape("id-address", POLICY, "name 'id' is a forbidden builtin", "return id(ctx)"),
    Escape("hash-address", POLICY, "name 'hash' is a forbidden builtin", "return hash(self)"),
    Escape("memoryview", POLICY, "name 'memoryview' is a forbidden builtin", "return memoryview(b'x')"),
    Escape("callable-probe", POLICY, "name 'callable' is a forbidden builtin", "return callable(ctx)"),
]

IMPORTS = [
    Escape("import-os", POLICY, "Import is not allowed", module="import os"),
    Escape("import-socket-at-port", POLICY, "Import is not allowed",
           "import socket\nsocket.create_connection(('127.0.0.1', CANARY_PORT))"),
    Escape("import-the-sdk-module", POLICY, "Import is not allowed", module="import phala.contracts.sdk"),
    Escape("from-package-import-module", POLICY, "only 'from phala.contracts.sdk import …' is allowed",
           module="from phala.contracts import sdk"),
    Escape("relative-import", POLICY, "only 'from phala.contracts.sdk import …' is allowed", module="from . import sdk"),
    Escape("future-import", POLICY, "only 'from phala.contracts.sdk import …' is allowed",
           module="from __future__ import annotations"),
    Escape("import-star", POLICY, "'import *' is not allowed", module="from phala.contracts.sdk import *"),
    Escape("sdk-internals", SANDBOX, "the SDK has no 'SandboxViolation'",
           module="from phala.contracts.sdk import SandboxViolation"),
    Escape("sdk-private-module", SANDBOX, "the SDK has no 'guards'", module="from phala.contracts.sdk import guards"),
    Escape("sdk-private-name", POLICY, "imported name '_mark' starts with '_'",
           module="from phala.contracts.sdk import _mark"),
    Escape("dunder-import", POLICY, "name '__import__' starts with '_'", "return __import__('os').environ"),
    Escape("builtins-dict", POLICY, "name '__builtins__' starts with '_'", "return __builtins__['open'](CANARY_FILE)"),
    Escape("importlib", p.ERROR, "NameError: name 'importlib' is not defined",
           "return importlib.import_module('os').environ['PHALA_CANARY_SECRET']"),
    Escape("builtins-module-open", POLICY, "attribute 'open' is a forbidden builtin", "return builtins.open(CANARY_FILE).read()"),
    Escape("builtins-module", POLICY, '"builtins" is a reserved name', "return builtins.dict"),
    Escape("open-the-file", POLICY, "name 'open' is a forbidden builtin", "return open(CANARY_FILE).read()"),
    Escape("host-module-secret", POLICY, "Import is not allowed",
           "import tests.contracts.escapes.canaries as host\nreturn host.HOST_SECRET"),
    Escape("victim-class", p.ERROR, "NameError: name 'Vault' is not defined", "return Vault.secret"),
    Escape("victim-through-sdk", SANDBOX, "the SDK has no 'Vault'", module="from phala.contracts.sdk import Vault"),
]

EXEC = [
    Escape("exec", POLICY, "name 'exec' is a forbidden builtin", "exec('import os')"),
    Escape("eval", POLICY, "name 'eval' is a forbidden builtin", "return eval('open(CANARY_FILE).read()')"),
    Escape("compile", POLICY, "name 'compile' is a forbidden builtin", "return compile('1', 'x', 'eval')"),
    Escape("exec-as-value", POLICY, "name 'exec' is a forbidden builtin", "f = [exec][0]"),
    Escape("exec-as-attribute", POLICY, "attribute 'exec' is a forbidden builtin", "return ctx.exec"),
    Escape("breakpoint", POLICY, "name 'breakpoint' is a forbidden builtin", "breakpoint()"),
    Escape("print", POLICY, "name 'print' is a forbidden builtin", "print(CANARY_FILE)"),
    Escape("input", POLICY, "name 'input' is a forbidden builtin", "return input()"),
]

UNICODE = [
    Escape("cyrillic-e-eval", POLICY, "is not ASCII (look-alike names are refused)", "return \u0435val('1')"),
    Escape("cyrillic-o-open", POLICY, "is not ASCII", "return \u043epen(CANARY_FILE)"),
    Escape("fullwidth-eval", POLICY, "name 'eval' is a forbidden builtin", "return \uff45\uff56\uff41\uff4c('1')"),
    Escape("modifier-e-eval", POLICY, "name 'eval' is a forbidden builtin", "return \u1d49val('1')"),
    Escape("math-bold-eval", POLICY, "name 'eval' is a forbidden builtin",
           "return \U0001d41e\U0001d42f\U0001d41a\U0001d425('1')"),
    Escape("fullwidth-open", POLICY, "name 'open' is a forbidden builtin",
           "return \uff4f\uff50\uff45\uff4e(CANARY_FILE)"),
    Escape("fullwidth-underscores", POLICY, "syntax error: invalid character '\uff3f'",
           "return ctx.\uff3f\uff3fclass\uff3f\uff3f"),
    Escape("fullwidth-format-attribute", POLICY, "attribute 'format' is a forbidden builtin",
           "return '{0.__class__}'.\uff46ormat(ctx)"),
    Escape("cyrillic-attribute", POLICY, "attribute 's\u0435nder' is not ASCII", "return ctx.s\u0435nder"),
    Escape("cyrillic-function-name", POLICY, "function 'p\u0435ek' is not ASCII", klass="def p\u0435ek(self):\n    pass\n"),
]

ALL = HIERARCHY + FRAMES + FUNCTIONS + REFLECTION + IMPORTS + EXEC + UNICODE


@pytest.mark.parametrize("escape", ALL, ids=ids(ALL))
def test_refused(canaries, escape):
    run(canaries, escape)
