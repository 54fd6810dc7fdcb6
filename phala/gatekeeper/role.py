"""The gatekeeper role of a pRuntime: launching the master key.

When the chain makes this worker a gatekeeper (the outbound message
``phala/gatekeeper/registered``) and no master key exists yet, the worker generates the
master key inside its enclave, seals it to its data directory *before* telling anyone, and
announces the master public keys on ``^phala/gatekeeper/master_pubkey``. The chain keeps
the first announcement; from then on the gatekeeper is active.

It also answers the chain's randomness beacon requests as the gatekeeper origin.

Not built yet (issue 4): the handover of the master key to later gatekeepers, rotation,
cluster keys and their distribution.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from phala.core.codec import AccountId, DecodeError, decode, encode
from phala.core.derivation import KeyNode, random_number
from phala.core.gatekeeper import (
    BEACON_REQUEST_TOPIC,
    BEACON_TOPIC,
    GATEKEEPER_REGISTERED_TOPIC,
    MASTER_PUBKEY_TOPIC,
    BeaconRequest,
    BeaconValue,
    GatekeeperRegistered,
    MasterPubkeyAnnounce,
)
from phala.core.mq import GatekeeperOrigin, Message
from phala.core.storage_keys import storage_prefix
from phala.core.types import Header

log = logging.getLogger("phala.gatekeeper")

MASTER_KEY_FILE = "master_key.sealed"
MASTER_KEY_AAD = b"phala/gatekeeper/master-key/v1"
GATEKEEPERS_KEY = storage_prefix("Gatekeeper", "Gatekeepers")


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
        worker.subscribe(GATEKEEPER_REGISTERED_TOPIC, self.on_registered)
        worker.subscribe(BEACON_REQUEST_TOPIC, self.on_beacon_request)
        worker.roles.append(self)

    # -- the sealed master key ----------------------------------------------------------------

    def _aad(self) -> bytes:
        return MASTER_KEY_AAD + self.worker.identity.public_key + self.worker.pinned_genesis_hash

    def _load(self) -> KeyNode | None:
        if not self.path.exists():
            return None
        return KeyNode(self._unseal(self.path.read_bytes(), self._aad()))

    def _store(self, secret: bytes) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(self._seal(secret, self._aad()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # -- reacting to the chain ----------------------------------------------------------------

    @property
    def is_gatekeeper(self) -> bool:
        """Read from the worker's verified chain state, so it survives restarts without
        being checkpointed."""
        chain = self.worker.chain
        raw = None if chain is None else chain.get(GATEKEEPERS_KEY)
        return raw is not None and self.worker.identity.public_key in decode(list[AccountId], raw)

    def on_registered(self, header: Header, message: Message) -> None:
        try:
            event = decode(GatekeeperRegistered, message.payload)
        except DecodeError:
            log.warning("ignoring an undecodable gatekeeper message at #%d", header.number)
            return
        if event.identity != self.worker.identity.public_key:
            return
        log.info("made a gatekeeper at #%d", header.number)
        if event.is_first and self.master is None:
            secret = os.urandom(32)  # inside the enclave: the only place the master key exists
            self._store(secret)  # sealed before anyone hears of it: a crash cannot lose it
            self.master = KeyNode(secret)
            log.info("generated the master key")
        if event.is_first and self.master is not None:
            self.worker.send(Message(self.worker.origin, MASTER_PUBKEY_TOPIC, encode(self.announcement())))

    def on_beacon_request(self, header: Header, message: Message) -> None:
        """Answer the chain's beacon request as the gatekeeper origin. The value follows from
        the master key, the round and the previous value, so every gatekeeper sends the same
        signed payload and nobody without the master key can predict it."""
        if self.master is None or not self.is_gatekeeper:
            return
        try:
            request = decode(BeaconRequest, message.payload)
        except DecodeError:
            log.warning("ignoring an undecodable beacon request at #%d", header.number)
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
