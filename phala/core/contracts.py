"""Contract messages, as both the chain's Contracts pallet and the pRuntimes see them.

A contract lives in a cluster. Its code is on chain (by hash); its state, inputs and outputs
exist in the clear only inside the cluster's workers. Its keys derive from the cluster's
epoch key: ``contract_key(cluster epoch key, contract id)`` (:mod:`phala.core.derivation`).

Topics:

* ``phala/contracts/instantiate`` (the Contracts pallet → workers,
  :class:`ContractInstantiated`): a contract was instantiated; the workers of its cluster
  run its constructor with the arguments, which are sealed to the cluster's ECDH key.
* ``^phala/contracts/pubkey`` (``ClusterOrigin(cluster)`` → the chain,
  :class:`ContractPubkey`): the contract's public keys, derived by the cluster's workers;
  every worker sends the same payload, the chain keeps the first.
* ``phala/contracts/command`` (the Contracts pallet → workers, :class:`ContractCommand`): an
  encrypted command, numbered per contract in chain order.
* ``^phala/contracts/report`` (``ClusterOrigin(cluster)`` → the chain, :class:`CommandReport`):
  the gas a command used, so the pallet refunds the rest of its fee, and why it failed. A
  constructor (command 0) that is not ok leaves the contract ``ConstructorFailed`` on chain
  (:class:`ContractStatus`): it accepts no commands.
* ``^phala/contracts/reports`` (``ClusterOrigin(cluster)`` → the chain, :class:`CommandReports`):
  the reports of one block's commands to one contract together; the chain settles each as
  it would a ``CommandReport`` and skips (with an event) one that no fee awaits any more.
* ``^phala/contracts/halted`` (``WorkerOrigin(worker)`` of a member of the contract's cluster
  → the chain, :class:`ContractHalted`): that worker stopped running the contract (a
  watchdog fired on it); the chain marks it ``Halted``, refuses its commands and lets its
  pending fees be reclaimed at once.
* ``phala/contracts/resume`` (the Contracts pallet → workers, :class:`ContractResumed`): root
  resumed a halted contract (say, after an upgrade of the workers).

A contract's keys follow its cluster's epochs: when a worker is removed from the cluster, the
workers derive the contract's keys from the new epoch key and publish them again, so the
removed worker cannot read commands sealed after that.

Command encryption: the client seals ``encode(CommandPlain)`` to the contract's ECDH key
(X25519 + HKDF + AES-256-GCM, :mod:`phala.core.envelope`) with associated data
:func:`command_aad` (genesis hash, contract id, sender). A ciphertext copied into another
account's extrinsic names another sender, so it does not open.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import H256, H512, AccountId, ScaleEnum, encode, u8, u32, u64, u128
from .hashing import blake2_256

INSTANTIATE_TOPIC = b"phala/contracts/instantiate"
CONTRACT_PUBKEY_TOPIC = b"^phala/contracts/pubkey"
COMMAND_TOPIC = b"phala/contracts/command"
REPORT_TOPIC = b"^phala/contracts/report"
HALTED_TOPIC = b"^phala/contracts/halted"
REPORTS_TOPIC = b"^phala/contracts/reports"
MAX_REPORTS = 200  # the reports one CommandReports message may carry (at 273 bytes each at most, within a message payload's 64 KiB)
RESUME_TOPIC = b"phala/contracts/resume"

# The longest message a report or a halt carries (UTF-8 bytes); the pallet refuses longer.
MAX_REPORT_MESSAGE = 256

COMMAND_INFO = b"phala/contracts/command/v1"
CONSTRUCTOR_INFO = b"phala/contracts/constructor/v1"


def contract_id(deployer: bytes, code_hash: bytes, cluster: bytes, salt: bytes) -> bytes:
    """``blake2_256(deployer ++ code hash ++ cluster ++ salt)``: the same deployer can make
    many instances of one code in one cluster by changing the salt."""
    return blake2_256(b"phala/contract/" + deployer + code_hash + cluster + salt)


def command_aad(genesis_hash: bytes, contract: bytes, sender: bytes) -> bytes:
    return COMMAND_INFO + genesis_hash + contract + sender


def constructor_aad(genesis_hash: bytes, contract: bytes, deployer: bytes) -> bytes:
    return CONSTRUCTOR_INFO + genesis_hash + contract + deployer


# -- what the chain stores (the Contracts pallet's ``Contracts`` map, keyed by contract id with
# blake2_128_concat): pRuntimes decode it from their copy of state.


@dataclass(frozen=True)
class ContractInfo:
    """Value of ``Contracts.Contracts``."""

    deployer: AccountId
    code_hash: H256  # the key of its source in ``Contracts.Code``
    cluster: H256
    instantiated_at: u32  # the block that included the instantiation


class ContractStatus(ScaleEnum):
    """Value of ``Contracts.ContractStatus``; absent: :class:`Active`, or its constructor not
    reported yet."""


@dataclass(frozen=True)
class Active(ContractStatus, index=0):
    pass


@dataclass(frozen=True)
class ConstructorFailed(ContractStatus, index=1):
    """The constructor's report was not ok: the contract accepts no commands, ever."""

    message: str  # the report's message: the constructor's error, or why the code was refused


