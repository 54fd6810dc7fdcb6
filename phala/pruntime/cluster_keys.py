"""A worker's cluster keys: received from the gatekeepers, checked, sealed, kept.

The gatekeepers send a worker of a cluster the cluster's whole key history on
``phala/cluster/key`` (:mod:`phala.gatekeeper.distribution`), sealed to the worker's ECDH key.
The worker accepts it only from the gatekeeper origin (the chain checked the master key's
signature), only when addressed to itself, and only when every key it can check matches the
epoch public keys the chain published. From an epoch's key it derives every contract key of
the cluster (``contract_key`` in :mod:`phala.core.derivation`); nothing else is distributed.

A worker removed from a cluster keeps the keys it had: it can still read everything sent to
the cluster up to its removal. The next epoch's key goes only to the workers that remain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from phala.core.cluster import (
    CLUSTER_KEY_TOPIC,
    DISTRIBUTION_INFO,
    ClusterKeyDistribution,
    ClusterKeyHistory,
    distribution_aad,
)
from phala.core.codec import H256, DecodeError, decode
from phala.core.derivation import KeyNode
from phala.core.envelope import Envelope, EnvelopeError, open_envelope
from phala.core.mq import GatekeeperOrigin, Message
from phala.core.types import Header

from . import chain_reads
from .enclave.files import SealedFile

log = logging.getLogger("phala.pruntime")

CLUSTER_KEYS_FILE = "cluster_keys.sealed"
CLUSTER_KEYS_AAD = b"phala/pruntime/cluster-keys/v1"


@dataclass(frozen=True)
class StoredCluster:
    cluster: H256
    keys: list[H256]  # by epoch


@dataclass(frozen=True)
class SealedClusterKeys:
    clusters: list[StoredCluster]  # sorted by cluster id


class ClusterKeys:
    """Attach to a worker: ``ClusterKeys(worker, data_dir, seal, unseal)``."""

    def __init__(
        self,
        worker,
        data_dir: Path,
        seal: Callable[[bytes, bytes], bytes],
        unseal: Callable[[bytes, bytes], bytes],
    ):
        self.worker = worker
        aad = CLUSTER_KEYS_AAD + worker.identity.public_key + worker.pinned_genesis_hash
        self.file = SealedFile(Path(data_dir) / CLUSTER_KEYS_FILE, SealedClusterKeys, seal, unseal, aad)
        stored = self.file.load()
        self.clusters: dict[bytes, list[KeyNode]] = (
            {} if stored is None else {c.cluster: [KeyNode(k) for k in c.keys] for c in stored.clusters}
        )
        worker.subscribe(CLUSTER_KEY_TOPIC, ClusterKeyDistribution, self.on_distribution, GatekeeperOrigin())
        worker.roles.append(self)

    def key(self, cluster: bytes, epoch: int | None = None) -> KeyNode | None:
        """The cluster key of ``epoch`` (the newest this worker holds by default)."""
        keys = self.clusters.get(cluster, [])
        if epoch is None:
            return keys[-1] if keys else None
        return keys[epoch] if 0 <= epoch < len(keys) else None

    def on_distribution(self, header: Header, message: Message, dist: ClusterKeyDistribution) -> None:
        me = self.worker.identity.public_key
        if dist.recipient != me:
            return
        held = self.clusters.get(dist.cluster, [])
        if len(held) > dist.epoch:
            return  # already holds this epoch (another copy, or a replay after a restart)
        try:
            plain = open_envelope(
                self.worker.identity.ecdh.secret,
                Envelope.from_bytes(dist.envelope),
                distribution_aad(self.worker.pinned_genesis_hash, dist.cluster, dist.epoch, me),
                info=DISTRIBUTION_INFO,
            )
            keys = [KeyNode(k) for k in decode(ClusterKeyHistory, plain).keys]
        except (EnvelopeError, DecodeError, ValueError) as exc:
            log.warning("a cluster key at #%d does not open: %s", header.number, exc)
            return
        if len(keys) != dist.epoch + 1:
            log.warning("a cluster key at #%d holds %d epochs, not %d", header.number, len(keys), dist.epoch + 1)
            return
        published = chain_reads.cluster_pubkeys(self.worker.chain, dist.cluster)
        if [k.sr25519().public_key for k in keys[: len(published)]] != [p.pubkey for p in published[: len(keys)]]:
            log.warning("a cluster key at #%d does not match the chain's public keys", header.number)
            return
        self.clusters[dist.cluster] = keys
        self._store()
        log.info("holds cluster 0x%s's key of epoch %d", dist.cluster.hex(), dist.epoch)

    def _store(self) -> None:
        stored = SealedClusterKeys(
            [StoredCluster(c, [k.secret for k in keys]) for c, keys in sorted(self.clusters.items())]
        )
        self.file.store(stored)

    def info(self) -> dict:
        return {"clusters": {"0x" + c.hex(): len(keys) - 1 for c, keys in sorted(self.clusters.items())} or None}
