"""Typed reads of the pallets' storage from the worker's verified copy of chain state.

The worker never imports the node's code: these reads use the shared storage layout
(:mod:`phala.core.storage_keys`) and the shared types in ``phala.core``. Each returns what the
pallet's own helper of the same name would return at the worker's last dispatched block.
"""

from __future__ import annotations

from typing import Any

from phala.core.attestation import AttestationConfig, AttestationKind, WorkerInfo
from phala.core.cluster import ClusterInfo, EpochKeys
from phala.core.codec import H256, AccountId, decode, encode
from phala.core.contracts import ContractPubkey
from phala.core.storage_keys import map_key, storage_prefix

from .chain_state import ChainState

GATEKEEPERS_KEY = storage_prefix("Gatekeeper", "Gatekeepers")
MASTER_PUBKEY_KEY = storage_prefix("Gatekeeper", "MasterPubkey")
MASTER_PUBKEY_HISTORY_KEY = storage_prefix("Gatekeeper", "MasterPubkeyHistory")
ATTESTATION_CONFIG_KEY = storage_prefix("Registry", "AttestationConfig")
CONTRACT_RUNTIME_KEY = storage_prefix("Contracts", "RuntimeIdentity")


def _value(chain: ChainState, key: bytes, tp: Any, default: Any) -> Any:
    raw = chain.get(key)
    return default if raw is None else decode(tp, raw)


def gatekeepers(chain: ChainState) -> list[bytes]:
    return _value(chain, GATEKEEPERS_KEY, list[AccountId], [])


def master_pubkey(chain: ChainState) -> bytes | None:
    return _value(chain, MASTER_PUBKEY_KEY, H256, None)


def master_pubkey_history(chain: ChainState) -> list[bytes]:
    """The master key's sr25519 public key of every rotation (index = rotation id)."""
    return _value(chain, MASTER_PUBKEY_HISTORY_KEY, list[H256], [])


def registered_worker(chain: ChainState, identity: bytes) -> WorkerInfo | None:
    return _value(chain, map_key("Registry", "Workers", encode(identity, AccountId)), WorkerInfo, None)


def attestation_config(chain: ChainState) -> AttestationConfig:
    return _value(chain, ATTESTATION_CONFIG_KEY, AttestationConfig, AttestationConfig(False, None))


def key_refusal(chain: ChainState, identity: bytes) -> str | None:
    """Why no secret may be sent to the worker ``identity`` (None when it may): it must be a
    registered, active worker, and a sim-attested one only on a chain that accepts sim
    attestation now (a chain can stop accepting it after genesis)."""
    record = registered_worker(chain, identity)
    if record is None:
        return "not a registered worker"
    if not record.active:
        return "its registration is no longer active"
    if record.kind == AttestationKind.SIM and not attestation_config(chain).allow_sim:
        return "it is sim-attested and this chain does not accept sim attestation"
    return None


def cluster(chain: ChainState, cluster_id: bytes) -> ClusterInfo | None:
    return _value(chain, map_key("Cluster", "Clusters", encode(cluster_id, H256)), ClusterInfo, None)


def cluster_pubkeys(chain: ChainState, cluster_id: bytes) -> list[EpochKeys]:
    """The public keys of every epoch of the cluster published so far, epoch 0 first."""
    return _value(chain, map_key("Cluster", "ClusterPubkeys", encode(cluster_id, H256)), list[EpochKeys], [])


def contract_keys(chain: ChainState, contract: bytes) -> ContractPubkey | None:
    """The contract's public keys as last published (its cluster's current epoch)."""
    return _value(chain, map_key("Contracts", "ContractKeys", encode(contract, H256)), ContractPubkey, None)


def contract_code(chain: ChainState, code_hash: bytes) -> str | None:
    """The contract source stored under ``code_hash`` (the pallet keeps only valid UTF-8)."""
    code = _value(chain, map_key("Contracts", "Code", encode(code_hash, H256)), bytes, None)
    return None if code is None else code.decode("utf-8", "replace")


def contract_runtime(chain: ChainState) -> bytes | None:
    """The contract runtime identity the chain pins for its workers (None: none pinned)."""
    return _value(chain, CONTRACT_RUNTIME_KEY, H256, None)
