"""Cluster pallet: which workers run together, and the public keys of each cluster epoch.

A cluster is a set of workers that share a secret, the cluster key, which the gatekeepers
derive from the master key and send to each member (:mod:`phala.core.cluster`). This pallet
keeps the membership and asks the gatekeepers for keys:

* root (through sudo) creates a cluster with :class:`create_cluster`, adds a worker with
  :class:`add_worker` and removes one with :class:`remove_worker`. A member must be a
  registered, active worker (sim-attested only on a chain that accepts sim attestation now)
  and a worker is in at most one cluster (``WorkerCluster``);
* a cluster's key changes by *epoch*: creation starts epoch 0, each removal starts the next
  one, so a removed worker never learns a key its cluster uses afterwards. ``ClusterInfo``
  records, for each epoch, the master key rotation counter when it began: the epoch's key
  derives from that master key, so a later rotation does not change it;
* each change sends the gatekeepers ``phala/cluster/key_request``
  (:class:`phala.core.cluster.ClusterKeyRequest`) naming the workers to send the key history
  to, with their ECDH keys: all members on creation and removal (a new epoch, whose public
  keys are to be published), the newcomer alone on addition (same epoch);
* the gatekeepers publish each new epoch's public keys on the chain-only
  ``^phala/cluster/pubkey`` as the gatekeeper origin (the mq pallet checked the master key's
  signature); the chain keeps the first copy of each epoch, in epoch order, and emits
  ``ClusterPubkeyPublished``.

The keys themselves travel on ``phala/cluster/key`` from the gatekeeper origin to the
workers; the chain does not handle that topic (the mq pallet pushes it outbound).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from phala.core import cluster as payloads
from phala.core.cluster import (
    CLUSTER_KEY_REQUEST_TOPIC,
    CLUSTER_PUBKEY_TOPIC,
    ClusterInfo,
    ClusterKeyRequest,
    ClusterPubkey,
    EpochKeys,
)
from phala.core.codec import H256, AccountId, DecodeError, decode, encode, u64
from phala.core.gatekeeper import WorkerKeys
from phala.core.mq import GatekeeperOrigin, Message, PalletOrigin

from . import gatekeeper, mq, registry
from .frame import (
    Env,
    ModuleError,
    Origin,
    Pallet,
    RuntimeCall,
    RuntimeEvent,
    StorageMap,
    StorageValue,
    ensure_root,
)

PALLET_INDEX = 8
NAME = "Cluster"
MAX_WORKERS = 64  # every epoch's key is sealed to each member in one gatekeeper message batch

MESSAGE_ORIGIN = PalletOrigin(NAME.encode())

# -- storage ----------------------------------------------------------------------------------

# Clusters created so far: the next cluster's id is cluster_id(ClusterCount).
ClusterCount: StorageValue[int] = StorageValue(NAME, "ClusterCount", u64, 0)
# Every cluster's members and epochs.
Clusters: StorageMap[bytes, ClusterInfo] = StorageMap(NAME, "Clusters", H256, ClusterInfo)
# The public keys the gatekeepers published, epoch 0 first (up to the last one published).
ClusterPubkeys: StorageMap[bytes, list[EpochKeys]] = StorageMap(
    NAME, "ClusterPubkeys", H256, list[EpochKeys], []
)
# The cluster each worker is in (at most one).
WorkerCluster: StorageMap[bytes, bytes] = StorageMap(NAME, "WorkerCluster", AccountId, H256)

# -- events -----------------------------------------------------------------------------------


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class ClusterCreated(Event, index=0):
    cluster: H256
    workers: list[AccountId]


@dataclass(frozen=True)
class WorkerAdded(Event, index=1):
    cluster: H256
    worker: AccountId


@dataclass(frozen=True)
class WorkerRemoved(Event, index=2):
    """``worker`` left ``cluster``, which is now in epoch ``epoch``."""

    cluster: H256
    worker: AccountId
    epoch: u64


@dataclass(frozen=True)
class ClusterPubkeyPublished(Event, index=3):
    cluster: H256
    epoch: u64
    pubkey: H256
    ecdh: H256


# -- errors -----------------------------------------------------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class EmptyCluster(Error):
    """A cluster needs at least one worker."""

    code = 0


class DuplicateWorker(Error):
    """The same worker is listed more than once."""

    code = 1


class WorkerNotRegistered(Error):
    """No worker is registered with this identity."""

    code = 2


class WorkerNotActive(Error):
    """The worker is registered but not active (its measurement is no longer allowed)."""

    code = 3


class SimWorkerNotAllowed(Error):
    """The worker is sim-attested and this chain does not accept sim attestation."""

    code = 4


class AlreadyInCluster(Error):
    """The worker is already in a cluster (a worker is in at most one)."""

    code = 5


class NoMasterKey(Error):
    """No master key exists yet: there is nothing to derive a cluster key from."""

    code = 6


class ClusterNotFound(Error):
    """No cluster has this id."""

    code = 7


class NotAMember(Error):
    """The worker is not in this cluster."""

    code = 8


class BadClusterPubkey(Error):
    """A cluster public key message not from the gatekeeper origin, malformed, for an unknown
    cluster, or not for the cluster's next unpublished epoch."""

    code = 9


