"""The message queue's formats: origins, messages, and the signatures off-chain senders make.

Off-chain senders (workers now; contracts, clusters and the gatekeeper later) sign
``MQ_CONTEXT ++ encode(MessageSigningPayload(genesis_hash, origin, sequence, message))``.
The chain accepts only the next sequence per sender, signed by the key registered for that
origin. Topics that start with ``^`` are for the chain only; others reach every pRuntime
through the per-block outbound messages in chain state.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import H256, H512, AccountId, ScaleEnum, encode, u64
from .keys import Keypair, verify

MQ_CONTEXT = b"phala/mq/v1"
CHAIN_ONLY_PREFIX = b"^"
MAX_TOPIC = 256
MAX_PAYLOAD = 64 * 1024


class MessageOrigin(ScaleEnum):
    """Who sent a message."""


@dataclass(frozen=True)
class PalletOrigin(MessageOrigin, index=0):
    name: bytes


@dataclass(frozen=True)
class AccountOrigin(MessageOrigin, index=1):
    account: AccountId


@dataclass(frozen=True)
class WorkerOrigin(MessageOrigin, index=2):
    identity: AccountId  # the worker's registered identity key


@dataclass(frozen=True)
class ContractOrigin(MessageOrigin, index=3):
    contract: H256


@dataclass(frozen=True)
class ClusterOrigin(MessageOrigin, index=4):
    cluster: H256


@dataclass(frozen=True)
class GatekeeperOrigin(MessageOrigin, index=5):
    pass


@dataclass(frozen=True)
class Message:
    sender: MessageOrigin
    topic: bytes
    payload: bytes

    @property
    def chain_only(self) -> bool:
        return self.topic.startswith(CHAIN_ONLY_PREFIX)


@dataclass(frozen=True)
class MessageSigningPayload:
    genesis_hash: H256
    origin: MessageOrigin
    sequence: u64
    message: Message


@dataclass(frozen=True)
class SignedMessage:
    message: Message
    sequence: u64
    signature: H512


def signing_bytes(genesis_hash: bytes, message: Message, sequence: int) -> bytes:
    return MQ_CONTEXT + encode(MessageSigningPayload(genesis_hash, message.sender, sequence, message))


def sign_message(key: Keypair, genesis_hash: bytes, message: Message, sequence: int) -> SignedMessage:
    return SignedMessage(message, sequence, key.sign(signing_bytes(genesis_hash, message, sequence)))


def verify_message(signed: SignedMessage, genesis_hash: bytes, public_key: bytes) -> bool:
    return verify(public_key, signing_bytes(genesis_hash, signed.message, signed.sequence), signed.signature)
