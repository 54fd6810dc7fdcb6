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
* Source at most :data:`MAX_SOURCE_BYTES`, nested at most :data:`MAX_NESTING` levels.
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


def _check_nesting(source: str) -> None:
    """Refuse deeply bracketed or indented source before the parser, whose recursion would
    otherwise decide where it fails."""
    depth = 0
    line = 1
    for char in source:
        if char in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise PolicyError(line, f"brackets nested more than {MAX_NESTING} levels deep")
        elif char in ")]}":
            depth -= 1
        elif char == "\n":
            line += 1
    for number, text in enumerate(source.splitlines(), 1):
        indent = len(text) - len(text.lstrip(" \t"))
        if indent > 4 * MAX_NESTING:
            raise PolicyError(number, f"indented more than {MAX_NESTING} levels deep")
