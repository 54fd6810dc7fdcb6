"""Starting a pRuntime process: enclave, sealed identity, newest checkpoint, HTTP API."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import NamedTuple

from phala.contracts.launcher import Launcher
from phala.core.logs import configure_logging
from phala.core.serving import start_site, stop_on_signals
from phala.gatekeeper.distribution import ClusterKeyDistributor
from phala.gatekeeper.role import GatekeeperRole

from .api import PRuntimeApi
from .checkpoint import CheckpointError, CheckpointStore, restore
from .cluster_keys import ClusterKeys
from .contracts import ContractRunner
from .enclave import open_enclave
from .identity import load_or_create, seal, unseal
from .queries import QueryService
from .runtime import Worker

log = logging.getLogger("phala.pruntime")


class CheckpointPolicy:
    """Seal a checkpoint after every ``interval`` dispatched blocks."""

    def __init__(self, worker: Worker, store: CheckpointStore | None, interval: int):
        self.worker, self.store, self.interval = worker, store, interval
        chain = worker.chain
        self.last = -1 if chain is None or chain.dispatched is None else chain.dispatched.number

    def __call__(self) -> None:
        chain = self.worker.chain
        if self.store is None or chain is None or chain.dispatched is None:
            return
        if chain.dispatched.number - self.last >= self.interval:
            path = self.store.save(self.worker)
            self.last = chain.dispatched.number
            log.info("checkpoint at #%d: %s", self.last, path.name)


class Roles(NamedTuple):
    gatekeeper: GatekeeperRole
    cluster_keys: ClusterKeys
    contracts: ContractRunner
    queries: QueryService


def attach_roles(worker: Worker, data_dir: Path, seal_, unseal_, launcher: Launcher | None = None) -> Roles:
    """Give ``worker`` what it does besides syncing, each keeping its secrets sealed in
    ``data_dir``: the gatekeeper role (acts once the chain makes it a gatekeeper) with its
    cluster key distribution, the store of the cluster keys it is sent, and the runner of
    its clusters' contracts with the service answering queries to them. A pRuntime passes
    the ``launcher`` it started before loading any key: its executors come from there."""
    role = GatekeeperRole(worker, data_dir, seal_, unseal_)
    ClusterKeyDistributor(role)
    cluster_keys = ClusterKeys(worker, data_dir, seal_, unseal_)
    runner = ContractRunner(worker, cluster_keys, launcher)
    return Roles(role, cluster_keys, runner, QueryService(worker, runner, data_dir))


def build_worker(data_dir: Path, enclave_kind: str, genesis_hash: bytes, enclave_options: dict | None = None):
    """The worker of ``data_dir``, resumed from its newest checkpoint if one opens."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # First, before any key exists in this process: every contract executor will be started
    # by this launcher, never forked from a process holding keys.
    launcher = Launcher.start()
    enclave = open_enclave(enclave_kind, data_dir=data_dir, **(enclave_options or {}))
    identity = load_or_create(enclave, data_dir)
    worker = Worker(identity, enclave, genesis_hash)
    if enclave.sealing_key() is None:
        # No sealing key (configfs-tsm): nothing survives a restart; the worker starts over,
        # with a new identity, and must be registered and provisioned again.
        log.warning("the %s enclave has no sealing key: no checkpoints", enclave.kind)
        return worker, None
    sealer = (lambda data, aad: seal(enclave, data, aad), lambda blob, aad: unseal(enclave, blob, aad))
    attach_roles(worker, data_dir, *sealer, launcher=launcher)
    store = CheckpointStore(data_dir, *sealer)
    snapshot = store.load_newest(worker)
    if snapshot is not None:
        try:
            restore(worker, snapshot)
        except CheckpointError as exc:
            # Nothing was changed: the worker syncs from genesis instead, which rebuilds
            # everything (contracts included) from the chain.
            log.warning("not resuming from the newest checkpoint: %s; syncing from genesis", exc)
        else:
            at = "genesis" if snapshot.dispatched is None else f"#{snapshot.dispatched.number}"
            log.info("resumed from the checkpoint at %s", at)
    return worker, store


async def _serve(worker: Worker, store: CheckpointStore | None, host: str, port: int, interval: int) -> None:
    api = PRuntimeApi(worker, CheckpointPolicy(worker, store, interval))
    runner, bound = await start_site(api.app(), host, port)
    log.info("identity=0x%s enclave=%s", worker.identity.public_key.hex(), worker.enclave.kind)
    print(f"pRuntime listening on http://{host}:{bound}", flush=True)
    await stop_on_signals().wait()
    await runner.cleanup()


def run_pruntime(
    data_dir: Path,
    host: str,
    port: int,
    enclave_kind: str,
    genesis_hash: bytes,
    checkpoint_interval: int = 100,
    enclave_options: dict | None = None,
) -> None:
    configure_logging()
    worker, store = build_worker(Path(data_dir), enclave_kind, genesis_hash, enclave_options)
    asyncio.run(_serve(worker, store, host, port, checkpoint_interval))
