"""Amount parsing and formatting."""

from __future__ import annotations

import pytest

from phala.client.units import AmountError, check_amount, format_amount, parse_amount

UNIT = 10**12


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1PHA", UNIT),
        ("1.5PHA", 3 * UNIT // 2),
        ("1.5 pha", 3 * UNIT // 2),
        (" 25PHA ", 25 * UNIT),
        ("0.000000000001PHA", 1),
        (".5PHA", UNIT // 2),
        ("1_000PHA", 1000 * UNIT),
        ("12345", 12345),
        ("1_000_000", 1_000_000),
        ("0", 0),
    ],
)
def test_parse_amount(text: str, units: int) -> None:
    assert parse_amount(text) == units


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "invalid amount"),
        ("abc", "invalid amount"),
        ("-1PHA", "invalid amount"),
        ("1.5", "needs the token symbol"),
        ("1e5", "invalid amount"),
        ("1.5DOT", "the token is PHA, not DOT"),
        ("0.0000000000001PHA", "only 12 decimals"),
        (str(2**128), "larger than a u128"),
        ("1..5PHA", "invalid amount"),
    ],
)
def test_parse_amount_refuses(text: str, reason: str) -> None:
    with pytest.raises(AmountError, match=reason):
        parse_amount(text)


def test_parse_amount_uses_the_chains_token() -> None:
    assert parse_amount("2UNIT", decimals=18, symbol="UNIT") == 2 * 10**18
    with pytest.raises(AmountError):
        parse_amount("2PHA", decimals=18, symbol="UNIT")


def test_check_amount_accepts_any_symbol_but_not_bad_syntax() -> None:
    check_amount("2UNIT")
    check_amount("7")
    with pytest.raises(AmountError):
        check_amount("7.5")
    with pytest.raises(AmountError):
        check_amount("seven")


def test_format_amount() -> None:
    assert format_amount(3 * UNIT // 2) == "1.5 PHA"
    assert format_amount(1_000_000 * UNIT) == "1,000,000 PHA"
    assert format_amount(1) == "0.000000000001 PHA"
    assert format_amount(0) == "0 PHA"
    assert format_amount(5, decimals=0, symbol="X") == "5 X"
    for units in (0, 1, 10**12, 123456789012345678):
        assert parse_amount(format_amount(units).replace(",", "").replace(" ", "")) == units
