"""``phala account new | inspect | list``: keys in the local keystore."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from phala.client.keystore import Keystore
from phala.core import ss58
from phala.core.keys import Keypair

from .common import (
    KeystoreOption,
    PrefixOption,
    console,
    err_console,
    handle_errors,
)

app = typer.Typer(help="Create, inspect and list accounts.", no_args_is_help=True)

DEFAULT_PREFIX = 30  # Phala's SS58 prefix


class _Fields:
    """Label/value lines; values are never wrapped, so keys and addresses copy whole."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add_row(self, label: str, value: str) -> None:
        self.rows.append((label, value))

    def print(self) -> None:
        width = max(len(label) for label, _ in self.rows) + 2
        for label, value in self.rows:
            console.print(f"[bold]{escape(label.ljust(width))}[/]{escape(value)}", soft_wrap=True)


@app.command("new")
@handle_errors
def new(
    name: Annotated[
        str | None, typer.Option("--name", help="Name to store the account under (default accountN).")
    ] = None,
    ss58_prefix: PrefixOption = DEFAULT_PREFIX,
    keystore: KeystoreOption = None,
) -> None:
    """Generate a 12-word mnemonic, print it with the account's address, and store it."""
    store = Keystore(keystore)
    name = name or store.free_name()
    phrase, keypair = Keypair.generate()
    store.add(name, phrase)
    fields = _Fields()
    fields.add_row("name", name)
    fields.add_row("mnemonic", phrase)
    fields.add_row(f"SS58 ({ss58_prefix})", keypair.ss58_address(ss58_prefix))
    fields.add_row("public key", "0x" + keypair.public_key.hex())
    fields.add_row("stored in", str(store.file(name)))
    fields.print()
    err_console.print(
        "[yellow]Write the mnemonic down: it is the only way to recover the account. "
        "The keystore keeps it unencrypted (mode 0600).[/]"
    )


@app.command("inspect")
@handle_errors
def inspect(
    uri_or_address: Annotated[
        str,
        typer.Argument(
            metavar="URI_OR_ADDRESS",
            help="SS58 address, stored account name, or secret URI (//Alice, mnemonic, 0x seed).",
        ),
    ],
    ss58_prefix: PrefixOption = DEFAULT_PREFIX,
    public: Annotated[
        bool, typer.Option("--public", help="Read a 0x + 64 hex digits input as a public key, not a seed.")
    ] = False,
    keystore: KeystoreOption = None,
) -> None:
    """Show an account's public key and SS58 addresses. Secrets are never printed."""
    text = uri_or_address.strip()
    store = Keystore(keystore)
    fields = _Fields()
    try:
        public_key, prefix = ss58.decode_with_prefix(text)
        kind = f"SS58 address (network prefix {prefix})"
    except ss58.InvalidAddress:
        stored = store.get(text) if Keystore.valid_name(text) else None
        if stored is not None:
            public_key, kind = stored.keypair().public_key, f"stored account {text!r}"
        elif public:
            public_key, kind = ss58.parse_account(text), "public key"
        else:
            public_key = Keypair.from_uri(text).public_key
            kind = "secret seed" if text[:2] == "0x" and "/" not in text else "secret URI"
    fields.add_row("input", kind)
    fields.add_row("public key", "0x" + public_key.hex())
    fields.add_row(f"SS58 ({ss58_prefix})", ss58.encode(public_key, ss58_prefix))
    if ss58_prefix != ss58.DEFAULT_PREFIX:
        fields.add_row(f"SS58 ({ss58.DEFAULT_PREFIX}, generic)", ss58.encode(public_key, ss58.DEFAULT_PREFIX))
    fields.print()


@app.command("list")
@handle_errors
def list_accounts(
    ss58_prefix: PrefixOption = DEFAULT_PREFIX,
    keystore: KeystoreOption = None,
) -> None:
    """List the accounts in the keystore."""
    store = Keystore(keystore)
    accounts = store.accounts()
    if not accounts:
        console.print(f"no accounts in {store.path} (create one with `phala account new`)")
        return
    table = Table(title=f"accounts in {store.path}", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column(f"SS58 ({ss58_prefix})", overflow="fold")
    table.add_column("public key", overflow="fold")
    table.add_column("created")
    for acc in accounts:
        table.add_row(acc.name, acc.address(ss58_prefix), "0x" + acc.public_key.hex(), acc.created)
    console.print(table)
