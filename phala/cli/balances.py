"""``phala balance`` and ``phala transfer``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from phala.chain.runtime import balances
from phala.chain.runtime.frame import RuntimeCall
from phala.client import chain, tx
from phala.client.describe import dispatch_outcome
from phala.client.keystore import Keystore, resolve_account, resolve_signer
from phala.client.rpc import RpcClient, run
from phala.client.units import check_amount, parse_amount
from phala.core.keys import Keypair

from .common import DEFAULT_RPC, CliError, KeystoreOption, RpcOption, console, fail, handle_errors
from .render import Formatter


@handle_errors
def balance(
    account: Annotated[
        str,
        typer.Argument(
            metavar="ADDRESS", help="SS58 address, 0x public key, stored account name, or //Dev account."
        ),
    ],
    rpc: RpcOption = DEFAULT_RPC,
    keystore: KeystoreOption = None,
) -> None:
    """Show an account's balances and nonce, proof-verified against the finalized state root."""
    who = resolve_account(account, Keystore(keystore))

    async def read() -> None:
        async with RpcClient(rpc) as client:
            props = await chain.properties(client)
            key = chain.account_key(who)
            proven = await chain.verified_storage(client, [key])
        info = chain.decode_account_info(proven[key])
        fmt = Formatter(props)
        data = info.data
        table = Table(title=fmt.address(who, full=True), title_justify="left")
        table.add_column("")
        table.add_column(props.token_symbol, justify="right")
        table.add_column("units", justify="right")
        for label, units in (
            ("free", data.free),
            ("reserved", data.reserved),
            ("frozen", data.frozen),
            ("transferable", max(0, data.free - data.frozen)),
        ):
            table.add_row(label, fmt.amount(units).removesuffix(" " + props.token_symbol), f"{units:,}")
        table.add_row("nonce", "", str(info.nonce))
        console.print(table)
        header = proven.header
        console.print(
            f"[dim]at finalized block #{header.number} 0x{header.hash.hex()}; "
            f"proof verified against state root 0x{header.state_root.hex()}[/]",
            soft_wrap=True,
        )

    run(read())


@handle_errors
def transfer(
    sender: Annotated[
        str, typer.Option("--from", help="Signer: a stored account's name or a secret URI (//Alice).")
    ],
    dest: Annotated[
        str,
        typer.Option("--to", help="Receiver: SS58 address, 0x public key, stored account name, or //Dev account."),
    ],
    amount: Annotated[str, typer.Option("--amount", help="1.5PHA, or an integer number of smallest units.")],
    keep_alive: Annotated[
        bool,
        typer.Option(
            "--keep-alive/--allow-death",
            help="Refuse (keep-alive) or allow taking the sender below the existential deposit.",
        ),
    ] = True,
    tip: Annotated[str, typer.Option("--tip", help="Tip for the block author (same syntax).")] = "0",
    mortal: Annotated[
        int | None,
        typer.Option("--mortal", min=4, max=65536, help="Valid for about this many blocks only (default: immortal)."),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once the node accepted it into its pool.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for finalization.")
    ] = 60.0,
    rpc: RpcOption = DEFAULT_RPC,
    keystore: KeystoreOption = None,
) -> None:
    """Transfer balance, wait for a finalized block to include it, and show its events."""
    # Check every input before contacting the node.
    check_amount(amount)
    check_amount(tip)
    store = Keystore(keystore)
    signer = resolve_signer(sender, store)
    receiver = resolve_account(dest, store)
    run(_transfer(rpc, signer, receiver, amount, tip, keep_alive, mortal, no_wait, timeout))


async def _transfer(
    rpc: str,
    signer: Keypair,
    receiver: bytes,
    amount_text: str,
    tip_text: str,
    keep_alive: bool,
    mortal: int | None,
    no_wait: bool,
    timeout: float,
) -> None:
    async with RpcClient(rpc) as client:
        props = await chain.properties(client)
        fmt = Formatter(props)
        # Parsed again with the chain's own token decimals and symbol.
        amount = parse_amount(amount_text, props.token_decimals, props.token_symbol)
        tip = parse_amount(tip_text, props.token_decimals, props.token_symbol)
        if amount == 0:
            raise CliError("the amount must be more than zero")
        call_cls = balances.transfer_keep_alive if keep_alive else balances.transfer_allow_death
        call: RuntimeCall = call_cls(receiver, amount)
        head = await chain.get_header(client)
        if head is None:
            raise CliError("the node has no finalized head")
        tx_hash = await tx.submit(client, signer, call, tip=tip, mortal_period=mortal)
        console.print(
            f"submitted 0x{tx_hash.hex()}: {fmt.amount(amount)} from "
            f"{fmt.address(signer.public_key, True)} to {fmt.address(receiver, True)}",
            soft_wrap=True,
        )
        if no_wait:
            return
        with console.status("waiting for a finalized block to include it…"):
            block_hash, events = await tx.wait_finalized(client, tx_hash, timeout, since=head.number + 1)
            header = await chain.get_header(client, block_hash)
    number = "?" if header is None else header.number
    console.print(f"finalized in block #{number} 0x{block_hash.hex()}", soft_wrap=True)
    table = Table("event", "fields", title="events of the extrinsic", title_justify="left")
    for ev in events:
        table.add_row(ev.name, fmt.event_fields(ev))
    console.print(table)
    outcome = dispatch_outcome(events)
    if outcome is None:
        fail("the block holds no success or failure event for the extrinsic")
    if not outcome.ok:
        fail(f"the transfer {outcome}")
    console.print("[green]success[/]")
