"""The contract language: what the VM cannot guarantee on its own.

Contract code runs inside CPython compiled to WebAssembly (:mod:`phala.contracts.vm`): fuel
counts every instruction, memory is capped, and the instance can reach nothing but the
host functions it is given, so there is nothing to guard at run time. What the VM cannot
decide is which modules a contract may use (only the SDK and modules that compute the same
result on every worker) and the rule that state lives in storage, not in module values.
This module checks exactly that, with a line number for each refusal; it runs inside the
VM, on the worker and in ``phala contract check`` alike.

* Imports: ``from phala.contracts.sdk import …`` (names the SDK exports) and the modules of
  :data:`PURE_MODULES`, nothing else (no relative imports, no ``import *``).
* No ``global`` or ``nonlocal``: module and class values are made again for every block and
  shared by the calls inside it, so a function that rebinds them would keep state that
  depends on how commands were packed into blocks. State belongs in ``self``.
* Source at most :data:`MAX_SOURCE_BYTES`, nested at most :data:`MAX_NESTING` levels, and at
  most :data:`MAX_OPERATORS` operators, attribute reads, subscripts and calls in a statement
  (the parser and compiler recurse in C per level: the VM's stack must never decide).
"""

from __future__ import annotations

import ast

SDK_MODULE = "phala.contracts.sdk"
# Modules whose results depend only on their inputs. Each is imported into the runtime's
# snapshot when it is built (the VM has no file system to import from later).
PURE_MODULES = (
    "base64", "binascii", "bisect", "collections", "dataclasses", "enum", "functools", "hashlib",
    "heapq", "itertools", "json", "math", "operator", "re", "string", "struct", "typing",
)
MAX_SOURCE_BYTES = 256 << 10
# The file name contract code is compiled under. For some errors CPython reads the line back
# from the named file, and the VM has no files (the attempt traps); a name that cannot be
# encoded as a path (a lone surrogate) makes that attempt fail before it touches the VM's
# file functions, and the error is reported from the text.
FILENAME = "<contract\ud800>"
MAX_NESTING = 100
MAX_OPERATORS = 256


class PolicyError(Exception):
    """Contract code the policy refuses; ``line`` is where (1-based), ``reason`` why."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def check_source(source: str, sdk_names: frozenset[str]) -> ast.Module:
    """Parse and check a contract's source; returns its tree or raises :class:`PolicyError`
    (the first refusal, by line)."""
    if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise PolicyError(1, f"the source is larger than {MAX_SOURCE_BYTES} bytes")
    _check_nesting(source)
    try:
        tree = ast.parse(source, FILENAME)
    except SyntaxError as exc:
        raise PolicyError(exc.lineno or 1, f"syntax error: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise PolicyError(1, f"the source cannot be parsed: {type(exc).__name__}") from None
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 1)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in PURE_MODULES:
                    raise PolicyError(line, f"import of {alias.name!r}: contracts may import {_allowed()}")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise PolicyError(line, "relative imports are not allowed")
            if node.module == SDK_MODULE:
                for alias in node.names:
                    if alias.name not in sdk_names:
                        raise PolicyError(line, f"the SDK has no {alias.name!r} (it has {', '.join(sorted(sdk_names))})")
            elif node.module not in PURE_MODULES:
                raise PolicyError(line, f"import from {node.module!r}: contracts may import {_allowed()}")
            elif any(alias.name == "*" for alias in node.names):
                raise PolicyError(line, "import * is not allowed")
        elif isinstance(node, ast.Global | ast.Nonlocal):
            kind = "global" if isinstance(node, ast.Global) else "nonlocal"
            raise PolicyError(line, f"{kind} is not allowed: module and class values do not persist between "
                                    "blocks; keep state in self")
    return tree


def _allowed() -> str:
    return f"from {SDK_MODULE} import ... and " + ", ".join(PURE_MODULES)


_OPERATOR_CHARS = frozenset("+-*/%@&|^~<>=.[(")
_NESTING_WORDS = frozenset({"not", "and", "or", "if", "lambda", "await"})


def _check_nesting(source: str) -> None:
    """Refuse source that would nest deeply before the parser sees it: the parser and the
    compiler recurse in C for every level, and the VM's stack, not a Python limit, would
    decide where that ends. Brackets may nest :data:`MAX_NESTING` levels, a statement may hold
    :data:`MAX_OPERATORS` operators, attribute reads, subscripts, calls and the words that
    nest (``not``, ``and``, ``or``, ``if``, ``lambda``), and indentation is bounded too.
    Strings and comments are skipped."""
    depth = 0
    line = 1
    statement_line, operators = 1, 0
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "#":
            while i < n and source[i] != "\n":
                i += 1
            continue
        if char in "'\"":
            i, line = _skip_string(source, i, line)
            continue
        if char.isalpha() or char == "_":
            start = i
            while i < n and (source[i].isalnum() or source[i] == "_"):
                i += 1
            if source[start:i] in _NESTING_WORDS:
                operators += 1
            continue
        if char.isdigit():  # a number, with its own dots and signs (1.5, 1e-3)
            while i < n and (source[i].isalnum() or source[i] in "._" or source[i] in "+-" and source[i - 1] in "eE"):
                i += 1
            continue
        if char in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise PolicyError(line, f"brackets nested more than {MAX_NESTING} levels deep")
        elif char in ")]}":
            depth -= 1
        elif char == "\n":
            line += 1
            if depth <= 0 and not source[max(i - 1, 0)] == "\\":
                statement_line, operators = line, 0
        elif char == ";":
            statement_line, operators = line, 0
        if char in _OPERATOR_CHARS:
            operators += 1
            if operators > MAX_OPERATORS:
                raise PolicyError(statement_line, f"a statement with more than {MAX_OPERATORS} operators, attribute "
                                                  "reads, subscripts and calls: split it (it would nest too deeply)")
        i += 1
    for number, text in enumerate(source.splitlines(), 1):
        indent = len(text) - len(text.lstrip(" \t"))
        if indent > 4 * MAX_NESTING:
            raise PolicyError(number, f"indented more than {MAX_NESTING} levels deep")


def _skip_string(source: str, i: int, line: int) -> tuple[int, int]:
    """Past the string literal starting at ``i`` (its prefix letters were read as a name;
    one quote or three): the index after it, and the line it ends on."""
    quote = source[i]
    triple = source.startswith(quote * 3, i)
    end_mark = quote * 3 if triple else quote
    i += len(end_mark)
    n = len(source)
    while i < n:
        char = source[i]
        if char == "\\":
            if i + 1 < n and source[i + 1] == "\n":
                line += 1
            i += 2
            continue
        if char == "\n":
            line += 1
            if not triple:
                return i, line - 1  # an unterminated string: the parser reports it
        if source.startswith(end_mark, i):
            return i + len(end_mark), line
        i += 1
    return i, line
