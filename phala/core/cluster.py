"""Cluster messages, as both the chain's Cluster pallet and the pRuntimes see them.

A cluster is a set of workers that run the same contracts. Its secret, the *cluster key*, is
derived by the gatekeepers from the master key (``cluster_epoch_key`` in
:mod:`phala.core.derivation`) and sent, encrypted, to each worker of the cluster; a worker
derives every contract key of the cluster from it and from nothing else. Removing a worker
starts a new *epoch*: a new cluster key, sent only to the workers that remain.

* ``phala/cluster/key_request`` (the Cluster pallet → gatekeepers,
  :class:`ClusterKeyRequest`): send the cluster's key history to ``recipients``; when
  ``publish`` is set, a new epoch began and its public keys are to be published.
* ``^phala/cluster/pubkey`` (the gatekeeper origin → the chain, :class:`ClusterPubkey`): the
  public keys of an epoch's cluster key. The chain keeps the first copy.
* ``phala/cluster/key`` (the gatekeeper origin → workers, :class:`ClusterKeyDistribution`):
  the key history of one cluster, sealed to one worker's ECDH key with associated data
  :func:`distribution_aad` (chain, cluster, epoch, recipient), so the envelope opens for no
  other worker, cluster or epoch.

Every gatekeeper sends byte-identical messages: the keys, the ephemeral keys and the IVs all
derive from the master key and a context that includes the message's sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import H256, AccountId, u64
from .gatekeeper import WorkerKeys
from .hashing import blake2_256

CLUSTER_KEY_REQUEST_TOPIC = b"phala/cluster/key_request"
CLUSTER_PUBKEY_TOPIC = b"^phala/cluster/pubkey"
CLUSTER_KEY_TOPIC = b"phala/cluster/key"
DISTRIBUTION_INFO = b"phala/cluster/key/v1"


# -- what the chain stores (the Cluster pallet's ``Clusters`` and ``ClusterPubkeys`` maps, keyed
# by cluster id with blake2_128_concat): pRuntimes decode them from their copy of state.


@dataclass(frozen=True)
class ClusterInfo:
    """Value of ``Cluster.Clusters``."""

    workers: list[AccountId]  # the members, in the order they joined
    # For each epoch (the current one last, so the current epoch is ``len - 1``): the master
    # key rotation counter when it began; its cluster key derives from that master key.
    epoch_rotations: list[u64]


@dataclass(frozen=True)
class EpochKeys:
    """One epoch's published public keys; ``Cluster.ClusterPubkeys`` holds a list of them,
    epoch 0 first, up to the last epoch the gatekeepers published."""

    pubkey: H256  # sr25519 public key of the epoch's cluster key
    ecdh: H256  # its X25519 public key


@dataclass(frozen=True)
class ClusterKeyRequest:
    cluster: H256
    # For each epoch so far (the current one last): the master key rotation it derives from.
    epoch_rotations: list[u64]
    recipients: list[WorkerKeys]
    publish: bool  # a new epoch began: publish its public keys first


@dataclass(frozen=True)
class ClusterPubkey:
    cluster: H256
    epoch: u64
    pubkey: H256  # sr25519 public key of the epoch's cluster key
    ecdh: H256  # its X25519 public key: clients encrypt to the cluster with it


@dataclass(frozen=True)
class ClusterKeyHistory:
    keys: list[H256]  # the cluster key of every epoch, epoch 0 first


@dataclass(frozen=True)
class ClusterKeyDistribution:
    cluster: H256
    epoch: u64  # the current epoch: the history holds epoch + 1 keys
    recipient: AccountId
    envelope: bytes  # Envelope.to_bytes() of encode(ClusterKeyHistory)


def distribution_aad(genesis_hash: bytes, cluster: bytes, epoch: int, recipient: bytes) -> bytes:
    return DISTRIBUTION_INFO + genesis_hash + cluster + epoch.to_bytes(8, "little") + recipient


def cluster_id(index: int) -> bytes:
    """The id of the ``index``-th cluster created on a chain."""
    return blake2_256(b"phala/cluster/" + index.to_bytes(8, "little"))
