"""Timestamp pallet: the block's time, in milliseconds, from the header.

Block timestamps count from the chain spec's start time: the dev engine stamps block ``n``
with ``start_time + n * slot_duration``, so a chain spec can put a chain at any date. The
runtime only checks that time moves forward by at least the minimum period.
"""

from __future__ import annotations

from dataclasses import dataclass

from phala.core.codec import u64

from .frame import Env, ModuleError, Pallet, StorageValue

PALLET_INDEX = 1
NAME = "Timestamp"

# -- storage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    slot_duration: u64  # milliseconds between consecutive blocks' timestamps
    minimum_period: u64  # the least a timestamp may advance


Now: StorageValue[int] = StorageValue(NAME, "Now", u64, 0)
Parameters: StorageValue[Params] = StorageValue(NAME, "Parameters", Params)

# -- errors -----------------------------------------------------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class TimestampTooEarly(Error):
    """The block's timestamp does not advance by the minimum period."""

    code = 0


# -- hooks and genesis ------------------------------------------------------------------------


def on_initialize(env: Env) -> None:
    """Record the header's timestamp. A block that goes back in time is invalid."""
    previous = Now.get(env.state)
    minimum = Parameters.get(env.state).minimum_period
    if env.block.timestamp < previous + minimum:
        raise TimestampTooEarly(
            f"timestamp {env.block.timestamp} is earlier than {previous} + {minimum} ms"
        )
    Now.put(env.state, env.block.timestamp)


def build_genesis(env: Env, spec: dict) -> None:
    """``spec``: ``{"startTime": ms, "slotDuration": ms}``; genesis is stamped ``startTime``."""
    slot = spec["slotDuration"]
    Parameters.put(env.state, Params(slot, max(1, slot // 2)))
    Now.put(env.state, spec["startTime"])


PALLET = Pallet(
    name=NAME, index=PALLET_INDEX, error=Error, on_initialize=on_initialize, build_genesis=build_genesis
)
