"""The worker (pRuntime): identity, verified chain state, egress messages, checkpoints.

Every call comes from the worker's relayer, which is trusted for nothing. Each call either
succeeds or raises :class:`WorkerError` with the reason and leaves the worker as it was
(``dispatch_blocks`` keeps the blocks it verified before the first bad one).
Every answer names the block it was computed at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phala.core.attestation import (
    WORKER_ONLINE_TOPIC,
    WORKER_REGISTERED_TOPIC,
    AttestationReport,
    WorkerRegistered,
    WorkerRegistrationInfo,
    report_data,
    sign_endpoint,
)
from phala.core.codec import DecodeError, decode, encode, u32
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair
from phala.core.light_client import LightClient, LightClientError
from phala.core.mq import (
    Message,
    MessageOrigin,
    PalletOrigin,
    SignedMessage,
    WorkerOrigin,
    sign_message,
)
from phala.core.types import BlockChanges, Header, Justification

from .chain_state import ChainState, SyncError

log = logging.getLogger("phala.pruntime")

PRUNTIME_VERSION = 1


class WorkerError(Exception):
    """A request the worker refuses; ``code`` is an HTTP-like status."""

    def __init__(self, message: str, code: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code


REGISTRY_ORIGIN = PalletOrigin(b"Registry")


@dataclass(frozen=True)
class Subscription:
    payload: type
    handler: Callable[[Header, Message, Any], None]
    sender: MessageOrigin


@dataclass(frozen=True)
class Registration:
    info: WorkerRegistrationInfo
    attestation: AttestationReport


class Worker:
    """The pRuntime's logic, independent of transport and of the enclave backend."""

    def __init__(self, identity, enclave, pinned_genesis_hash: bytes):
        """``identity``: a ``phala.pruntime.identity.WorkerIdentity``; ``enclave``: an
        ``Enclave``; ``pinned_genesis_hash`` comes from the operator, never the relayer."""
        self.identity = identity
        self.enclave = enclave
        self.pinned_genesis_hash = pinned_genesis_hash
        self.chain: ChainState | None = None
        self.operator: bytes | None = None
        self.registration: Registration | None = None
        self.registered = False
        self.egress: list[SignedMessage] = []  # signed, not yet seen on chain
        self.next_sequence = 0  # sequence of the next message this worker signs
        # Handlers of the chain's outbound messages, by topic. Later roles (gatekeeper,
        # contracts) subscribe here; each gets the block and the message, in chain order.
        self.subscribers: dict[bytes, list[Subscription]] = {}
        self.roles: list = []  # e.g. the gatekeeper role, which adds to get_info
        self.subscribe(WORKER_REGISTERED_TOPIC, WorkerRegistered, self._on_registered, REGISTRY_ORIGIN)

    def subscribe(
        self,
        topic: bytes,
        payload: type,
        handler: Callable[[Header, Message, Any], None],
        sender: MessageOrigin,
    ) -> None:
        """Call ``handler(header, message, decoded payload)`` for each outbound message on
        ``topic`` sent by ``sender``. Anyone can push a message on any topic that is not
        chain-only (an account, any worker), so a message from another sender is logged and
        skipped, as is a payload that does not decode as ``payload``."""
        self.subscribers.setdefault(topic, []).append(Subscription(payload, handler, sender))

    # -- identity -----------------------------------------------------------------------------

    @property
    def origin(self) -> WorkerOrigin:
        return WorkerOrigin(self.identity.public_key)

    def _chain(self) -> ChainState:
        if self.chain is None:
            raise WorkerError("the runtime is not initialised: call init_runtime first", 409)
        return self.chain

    # -- calls from the relayer ---------------------------------------------------------------

    def init_runtime(
        self, genesis: Header, authority_proof: list[bytes], operator: bytes | None
    ) -> Registration:
        """Start following the chain from ``genesis``; return the registration to submit.

        The genesis header must hash to the pinned genesis hash and the authority set must
        be proven against its state root. Calling it again with the same genesis only
        returns a fresh registration (an attestation is cheap to remake).
        """
        if self.chain is None:
            try:
                light = LightClient(genesis, authority_proof, self.pinned_genesis_hash)
            except LightClientError as exc:
                raise WorkerError(str(exc)) from exc
            self.chain = ChainState(light)
            self.operator = operator
        elif genesis.hash != self.chain.genesis_hash:
            raise WorkerError("the runtime already follows another genesis", 409)
        elif operator != self.operator:
            raise WorkerError("the runtime is already initialised for another operator", 409)
        self.registration = None
        return self.current_registration()

    def current_registration(self) -> Registration:
        """The registration to submit, with a fresh quote the first time it is asked for
        (after a restart from a checkpoint too)."""
        chain = self._chain()
        if self.registration is None:
            info = self.identity.registration_info(chain.genesis_hash, self.operator, PRUNTIME_VERSION)
            self.registration = Registration(info, self.enclave.quote(report_data(info)))
        return self.registration

    def sync_header(self, headers: list[Header], justification: Justification) -> Header:
        try:
            return self._chain().sync_headers(headers, justification)
        except SyncError as exc:
            raise WorkerError(str(exc)) from exc

    def dispatch_blocks(self, blocks: list[BlockChanges]) -> tuple[Header, int]:
        """Apply blocks in order; returns the last dispatched header and how many were
        applied. The first bad block stops the batch with an error (earlier ones stay)."""
        chain = self._chain()
        if not blocks:
            raise WorkerError("no blocks")
        for applied, block in enumerate(blocks):
            try:
                done = chain.dispatch(block)
            except SyncError as exc:
                raise WorkerError(f"{exc} ({applied} earlier blocks of this batch were applied)") from exc
            self._on_block(done.header, done.messages)
        return chain.dispatched, len(blocks)  # type: ignore[return-value]

    def egress_messages(self) -> list[SignedMessage]:
        return list(self.egress)

    def sign_endpoint(self, endpoint: bytes | None) -> tuple[int, bytes]:
        """Sign ``Registry.update_worker_endpoint`` for ``endpoint``. The counter is the next
        block number, so a newer signature always beats an older one on chain."""
        chain = self._chain()
        counter = chain.next_block
        return counter, sign_endpoint(self.identity.keypair, chain.genesis_hash, endpoint, counter)

    # -- reacting to the chain ----------------------------------------------------------------

    def _on_block(self, header: Header, messages: list[Message]) -> None:
        chain = self._chain()
        # Messages the chain has accepted are no longer egress.
        accepted = chain.mq_next_sequence(self.origin)
        self.egress = [m for m in self.egress if m.sequence >= chain.mq_next_sequence(m.message.sender)]
        if self.next_sequence < accepted:
            self.next_sequence = accepted  # resumed from an older checkpoint
        for message in messages:
            for sub in self.subscribers.get(message.topic, ()):
                if message.sender != sub.sender:
                    log.warning("ignoring a %r message from %s at #%d: only %s sends it",
                                message.topic, message.sender, header.number, sub.sender)
                    continue
                try:
                    decoded = decode(sub.payload, message.payload)
                except DecodeError:
                    log.warning("ignoring an undecodable %r message at #%d", message.topic, header.number)
                    continue
                sub.handler(header, message, decoded)
        for role in self.roles:  # roles that act once per block, after all its messages
            end = getattr(role, "on_block_end", None)
            if end is not None:
                end(header)

    def _on_registered(self, header: Header, message: Message, event: WorkerRegistered) -> None:
        if event.identity != self.identity.public_key:
            return
        self.registered = True
        log.info("registered on chain at #%d (confidence %d)", header.number, event.confidence)
        self.send(Message(self.origin, WORKER_ONLINE_TOPIC, encode(header.number, u32)))

    def send(self, message: Message, key: Keypair | None = None) -> None:
        """Sign ``message`` with the next sequence of its origin and queue it for the relayer.

        Without ``key`` it goes out as this worker (identity key, the worker's own sequence).
        A role that speaks for a shared origin (the gatekeeper origin, signed with the master
        key) passes that origin's key; its next sequence follows from the chain's and from
        what is already queued, so every holder of the key computes the same one.
        """
        chain = self._chain()
        sequence = self.sequence_for(message.sender)
        if key is None:
            self.next_sequence += 1
            key = self.identity.keypair
        self.egress.append(sign_message(key, chain.genesis_hash, message, sequence))

    def resign(self, origin: MessageOrigin, key: Keypair) -> None:
        """Sign the queued messages of ``origin`` again with ``key``: the gatekeeper origin's
        key changes when the master key rotates, and the chain checks the current one."""
        chain = self._chain()
        self.egress = [
            sign_message(key, chain.genesis_hash, m.message, m.sequence) if m.message.sender == origin else m
            for m in self.egress
        ]

    def sequence_for(self, origin) -> int:
        """The sequence the next message from ``origin`` will carry (see :meth:`send`)."""
        if origin == self.origin:
            return self.next_sequence
        expected = self._chain().mq_next_sequence(origin)
        for m in reversed(self.egress):  # an origin's messages are queued in sequence order
            if m.message.sender == origin:
                return max(expected, m.sequence + 1)
        return expected

    # -- reporting ----------------------------------------------------------------------------

    def state_hash(self) -> bytes:
        """A digest of everything the worker derived from the chain. Two workers that
        dispatched the same blocks have the same state hash (signatures, which are
        randomised, are left out)."""
        chain = self._chain()
        position = b"" if chain.dispatched is None else chain.dispatched.hash
        egress = b"".join(encode(m.message) + m.sequence.to_bytes(8, "little") for m in self.egress)
        return blake2_256(
            position
            + chain.tree.root()
            + bytes([self.registered])
            + self.next_sequence.to_bytes(8, "little")
            + blake2_256(egress)
        )

    def info(self) -> dict:
        chain = self.chain
        dispatched = None if chain is None or chain.dispatched is None else chain.dispatched
        return {
            "initialized": chain is not None,
            "genesisHash": "0x" + self.pinned_genesis_hash.hex(),
            "headerNumber": None if chain is None else chain.light.finalized.number,
            "blockNumber": None if dispatched is None else dispatched.number,
            "blockHash": None if dispatched is None else "0x" + dispatched.hash.hex(),
            "nextBlock": None if chain is None else chain.next_block,
            "authoritySetId": None if chain is None else chain.light.authority_set.set_id,
            "registered": self.registered,
            "role": "worker",
            **{k: v for role in self.roles for k, v in role.info().items() if v is not None},
            "identity": "0x" + self.identity.public_key.hex(),
            "ecdh": "0x" + self.identity.ecdh_public.hex(),
            "pendingEgress": len(self.egress),
            "nextSequence": self.next_sequence,
            "enclave": self.enclave.kind,
            "version": PRUNTIME_VERSION,
            "stateHash": None if chain is None else "0x" + self.state_hash().hex(),
        }
