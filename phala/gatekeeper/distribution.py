"""Cluster keys, as the gatekeepers derive, publish and distribute them.

On ``phala/cluster/key_request`` from the Cluster pallet every active gatekeeper:

1. derives the cluster key of every epoch so far, each from the master key of the rotation
   the chain recorded for that epoch (``cluster_epoch_key`` in :mod:`phala.core.derivation`);
2. if a new epoch began, publishes its public keys on ``^phala/cluster/pubkey``;
3. sends each recipient the whole key history on ``phala/cluster/key``, sealed to its ECDH key
   with associated data naming the chain, cluster, epoch and recipient.

A recipient gets nothing unless verified chain state shows it is a member of the cluster and
may hold keys (registered, active, and not sim-attested on a chain that refuses sim
attestation). All of it is sent as the gatekeeper origin, with derived ephemeral keys and IVs,
so every gatekeeper sends the same bytes.
"""

from __future__ import annotations

import logging

from phala.core.cluster import (
    CLUSTER_KEY_REQUEST_TOPIC,
    CLUSTER_KEY_TOPIC,
    CLUSTER_PUBKEY_TOPIC,
    DISTRIBUTION_INFO,
    ClusterKeyDistribution,
    ClusterKeyHistory,
    ClusterKeyRequest,
    ClusterPubkey,
    distribution_aad,
)
from phala.core.codec import encode
from phala.core.derivation import KeyNode, cluster_epoch_key
from phala.core.mq import Message, PalletOrigin
from phala.core.types import Header
from phala.pruntime import chain_reads

from .role import GatekeeperRole

log = logging.getLogger("phala.gatekeeper")

CLUSTER_PALLET = PalletOrigin(b"Cluster")
DISTRIBUTION = "cluster_key_distribution"


def epoch_keys(role: GatekeeperRole, cluster: bytes, epoch_rotations: list[int]) -> list[KeyNode]:
    """The cluster key of each epoch. Raises ``ValueError`` if an epoch names a rotation this
    gatekeeper has no key for."""
    keys = []
    for epoch, rotation in enumerate(epoch_rotations):
        master = role.keys.get(rotation)
        if master is None:
            raise ValueError(f"epoch {epoch} derives from master key rotation {rotation}, which is unknown here")
        keys.append(cluster_epoch_key(master, cluster, epoch))
    return keys


class ClusterKeyDistributor:
    """Attach to a gatekeeper role: ``ClusterKeyDistributor(role)``."""

    def __init__(self, role: GatekeeperRole):
        self.role = role
        role.worker.subscribe(CLUSTER_KEY_REQUEST_TOPIC, ClusterKeyRequest, self.on_request, CLUSTER_PALLET)

    def on_request(self, header: Header, message: Message, request: ClusterKeyRequest) -> None:
        role = self.role
        if not role.active or not request.epoch_rotations:
            return
        try:
            keys = epoch_keys(role, request.cluster, request.epoch_rotations)
        except ValueError as exc:
            log.error("cannot serve cluster 0x%s: %s", request.cluster.hex(), exc)
            return
        epoch = len(keys) - 1
        if request.publish:
            current = keys[-1]
            announce = ClusterPubkey(request.cluster, epoch, current.sr25519().public_key, current.x25519().public)
            role.send_as_gatekeeper(CLUSTER_PUBKEY_TOPIC, encode(announce))
        chain = role.worker.chain
        info = chain_reads.cluster(chain, request.cluster)
        members = [] if info is None else info.workers
        history = encode(ClusterKeyHistory([k.secret for k in keys]))
        genesis = role.worker.pinned_genesis_hash
        for recipient in request.recipients:
            if recipient.identity not in members:
                log.warning("not sending cluster 0x%s's key to 0x%s: not a member on chain",
                            request.cluster.hex(), recipient.identity.hex())
                continue
            aad = distribution_aad(genesis, request.cluster, epoch, recipient.identity)
            try:
                envelope = role.seal_derived(DISTRIBUTION, recipient.identity, history, aad, DISTRIBUTION_INFO)
            except ValueError as exc:
                log.warning("not sending cluster 0x%s's key: %s", request.cluster.hex(), exc)
                continue
            role.send_as_gatekeeper(
                CLUSTER_KEY_TOPIC, encode(ClusterKeyDistribution(request.cluster, epoch, recipient.identity, envelope))
            )
