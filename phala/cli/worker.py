"""``phala pruntime`` and ``phala pherry``: a worker and the relayer that feeds it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from phala.client.keystore import Keystore, resolve_signer

from .common import CliError, KeystoreOption, handle_errors

ENCLAVES = ("sim", "gramine", "tsm", "dstack")


def pinned_genesis(genesis_hash: str | None, chain: Path | None) -> bytes:
    """The genesis hash the operator pins: given directly, or computed from a chain spec."""
    if (genesis_hash is None) == (chain is None):
        raise CliError("pin the chain with exactly one of --genesis-hash 0x… or --chain SPEC.json")
    if genesis_hash is not None:
        text = genesis_hash.removeprefix("0x")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise CliError("--genesis-hash must be 32 bytes of hex")
        return raw
    from phala.chain.blockchain import genesis_block  # the operator's tool may read the spec
    from phala.chain.spec import ChainSpec

    return genesis_block(ChainSpec.load(chain))[0].hash  # type: ignore[arg-type]


@handle_errors
def pruntime(
    genesis_hash: Annotated[str | None, typer.Option("--genesis-hash", help="Pinned genesis hash (0x…).")] = None,
    chain: Annotated[Path | None, typer.Option("--chain", help="Pin the genesis of this chain spec.")] = None,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Sealed identity and checkpoints.")] = Path(
        "~/.phala/pruntime"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="HTTP port (0: any free port).")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Listen address.")] = "127.0.0.1",
    enclave: Annotated[str, typer.Option("--enclave", help="sim | gramine | tsm | dstack")] = "sim",
    checkpoint_interval: Annotated[
        int, typer.Option("--checkpoint-interval", min=1, help="Blocks between sealed checkpoints.")
    ] = 100,
    device_root: Annotated[
        Path | None, typer.Option("--device-root", help="gramine: /dev/attestation; tsm: configfs report dir.")
    ] = None,
    dstack_endpoint: Annotated[
        str | None, typer.Option("--dstack-endpoint", help="dstack: agent socket path or http URL.")
    ] = None,
    collateral_file: Annotated[
        Path | None, typer.Option("--collateral-file", help="DCAP: QuoteCollateralV3 JSON sent with quotes.")
    ] = None,
    pccs_url: Annotated[str | None, typer.Option("--pccs-url", help="DCAP: fetch collateral from a PCCS.")] = None,
) -> None:
    """Run a pRuntime (worker): verifies the chain it is fed and signs its messages."""
    if enclave not in ENCLAVES:
        raise CliError(f"--enclave must be one of {', '.join(ENCLAVES)}")
    pinned = pinned_genesis(genesis_hash, chain)
    options: dict = {}
    if device_root is not None:
        options["device_root" if enclave == "gramine" else "root"] = str(device_root)
    if dstack_endpoint is not None:
        options["endpoint"] = dstack_endpoint
    if collateral_file is not None:
        options["collateral_file"] = str(collateral_file)
    if pccs_url is not None:
        options["pccs_url"] = pccs_url
    from phala.pruntime.enclave import EnclaveError
    from phala.pruntime.identity import SealingError
    from phala.pruntime.service import run_pruntime

    try:
        run_pruntime(data_dir.expanduser(), host, port, enclave, pinned, checkpoint_interval, options)
    except (EnclaveError, SealingError) as exc:
        raise CliError(str(exc)) from exc


@handle_errors
def pherry(
    node: Annotated[str, typer.Option("--node", help="Node RPC URL.")] = "http://127.0.0.1:9944",
    pruntime_url: Annotated[str, typer.Option("--pruntime", help="pRuntime URL.")] = "http://127.0.0.1:8000",
    operator: Annotated[str, typer.Option("--operator", help="Account that pays for registration.")] = "//Alice",
    batch: Annotated[int, typer.Option("--batch", min=1, max=10_000, help="Blocks per dispatch.")] = 500,
    no_register: Annotated[bool, typer.Option("--no-register", help="Only sync; never register.")] = False,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Public URL of the worker to record on chain.")
    ] = None,
    keystore: KeystoreOption = None,
) -> None:
    """Relay finalized blocks into a pRuntime, register it, and submit its messages."""
    import asyncio

    from phala.core.logs import configure_logging
    from phala.pherry.relayer import Relayer

    signer = resolve_signer(operator, Keystore(keystore))
    configure_logging()
    relayer = Relayer(node, pruntime_url, signer, batch=batch, register=not no_register, endpoint=endpoint)
    asyncio.run(relayer.run())
