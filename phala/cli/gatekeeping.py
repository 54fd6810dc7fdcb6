"""What ``phala gatekeeper``, ``phala cluster`` and ``phala dev`` share: reading the
Gatekeeper and Cluster pallets' state with proofs against a finalized state root, decoding the
ids users type, and dispatching root calls through sudo.

Every read goes through :func:`phala.client.chain.verified_storage`, pinned to one finalized
block, so what is shown is that block's state, proven against its state root. Root calls are wrapped in ``Sudo.sudo`` and signed by the sudo key;
the outer extrinsic succeeds whenever the signer is the sudo key, so the inner call's outcome
is read from the ``Sudo.Sudid`` event (:class:`RootOutcome`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.table import Table

from phala.chain.runtime import cluster as cluster_pallet
from phala.chain.runtime import gatekeeper as gatekeeper_pallet
from phala.chain.runtime import registry, sudo
from phala.chain.runtime.frame import RuntimeCall
from phala.client import chain, tx
from phala.client.chain import ChainEvent, VerificationError
from phala.client.describe import call_name, dispatch_outcome, error_name, error_text
from phala.client.rpc import DEFAULT_URL, RpcClient
from phala.core import ss58
from phala.core.attestation import WorkerInfo
from phala.core.cluster import ClusterInfo, EpochKeys, cluster_id
from phala.core.codec import DecodeError
from phala.core.gatekeeper import BeaconValue
from phala.core.keys import Keypair
from phala.core.types import Header

from .common import CliError, console, fail, short
from .render import Formatter

__all__ = [
    "ClusterState",
    "GatekeeperState",
    "RootOutcome",
    "check_sudo",
    "cluster_state",
    "clusters",
    "dispatch_as_root",
    "error_text",
    "event_table",
    "gatekeeper_state",
    "hex_id",
    "parse_cluster",
    "parse_identity",
    "run_root_call",
    "sudo_key",
    "worker_cluster",
    "worker_records",
]

NodeOption = Annotated[
    str,
    typer.Option(
        "--rpc",
        "--node",
        envvar="PHALA_RPC",
        help="Node RPC URL (http:// or ws://).",
        show_default=True,
    ),
]
SudoOption = Annotated[
    str,
    typer.Option(
        "--sudo",
        help="The chain's sudo key: a stored account's name or a secret URI (dev chains: //Alice).",
    ),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for finalization.")
]
DEFAULT_NODE = DEFAULT_URL
DEFAULT_SUDO = "//Alice"

_HEX32 = re.compile(r"0x[0-9a-fA-F]{64}")


# -- ids typed by users -------------------------------------------------------------------------


def parse_identity(text: str, what: str = "identity") -> bytes:
    """A worker identity: ``0x`` + 64 hex digits (as its ``get_info`` shows it) or an SS58
    address of the identity key. Raises :class:`CliError` naming ``what``."""
    try:
        return ss58.parse_account(text)
    except ss58.InvalidAddress as exc:
        raise CliError(
            f"invalid {what} {text.strip()!r}: expected 0x followed by 64 hex digits "
            f"(the worker's get_info `identity`) or an SS58 address ({exc})"
        ) from None


def parse_cluster(text: str) -> bytes:
    """A cluster id: ``0x`` + 64 hex digits, or the decimal index N of the N-th cluster
    created on the chain (0 for the first). Raises :class:`CliError`."""
    text = text.strip()
    if _HEX32.fullmatch(text):
        return bytes.fromhex(text[2:])
    if text.isdecimal() and int(text) < 2**64:
        return cluster_id(int(text))
    raise CliError(
        f"invalid cluster {text!r}: expected its id, 0x followed by 64 hex digits, "
        "or its index (0 for the first cluster created)"
    )


# -- reading state ------------------------------------------------------------------------------


def _decode(codec: Any, raw: bytes, what: str) -> Any:
    try:
        return codec.decode(raw)
    except DecodeError as exc:
        raise VerificationError(f"{what} does not decode: {exc}") from exc


def _value(item: Any, raw: bytes | None) -> Any:
    return item.default if raw is None else _decode(item.codec, raw, f"{item.pallet}.{item.name}")


@dataclass(frozen=True)
class GatekeeperState:
    """The Gatekeeper pallet's storage at ``header``."""

    header: Header
    gatekeepers: list[bytes]
    master_pubkey: bytes | None
    master_ecdh_pubkey: bytes | None
    history: list[bytes]  # by rotation id
    rotation: int
    lock: int | None
    beacon: BeaconValue | None
    beacon_requested: int | None