class TooManyWorkers(Error):
    """A cluster holds at most MAX_WORKERS workers (each key change is sent to every one)."""

    code = 10


# -- helpers: the interface other pallets use -------------------------------------------------


def cluster(env: Env, cluster_id: bytes) -> ClusterInfo | None:
    """The cluster ``cluster_id``'s members and epochs, or ``None`` if there is none."""
    return Clusters.get_opt(env.state, cluster_id)


def cluster_of(env: Env, worker: bytes) -> bytes | None:
    """The id of the cluster ``worker`` is in, or ``None``."""
    return WorkerCluster.get_opt(env.state, worker)


def current_pubkeys(env: Env, cluster_id: bytes) -> EpochKeys | None:
    """The public keys of the cluster's current epoch, or ``None`` if there is no such cluster
    or the gatekeepers have not published them yet (never an earlier epoch's keys: a worker
    removed since could read what is encrypted to them)."""
    info = Clusters.get_opt(env.state, cluster_id)
    if info is None:
        return None
    published = ClusterPubkeys.get(env.state, cluster_id)
    return published[-1] if len(published) == len(info.epoch_rotations) else None


def _check_new_member(env: Env, worker: bytes) -> WorkerKeys:
    """The keys of ``worker`` if it may join a cluster: gatekeepers may seal secrets to it
    (``registry.key_recipient``: registered, active, sim-attested only where the chain
    accepts sim attestation) and it is in no cluster yet."""
    try:
        record = registry.key_recipient(env, worker)
    except registry.KeyRecipientRefused as refused:
        raise _REFUSALS[refused.kind](str(refused)) from None
    if WorkerCluster.contains(env.state, worker):
        raise AlreadyInCluster(f"worker {worker.hex()} is already in a cluster")
    return WorkerKeys(worker, record.info.ecdh)


_REFUSALS: dict[str, type[Error]] = {
    "not_registered": WorkerNotRegistered,
    "not_active": WorkerNotActive,
    "sim_not_allowed": SimWorkerNotAllowed,
}


def _request_keys(env: Env, request: ClusterKeyRequest) -> None:
    mq.push_outbound(env, Message(MESSAGE_ORIGIN, CLUSTER_KEY_REQUEST_TOPIC, encode(request)))


def _recipients(env: Env, workers: list[bytes]) -> list[WorkerKeys]:
    """The members' keys from their registry records (records are never deleted)."""
    keys = []
    for worker in workers:
        record = registry.worker(env, worker)
        assert record is not None, "a cluster member has no registry record"
        keys.append(WorkerKeys(worker, record.info.ecdh))
    return keys


def _existing(env: Env, cluster_id: bytes) -> ClusterInfo:
    info = Clusters.get_opt(env.state, cluster_id)
    if info is None:
        raise ClusterNotFound(f"no cluster has id {cluster_id.hex()}")
    return info


# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class create_cluster(Call, index=0):  # noqa: N801
    """Root: create a cluster of ``workers`` (in this order), in epoch 0.

    Checks in order: root, at least one worker (:class:`EmptyCluster`) and at most
    MAX_WORKERS (:class:`TooManyWorkers`), none listed twice
    (:class:`DuplicateWorker`), then for each worker in order: registered, active,
    sim-attested only where the chain accepts sim attestation, in no cluster yet
    (:class:`WorkerNotRegistered`, :class:`WorkerNotActive`, :class:`SimWorkerNotAllowed`,
    :class:`AlreadyInCluster`); last, a master key exists (:class:`NoMasterKey`). The id is
    ``cluster_id(ClusterCount)``; epoch 0 derives from the current master key rotation.
    Emits ``ClusterCreated`` and asks the gatekeepers to send every member the key and to
    publish the epoch's public keys.
    """

    workers: list[AccountId]

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        if not self.workers:
            raise EmptyCluster("a cluster needs at least one worker")
        if len(self.workers) > MAX_WORKERS:
            raise TooManyWorkers(f"a cluster holds at most {MAX_WORKERS} workers")
        if len(set(self.workers)) != len(self.workers):
            raise DuplicateWorker("a worker is listed more than once")
        keys = [_check_new_member(env, w) for w in self.workers]
        if gatekeeper.master_pubkey(env) is None:
            raise NoMasterKey("there is no master key yet to derive a cluster key from")
        count = ClusterCount.get(env.state)
        new_id = payloads.cluster_id(count)
        ClusterCount.put(env.state, count + 1)
        info = ClusterInfo(list(self.workers), [gatekeeper.rotation_counter(env)])
        Clusters.put(env.state, new_id, info)
        for worker in self.workers:
            WorkerCluster.put(env.state, worker, new_id)
        env.deposit_event(ClusterCreated(new_id, list(self.workers)))
        _request_keys(env, ClusterKeyRequest(new_id, info.epoch_rotations, keys, True))


