"""Token amounts: parsing user input (``1.5PHA`` or integer units) and formatting balances."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = [
    "AmountError",
    "DEFAULT_DECIMALS",
    "DEFAULT_SYMBOL",
    "check_amount",
    "format_amount",
    "parse_amount",
]

DEFAULT_SYMBOL = "PHA"
DEFAULT_DECIMALS = 12
MAX_AMOUNT = 2**128 - 1

_AMOUNT = re.compile(r"(?P<number>[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)\s*(?P<unit>[A-Za-z]+)?")


class AmountError(ValueError):
    """An amount could not be parsed; the message says why."""


def check_amount(text: str) -> None:
    """Check the syntax of an amount without knowing the chain's token; raises
    :class:`AmountError` (the token symbol and decimals are checked by :func:`parse_amount`)."""
    _split(text)


def _split(text: str) -> tuple[str, str | None]:
    match = _AMOUNT.fullmatch(text.strip())
    if match is None:
        raise AmountError(
            f"invalid amount {text!r}: use a token amount such as 1.5{DEFAULT_SYMBOL}, "
            "or an integer number of smallest units"
        )
    number, unit = match.group("number").replace("_", ""), match.group("unit")
    if unit is None and "." in number:
        raise AmountError(
            f"invalid amount {text!r}: a fractional amount needs the token symbol, e.g. {number}{DEFAULT_SYMBOL}"
        )
    return number, unit


def parse_amount(text: str, decimals: int = DEFAULT_DECIMALS, symbol: str = DEFAULT_SYMBOL) -> int:
    """Smallest units from ``"1.5PHA"`` / ``"1.5 pha"`` (token amount) or ``"1500"``
    (integer units). Underscores may group digits. Raises :class:`AmountError`.
    """
    number, unit = _split(text)
    if unit is None:
        value = int(number)
    else:
        if unit.upper() != symbol.upper():
            raise AmountError(f"invalid amount {text!r}: the token is {symbol}, not {unit}")
        try:
            scaled = Decimal(number) * (Decimal(10) ** decimals)
        except InvalidOperation as exc:
            raise AmountError(f"invalid amount {text!r}") from exc
        if scaled != scaled.to_integral_value():
            raise AmountError(f"invalid amount {text!r}: {symbol} has only {decimals} decimals")
        value = int(scaled)
    if value > MAX_AMOUNT:
        raise AmountError(f"invalid amount {text!r}: larger than a u128")
    return value


def format_amount(units: int, decimals: int = DEFAULT_DECIMALS, symbol: str = DEFAULT_SYMBOL) -> str:
    """``1_500_000_000_000`` → ``"1.5 PHA"``; thousands grouped, trailing zeros dropped."""
    whole, frac = divmod(units, 10**decimals) if decimals else (units, 0)
    text = f"{whole:,}"
    if frac:
        text += "." + str(frac).rjust(decimals, "0").rstrip("0")
    return f"{text} {symbol}"
