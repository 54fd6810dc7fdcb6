"""``phala gatekeeper register | unregister | rotate | status``: the Gatekeeper pallet's root
calls (through sudo) and its state (``docs/gatekeeper.md``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from phala.chain.runtime import gatekeeper as pallet
from phala.client import chain
from phala.client.keystore import Keystore, resolve_signer
from phala.client.rpc import RpcClient, run
from phala.core import ss58
from phala.core.attestation import AttestationKind

from .common import KeystoreOption, console, handle_errors
from .gatekeeping import (
    DEFAULT_NODE,
    DEFAULT_SUDO,
    NodeOption,
    SudoOption,
    TimeoutOption,
    gatekeeper_state,
    hex_id,
    parse_identity,
    run_root_call,
    worker_records,
)

app = typer.Typer(
    help="Gatekeepers: make a registered worker one, remove one, rotate the master key, show their state.",
    no_args_is_help=True,
)

IdentityArgument = Annotated[
    str,
    typer.Argument(
        metavar="IDENTITY",
        help="The worker's identity: 0x + 64 hex digits (its get_info `identity`) or an SS58 address.",
    ),
]


@app.command("register")
@handle_errors
def register(
    identity: IdentityArgument,
    sudo: SudoOption = DEFAULT_SUDO,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Make the registered, active worker IDENTITY a gatekeeper (a root call, sent through sudo).

    The first gatekeeper generates the master key and publishes its public key; later ones
    receive the key history from the gatekeepers already there."""
    who = parse_identity(identity)
    signer = resolve_signer(sudo, Keystore(keystore))

    async def go() -> None:
        async with RpcClient(rpc) as client:
            first = (await gatekeeper_state(client)).master_pubkey is None
        await run_root_call(rpc, signer, pallet.register_gatekeeper(who), timeout)
        console.print(f"[green]success:[/] 0x{who.hex()} is a gatekeeper", soft_wrap=True)
        if first:
            console.print(
                "it is the first: it now generates the master key and publishes its public key "
                "(see `phala gatekeeper status`)"
            )
        else:
            console.print("the gatekeepers now hand it the master key history")

    run(go())


@app.command("unregister")
@handle_errors
def unregister(
    identity: IdentityArgument,
    sudo: SudoOption = DEFAULT_SUDO,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Remove the gatekeeper IDENTITY (never the last one; its worker record stays)."""
    who = parse_identity(identity)
    signer = resolve_signer(sudo, Keystore(keystore))

    async def go() -> None:
        await run_root_call(rpc, signer, pallet.unregister_gatekeeper(who), timeout)
        console.print(f"[green]success:[/] 0x{who.hex()} is no longer a gatekeeper", soft_wrap=True)

    run(go())


@app.command("rotate")
@handle_errors
def rotate(
    sudo: SudoOption = DEFAULT_SUDO,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Ask the gatekeepers for a new master key (the old ones stay in the history)."""
    signer = resolve_signer(sudo, Keystore(keystore))

    async def go() -> None:
        outcome = await run_root_call(rpc, signer, pallet.rotate_master_key(), timeout)
        requested = outcome.event("Gatekeeper.MasterKeyRotationRequested")
        fields = (
            requested.fields if requested is not None and isinstance(requested.fields, dict) else {}
        )
        rotation = fields.get("rotation_id", "?")
        console.print(
            f"[green]success:[/] master key rotation {rotation} requested from "
            f"{len(fields.get('gatekeepers', []))} gatekeeper(s); the chain records the new key when the "
            "first of them answers (see `phala gatekeeper status`)"
        )

    run(go())


@app.command("status")
@handle_errors
def status(rpc: NodeOption = DEFAULT_NODE) -> None:
    """Show the gatekeepers, the master key's rotations and the last beacon (proof-verified).

    Everything is read at the finalized head with a proof against its state root."""

    async def read() -> None:
        async with RpcClient(rpc) as client:
            props = await chain.properties(client)
            state = await gatekeeper_state(client)
            records = await worker_records(client, state.gatekeepers, state.header.hash)
        if state.gatekeepers:
            console.print(f"[bold]gatekeepers ({len(state.gatekeepers)})[/]")
        else:
            console.print(
                "no gatekeepers yet (make a registered worker one with `phala gatekeeper register`)"
            )
        for n, identity in enumerate(state.gatekeepers):
            record = records.get(identity)
            if record is None:
                worker = "[red]not registered[/]"
            else:
                kind = AttestationKind(record.kind).name.lower().replace("_", "-")
                worker = f"{'active' if record.active else '[red]inactive[/]'}, {kind}"
            address = ss58.encode(identity, props.ss58_format)
            console.print(f"  {n}. {hex_id(identity)}  {worker}  [dim]{address}[/]", soft_wrap=True)
        rows: list[tuple[str, str]] = []
        if state.master_pubkey is None:
            waiting = (
                " (the first gatekeeper has not published it yet)" if state.gatekeepers else ""
            )
            rows.append(("master public key", f"none{waiting}"))
        else:
            rows.append(("master public key", hex_id(state.master_pubkey)))
            rows.append(("master ECDH key", hex_id(state.master_ecdh_pubkey)))
        rows.append(("rotation counter", str(state.rotation)))
        rows.append(
            (
                "rotation lock",
                "free" if state.lock is None else f"rotation {state.lock} in progress",
            )
        )
        for rotation, key in enumerate(state.history):
            rows.append((f"key of rotation {rotation}", hex_id(key)))
        if state.beacon is None:
            rows.append(("last beacon", "none yet"))
        else:
            rows.append(
                ("last beacon", f"round {state.beacon.round}: {hex_id(state.beacon.value)}")
            )
        if state.beacon_requested is not None:
            rows.append(("beacon requested", f"round {state.beacon_requested}"))
        width = max(len(label) for label, _ in rows) + 2
        for label, value in rows:
            console.print(f"[bold]{escape(label.ljust(width))}[/]{value}", soft_wrap=True)
        header = state.header
        console.print(
            f"[dim]at finalized block #{header.number} 0x{header.hash.hex()}; "
            f"proof verified against state root 0x{header.state_root.hex()}[/]",
            soft_wrap=True,
        )

    run(read())