@dataclass(frozen=True)
class add_worker(Call, index=1):  # noqa: N801
    """Root: add ``worker`` to ``cluster``, in the cluster's current epoch.

    Checks in order: root, the cluster exists (:class:`ClusterNotFound`), it has room
    (:class:`TooManyWorkers`), then the worker as in :class:`create_cluster` (registered, active, sim, in no cluster). Appends it to the
    members, emits ``WorkerAdded`` and asks the gatekeepers to send it the cluster's key
    history (no new epoch: nothing to publish).
    """

    cluster: H256
    worker: AccountId

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        info = _existing(env, self.cluster)
        if len(info.workers) >= MAX_WORKERS:
            raise TooManyWorkers(f"a cluster holds at most {MAX_WORKERS} workers")
        keys = _check_new_member(env, self.worker)
        updated = replace(info, workers=[*info.workers, self.worker])
        Clusters.put(env.state, self.cluster, updated)
        WorkerCluster.put(env.state, self.worker, self.cluster)
        env.deposit_event(WorkerAdded(self.cluster, self.worker))
        _request_keys(env, ClusterKeyRequest(self.cluster, info.epoch_rotations, [keys], False))


@dataclass(frozen=True)
class remove_worker(Call, index=2):  # noqa: N801
    """Root: remove ``worker`` from ``cluster`` and start the cluster's next epoch.

    Checks in order: root, the cluster exists (:class:`ClusterNotFound`), the worker is a
    member (:class:`NotAMember`). Removes it (and its ``WorkerCluster`` entry), appends an
    epoch that derives from the current master key rotation, emits ``WorkerRemoved`` and asks
    the gatekeepers to send the remaining members the new key and to publish its public keys
    (published even when no member remains).
    """

    cluster: H256
    worker: AccountId

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        info = _existing(env, self.cluster)
        if self.worker not in info.workers:
            raise NotAMember(f"worker {self.worker.hex()} is not in this cluster")
        remaining = [w for w in info.workers if w != self.worker]
        epochs = [*info.epoch_rotations, gatekeeper.rotation_counter(env)]
        Clusters.put(env.state, self.cluster, ClusterInfo(remaining, epochs))
        WorkerCluster.remove(env.state, self.worker)
        env.deposit_event(WorkerRemoved(self.cluster, self.worker, len(epochs) - 1))
        recipients = _recipients(env, remaining)
        _request_keys(env, ClusterKeyRequest(self.cluster, epochs, recipients, True))


# -- mq ---------------------------------------------------------------------------------------


def on_message(env: Env, message: Any) -> None:
    """A chain-only message the mq pallet accepted on one of this pallet's topics.

    ``^phala/cluster/pubkey`` from the gatekeeper origin (its master key signature checked by
    the mq pallet), payload ``encode(ClusterPubkey)``. Checks in order, each refusal a
    :class:`BadClusterPubkey` saying why: the topic, the sender kind, the payload, the cluster
    exists, the epoch is the next unpublished one and has begun. Appends the keys to the
    cluster's ``ClusterPubkeys`` and emits ``ClusterPubkeyPublished``.
    """
    if message.topic != CLUSTER_PUBKEY_TOPIC:
        raise BadClusterPubkey(f"the cluster pallet handles no topic {message.topic[:80]!r}")
    if not isinstance(message.sender, GatekeeperOrigin):
        raise BadClusterPubkey("cluster public keys come only from the gatekeeper origin")
    try:
        published = decode(ClusterPubkey, message.payload)
    except DecodeError as exc:
        raise BadClusterPubkey(f"payload must be a ClusterPubkey: {exc}") from exc
    info = Clusters.get_opt(env.state, published.cluster)
    if info is None:
        raise BadClusterPubkey(f"no cluster has id {published.cluster.hex()}")
    known = ClusterPubkeys.get(env.state, published.cluster)
    epoch = published.epoch
    if epoch < len(known):
        raise BadClusterPubkey(f"epoch {epoch} is already published")
    if epoch >= len(info.epoch_rotations):
        raise BadClusterPubkey(
            f"epoch {epoch} has not begun: the cluster is in epoch {len(info.epoch_rotations) - 1}"
        )
    if epoch != len(known):
        raise BadClusterPubkey(f"epoch {epoch}, expected the next unpublished one, {len(known)}")
    entry = EpochKeys(published.pubkey, published.ecdh)
    ClusterPubkeys.put(env.state, published.cluster, [*known, entry])
    env.deposit_event(
        ClusterPubkeyPublished(published.cluster, epoch, published.pubkey, published.ecdh)
    )


PALLET = Pallet(
    name=NAME,
    index=PALLET_INDEX,
    call=Call,
    event=Event,
    error=Error,
    topics=(CLUSTER_PUBKEY_TOPIC,),
    on_message=on_message,
)
