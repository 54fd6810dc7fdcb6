"""Authorities pallet: the set of keys that finalize blocks (like Substrate's GRANDPA).

The set and its id live in state from genesis on, so a light client can read them with a
storage proof. Root changes it with ``set_authorities``: the block that applies the change
announces it in its header digest and is still finalized by the old set; the new set, with
the next set id, finalizes every block after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from phala.core.codec import AccountId, u64
from phala.core.types import AuthoritiesChange, AuthoritySet

from .frame import (
    Env,
    ModuleError,
    Origin,
    Pallet,
    RuntimeCall,
    RuntimeEvent,
    StorageValue,
    ensure_root,
)

PALLET_INDEX = 4
NAME = "Authorities"
MAX_AUTHORITIES = 100

# -- storage ----------------------------------------------------------------------------------

CurrentSet: StorageValue[AuthoritySet] = StorageValue(NAME, "CurrentSet", AuthoritySet)
PendingChange: StorageValue[list[bytes] | None] = StorageValue(NAME, "PendingChange", list[AccountId])

# -- events -----------------------------------------------------------------------------------


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class NewAuthorities(Event, index=0):
    set_id: u64
    authorities: list[AccountId]


# -- errors -----------------------------------------------------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class InvalidAuthoritySet(Error):
    """An authority set must be non-empty, without duplicates, and not too large."""

    code = 0


class ChangePending(Error):
    """An authority change is already scheduled in this block."""

    code = 1


def _check(authorities: list[bytes]) -> None:
    if not authorities or len(authorities) > MAX_AUTHORITIES:
        raise InvalidAuthoritySet(f"an authority set needs 1 to {MAX_AUTHORITIES} keys")
    if len(set(authorities)) != len(authorities):
        raise InvalidAuthoritySet("duplicate authority")


# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class set_authorities(Call, index=0):  # noqa: N801
    authorities: list[AccountId]

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        _check(self.authorities)
        if PendingChange.exists(env.state):
            raise ChangePending("an authority change is already scheduled in this block")
        PendingChange.put(env.state, list(self.authorities))


# -- hooks and genesis ------------------------------------------------------------------------


def current_set(env: Env) -> AuthoritySet:
    return CurrentSet.get(env.state)


def on_finalize(env: Env) -> None:
    pending = PendingChange.get(env.state)
    if pending is None:
        return
    PendingChange.kill(env.state)
    new = AuthoritySet(CurrentSet.get(env.state).set_id + 1, pending)
    CurrentSet.put(env.state, new)
    env.digest.append(AuthoritiesChange(new.set_id, new.authorities))
    env.deposit_event(NewAuthorities(new.set_id, new.authorities))


def build_genesis(env: Env, spec: list[bytes]) -> None:
    """``spec``: the genesis authorities; their set id is 0."""
    _check(spec)
    CurrentSet.put(env.state, AuthoritySet(0, list(spec)))


PALLET = Pallet(
    name=NAME,
    index=PALLET_INDEX,
    call=Call,
    event=Event,
    error=Error,
    on_finalize=on_finalize,
    build_genesis=build_genesis,
)