@dataclass(frozen=True)
class Halted(ContractStatus, index=2):
    """The cluster's workers stopped running the contract; root may resume it."""

    reason: str


@dataclass(frozen=True)
class CommandPlain:
    """What a command envelope holds."""

    method: str
    args: bytes  # encoded plain list (phala.contracts.values)
    reply_key: H256  # the sender's X25519 key: receipts and events are sealed to it


@dataclass(frozen=True)
class ContractInstantiated:
    contract: H256
    code_hash: H256
    cluster: H256
    deployer: AccountId
    epoch: u64  # the cluster's epoch at instantiation: args are sealed to its ECDH key
    args: bytes  # Envelope.to_bytes() of encode(CommandPlain) for the constructor, aad =
    # constructor_aad
    gas_limit: u64


@dataclass(frozen=True)
class ContractPubkey:
    contract: H256
    epoch: u64  # the cluster epoch whose key this contract key derives from
    pubkey: H256  # sr25519 public key of the contract key (signs its payouts)
    ecdh: H256  # X25519 public key: commands are sealed to it


@dataclass(frozen=True)
class ContractCommand:
    contract: H256
    index: u64  # the contract's commands, numbered from 0 in chain order
    sender: AccountId
    payload: bytes  # Envelope.to_bytes() of encode(CommandPlain), aad = command_aad
    gas_limit: u64
    block: u32  # the block that included it


@dataclass(frozen=True)
class CommandReport:
    contract: H256
    index: u64
    status: u8  # phala.contracts.protocol status: 0 ok, 1 error, 2 out of gas, 3 limit, 4 refused
    gas_used: u64
    # Why it failed (the contract's error, why the code was refused, …): at most
    # MAX_REPORT_MESSAGE UTF-8 bytes, empty when the status is ok.
    message: str = ""


@dataclass(frozen=True)
class CommandOutcome:
    """One command's part of :class:`CommandReports` (as :class:`CommandReport`, without the
    contract)."""

    index: u64
    status: u8
    gas_used: u64
    message: str = ""


@dataclass(frozen=True)
class CommandReports:
    """``^phala/contracts/reports``: the reports of one block's commands to one contract, in
    order, in one message (one signature and one sequence for a whole block). At most
    MAX_REPORTS."""

    contract: H256
    reports: list[CommandOutcome]


@dataclass(frozen=True)
class ContractHalted:
    contract: H256
    reason: str  # at most MAX_REPORT_MESSAGE UTF-8 bytes


@dataclass(frozen=True)
class ContractResumed:
    contract: H256


# -- queries ------------------------------------------------------------------------------------
#
# A query goes straight to one worker, never through the chain. The client signs a Query with
# its account key (so the contract knows the caller: "only the owner may read this balance"),
# wraps it in a SignedQuery and seals that to the worker's X25519 key (read from chain state
# with a storage proof, never from the worker itself), aad = QUERY_INFO ++ genesis hash. The
# worker checks the signature, that the query names it, the expiry (at most MAX_QUERY_AHEAD
# blocks ahead) and the nonce (refused if seen before expiry, across restarts), runs it
# read-only and seals a QueryAnswer to the query's reply key, aad = ANSWER_INFO ++ genesis
# hash ++ blake2_256(encode(query)).

QUERY_INFO = b"phala/contracts/query/v1"
ANSWER_INFO = b"phala/contracts/answer/v1"
QUERY_SIGNING_CONTEXT = b"phala/contracts/query-signature/v1"
MAX_QUERY_AHEAD = 100  # blocks

QUERY_METHOD, QUERY_RECEIPT, QUERY_EVENTS = 0, 1, 2  # Query.kind


