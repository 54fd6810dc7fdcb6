"""Chain specs: the JSON file that fixes a chain's genesis.

A spec names the chain, its SS58 prefix and token, the start time its block timestamps
count from, the genesis authorities, sudo key and balances, and the pallets' parameters.
Everything in it is checked when it is loaded; a bad file gets a :class:`ChainSpecError`
that says which field is wrong.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phala.core import ss58
from phala.core.attestation import SIM_ATTESTATION_URI
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair, dev_keypair

UNIT = 10**12  # 1 PHA in its smallest unit (12 decimals)


class ChainSpecError(ValueError):
    """The chain spec is malformed; the message names the field."""


@dataclass(frozen=True)
class Parameters:
    existential_deposit: int = UNIT // 100
    base_fee: int = UNIT // 1000
    byte_fee: int = UNIT // 1_000_000
    slot_duration_ms: int = 1000


@dataclass(frozen=True)
class ChainSpec:
    name: str
    id: str
    ss58_format: int
    token_symbol: str
    token_decimals: int
    start_time_ms: int
    authorities: tuple[bytes, ...]
    sudo: bytes
    balances: tuple[tuple[bytes, int], ...]
    parameters: Parameters = field(default_factory=Parameters)
    # Whether the registry accepts simulated (software-only) quotes, and the key that signs
    # them. The key is fixed at genesis; root can only switch acceptance off and on again
    # (``Registry.set_allow_sim``).
    allow_sim_attestation: bool = False
    sim_attestation_key: bytes | None = None
    # The contract runtime the workers must run (phala.contracts.vm.build.runtime_identity,
    # 32 bytes); None pins none (a test chain).
    contract_runtime: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # sections later pallets read

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def dev(start_time_ms: int | None = None, extra_accounts: int = 0,
            contract_runtime: bytes | None = None) -> ChainSpec:
        """The dev chain: Alice authors and is sudo; the six dev accounts are funded.

        Block timestamps count from ``start_time_ms`` (default: now, to the second).

        ``extra_accounts`` funds that many more deterministic accounts (for benchmarks).
        ``contract_runtime`` pins the contract runtime (``phala dev`` pins the one it built).
        """
        dev = [dev_keypair(n).public_key for n in ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")]
        balances = [(who, 1_000_000 * UNIT) for who in dev]
        balances += [(bench_account(i), 1_000 * UNIT) for i in range(extra_accounts)]
        return ChainSpec(
            name="Phala Development",
            id="phala_dev",
            ss58_format=30,
            token_symbol="PHA",
            token_decimals=12,
            start_time_ms=now_ms() // 1000 * 1000 if start_time_ms is None else start_time_ms,
            authorities=(dev[0],),
            sudo=dev[0],
            balances=tuple(balances),
            allow_sim_attestation=True,
            sim_attestation_key=Keypair.from_uri(SIM_ATTESTATION_URI).public_key,
            contract_runtime=contract_runtime,
        )

    @staticmethod
    def from_json(text: str) -> ChainSpec:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ChainSpecError(f"chain spec is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ChainSpecError("chain spec must be a JSON object")
        return _parse(raw)

    @staticmethod
    def load(path: str | Path) -> ChainSpec:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ChainSpecError(f"cannot read chain spec {path}: {exc.strerror}") from exc
        return ChainSpec.from_json(text)

    def to_json(self) -> str:
        p = self.parameters
        fmt = self.ss58_format
        raw = {
            "name": self.name,
            "id": self.id,
            "properties": {
                "ss58Format": fmt,
                "tokenSymbol": self.token_symbol,
                "tokenDecimals": self.token_decimals,
            },
            "startTime": self.start_time_ms,
            "genesis": {
                "authorities": [ss58.encode(a, fmt) for a in self.authorities],
                "sudo": ss58.encode(self.sudo, fmt),
                "balances": [[ss58.encode(a, fmt), str(v)] for a, v in self.balances],
            },
            "attestation": {
                "allowSim": self.allow_sim_attestation,
                "simAttestationKey": None
                if self.sim_attestation_key is None
                else ss58.encode(self.sim_attestation_key, fmt),
            },
            "contracts": {"runtime": None if self.contract_runtime is None else "0x" + self.contract_runtime.hex()},
            "parameters": {
                "existentialDeposit": str(p.existential_deposit),
                "baseFee": str(p.base_fee),
                "byteFee": str(p.byte_fee),
                "slotDurationMs": p.slot_duration_ms,
            },
            **({"extra": self.extra} if self.extra else {}),
        }
        return json.dumps(raw, indent=2)

    # -- what the runtime's genesis needs ---------------------------------------------------

    def runtime_genesis(self) -> dict[str, Any]:
        p = self.parameters
        return {
            "System": {},
            "Timestamp": {"startTime": self.start_time_ms, "slotDuration": p.slot_duration_ms},
            "Balances": {
                "existentialDeposit": p.existential_deposit,
                "baseFee": p.base_fee,
                "byteFee": p.byte_fee,
                "balances": list(self.balances),
            },
            "Sudo": {"key": self.sudo},
            "Authorities": list(self.authorities),
            "Registry": {
                "allowSim": self.allow_sim_attestation,
                "simAttestationKey": self.sim_attestation_key,
            },
            "Mq": {},
            "Contracts": {"runtime": self.contract_runtime},
        }

    def properties(self) -> dict[str, Any]:
        return {
            "ss58Format": self.ss58_format,
            "tokenSymbol": self.token_symbol,
            "tokenDecimals": self.token_decimals,
        }


def bench_keypair(i: int) -> Keypair:
    """The ``i``-th funded benchmark account: a key anyone can derive (for benchmarks only)."""
    return Keypair.from_seed(blake2_256(b"phala/bench/%d" % i))


def bench_account(i: int) -> bytes:
    return bench_keypair(i).public_key


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------
# Parsing


def _field(obj: dict, name: str, kind: type | tuple, where: str) -> Any:
    if name not in obj:
        raise ChainSpecError(f"{where}.{name} is missing")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ChainSpecError(f"{where}.{name} has the wrong type ({type(value).__name__})")
    return value


def _amount(value: Any, where: str) -> int:
    """Amounts are JSON strings of decimal digits (u128 does not fit a JSON number) or ints."""
    if isinstance(value, bool):
        raise ChainSpecError(f"{where} must be an amount")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < 2**128:
        raise ChainSpecError(f"{where} must be a non-negative amount below 2^128")
    return value


def _account(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise ChainSpecError(f"{where} must be an SS58 address or 0x public key")
    try:
        return ss58.parse_account(text)
    except ValueError as exc:
        raise ChainSpecError(f"{where}: {exc}") from exc


def _parse(raw: dict) -> ChainSpec:
    props = _field(raw, "properties", dict, "spec")
    genesis = _field(raw, "genesis", dict, "spec")
    params = raw.get("parameters", {})
    if not isinstance(params, dict):
        raise ChainSpecError("spec.parameters must be an object")
    fmt = _field(props, "ss58Format", int, "properties")
    if not 0 <= fmt < 16384:
        raise ChainSpecError("properties.ss58Format must be in 0..16383")
    start = _field(raw, "startTime", int, "spec")
    if start < 0:
        raise ChainSpecError("spec.startTime must be milliseconds since 1970")
    authorities = _field(genesis, "authorities", list, "genesis")
    if not authorities:
        raise ChainSpecError("genesis.authorities must not be empty")
    balances = []
    for i, entry in enumerate(_field(genesis, "balances", list, "genesis")):
        if not isinstance(entry, list) or len(entry) != 2:
            raise ChainSpecError(f"genesis.balances[{i}] must be [account, amount]")
        balances.append((_account(entry[0], f"genesis.balances[{i}]"), _amount(entry[1], f"genesis.balances[{i}]")))
    defaults = Parameters()
    slot = params.get("slotDurationMs", defaults.slot_duration_ms)
    if not isinstance(slot, int) or isinstance(slot, bool) or slot <= 0:
        raise ChainSpecError("parameters.slotDurationMs must be a positive integer")
    parameters = Parameters(
        existential_deposit=_amount(params.get("existentialDeposit", defaults.existential_deposit), "parameters.existentialDeposit"),
        base_fee=_amount(params.get("baseFee", defaults.base_fee), "parameters.baseFee"),
        byte_fee=_amount(params.get("byteFee", defaults.byte_fee), "parameters.byteFee"),
        slot_duration_ms=slot,
    )
    if parameters.existential_deposit == 0:
        raise ChainSpecError("parameters.existentialDeposit must be positive")
    attestation = raw.get("attestation", {})
    if not isinstance(attestation, dict):
        raise ChainSpecError("spec.attestation must be an object")
    allow_sim = attestation.get("allowSim", False)
    if not isinstance(allow_sim, bool):
        raise ChainSpecError("attestation.allowSim must be true or false")
    sim_key_text = attestation.get("simAttestationKey")
    sim_key = None if sim_key_text is None else _account(sim_key_text, "attestation.simAttestationKey")
    if allow_sim and sim_key is None:
        raise ChainSpecError("attestation.simAttestationKey is required when allowSim is true")
    extra = raw.get("extra", {})
    if not isinstance(extra, dict):
        raise ChainSpecError("spec.extra must be an object")
    contract_section = raw.get("contracts", {})
    if not isinstance(contract_section, dict):
        raise ChainSpecError("spec.contracts must be an object")
    runtime_text = contract_section.get("runtime")
    contract_runtime = None
    if runtime_text is not None:
        if not isinstance(runtime_text, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", runtime_text):
            raise ChainSpecError("contracts.runtime must be 0x and 64 hex digits (a runtime identity)")
        contract_runtime = bytes.fromhex(runtime_text[2:])
    return ChainSpec(
        name=_field(raw, "name", str, "spec"),
        id=_field(raw, "id", str, "spec"),
        ss58_format=fmt,
        token_symbol=_field(props, "tokenSymbol", str, "properties"),
        token_decimals=_field(props, "tokenDecimals", int, "properties"),
        start_time_ms=start,
        authorities=tuple(_account(a, f"genesis.authorities[{i}]") for i, a in enumerate(authorities)),
        sudo=_account(_field(genesis, "sudo", str, "genesis"), "genesis.sudo"),
        balances=tuple(balances),
        parameters=parameters,
        allow_sim_attestation=allow_sim,
        sim_attestation_key=sim_key,
        contract_runtime=contract_runtime,
        extra=extra,
    )
