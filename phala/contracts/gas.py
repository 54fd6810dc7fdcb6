"""Gas: work counted in units, never in time, so every worker reaches the same verdict.

One unit is roughly one step of the interpreter: a loop iteration, a function call, an
operation on small values. Work done inside C is charged *before* it runs, by the size of
what it touches or makes (:func:`units`: one unit per started 64 elements, bytes or 64-bit
words). Anything bigger than the hard limits is refused outright, whatever gas is left.
"""

from __future__ import annotations

# Hard limits, independent of the gas limit.
MAX_ALLOC = 1 << 24  # elements, characters or bytes one operation may produce
MAX_INT_BITS = 1 << 16  # bits of any integer a contract computes
MAX_CALL_DEPTH = 128  # nested contract function calls
MAX_STATE_BYTES = 1 << 20  # the encoded state of one contract

# Costs, in units.
CALL = 5
LOOP = 1
OP = 1


class OutOfGas(BaseException):
    """The command used its gas limit. A BaseException, so ``except Exception`` in a
    contract cannot swallow it (and the meter stays exhausted if it tried)."""


class LimitExceeded(BaseException):
    """An operation would pass a hard limit (allocation, integer size, call depth)."""


def units(size: int) -> int:
    """The cost of touching or making ``size`` elements (or bytes, or 64-bit words)."""
    return OP + (size >> 6)


class Meter:
    """Counts gas for one call into a contract."""

    __slots__ = ("limit", "used", "depth")

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.depth = 0

    def charge(self, amount: int) -> None:
        used = self.used + amount
        if used > self.limit:
            self.used = self.limit  # sticky: every later charge fails too
            raise OutOfGas(f"out of gas: the limit is {self.limit}")
        self.used = used


def check_alloc(size: int, what: str) -> None:
    if size > MAX_ALLOC:
        raise LimitExceeded(f"{what} would make {size} elements; the limit is {MAX_ALLOC}")


def check_int_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise LimitExceeded(f"{what} would make an integer of {bits} bits; the limit is {MAX_INT_BITS}")
