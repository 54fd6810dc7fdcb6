"""The contract language: which Python a contract may use, and how its code is metered.

Compiling a contract (:func:`compile_contract`) takes three passes over its syntax tree:

1. **Whitelist** (:class:`Whitelist`): every node must be of an allowed kind, and refused
   constructs get a clear reason with the line: imports other than ``from
   phala.contracts.sdk import …``, names (of variables, attributes, functions, classes,
   arguments) that start with ``_``, float and complex literals, true division, ``global``,
   ``nonlocal``, ``with``, ``yield``, ``async``, ``match``, the walrus, decorators other than
   the SDK's, classes below the top level or with keywords, bare ``except`` and handlers for
   anything but the listed exception names, f-string format specs, and the names of
   forbidden builtins (``exec``, ``eval``, ``open``, ``getattr``, ``type``, ``hash``, ``id``…).
2. **RestrictedPython** (:class:`Restricting`): attribute reads become
   ``_getattr_(obj, name)``, item reads ``_getitem_(obj, key)``, writes go through
   ``_write_``, iteration through ``_getiter_``, ``n += 1`` through ``_inplacevar_``.
3. **Metering** (:class:`Metering`): every binary operation and comparison becomes a call
   to ``_binop_`` / ``_compare_``, which charge gas by the size of the operands before the C
   code runs; every ``while`` iteration charges gas; every function call enters and leaves
   ``_enter_``/``_leave_`` (gas and a call-depth limit); every lambda call charges gas; every
   f-string part goes through ``_format_`` (charged by size); ``*items`` unpacked in a display
   or a call goes through ``_getiter_`` (charged per item); the keys of dict displays and the
   members of set displays through ``_key_`` (plain, charged for hashing) before C hashes
   them, ``**d`` in a dict display through ``_mapping_``; and every ``except`` block starts
   with ``_caught_`` (MemoryError and RecursionError are not the contract's to catch).

What those hooks do is :mod:`phala.contracts.guards`. The compiled code object runs only in
an executor process (:mod:`phala.contracts.executor`), with only the guarded builtins.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from types import CodeType

from RestrictedPython import RestrictingNodeTransformer

SDK_MODULE = "phala.contracts.sdk"
SDK_DECORATORS = frozenset({"constructor", "command", "query", "handler"})
CATCHABLE = frozenset(
    {
        "Exception", "ArithmeticError", "AssertionError", "IndexError", "KeyError", "LookupError",
        "OverflowError", "TypeError", "ValueError", "ZeroDivisionError", "ContractError",
    }
)
FORBIDDEN_NAMES = frozenset(
    {
        "exec", "eval", "compile", "open", "getattr", "setattr", "delattr", "hasattr", "type",
        "hash", "id", "globals", "locals", "vars", "dir", "input", "print", "breakpoint", "help",
        "memoryview", "bytearray", "object", "super", "classmethod", "staticmethod", "property",
        "float", "complex", "format", "iter", "next", "callable", "issubclass", "exit", "quit",
        "copyright", "credits", "license", "BaseException", "GeneratorExit", "KeyboardInterrupt",
        "SystemExit", "StopIteration",
    }
)

_ALLOWED_NODES = (
    ast.Module, ast.Expr, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Return, ast.If, ast.For,
    ast.While, ast.Break, ast.Continue, ast.Pass, ast.FunctionDef, ast.ClassDef, ast.Raise,
    ast.Try, ast.ExceptHandler, ast.Assert, ast.Delete, ast.ImportFrom, ast.alias,
    ast.arguments, ast.arg, ast.keyword, ast.Name, ast.Load, ast.Store, ast.Del, ast.Constant,
    ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp,
    ast.GeneratorExp, ast.comprehension, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
    ast.Call, ast.IfExp, ast.Attribute, ast.Subscript, ast.Slice, ast.JoinedStr,
    ast.FormattedValue, ast.Lambda, ast.Starred,
    ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.expr_context,
)


class PolicyError(Exception):
    """Contract code the policy refuses; ``line`` is where (1-based), ``reason`` why."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class Whitelist(ast.NodeVisitor):
    """Pass 1: refuse everything not explicitly allowed, with a reason."""

    def __init__(self) -> None:
        self.depth = 0  # nesting of function and class bodies

    def refuse(self, node: ast.AST, reason: str) -> None:
        raise PolicyError(getattr(node, "lineno", 0), reason)

    def check_name(self, node: ast.AST, name: str | None, what: str) -> None:
        if name is None:
            return
        if name.startswith("_"):
            self.refuse(node, f"{what} {name!r} starts with '_': such names are reserved")
        if not name.isascii():
            self.refuse(node, f"{what} {name!r} is not ASCII (look-alike names are refused)")
        if name in FORBIDDEN_NAMES:
            self.refuse(node, f"{what} {name!r} is a forbidden builtin")

    def generic_visit(self, node: ast.AST) -> None:
        if not isinstance(node, _ALLOWED_NODES):
            self.refuse(node, f"{type(node).__name__} is not allowed in contracts")
        super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self.check_name(node, node.id, "name")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.check_name(node, node.attr, "attribute")
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        self.check_name(node, node.arg, "argument")
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        self.check_name(node, node.arg, "keyword")
        self.generic_visit(node)

    def visit_alias(self, node: ast.alias) -> None:
        self.check_name(node, node.name, "imported name")
        self.check_name(node, node.asname, "imported name")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, float | complex):
            self.refuse(node, "float and complex numbers are not allowed (results must be exact)")
        if node.value is Ellipsis:
            self.refuse(node, "... is not allowed")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Div):
            self.refuse(node, "true division '/' makes floats: use '//'")
        if isinstance(node.op, ast.MatMult):
            self.refuse(node, "'@' is not allowed")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.op, ast.Div | ast.MatMult):
            self.refuse(node, "true division '/' makes floats: use '//'")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module != SDK_MODULE or node.level:
            self.refuse(node, f"only 'from {SDK_MODULE} import …' is allowed")
        if self.depth:
            self.refuse(node, "imports belong at the top of the module")
        for alias in node.names:
            if alias.name == "*":
                self.refuse(node, "'import *' is not allowed")
        self.generic_visit(node)

    def _decorators(self, node: ast.FunctionDef | ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            if not (isinstance(decorator, ast.Name) and decorator.id in SDK_DECORATORS):
                self.refuse(decorator, f"only the SDK's decorators are allowed ({', '.join(sorted(SDK_DECORATORS))})")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.check_name(node, node.name, "function")
        self._decorators(node)
        if node.returns is not None or any(a.annotation is not None for a in _all_args(node.args)):
            self._annotations(node)
        self.depth += 1
        for child in [node.args, *node.body]:
            self.visit(child)
        self.depth -= 1

    def _annotations(self, node: ast.FunctionDef) -> None:
        for annotation in [node.returns, *(a.annotation for a in _all_args(node.args))]:
            if annotation is not None:
                self.visit(annotation)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.check_name(node, node.name, "class")
        if self.depth:
            self.refuse(node, "classes are allowed only at the top level")
        if node.keywords:
            self.refuse(node, "class keywords (such as metaclass=) are not allowed")
        if node.decorator_list:
            self.refuse(node, "class decorators are not allowed")
        for base in node.bases:
            if not isinstance(base, ast.Name):
                self.refuse(base, "a base class must be a plain name")
        self.depth += 1
        for child in [*node.bases, *node.body]:
            self.visit(child)
        self.depth -= 1

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.refuse(node, "a bare 'except:' is not allowed: name the exceptions")
        kinds = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        for kind in kinds:
            if not (isinstance(kind, ast.Name) and kind.id in CATCHABLE):
                self.refuse(node, f"only these exceptions can be caught: {', '.join(sorted(CATCHABLE))}")
        self.check_name(node, node.name, "name")
        self.generic_visit(node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> None:
        if node.format_spec is not None:
            self.refuse(node, "f-string format specs are not allowed")
        if node.conversion not in (-1, ord("s"), ord("r")):
            self.refuse(node, "only !s and !r conversions are allowed in f-strings")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if len(node.ops) != 1:
            self.refuse(node, "chained comparisons are not allowed: write 'a < b and b < c'")
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        if node.finalbody:
            # A finally block runs while OutOfGas unwinds, with no gas check of its own
            # before its first loop or call: harmless, but it would let a contract observe
            # running out of gas. Keep the language simpler.
            self.refuse(node, "'finally' is not allowed")
        self.generic_visit(node)


def _all_args(args: ast.arguments) -> list[ast.arg]:
    extra = [a for a in (args.vararg, args.kwarg) if a is not None]
    return [*args.posonlyargs, *args.args, *args.kwonlyargs, *extra]


class Restricting(RestrictingNodeTransformer):
    """Pass 2: RestrictedPython's own checks and guards (the whitelist ran first)."""

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        """``self.x += v`` and ``d[k] += v`` (RestrictedPython refuses them) become
        ``self.x = self.x + v`` and ``d[k] = d[k] + v``, then go through the usual guards.
        The target's parts are evaluated twice, so they must be plain names or constants."""
        target = node.target
        if not isinstance(target, ast.Attribute | ast.Subscript):
            return super().visit_AugAssign(node)
        simple = isinstance(target.value, ast.Name) and (
            isinstance(target, ast.Attribute) or isinstance(target.slice, ast.Name | ast.Constant)
        )
        if not simple:
            self.error(node, "augmented assignment needs a simple target, such as self.x or d[k]")
            return node
        load = copy.deepcopy(target)
        for child in ast.walk(load):
            if hasattr(child, "ctx"):
                child.ctx = ast.Load()
        assign = ast.copy_location(ast.Assign(targets=[target], value=ast.BinOp(load, node.op, node.value)), node)
        return self.visit(ast.fix_missing_locations(assign))


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


_OPS = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
    ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&",
}
_CMPS = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}


