"""Starting and stopping a node process: database, chain, pool, consensus and RPC."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from phala.core.keys import Keypair
from phala.core.logs import configure_logging
from phala.core.serving import stop_on_signals

from .blockchain import Blockchain
from .consensus import DevConsensus, SealMode
from .db import ChainDB, DatabaseError
from .node import Node
from .rpc import serve
from .spec import ChainSpec, ChainSpecError

log = logging.getLogger("phala.service")


def open_chain(spec: ChainSpec | None, base_path: Path) -> Blockchain:
    """Open the chain in ``base_path``; create it from ``spec`` if the directory is new.

    A directory that already holds a chain is reopened as it is (``spec`` must then describe
    the same chain, or be None).
    """
    db = ChainDB(base_path / "db")
    try:
        has_chain = db.meta("spec") is not None
        return Blockchain(db, None if has_chain and spec is None else spec)
    except Exception:
        db.close()
        raise


async def _run(node: Node, rpc_host: str, rpc_port: int) -> None:
    runner, port = await serve(node, rpc_host, rpc_port)
    head = node.chain.head
    log.info("chain=%s genesis=0x%s head=#%d", node.chain.spec.name, node.chain.genesis_hash.hex(), head.number)
    # A line tests and scripts read to learn the port (``--rpc-port 0`` picks a free one).
    print(f"RPC listening on http://{rpc_host}:{port}", flush=True)
    stop = stop_on_signals()
    producer = asyncio.ensure_future(node.run())
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({producer, stopper}, return_when=asyncio.FIRST_COMPLETED)
    producer.cancel()
    stopper.cancel()
    await runner.cleanup()
    for task in done:
        if task is producer and task.exception():
            raise task.exception()  # type: ignore[misc]


def run_node(
    spec: ChainSpec | None,
    base_path: Path,
    rpc_host: str,
    rpc_port: int,
    seal: SealMode,
    block_time: float,
    keys: list[Keypair],
) -> None:
    """Run a node until SIGINT/SIGTERM. Finalized blocks are durable at every moment."""
    configure_logging()
    try:
        chain = open_chain(spec, Path(base_path))
    except (DatabaseError, ChainSpecError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    node = Node(chain, DevConsensus(keys, seal, block_time))
    try:
        asyncio.run(_run(node, rpc_host, rpc_port))
    finally:
        node.close()
        log.info("stopped at #%d", chain.head.number)
