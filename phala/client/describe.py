"""Human-readable names for what is on chain: calls, dispatch errors, an extrinsic's outcome.

Names come from the runtime's own pallet table (:data:`phala.chain.runtime.executive.PALLETS`),
so they match what the node executes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from phala.chain.runtime import executive
from phala.chain.runtime.frame import BadOrigin, RuntimeCall
from phala.core.codec import DecodeError, ScaleEnum

from .chain import ChainEvent

__all__ = [
    "DispatchOutcome",
    "call_args",
    "call_name",
    "decode_call",
    "dispatch_outcome",
    "error_name",
]

_PALLETS = {p.index: p for p in executive.PALLETS}


def decode_call(raw: bytes) -> RuntimeCall | None:
    """The runtime call encoded in ``raw``, or None if this runtime cannot decode it."""
    try:
        return executive.CALL_CODEC.decode(raw)
    except DecodeError:
        return None


def _enum_parent(cls: type) -> type:
    return next(b for b in cls.__bases__ if issubclass(b, ScaleEnum))


def call_name(call: RuntimeCall) -> str:
    """``Pallet.call_name``, e.g. ``Balances.transfer_keep_alive``."""
    cls = type(call)
    pallet_cls = cls
    while _enum_parent(pallet_cls) is not RuntimeCall:
        pallet_cls = _enum_parent(pallet_cls)
    pallet = _PALLETS.get(pallet_cls.__variant_index__ or 0)
    pallet_name = pallet.name if pallet and pallet.call is pallet_cls else f"Pallet{pallet_cls.__variant_index__}"
    return f"{pallet_name}.{cls.__name__}"


def call_args(call: RuntimeCall) -> dict[str, Any]:
    """The call's arguments by name (bytes stay bytes)."""
    return {f.name.rstrip("_"): getattr(call, f.name) for f in dataclasses.fields(call)}  # type: ignore[arg-type]


def error_name(pallet_index: int, code: int) -> str:
    """``Pallet.ErrorName`` for a dispatch error, e.g. ``Balances.InsufficientBalance``."""
    if pallet_index == BadOrigin.pallet_index and code == BadOrigin.code:
        return "BadOrigin"
    pallet = _PALLETS.get(pallet_index)
    if pallet is None:
        return f"Pallet{pallet_index}.Error{code}"
    cls = pallet.errors().get(code)
    return f"{pallet.name}.{cls.__name__ if cls else f'Error{code}'}"


def error_text(pallet_index: int | None, code: int | None) -> str:
    """``Pallet.Error: what its docstring says`` for a dispatch error."""
    if pallet_index is None or code is None:
        return "an unknown error"
    name = error_name(pallet_index, code)
    pallet = _PALLETS.get(pallet_index)
    cls = pallet.errors().get(code) if pallet is not None else None
    doc = " ".join((cls.__doc__ or "").split()) if cls is not None else ""
    return f"{name}: {doc}" if doc else name


@dataclass(frozen=True)
class DispatchOutcome:
    """Whether an included extrinsic's call succeeded; a failure names its error."""

    ok: bool
    pallet: int | None = None
    code: int | None = None

    @property
    def error(self) -> str | None:
        if self.ok or self.pallet is None or self.code is None:
            return None
        return error_name(self.pallet, self.code)

    def __str__(self) -> str:
        if self.ok:
            return "success"
        return f"failed: {self.error} (pallet {self.pallet}, error {self.code})"


def dispatch_outcome(events: Iterable[ChainEvent]) -> DispatchOutcome | None:
    """The outcome recorded by ``System.ExtrinsicSuccess``/``ExtrinsicFailed`` among an
    extrinsic's events, or None if neither is there."""
    for ev in events:
        if ev.pallet != "System":
            continue
        if ev.event == "ExtrinsicSuccess":
            return DispatchOutcome(True)
        if ev.event == "ExtrinsicFailed":
            err = ev.fields.get("error") if isinstance(ev.fields, dict) else None
            if isinstance(err, dict):
                return DispatchOutcome(False, err.get("pallet"), err.get("code"))
            return DispatchOutcome(False)
    return None
