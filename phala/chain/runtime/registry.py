"""Registry pallet: workers, their attestation, and the allowlists governance keeps.

(Skeleton: the attestation checks and worker storage are being written.)
"""

from __future__ import annotations

from dataclasses import dataclass

from phala.core.codec import AccountId

from .frame import Env, ModuleError, Pallet, RuntimeCall, RuntimeEvent, StorageValue

PALLET_INDEX = 5
NAME = "Registry"


@dataclass(frozen=True)
class AttestationConfig:
    """Fixed at genesis: whether sim quotes are accepted, and the key that signs them."""

    allow_sim: bool
    sim_attestation_key: AccountId | None


Config: StorageValue[AttestationConfig] = StorageValue(NAME, "AttestationConfig", AttestationConfig)


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


def build_genesis(env: Env, spec: dict) -> None:
    """``spec``: ``{"allowSim": bool, "simAttestationKey": bytes | None}``."""
    Config.put(env.state, AttestationConfig(spec["allowSim"], spec["simAttestationKey"]))


PALLET = Pallet(name=NAME, index=PALLET_INDEX, call=Call, event=Event, error=Error, build_genesis=build_genesis)
