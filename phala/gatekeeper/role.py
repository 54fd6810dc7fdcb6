"""The gatekeeper role of a pRuntime: launching the master key.

When the chain makes this worker a gatekeeper (the outbound message
``phala/gatekeeper/registered``) and no master key exists yet, the worker generates the
master key inside its enclave, seals it to its data directory *before* telling anyone, and
announces the master public keys on ``^phala/gatekeeper/master_pubkey``. The chain keeps
the first announcement; from then on the gatekeeper is active.

It also answers the chain's randomness beacon requests as the gatekeeper origin.

A later gatekeeper receives the master key from the existing ones (``hand_over`` /
``on_handover``) and checks it against the master public key on chain.

Not built yet (issue 4): rotation, cluster keys and their distribution.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from phala.core.codec import AccountId, DecodeError, decode, encode
from phala.core.derivation import KeyNode, iv_generator, random_number
from phala.core.envelope import Envelope, EnvelopeError, open_envelope, seal
from phala.core.gatekeeper import (
    BEACON_REQUEST_TOPIC,
    BEACON_TOPIC,
    GATEKEEPER_REGISTERED_TOPIC,
    HANDOVER_INFO,
    MASTER_KEY_TOPIC,
    MASTER_PUBKEY_TOPIC,
    BeaconRequest,
    BeaconValue,
    GatekeeperRegistered,
    MasterKeyHandover,
    MasterKeyHistory,
    MasterPubkeyAnnounce,
)
from phala.core.mq import GatekeeperOrigin, Message
from phala.core.storage_keys import storage_prefix
from phala.core.types import Header
from phala.pruntime.enclave.files import replace_file

log = logging.getLogger("phala.gatekeeper")

MASTER_KEY_FILE = "master_key.sealed"
MASTER_KEY_AAD = b"phala/gatekeeper/master-key/v1"
GATEKEEPERS_KEY = storage_prefix("Gatekeeper", "Gatekeepers")
MASTER_PUBKEY_KEY = storage_prefix("Gatekeeper", "MasterPubkey")
HANDOVER = "master_key_handover"
ROTATION_ID = 0  # no rotation yet: every handover is of the first master key


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
        self.path = Path(data_dir) / MASTER_KEY_FILE
        self._seal, self._unseal = seal, unseal
        self.master: KeyNode | None = self._load()
        worker.subscribe(GATEKEEPER_REGISTERED_TOPIC, GatekeeperRegistered, self.on_registered)
        worker.subscribe(BEACON_REQUEST_TOPIC, BeaconRequest, self.on_beacon_request)
        worker.subscribe(MASTER_KEY_TOPIC, MasterKeyHandover, self.on_handover)
        worker.roles.append(self)

    # -- the sealed master key ----------------------------------------------------------------

    def _aad(self) -> bytes:
        return MASTER_KEY_AAD + self.worker.identity.public_key + self.worker.pinned_genesis_hash

    def _load(self) -> KeyNode | None:
        if not self.path.exists():
            return None
        return KeyNode(self._unseal(self.path.read_bytes(), self._aad()))

    def _store(self, secret: bytes) -> None:
        replace_file(self.path, self._seal(secret, self._aad()))

    # -- reacting to the chain ----------------------------------------------------------------

    @property
    def is_gatekeeper(self) -> bool:
        """Read from the worker's verified chain state, so it survives restarts without
        being checkpointed."""
        chain = self.worker.chain
        raw = None if chain is None else chain.get(GATEKEEPERS_KEY)
        return raw is not None and self.worker.identity.public_key in decode(list[AccountId], raw)

    def on_registered(self, header: Header, message: Message, event: GatekeeperRegistered) -> None:
        if event.identity != self.worker.identity.public_key:
            if not event.is_first and self.master is not None and self.is_gatekeeper:
                self.hand_over(event.identity, event.ecdh)
            return
        log.info("made a gatekeeper at #%d", header.number)
        if event.is_first and self.master is None:
            secret = os.urandom(32)  # inside the enclave: the only place the master key exists
            self._store(secret)  # sealed before anyone hears of it: a crash cannot lose it
            self.master = KeyNode(secret)
            log.info("generated the master key")
        if event.is_first and self.master is not None:
            self.worker.send(Message(self.worker.origin, MASTER_PUBKEY_TOPIC, encode(self.announcement())))

    # -- handover ------------------------------------------------------------------------------

    def _handover_aad(self, recipient: bytes) -> bytes:
        return self.worker.pinned_genesis_hash + recipient

    def hand_over(self, recipient: bytes, recipient_ecdh: bytes) -> None:
        """Send the master key history to a new gatekeeper, encrypted to its ECDH key. The
        ephemeral key and the IV come from the master key and the context (recipient,
        rotation id, sequence), so every gatekeeper sends the same bytes and no (key, IV)
        pair repeats."""
        assert self.master is not None
        origin = GatekeeperOrigin()
        sequence = self.worker.sequence_for(origin)
        context = (recipient, ROTATION_ID.to_bytes(8, "little"), sequence.to_bytes(8, "little"))
        envelope = seal(
            recipient_ecdh,
            encode(MasterKeyHistory([self.master.secret])),
            self._handover_aad(recipient),
            info=HANDOVER_INFO,
            ephemeral=self.master.derive(HANDOVER, *context).x25519(),
            nonce=iv_generator(self.master, HANDOVER, recipient, ROTATION_ID, sequence),
        )
        payload = encode(MasterKeyHandover(recipient, envelope.to_bytes()))
        self.worker.send(Message(origin, MASTER_KEY_TOPIC, payload), key=self.master.sr25519())
        log.info("handed the master key over to 0x%s", recipient.hex())

    def on_handover(self, header: Header, message: Message, handover: MasterKeyHandover) -> None:
        """Receive the master key: only from the gatekeeper origin (the chain checked the
        master key's signature), only if addressed to this worker, and only if it matches
        the master public key on chain."""
        me = self.worker.identity.public_key
        if self.master is not None or message.sender != GatekeeperOrigin():
            return
        if handover.recipient != me:
            return
        try:
            plain = open_envelope(
                self.worker.identity.ecdh.secret,
                Envelope.from_bytes(handover.envelope),
                self._handover_aad(me),
                info=HANDOVER_INFO,
            )
            history = decode(MasterKeyHistory, plain)
        except (EnvelopeError, DecodeError) as exc:
            log.warning("a master key handover at #%d does not open: %s", header.number, exc)
            return
        if not history.keys:
            return
        candidate = KeyNode(history.keys[-1])
        on_chain = self.worker.chain.get(MASTER_PUBKEY_KEY)
        if on_chain is None or candidate.sr25519().public_key != on_chain:
            log.warning("a master key handover at #%d does not match the chain's master key", header.number)
            return
        self._store(candidate.secret)
        self.master = candidate
        log.info("received the master key at #%d", header.number)

    # -- the beacon ----------------------------------------------------------------------------

    def on_beacon_request(self, header: Header, message: Message, request: BeaconRequest) -> None:
        """Answer the chain's beacon request as the gatekeeper origin. The value follows from
        the master key, the round and the previous value, so every gatekeeper sends the same
        signed payload and nobody without the master key can predict it."""
        if self.master is None or not self.is_gatekeeper:
            return
        value = random_number(self.master, request.round, request.previous)
        beacon = BeaconValue(request.round, request.previous, value)
        self.worker.send(Message(GatekeeperOrigin(), BEACON_TOPIC, encode(beacon)), key=self.master.sr25519())

    def announcement(self) -> MasterPubkeyAnnounce:
        assert self.master is not None
        return MasterPubkeyAnnounce(self.master.sr25519().public_key, self.master.x25519().public)

    def info(self) -> dict:
        return {
            "role": "gatekeeper" if self.is_gatekeeper else None,
            "masterPubkey": None if self.master is None else "0x" + self.announcement().master_pubkey.hex(),
        }