@dataclass(frozen=True)
class Query:
    kind: u8  # QUERY_METHOD: call a @query method; QUERY_RECEIPT: args = [command index];
    # QUERY_EVENTS: args = [from block], the events for the signer from that block on
    contract: H256
    method: str
    args: bytes  # encoded plain list
    nonce: H256
    expiry: u32  # the last block number at which the worker may answer
    min_block: u32  # answer only once the worker has dispatched this block
    worker: AccountId  # the worker's identity: a query is for one worker
    reply_key: H256  # X25519 key the answer is sealed to


@dataclass(frozen=True)
class SignedQuery:
    query: Query
    signer: AccountId
    signature: H512


@dataclass(frozen=True)
class QueryAnswer:
    block_number: u32  # the state the answer was computed at
    block_hash: H256
    status: u8  # as an executor outcome: 0 ok, 1 error, 2 out of gas, 3 limit, 4 refused
    message: str
    gas_used: u64
    value: bytes  # encoded plain value (a receipt query: the receipt as a plain dict)


def query_signing_bytes(genesis_hash: bytes, query: Query) -> bytes:
    return QUERY_SIGNING_CONTEXT + genesis_hash + encode(query)


def query_aad(genesis_hash: bytes) -> bytes:
    return QUERY_INFO + genesis_hash


def answer_aad(genesis_hash: bytes, query: Query) -> bytes:
    return ANSWER_INFO + genesis_hash + blake2_256(encode(query))


# Receipts and events are sealed, inside the answer, to the account's own X25519 key (the
# reply key its commands carry, derived from its seed by the SDK) when the worker knows it:
# the answer's value is then ``{"sealed": envelope}`` with this associated data.
RECEIPT_INFO = b"phala/contracts/receipt/v1"
EVENTS_INFO = b"phala/contracts/events/v1"


def receipt_aad(genesis_hash: bytes, contract: bytes, index: int) -> bytes:
    return RECEIPT_INFO + genesis_hash + contract + index.to_bytes(8, "little")


def events_aad(genesis_hash: bytes, contract: bytes, account: bytes) -> bytes:
    return EVENTS_INFO + genesis_hash + contract + account


# -- contracts and the chain, contracts and each other -------------------------------------------
#
# * ``Contracts.deposit`` moves on-chain balance into the contract's account
#   (:func:`contract_account`) and tells the workers on ``phala/contracts/deposit``
#   (:class:`ContractDeposit`); they call the contract's ``deposit(who, amount)`` handler.
# * A contract pays out with ``ctx.send("Contracts", {"payout": account, "amount": n})``; its
#   workers send :class:`Payout` on ``^phala/contracts/payout`` as ``ContractOrigin(contract)``,
#   signed with the contract's key (the chain checks it against ``Contracts.ContractKeys``).
# * A contract messages another with ``ctx.send(contract_id, value)``: its workers seal the
#   value to the target's ECDH key and send :class:`ContractMessage` on
#   ``^phala/contracts/message`` as the contract origin; the chain passes it on as
#   :class:`ContractDelivery` on ``phala/contracts/deliver``, where the target's workers open
#   it and call its ``on_message(sender, message)`` handler. Delivery is therefore never in
#   the block of the sending command: it is in the block where the sender's workers' message
#   lands (the next one at the earliest), in the order the sender emitted its messages.

DEPOSIT_TOPIC = b"phala/contracts/deposit"
PAYOUT_TOPIC = b"^phala/contracts/payout"
MESSAGE_TOPIC = b"^phala/contracts/message"
DELIVER_TOPIC = b"phala/contracts/deliver"
MESSAGE_INFO = b"phala/contracts/message/v1"


def contract_account(contract: bytes) -> bytes:
    """The on-chain account that holds a contract's balance (no one has its key)."""
    return blake2_256(b"phala/contract-account/" + contract)


def message_aad(genesis_hash: bytes, source: bytes, target: bytes) -> bytes:
    return MESSAGE_INFO + genesis_hash + source + target


@dataclass(frozen=True)
class ContractDeposit:
    contract: H256
    who: AccountId
    amount: u128


@dataclass(frozen=True)
class Payout:
    to: AccountId
    amount: u128


@dataclass(frozen=True)
class ContractMessage:
    to: H256
    payload: bytes  # Envelope.to_bytes() of the encoded plain value, aad = message_aad


@dataclass(frozen=True)
class ContractDelivery:
    source: H256
    to: H256
    payload: bytes
