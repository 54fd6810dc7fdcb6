"""Sudo pallet: one key, set at genesis, that may dispatch any call as root.

This is the dev chain's governance; every privileged call of later pallets (allowlists,
gatekeepers, authority changes) goes through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from phala.core.codec import AccountId

from .frame import (
    ROOT,
    DispatchError,
    Env,
    ModuleError,
    Origin,
    Pallet,
    RuntimeCall,
    RuntimeEvent,
    StorageValue,
    ensure_signed,
)
from .system import DispatchErrorInfo

PALLET_INDEX = 3
NAME = "Sudo"

# -- storage ----------------------------------------------------------------------------------

Key: StorageValue[bytes | None] = StorageValue(NAME, "Key", AccountId)

# -- events -----------------------------------------------------------------------------------


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class Sudid(Event, index=0):
    """The inner call ran as root; ``error`` is set if it failed."""

    error: DispatchErrorInfo | None


@dataclass(frozen=True)
class KeyChanged(Event, index=1):
    old: AccountId | None
    new: AccountId


# -- errors -----------------------------------------------------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class RequireSudo(Error):
    """Sender must be the sudo account."""

    code = 0


def _ensure_sudo(env: Env, origin: Origin) -> bytes:
    who = ensure_signed(origin)
    if Key.get(env.state) != who:
        raise RequireSudo("only the sudo key may do this")
    return who


# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class sudo(Call, index=0):  # noqa: N801
    """Dispatch ``call`` as root. The outer extrinsic succeeds even if the inner call fails;
    the failure is reported in the ``Sudid`` event and its writes are reverted."""

    call: RuntimeCall

    def dispatch(self, env: Env, origin: Origin) -> None:
        _ensure_sudo(env, origin)
        try:
            with env.transaction():
                self.call.dispatch(env, ROOT)
        except DispatchError as err:
            env.deposit_event(Sudid(DispatchErrorInfo(err.pallet_index, err.code)))
            return
        env.deposit_event(Sudid(None))


@dataclass(frozen=True)
class set_key(Call, index=1):  # noqa: N801
    new: AccountId

    def dispatch(self, env: Env, origin: Origin) -> None:
        old = _ensure_sudo(env, origin)
        Key.put(env.state, self.new)
        env.deposit_event(KeyChanged(old, self.new))


# -- genesis ----------------------------------------------------------------------------------


def build_genesis(env: Env, spec: dict) -> None:
    """``spec``: ``{"key": account}``."""
    Key.put(env.state, spec["key"])


PALLET = Pallet(
    name=NAME, index=PALLET_INDEX, call=Call, event=Event, error=Error, build_genesis=build_genesis
)
