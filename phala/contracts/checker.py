"""``phala contract check``: the checks a worker runs on a contract's code, run locally.

The source goes through exactly what a worker does at instantiation, inside the same
runtime component: the policy (imports, ``global``), compiling, running the module body and
finding the one contract class. It runs in an executor process, like on a worker, so the
code being checked never runs next to the user's keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import protocol as p
from .host import Executor, ExecutorAlarm
from .values import decode_plain

_LINE = re.compile(r"line (\d+): ")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    errors: list[tuple[int, str]]  # (line, message): why a worker would refuse the code
    interface: dict | None  # {"name": ..., "methods": {name: kind}} when ok


def check_source(source: str) -> CheckResult:
    """Check ``source`` as the workers would. Never raises for bad code: the refusal is in
    the result."""
    try:
        with Executor() as executor:
            loaded = executor.check(source)
    except ExecutorAlarm as exc:
        return CheckResult(False, [(1, f"the check could not run: {exc}")], None)
    if loaded.status != p.OK:
        message = _LINE.sub("", loaded.message, count=1)
        return CheckResult(False, [(max(loaded.line, 1), message)], None)
    return CheckResult(True, [], decode_plain(loaded.interface))
