"""The gatekeeper role of a pRuntime: the master key's launch, handover, rotation and use.

* Launch: when the chain makes this worker the first gatekeeper
  (``phala/gatekeeper/registered`` with ``is_first``), it generates the master key inside its
  enclave, seals it *before* telling anyone, and announces the public keys on
  ``^phala/gatekeeper/master_pubkey``.
* Handover: when the chain makes another worker a gatekeeper, every gatekeeper sends it the
  whole key history, sealed to its ECDH key (:meth:`GatekeeperRole.hand_over`); the newcomer
  checks every key against the chain's ``MasterPubkeyHistory``.
* Rotation: on ``phala/gatekeeper/rotation_request`` each gatekeeper proposes a fresh random
  key sealed to every gatekeeper; on ``phala/gatekeeper/rotated`` each adopts the batch the
  chain kept.
* The gatekeeper origin: messages every gatekeeper sends identically (handovers, cluster
  keys, beacon values) are signed with the current master key's sr25519 key. Their ephemeral
  keys and IVs derive from the master key and a unique context, so the payloads are
  byte-identical and no (key, IV) pair repeats (:meth:`GatekeeperRole.seal_derived`).
* Cluster keys are distributed by :mod:`phala.gatekeeper.distribution`.

Every trigger is an outbound message of a pallet, read from verified blocks; the worker
accepts it only from that pallet (``Worker.subscribe``), and the role checks what it can
against verified chain state besides (that a recipient is a gatekeeper, may hold keys, ...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from phala.core.codec import DecodeError, decode, encode
from phala.core.derivation import KeyNode, iv_generator, random_number, u64le
from phala.core.envelope import Envelope, EnvelopeError, open_envelope, seal
from phala.core.gatekeeper import (
    BEACON_REQUEST_TOPIC,
    BEACON_TOPIC,
    GATEKEEPER_REGISTERED_TOPIC,
    HANDOVER_INFO,
    MASTER_KEY_TOPIC,
    MASTER_PUBKEY_TOPIC,
    ROTATED_TOPIC,
    ROTATION_BATCH_TOPIC,
    ROTATION_INFO,
    ROTATION_REQUEST_TOPIC,
    BeaconRequest,
    BeaconValue,
    GatekeeperRegistered,
    MasterKeyHandover,
    MasterKeyHistory,
    MasterKeyRotated,
    MasterPubkeyAnnounce,
    RotationBatch,
    RotationEnvelope,
    RotationRequest,
    rotation_aad,
)
from phala.core.mq import GatekeeperOrigin, Message, PalletOrigin
from phala.core.types import Header
from phala.pruntime import chain_reads

from .keys import MASTER_KEY_FILE, MasterKeys

log = logging.getLogger("phala.gatekeeper")

GATEKEEPER_PALLET = PalletOrigin(b"Gatekeeper")
HANDOVER = "master_key_handover"


class GatekeeperRole:
    """Attach to a worker: ``GatekeeperRole(worker, data_dir, seal, unseal)``."""

    def __init__(
        self,
        worker,
        data_dir: Path,
        seal: Callable[[bytes, bytes], bytes],
        unseal: Callable[[bytes, bytes], bytes],
    ):
        self.worker = worker
        aad = worker.identity.public_key + worker.pinned_genesis_hash
        self.keys = MasterKeys(Path(data_dir) / MASTER_KEY_FILE, seal, unseal, aad)
        on = worker.subscribe
        on(GATEKEEPER_REGISTERED_TOPIC, GatekeeperRegistered, self.on_registered, GATEKEEPER_PALLET)
        on(BEACON_REQUEST_TOPIC, BeaconRequest, self.on_beacon_request, GATEKEEPER_PALLET)
        on(ROTATION_REQUEST_TOPIC, RotationRequest, self.on_rotation_request, GATEKEEPER_PALLET)
        on(ROTATED_TOPIC, MasterKeyRotated, self.on_rotated, GATEKEEPER_PALLET)
        on(MASTER_KEY_TOPIC, MasterKeyHandover, self.on_handover, GatekeeperOrigin())
        worker.roles.append(self)

    @property
    def master(self) -> KeyNode | None:
        """The current master key, once this gatekeeper holds the whole history."""
        return self.keys.current

    @property
    def me(self) -> bytes:
        return self.worker.identity.public_key

    @property
    def is_gatekeeper(self) -> bool:
        """Read from the worker's verified chain state, so it survives restarts without
        being checkpointed."""
        chain = self.worker.chain
        return chain is not None and self.me in chain_reads.gatekeepers(chain)

    def master_at_chain(self) -> KeyNode | None:
        """The master key of the rotation the chain is at (by its verified
        ``MasterPubkeyHistory``), if this gatekeeper holds it and every older one.

        Not simply the newest key held: a gatekeeper resumed from an older checkpoint replays
        blocks from before rotations it already adopted, and must act in them exactly as it
        did the first time (same key, same bytes)."""
        history = chain_reads.master_pubkey_history(self.worker.chain)
        rotation = len(history) - 1
        slots = self.keys.slots
        if rotation < 0 or len(slots) <= rotation or any(k is None for k in slots[: rotation + 1]):
            return None
        key = slots[rotation]
        return key if key.sr25519().public_key == history[rotation] else None

    @property
    def active(self) -> bool:
        """A gatekeeper now, holding every key up to the chain's current master key: may act
        for the gatekeeper origin."""
        return self.is_gatekeeper and self.master_at_chain() is not None

    # -- speaking as the gatekeeper origin -----------------------------------------------------

    def send_as_gatekeeper(self, topic: bytes, payload: bytes) -> None:
        master = self.master_at_chain()
        assert master is not None
        self.worker.send(Message(GatekeeperOrigin(), topic, payload), key=master.sr25519())

    def seal_derived(self, purpose: str, recipient: bytes, plaintext: bytes, aad: bytes, info: bytes) -> bytes:
        """Seal ``plaintext`` to the registered worker ``recipient`` for the next gatekeeper
        origin message, with an ephemeral key and IV derived from the current master key and
        the context (purpose, recipient, rotation id, sequence): every gatekeeper produces
        the same bytes, and since the sequence never repeats, neither does the context.
        Raises ``ValueError`` when ``recipient`` may not hold keys (the reason says why)."""
        master = self.master_at_chain()
        assert master is not None
        chain = self.worker.chain
        refusal = chain_reads.key_refusal(chain, recipient)
        if refusal is not None:
            raise ValueError(f"no keys for 0x{recipient.hex()}: {refusal}")
        ecdh = chain_reads.registered_worker(chain, recipient).info.ecdh
        rotation = len(chain_reads.master_pubkey_history(chain)) - 1
        sequence = self.worker.sequence_for(GatekeeperOrigin())
        context = (recipient, u64le(rotation), u64le(sequence))
        envelope = seal(
            ecdh,
            plaintext,
            aad,
            info=info,
            ephemeral=master.derive(purpose, *context).x25519(),
            nonce=iv_generator(master, purpose, recipient, rotation, sequence),
        )
        return envelope.to_bytes()

    # -- launch --------------------------------------------------------------------------------

    def on_registered(self, header: Header, message: Message, event: GatekeeperRegistered) -> None:
        if event.identity != self.me:
            if not event.is_first and self.active:
                self.hand_over(event.identity)
            return
        log.info("made a gatekeeper at #%d", header.number)
        if not event.is_first:
            return  # the key history comes from the existing gatekeepers
        if not self.keys.slots:
            # Inside the enclave: the only place the master key exists. Sealed before anyone
            # hears of it, so a crash after the announcement cannot lose it.
            self.keys.put(0, KeyNode(os.urandom(32)))
            log.info("generated the master key")
        if self.master is not None:
            self.worker.send(Message(self.worker.origin, MASTER_PUBKEY_TOPIC, encode(self.announcement())))

    # -- handover ------------------------------------------------------------------------------

    def _handover_aad(self, recipient: bytes) -> bytes:
        return self.worker.pinned_genesis_hash + recipient

    def hand_over(self, recipient: bytes) -> None:
        """Send the whole key history to the new gatekeeper ``recipient``, sealed to its
        ECDH key (see :meth:`seal_derived`). Only to a gatekeeper the chain lists."""
        if recipient not in chain_reads.gatekeepers(self.worker.chain):
            log.warning("not handing the master key to 0x%s: not a gatekeeper on chain", recipient.hex())
            return
        rotation = len(chain_reads.master_pubkey_history(self.worker.chain))
        history = encode(MasterKeyHistory([k.secret for k in self.keys.slots[:rotation]]))
        try:
            envelope = self.seal_derived(HANDOVER, recipient, history, self._handover_aad(recipient), HANDOVER_INFO)
        except ValueError as exc:
            log.warning("not handing the master key over: %s", exc)
            return
        self.send_as_gatekeeper(MASTER_KEY_TOPIC, encode(MasterKeyHandover(recipient, envelope)))
        log.info("handed the master key history over to 0x%s", recipient.hex())

    def on_handover(self, header: Header, message: Message, handover: MasterKeyHandover) -> None:
        """Receive the key history: only if addressed to this worker, and only if every key
        matches the chain's public key of its rotation."""
        if handover.recipient != self.me or self.master is not None:
            return
        try:
            plain = open_envelope(
                self.worker.identity.ecdh.secret,
                Envelope.from_bytes(handover.envelope),
                self._handover_aad(self.me),
                info=HANDOVER_INFO,
            )
            history = [KeyNode(k) for k in decode(MasterKeyHistory, plain).keys]
        except (EnvelopeError, DecodeError, ValueError) as exc:
            log.warning("a master key handover at #%d does not open: %s", header.number, exc)
            return
        on_chain = chain_reads.master_pubkey_history(self.worker.chain)
        if not history or [k.sr25519().public_key for k in history] != on_chain[: len(history)]:
            log.warning("a master key handover at #%d does not match the chain's master keys", header.number)
            return
        self.keys.merge(history)
        log.info("received %d master key(s) at #%d", len(history), header.number)
        self._resign()

    # -- rotation ------------------------------------------------------------------------------

    def on_rotation_request(self, header: Header, message: Message, request: RotationRequest) -> None:
        """Propose a fresh key for the rotation: drawn in the enclave, sealed to every
        gatekeeper of the request (this one too: it adopts the key from the chain's copy,
        so nothing needs keeping meanwhile), sent as this worker so its identity key signs."""
        if self.me not in [g.identity for g in request.gatekeepers] or not self.is_gatekeeper:
            return
        fresh = KeyNode(os.urandom(32))
        genesis = self.worker.pinned_genesis_hash
        envelopes = []
        for gk in request.gatekeepers:
            sealed = seal(gk.ecdh, fresh.secret, rotation_aad(genesis, request.rotation_id, gk.identity), info=ROTATION_INFO)
            envelopes.append(RotationEnvelope(gk.identity, sealed.to_bytes()))
        batch = RotationBatch(request.rotation_id, fresh.sr25519().public_key, fresh.x25519().public, envelopes)
        self.worker.send(Message(self.worker.origin, ROTATION_BATCH_TOPIC, encode(batch)))
        log.info("proposed a key for master key rotation %d", request.rotation_id)

    def on_rotated(self, header: Header, message: Message, rotated: MasterKeyRotated) -> None:
        """Adopt the key of the batch the chain kept."""
        batch = rotated.batch
        mine = [e for e in batch.envelopes if e.recipient == self.me]
        if not mine:
            return
        try:
            secret = open_envelope(
                self.worker.identity.ecdh.secret,
                Envelope.from_bytes(mine[0].envelope),
                rotation_aad(self.worker.pinned_genesis_hash, batch.rotation_id, self.me),
                info=ROTATION_INFO,
            )
            key = KeyNode(secret)
        except (EnvelopeError, ValueError) as exc:
            log.error("cannot open my key of master key rotation %d: %s", batch.rotation_id, exc)
            return
        if key.sr25519().public_key != batch.master_pubkey:
            log.error("the key of master key rotation %d does not match its public key", batch.rotation_id)
            return
        self.keys.put(batch.rotation_id, key)
        log.info("adopted master key rotation %d at #%d", batch.rotation_id, header.number)
        self._resign()

    def _resign(self) -> None:
        """Queued gatekeeper-origin messages were signed with an older key: the chain checks
        the current one."""
        master = self.master_at_chain()
        if master is not None:
            self.worker.resign(GatekeeperOrigin(), master.sr25519())

    # -- the beacon ----------------------------------------------------------------------------

    def on_beacon_request(self, header: Header, message: Message, request: BeaconRequest) -> None:
        """Answer the chain's beacon request as the gatekeeper origin. The value follows from
        the master key, the round and the previous value, so every gatekeeper sends the same
        signed payload and nobody without the master key can predict it."""
        if not self.active:
            return
        value = random_number(self.master_at_chain(), request.round, request.previous)
        self.send_as_gatekeeper(BEACON_TOPIC, encode(BeaconValue(request.round, request.previous, value)))

    def announcement(self) -> MasterPubkeyAnnounce:
        assert self.master is not None
        return MasterPubkeyAnnounce(self.master.sr25519().public_key, self.master.x25519().public)

    def info(self) -> dict:
        return {
            "role": "gatekeeper" if self.is_gatekeeper else None,
            "masterPubkey": None if self.master is None else "0x" + self.announcement().master_pubkey.hex(),
            "masterRotation": None if self.master is None else self.keys.rotation,
        }
