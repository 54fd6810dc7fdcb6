"""``phala cluster create | add-worker | remove-worker | show``: the Cluster pallet's root calls
(through sudo) and its state: members, epochs and the public keys the gatekeepers published."""

from __future__ import annotations

from typing import Annotated

import typer

from phala.chain.runtime import cluster as pallet
from phala.client.keystore import Keystore, resolve_signer
from phala.client.rpc import RpcClient, run

from .common import CliError, KeystoreOption, console, handle_errors
from .gatekeeping import (
    DEFAULT_NODE,
    DEFAULT_SUDO,
    ClusterState,
    NodeOption,
    SudoOption,
    TimeoutOption,
    cluster_state,
    clusters,
    hex_id,
    parse_cluster,
    parse_identity,
    run_root_call,
)

app = typer.Typer(
    help="Clusters: create one, add or remove a worker, show members, epochs and published keys.",
    no_args_is_help=True,
)

ClusterArgument = Annotated[
    str,
    typer.Argument(
        metavar="CLUSTER",
        help="Cluster id (0x + 64 hex digits), or its index (0: the first created).",
    ),
]
WorkerArgument = Annotated[
    str,
    typer.Argument(
        metavar="WORKER", help="The worker's identity: 0x + 64 hex digits or an SS58 address."
    ),
]


@app.command("create")
@handle_errors
def create(
    worker: Annotated[
        list[str] | None,
        typer.Option(
            "--worker", help="A member's identity: 0x + 64 hex digits or SS58 (repeatable)."
        ),
    ] = None,
    sudo: SudoOption = DEFAULT_SUDO,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Create a cluster of registered workers, in epoch 0 (needs the master key on chain).

    The gatekeepers then publish the cluster's public keys and send each member its key."""
    if not worker:
        raise CliError("a cluster needs at least one worker: give --worker IDENTITY (repeatable)")
    members = [parse_identity(w, "worker identity") for w in worker]
    duplicates = sorted({"0x" + m.hex() for m in members if members.count(m) > 1})
    if duplicates:
        raise CliError(f"worker {duplicates[0]} is listed more than once")
    signer = resolve_signer(sudo, Keystore(keystore))

    async def go() -> None:
        outcome = await run_root_call(rpc, signer, pallet.create_cluster(members), timeout)
        created = outcome.event("Cluster.ClusterCreated")
        fields = created.fields if created is not None and isinstance(created.fields, dict) else {}
        console.print(
            f"[green]success:[/] created cluster {fields.get('cluster', '?')} with "
            f"{len(members)} worker(s) (see `phala cluster show`)",
            soft_wrap=True,
        )

    run(go())


@app.command("add-worker")
@handle_errors
def add_worker(
    cluster: ClusterArgument,
    worker: WorkerArgument,
    sudo: SudoOption = DEFAULT_SUDO,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Add WORKER to CLUSTER, in its current epoch; the gatekeepers send it the key history."""
    cluster_id, who = parse_cluster(cluster), parse_identity(worker, "worker identity")
    signer = resolve_signer(sudo, Keystore(keystore))

    async def go() -> None:
        await run_root_call(rpc, signer, pallet.add_worker(cluster_id, who), timeout)
        console.print(
            f"[green]success:[/] 0x{who.hex()} joined cluster 0x{cluster_id.hex()}", soft_wrap=True
        )

    run(go())


@app.command("remove-worker")
@handle_errors
def remove_worker(
    cluster: ClusterArgument,
    worker: WorkerArgument,
    sudo: SudoOption = DEFAULT_SUDO,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Remove WORKER from CLUSTER and start the cluster's next epoch (a new key, sent only to
    the workers that remain)."""
    cluster_id, who = parse_cluster(cluster), parse_identity(worker, "worker identity")
    signer = resolve_signer(sudo, Keystore(keystore))

    async def go() -> None:
        outcome = await run_root_call(rpc, signer, pallet.remove_worker(cluster_id, who), timeout)
        removed = outcome.event("Cluster.WorkerRemoved")
        epoch = (
            removed.fields.get("epoch", "?")
            if removed is not None and isinstance(removed.fields, dict)
            else "?"
        )
        console.print(
            f"[green]success:[/] 0x{who.hex()} left cluster 0x{cluster_id.hex()}, "
            f"which is now in epoch {epoch}",
            soft_wrap=True,
        )

    run(go())


def show_cluster(state: ClusterState) -> None:
    title = f"cluster {hex_id(state.id)}"
    if state.index is not None:
        title += f" (#{state.index})"
    console.print(f"[bold]{title}[/]", soft_wrap=True)
    console.print(f"  in epoch {state.epoch}; {len(state.info.workers)} member(s):")
    for member in state.info.workers:
        console.print(f"    {hex_id(member)}", soft_wrap=True)
    for epoch, rotation in enumerate(state.info.epoch_rotations):
        console.print(f"  epoch {epoch}, from master key rotation {rotation}")
        if epoch < len(state.pubkeys):
            keys = state.pubkeys[epoch]
            console.print(f"    sr25519 {hex_id(keys.pubkey)}", soft_wrap=True)
            console.print(f"    X25519  {hex_id(keys.ecdh)}", soft_wrap=True)
        else:
            console.print("    [yellow]public keys not published yet[/]")


@app.command("show")
@handle_errors
def show(
    cluster: Annotated[
        str | None,
        typer.Argument(
            metavar="[CLUSTER]",
            help="Cluster id (0x + 64 hex digits) or index; default: every cluster.",
        ),
    ] = None,
    rpc: NodeOption = DEFAULT_NODE,
) -> None:
    """Show a cluster's members, epochs and published public keys (proof-verified).

    Everything is read at the finalized head with a proof against its state root."""
    wanted = None if cluster is None else parse_cluster(cluster)

    async def read() -> None:
        async with RpcClient(rpc) as client:
            if wanted is None:
                header, found = await clusters(client)
            else:
                state = await cluster_state(client, wanted)
                if state is None:
                    raise CliError(f"no cluster has id 0x{wanted.hex()}")
                header, found = state.header, [state]
        if not found:
            console.print(
                "no clusters yet (create one with `phala cluster create --worker IDENTITY`)"
            )
        for state in found:
            show_cluster(state)
        console.print(
            f"[dim]at finalized block #{header.number} 0x{header.hash.hex()}; "
            f"proof verified against state root 0x{header.state_root.hex()}[/]",
            soft_wrap=True,
        )

    run(read())