async def gatekeeper_state(client: RpcClient, at: bytes | None = None) -> GatekeeperState:
    g = gatekeeper_pallet
    items = (
        g.Gatekeepers,
        g.MasterPubkey,
        g.MasterEcdhPubkey,
        g.MasterPubkeyHistory,
        g.RotationCounter,
        g.RotationLock,
        g.Beacon,
        g.BeaconRequested,
    )
    proven = await chain.verified_storage(client, [item.key for item in items], at)
    values = [_value(item, proven[item.key]) for item in items]
    return GatekeeperState(proven.header, *values)


async def worker_records(
    client: RpcClient, identities: list[bytes], at: bytes
) -> dict[bytes, WorkerInfo | None]:
    """``Registry.Workers`` of each identity at block ``at`` (None: not registered)."""
    if not identities:
        return {}
    keys = {i: registry.Workers.key(i) for i in identities}
    proven = await chain.verified_storage(client, list(keys.values()), at)
    records: dict[bytes, WorkerInfo | None] = {}
    for identity, key in keys.items():
        raw = proven[key]
        records[identity] = (
            None if raw is None else _decode(registry.Workers.codec, raw, "Registry.Workers")
        )
    return records


async def sudo_key(client: RpcClient) -> bytes | None:
    proven = await chain.verified_storage(client, [sudo.Key.key])
    return _value(sudo.Key, proven[sudo.Key.key])


@dataclass(frozen=True)
class ClusterState:
    """One cluster's members and epochs (``Cluster.Clusters``) and the public keys the
    gatekeepers published (``Cluster.ClusterPubkeys``), at ``header``."""

    header: Header
    id: bytes
    info: ClusterInfo
    pubkeys: list[EpochKeys]
    index: int | None = None  # the n-th cluster created, when known

    @property
    def epoch(self) -> int:
        return len(self.info.epoch_rotations) - 1


async def cluster_state(
    client: RpcClient, cluster: bytes, at: bytes | None = None, index: int | None = None
) -> ClusterState | None:
    """The cluster ``cluster`` at block ``at`` (default: the finalized head), or None."""
    c = cluster_pallet
    info_key, keys_key = c.Clusters.key(cluster), c.ClusterPubkeys.key(cluster)
    proven = await chain.verified_storage(client, [info_key, keys_key], at)
    if proven[info_key] is None:
        return None
    info = _decode(c.Clusters.codec, proven[info_key], "Cluster.Clusters")
    raw_keys = proven[keys_key]
    pubkeys = (
        []
        if raw_keys is None
        else _decode(c.ClusterPubkeys.codec, raw_keys, "Cluster.ClusterPubkeys")
    )
    return ClusterState(proven.header, cluster, info, pubkeys, index)


async def clusters(client: RpcClient) -> tuple[Header, list[ClusterState]]:
    """Every cluster created so far, in creation order, at the finalized head."""
    count_key = cluster_pallet.ClusterCount.key
    proven = await chain.verified_storage(client, [count_key])
    count = _value(cluster_pallet.ClusterCount, proven[count_key])
    at = proven.header.hash
    found = []
    for index in range(count):
        state = await cluster_state(client, cluster_id(index), at, index)
        if state is None:
            raise VerificationError(
                f"Cluster.ClusterCount is {count} but cluster {index} has no record"
            )
        found.append(state)
    return proven.header, found


async def worker_cluster(client: RpcClient, worker: bytes, at: bytes | None = None) -> bytes | None:
    """The id of the cluster ``worker`` is in, or None."""
    key = cluster_pallet.WorkerCluster.key(worker)
    raw = (await chain.verified_storage(client, [key], at))[key]
    if raw is None:
        return None
    return _decode(cluster_pallet.WorkerCluster.codec, raw, "Cluster.WorkerCluster")


# -- root calls ---------------------------------------------------------------------------------





@dataclass(frozen=True)
class RootOutcome:
    """A root call's fate: the block that included it, the extrinsic's events, and the inner
    call's error (None: it succeeded)."""

    tx_hash: bytes
    block_hash: bytes
    number: int | None
    events: list[ChainEvent]
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def event(self, name: str) -> ChainEvent | None:
        """The first event called ``Pallet.Event``."""
        return next((e for e in self.events if e.name == name), None)


