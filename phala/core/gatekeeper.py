"""Gatekeeper messages, as both the chain's Gatekeeper pallet and the pRuntimes see them.

* ``phala/gatekeeper/registered`` (chain → pRuntimes, sent by the pallet
  ``PalletOrigin(b"Gatekeeper")``): root made a worker a gatekeeper; payload
  :class:`GatekeeperRegistered`. ``is_first`` is true for the first gatekeeper ever (no other
  gatekeeper, no master public key): it generates the master key. Every other gatekeeper
  waits for the key history from the existing ones. If the first one is unregistered before
  it published the key, the pallet sends the message again, with ``is_first``, for the next.
* ``^phala/gatekeeper/master_pubkey`` (a gatekeeper → the chain only, sent as
  ``WorkerOrigin(identity)``): the first gatekeeper publishes the master public keys it derived
  from the master key it generated; payload :class:`MasterPubkeyAnnounce`. The chain accepts
  it only from a registered gatekeeper and only while it has no master public key.

Only one gatekeeper is ever told ``is_first``, so only one master key is ever generated;
the chain would keep the first announcement and refuse any other anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import H256, AccountId, u64

GATEKEEPER_REGISTERED_TOPIC = b"phala/gatekeeper/registered"
MASTER_PUBKEY_TOPIC = b"^phala/gatekeeper/master_pubkey"


@dataclass(frozen=True)
class GatekeeperRegistered:
    """Payload of ``phala/gatekeeper/registered``."""

    identity: AccountId  # the worker's identity key
    is_first: bool  # the first gatekeeper, and no master key yet: it generates the key
    ecdh: H256  # the worker's X25519 key: existing gatekeepers hand the master key over to it


@dataclass(frozen=True)
class MasterPubkeyAnnounce:
    """Payload of ``^phala/gatekeeper/master_pubkey``: the master key's public halves."""

    master_pubkey: H256  # sr25519 public key of the master key (the gatekeeper origin's key)
    ecdh_pubkey: H256  # X25519 public key derived from the master key


# -- the randomness beacon ----------------------------------------------------------------------
#
# Every BEACON_INTERVAL blocks (once a master key exists) the Gatekeeper pallet asks for the
# next round on ``phala/gatekeeper/beacon_request``; every gatekeeper answers on the chain-only
# ``^phala/gatekeeper/beacon`` as the gatekeeper origin (signed with the master key), with
# ``value = random_number(master, round, previous)``. The answer is the same from every
# gatekeeper; nobody without the master key can predict it. The chain keeps the first valid
# answer, which must name the next round and link to the previous value.

BEACON_REQUEST_TOPIC = b"phala/gatekeeper/beacon_request"
BEACON_TOPIC = b"^phala/gatekeeper/beacon"
BEACON_INTERVAL = 10


@dataclass(frozen=True)
class BeaconRequest:
    round: u64
    previous: H256  # the last published value (zeros before the first round)


@dataclass(frozen=True)
class BeaconValue:
    round: u64
    previous: H256
    value: H256


# -- handover of the master key -----------------------------------------------------------------
#
# When root makes another worker a gatekeeper, every existing gatekeeper sends, as the
# gatekeeper origin, the master key history encrypted to the newcomer's ECDH key on
# ``phala/gatekeeper/master_key``. Ephemeral key and IV are derived from the master key and
# the context (recipient, rotation id, sequence), so every gatekeeper sends the same bytes.

MASTER_KEY_TOPIC = b"phala/gatekeeper/master_key"
HANDOVER_INFO = b"phala/gatekeeper/handover/v1"


@dataclass(frozen=True)
class MasterKeyHistory:
    keys: list[H256]  # every master key so far, by rotation id (0: the first), the current last


@dataclass(frozen=True)
class MasterKeyHandover:
    recipient: AccountId  # the new gatekeeper's identity
    envelope: bytes  # Envelope.to_bytes() of encode(MasterKeyHistory), aad = genesis ++ recipient


# -- rotation of the master key -----------------------------------------------------------------
#
# Root calls ``Gatekeeper.rotate_master_key``; the pallet locks rotation and sends
# ``phala/gatekeeper/rotation_request`` (:class:`RotationRequest`) naming the rotation id
# (the rotation counter + 1) and every gatekeeper with its ECDH key. Each gatekeeper draws a
# fresh random key in its enclave and sends, as its own worker origin (so signed with its
# identity key), a :class:`RotationBatch` on the chain-only ``^phala/gatekeeper/rotation_batch``:
# the new key sealed to every listed gatekeeper (itself included), each envelope with
# associated data ``rotation_aad(genesis, rotation id, recipient)``. The chain keeps the first
# valid batch for the rotation id, records the new public keys and the counter, releases the
# lock and sends the batch on ``phala/gatekeeper/rotated`` (:class:`MasterKeyRotated`); every
# gatekeeper opens its envelope and appends the key to its history.
#
# These envelopes use random ephemeral keys and IVs (each gatekeeper's batch is its own; only
# one is kept), unlike the derived ones of messages every gatekeeper sends identically.

ROTATION_REQUEST_TOPIC = b"phala/gatekeeper/rotation_request"
ROTATION_BATCH_TOPIC = b"^phala/gatekeeper/rotation_batch"
ROTATED_TOPIC = b"phala/gatekeeper/rotated"
ROTATION_INFO = b"phala/gatekeeper/rotation/v1"


@dataclass(frozen=True)
class WorkerKeys:
    """A worker's public keys, as the registry holds them."""

    identity: AccountId
    ecdh: H256


@dataclass(frozen=True)
class RotationRequest:
    rotation_id: u64  # the rotation counter once this rotation completes
    gatekeepers: list[WorkerKeys]  # every gatekeeper, in registration order


@dataclass(frozen=True)
class RotationEnvelope:
    recipient: AccountId
    envelope: bytes  # Envelope.to_bytes() of the new 32-byte key


@dataclass(frozen=True)
class RotationBatch:
    rotation_id: u64
    master_pubkey: H256  # sr25519 public key of the new master key
    ecdh_pubkey: H256  # its X25519 public key
    envelopes: list[RotationEnvelope]  # one per gatekeeper of the request, in its order


@dataclass(frozen=True)
class MasterKeyRotated:
    """Payload of ``phala/gatekeeper/rotated``: the batch the chain kept, and who sent it."""

    proposer: AccountId
    batch: RotationBatch


def rotation_aad(genesis_hash: bytes, rotation_id: int, recipient: bytes) -> bytes:
    """Associated data of a rotation envelope: it opens only for that chain, that rotation and
    that recipient."""
    return ROTATION_INFO + genesis_hash + rotation_id.to_bytes(8, "little") + recipient
