"""The ``phala`` command line: run a node, print a chain spec, manage accounts, query and
transact, follow blocks, manage gatekeepers and clusters, deploy and use contracts, run
benchmarks.

Every failure a user can cause (bad input, an unreachable node, a refused transaction) is
reported as one ``error: …`` line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from phala.chain.spec import ChainSpec
from phala.client.keystore import Keystore, resolve_signer
from phala.core.keys import DEV_ACCOUNTS, Keypair, dev_keypair

from . import account, balances, blocks, cluster, contract, dev, gatekeeper, worker
from .bench import run_bench
from .common import CliError, KeystoreOption, err_console, handle_errors

app = typer.Typer(
    name="phala",
    help="A confidential smart-contract blockchain: node, accounts, transfers, blocks, gatekeepers, clusters, contracts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
app.add_typer(account.app, name="account")
app.add_typer(gatekeeper.app, name="gatekeeper")
app.add_typer(cluster.app, name="cluster")
app.add_typer(contract.app, name="contract")
app.command("balance")(balances.balance)
app.command("transfer")(balances.transfer)
app.command("blocks")(blocks.blocks)
app.command("pruntime")(worker.pruntime)
app.command("pherry")(worker.pherry)
app.command("dev")(dev.dev)

DEFAULT_RPC_PORT = 9944


# ---------------------------------------------------------------------------------------------
# phala node


def chains_dir() -> Path:
    return Path.home() / ".phala" / "chains"


def holds_chain(base_path: Path) -> bool:
    """Whether ``base_path`` already holds a node database (the service keeps it in ``db/``)."""
    return (base_path / "db" / "data.mdb").exists()


def seal_mode(block_time: float | None, instant_seal: bool, manual_seal: bool) -> tuple[str, float]:
    if instant_seal and manual_seal:
        raise CliError("choose one of --instant-seal and --manual-seal")
    if block_time is not None and (instant_seal or manual_seal):
        raise CliError("--block-time applies only to interval sealing, not with --instant-seal/--manual-seal")
    if instant_seal:
        return "instant", 1.0
    if manual_seal:
        return "manual", 1.0
    return "interval", 1.0 if block_time is None else block_time


def node_keys(dev: bool, key_uris: list[str], keystore: Keystore) -> list[Keypair]:
    """Authority keys: ``--key`` signers, plus the six dev keys with ``--dev``. With neither,
    the dev keys (a chain whose authorities are not dev accounts then cannot make blocks)."""
    keys = [resolve_signer(uri, keystore) for uri in key_uris]
    if dev or not keys:
        if not dev:
            err_console.print("[yellow]no --key given: using the well-known dev keys as authority keys[/]")
        keys += [dev_keypair(name) for name in DEV_ACCOUNTS]
    return keys


@app.command()
@handle_errors
def node(
    dev: Annotated[
        bool, typer.Option("--dev", help="Development chain (dev spec unless --chain), with the dev keys.")
    ] = False,
    chain: Annotated[Path | None, typer.Option("--chain", help="Chain spec JSON file.", metavar="SPEC.json")] = None,
    base_path: Annotated[
        Path | None,
        typer.Option("--base-path", help="Data directory (default ~/.phala/chains/<chain id>).", metavar="DIR"),
    ] = None,
    tmp: Annotated[bool, typer.Option("--tmp", help="Use a temporary data directory, removed at exit.")] = False,
    rpc_port: Annotated[
        int, typer.Option("--rpc-port", min=0, max=65535, help="RPC port (0: any free port).")
    ] = DEFAULT_RPC_PORT,
    rpc_host: Annotated[str, typer.Option("--rpc-host", help="RPC listen address.")] = "127.0.0.1",
    block_time: Annotated[
        float | None,
        typer.Option("--block-time", min=0.001, help="Seconds between blocks (interval sealing; default 1.0)."),
    ] = None,
    instant_seal: Annotated[
        bool, typer.Option("--instant-seal", help="Make a block as soon as transactions arrive.")
    ] = False,
    manual_seal: Annotated[
        bool, typer.Option("--manual-seal", help="Make blocks only on the engine_createBlock RPC.")
    ] = False,
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Authority key: secret URI or stored account name (repeatable)."),
    ] = None,
    keystore: KeystoreOption = None,
) -> None:
    """Run a node: a data directory, the chain, block production and the JSON-RPC server."""
    seal, interval = seal_mode(block_time, instant_seal, manual_seal)
    if tmp and base_path is not None:
        raise CliError("choose one of --tmp and --base-path")
    spec: ChainSpec | None = ChainSpec.load(chain) if chain is not None else None
    if spec is None and dev:
        spec = ChainSpec.dev()
    if spec is None and base_path is None:
        raise CliError("nothing to run: give --dev, --chain SPEC.json, or the --base-path of an existing chain")
    keys = node_keys(dev, key or [], Keystore(keystore))
    if tmp:
        base = Path(tempfile.mkdtemp(prefix="phala-node-"))
    else:
        base = (base_path or chains_dir() / spec.id).expanduser()  # type: ignore[union-attr]
        # The dev spec starts its clock now, so it never matches a stored dev chain: reopen that.
        if dev and chain is None and holds_chain(base):
            spec = None
    from phala.chain import service  # the node's heavy imports only for this command

    try:
        service.run_node(
            spec=spec,
            base_path=base,
            rpc_host=rpc_host,
            rpc_port=rpc_port,
            seal=seal,  # type: ignore[arg-type]
            block_time=interval,
            keys=keys,
        )
    finally:
        if tmp:
            shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# phala chain-spec


def parse_start_time(text: str) -> int:
    """Milliseconds since 1970 from digits, or from an ISO 8601 time (UTC unless it says)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise CliError(
            f"invalid --start-time {text!r}: use ISO 8601 (2026-01-01T00:00:00Z) or milliseconds since 1970"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = int(moment.timestamp() * 1000)
    if ms < 0:
        raise CliError(f"invalid --start-time {text!r}: before 1970")
    return ms


@app.command("chain-spec")
@handle_errors
def chain_spec(
    dev: Annotated[bool, typer.Option("--dev", help="The development chain spec.")] = False,
    start_time: Annotated[
        str | None,
        typer.Option("--start-time", help="Genesis time: ISO 8601 or ms since 1970 (default: now).", metavar="TIME"),
    ] = None,
) -> None:
    """Print a chain spec as JSON (edit it and pass it to `phala node --chain`)."""
    if not dev:
        raise CliError("only the dev chain spec is built in: pass --dev")
    start = None if start_time is None else parse_start_time(start_time)
    from phala.contracts.vm.build import local_contract_runtime

    typer.echo(ChainSpec.dev(start, contract_runtime=local_contract_runtime()).to_json())


# ---------------------------------------------------------------------------------------------
# phala bench


class BenchName(StrEnum):
    chain = "chain"
    trie = "trie"
    sync = "sync"
    contracts = "contracts"


@app.command()
@handle_errors
def bench(
    name: Annotated[BenchName, typer.Argument(help="Which benchmark.")],
    quick: Annotated[bool, typer.Option("--quick", help="A shorter run.")] = False,
) -> None:
    """Run a benchmark, print each figure beside its floor, and save bench/results/<name>.json."""
    run_bench(name.value, quick)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
