"""Rendering chain data for the terminal: events, calls, accounts and amounts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from phala.client.chain import ChainEvent, ChainProperties
from phala.client.describe import dispatch_outcome
from phala.client.units import format_amount
from phala.core import ss58

from .common import short

AMOUNT_FIELDS = frozenset({"amount", "value", "fee", "tip", "free", "free_balance", "new_free", "reserved"})
_ACCOUNT_HEX = re.compile(r"0x[0-9a-f]{64}")


class Formatter:
    """Formats values with the chain's SS58 prefix and token."""

    def __init__(self, props: ChainProperties):
        self.props = props

    def amount(self, units: int) -> str:
        return format_amount(units, self.props.token_decimals, self.props.token_symbol)

    def address(self, account: bytes, full: bool = False) -> str:
        text = ss58.encode(account, self.props.ss58_format)
        return text if full else short(text)

    def value(self, name: str, value: Any) -> str:
        """One field: amounts in tokens, 32-byte ids as short addresses, the rest compactly."""
        if isinstance(value, str) and value.isdigit():
            value = int(value)  # integers of 2^53 and more arrive as strings
        if isinstance(value, int) and not isinstance(value, bool) and name in AMOUNT_FIELDS:
            return self.amount(value)
        if isinstance(value, bytes | bytearray):
            value = "0x" + bytes(value).hex()
        if isinstance(value, str) and _ACCOUNT_HEX.fullmatch(value):
            return self.address(bytes.fromhex(value[2:]))
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {self.value(k, v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self.value(name, v) for v in value) + "]"
        if isinstance(value, str) and len(value) > 40:
            return short(value, 12)
        return str(value)

    def fields(self, fields: Any) -> str:
        if isinstance(fields, dict):
            return " ".join(f"{k}={self.value(k, v)}" for k, v in fields.items())
        return "" if fields in (None, [], {}) else self.value("", fields)

    def event_fields(self, ev: ChainEvent) -> str:
        """An event's fields; a failed extrinsic's error also by name."""
        body = self.fields(ev.fields)
        outcome = dispatch_outcome([ev]) if ev.name == "System.ExtrinsicFailed" else None
        if outcome is not None and outcome.error:
            body = f"{outcome.error} ({body})"
        return body

    def event(self, ev: ChainEvent) -> str:
        return f"{ev.name} {self.event_fields(ev)}".rstrip()


def timestamp(ms: int) -> str:
    """UTC time of a block timestamp (milliseconds since 1970)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