async def check_sudo(client: RpcClient, signer: Keypair) -> None:
    """Raise :class:`CliError` unless ``signer`` is the chain's sudo key."""
    key = await sudo_key(client)
    if key is None:
        raise CliError("this chain has no sudo key: root calls are impossible")
    if key != signer.public_key:
        props = await chain.properties(client)
        raise CliError(
            f"{ss58.encode(signer.public_key, props.ss58_format)} is not the sudo key; the chain's "
            f"sudo key is {ss58.encode(key, props.ss58_format)} (give it with --sudo)"
        )


async def dispatch_as_root(
    client: RpcClient, signer: Keypair, call: RuntimeCall, timeout: float = 60.0
) -> RootOutcome:
    """Check that ``signer`` is the sudo key, submit ``Sudo.sudo(call)`` signed by it, wait
    for a finalized block to include it and return the outcome. Raises :class:`CliError` if
    the signer is not the sudo key or the extrinsic itself failed, ``TimeoutError`` if no
    finalized block includes it within ``timeout`` seconds."""
    await check_sudo(client, signer)
    head = await chain.get_header(client)
    if head is None:
        raise CliError("the node has no finalized head")
    tx_hash = await tx.submit(client, signer, sudo.sudo(call))
    block_hash, events = await tx.wait_finalized(client, tx_hash, timeout, since=head.number + 1)
    header = await chain.get_header(client, block_hash)
    outer = dispatch_outcome(events)
    if outer is None:
        raise CliError("the block holds no success or failure event for the extrinsic")
    if not outer.ok:
        raise CliError(
            f"Sudo.sudo({call_name(call)}) failed: {error_text(outer.pallet, outer.code)}"
        )
    sudid = next((e for e in events if e.name == "Sudo.Sudid"), None)
    if sudid is None:
        raise CliError("the block holds no Sudo.Sudid event for the extrinsic")
    err = sudid.fields.get("error") if isinstance(sudid.fields, dict) else None
    error = None if err is None else error_text(err.get("pallet"), err.get("code"))
    number = None if header is None else header.number
    return RootOutcome(tx_hash, block_hash, number, events, error)


# -- showing them -------------------------------------------------------------------------------


def hex_id(raw: bytes | None, full: bool = True) -> str:
    if raw is None:
        return "-"
    text = "0x" + raw.hex()
    return text if full else short(text, 10)


def _field(value: Any) -> str:
    if isinstance(value, str) and value.startswith("0x") and len(value) > 24:
        return short(value, 10)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_field(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_field(v) for v in value) + "]"
    return str(value)


def event_table(events: list[ChainEvent], fmt: Formatter) -> Table:
    """The extrinsic's events: ids as short hex (cluster ids are no accounts), amounts and
    accounts of the fee events as elsewhere, and the inner call's error by name."""
    table = Table("event", "fields", title="events of the extrinsic", title_justify="left")
    for ev in events:
        fields = ev.fields
        if ev.pallet in ("System", "Balances"):
            text = fmt.event_fields(ev)
        elif ev.name == "Sudo.Sudid" and isinstance(fields, dict):
            err = fields.get("error")
            text = (
                "ok"
                if err is None
                else f"error={error_name(err.get('pallet', 0), err.get('code', 0))}"
            )
        elif isinstance(fields, dict):
            text = " ".join(f"{k}={_field(v)}" for k, v in fields.items())
        else:
            text = "" if fields in (None, [], {}) else _field(fields)
        table.add_row(ev.name, text)
    return table


async def run_root_call(
    rpc: str, signer: Keypair, call: RuntimeCall, timeout: float
) -> RootOutcome:
    """Dispatch ``call`` as root, show the block and the events; a failed inner call is
    reported as one ``error: …`` line (exit code 1)."""
    name = call_name(call)
    async with RpcClient(rpc) as client:
        fmt = Formatter(await chain.properties(client))
        with console.status(f"submitting Sudo.sudo({name}) and waiting for a finalized block…"):
            outcome = await dispatch_as_root(client, signer, call, timeout)
    number = "?" if outcome.number is None else outcome.number
    console.print(
        f"Sudo.sudo({name}) 0x{outcome.tx_hash.hex()} finalized in block #{number} 0x{outcome.block_hash.hex()}",
        soft_wrap=True,
    )
    console.print(event_table(outcome.events, fmt))
    if not outcome.ok:
        fail(f"{name} failed: {outcome.error}")
    return outcome