class Metering(ast.NodeTransformer):
    """Pass 3: route work done in C through charging hooks, and meter loops and calls."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        return ast.copy_location(_call("_binop_", ast.Constant(_OPS[type(node.op)]), node.left, node.right), node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        [op], [right] = node.ops, node.comparators  # chains are refused by the whitelist
        return ast.copy_location(_call("_compare_", ast.Constant(_CMPS[type(op)]), node.left, right), node)

    def visit_While(self, node: ast.While) -> ast.AST:
        self.generic_visit(node)
        node.body.insert(0, ast.Expr(_call("_gas_", ast.Constant(1))))
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.generic_visit(node)
        node.body = [
            ast.Expr(_call("_enter_")),
            ast.Try(body=node.body, handlers=[], orelse=[], finalbody=[ast.Expr(_call("_leave_"))]),
        ]
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self.generic_visit(node)
        node.body = _call("_charged_", node.body)
        return node

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        self.generic_visit(node)
        conversion = "r" if node.conversion == ord("r") else "s"
        node.value = _call("_format_", node.value, ast.Constant(conversion))
        node.conversion = -1
        return node

    # C consumes a starred iterable whole, and hashes set members and dict keys, before any
    # hook would see the result: [*range(10**7)] cost no gas, {*functions} made a set ordered
    # by addresses, and {deeply_nested_tuple: 1} overflowed the C stack.

    def visit_Starred(self, node: ast.Starred) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = _call("_getiter_", node.value)
        return node

    def visit_Dict(self, node: ast.Dict) -> ast.AST:
        self.generic_visit(node)
        node.values = [v if k is not None else _call("_mapping_", v) for k, v in zip(node.keys, node.values, strict=True)]
        node.keys = [k if k is None else _call("_key_", k) for k in node.keys]
        return node

    def visit_DictComp(self, node: ast.DictComp) -> ast.AST:
        self.generic_visit(node)
        node.key = _call("_key_", node.key)
        return node

    def visit_Set(self, node: ast.Set) -> ast.AST:
        self.generic_visit(node)
        node.elts = [
            ast.Starred(_call("_keys_", e.value), ast.Load()) if isinstance(e, ast.Starred) else _call("_key_", e)
            for e in node.elts
        ]
        return node

    def visit_SetComp(self, node: ast.SetComp) -> ast.AST:
        self.generic_visit(node)
        node.elt = _call("_key_", node.elt)
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        self.generic_visit(node)
        node.body.insert(0, ast.Expr(_call("_caught_")))
        return node


@dataclass(frozen=True)
class CompiledContract:
    code: CodeType
    source_lines: int


MAX_SOURCE = 256 * 1024


def compile_contract(source: str, filename: str = "<contract>") -> CompiledContract:
    """Check and compile contract source. Raises :class:`PolicyError` with the first reason
    the code is refused (syntax errors included)."""
    if len(source) > MAX_SOURCE:
        raise PolicyError(0, f"the source is larger than {MAX_SOURCE} bytes")
    try:
        return _compile(source, filename)
    except RecursionError:
        # 1+1+…+1 or a.a.….a thousands deep overflowed the parser or the passes, and the
        # RecursionError killed the executor
        raise PolicyError(0, "the code is nested too deeply") from None


def _compile(source: str, filename: str) -> CompiledContract:
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise PolicyError(exc.lineno or 0, f"syntax error: {exc.msg}") from None
    Whitelist().visit(tree)
    errors: list[str] = []
    _MeteredRestricting(errors, [], {}).visit(tree)
    if errors:
        raise PolicyError(0, "; ".join(errors))
    # dont_inherit: this module's own future flags (postponed annotations) must not leak
    # into contract code, whose annotations are real objects the executor checks against.
    code = compile(tree, filename, "exec", dont_inherit=True)
    return CompiledContract(code, source.count("\n") + 1)


class _MeteredRestricting(Restricting):
    """RestrictedPython's pass, then the metering pass on its output."""

    def visit_Module(self, node: ast.Module) -> ast.AST:
        node = super().visit_Module(node)
        if self.errors:
            raise PolicyError(0, "; ".join(self.errors))
        metered = Metering().visit(node)
        return ast.fix_missing_locations(metered)
