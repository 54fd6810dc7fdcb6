"""Contracts pallet: contract code, instances in clusters, encrypted commands and their fees.

A contract runs inside the workers of one cluster (:mod:`phala.chain.runtime.cluster`); the
chain orders what it is sent and holds its fees, never its inputs, state or outputs in the
clear (the message formats are in :mod:`phala.core.contracts`):

* an account uploads a contract's source with :class:`upload_code`; it is stored in ``Code``
  under ``blake2_256(code)``;
* an account instantiates stored code in a cluster whose current epoch keys are published
  with :class:`instantiate`, naming a salt, the constructor's arguments (sealed to the
  cluster's ECDH key by the client) and a gas limit. The contract's id is
  ``contract_id(deployer, code hash, cluster, salt)``. The pallet sends the workers
  ``phala/contracts/instantiate`` (:class:`phala.core.contracts.ContractInstantiated`); the
  constructor is the contract's command 0;
* the cluster's workers derive the contract's keys and publish their public halves on the
  chain-only ``^phala/contracts/pubkey`` as ``ClusterOrigin(cluster)`` (the mq pallet checked
  the signature of the cluster's current epoch key); the chain keeps the first copy for each
  epoch in ``ContractKeys`` and emits ``ContractPubkeyPublished``;
* an account sends a contract a command with :class:`command`: a payload sealed to the
  contract's ECDH key and a gas limit. Commands are numbered per contract in chain order
  (``CommandCount``); the pallet sends the workers ``phala/contracts/command``
  (:class:`phala.core.contracts.ContractCommand`) naming the signer as the sender.

Fees: the constructor and each command name a gas limit, and ``gas_limit × GAS_PRICE`` is
reserved from the signer when the extrinsic is included (``PendingFees``). The workers report
the gas a command used on the chain-only ``^phala/contracts/report`` as the cluster origin
(:class:`phala.core.contracts.CommandReport`); the pallet then moves ``gas_used × GAS_PRICE``
of the reserve to the treasury, as transaction fees are (total issuance unchanged), returns
the rest to the payer's free balance and emits ``CommandReported`` (with the report's message:
why the command failed). Every worker sends the same report: the chain keeps the first, and
any later one finds no pending fee. A fee never reported can be taken back by its payer with
:class:`reclaim_fee` after FEE_TIMEOUT blocks.

Status (``ContractStatus``, absent while the contract is active or its constructor is not
reported yet): a constructor reported not ok leaves the contract ``ConstructorFailed`` with
the report's message (the constructor's error, or why the workers refused the code), and
emits ``InstantiationFailed``; such a contract accepts no commands, deposits or messages,
ever. When a worker of the contract's cluster stops running it (a watchdog fired there) it
sends ``^phala/contracts/halted`` as itself, ``WorkerOrigin`` (a finding of its own, not
what every member sends alike under the cluster origin; :class:`phala.core.contracts.ContractHalted`):
the contract is ``Halted`` with that reason (``Halted``; the first halt is kept), refuses
commands, deposits and messages, and its pending fees can be reclaimed at once. Root resumes it with
:class:`resume_contract` (``Resumed``), which tells the workers on ``phala/contracts/resume``.

Every contract is listed in instantiation order (``ContractCount``, ``ContractByIndex``), and
``PendingCount`` counts each contract's pending fees, so a client can find all of them with
proofs (reading ``PendingFees`` downwards from ``CommandCount`` until it has that many).

Balance: :class:`deposit` moves an account's balance into the contract's account and tells
its workers (the contract's ``deposit`` handler); the contract pays out with a ``Payout`` its
workers send on ``^phala/contracts/payout`` as ``ContractOrigin(contract)``, signed with the
contract's key. Contracts message each other through ``^phala/contracts/message`` (sealed to
the target's key), which the pallet passes on to the target's workers on
``phala/contracts/deliver``.

A refused message is reported by the mq pallet's ``OffchainMessageFailed`` with this pallet's
error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phala.core import contracts as payloads
from phala.core import gas
from phala.core.codec import (
    H256,
    AccountId,
    Balance,
    DecodeError,
    decode,
    encode,
    u8,
    u32,
    u64,
    u128,
)
from phala.core.contracts import (
    COMMAND_TOPIC,
    CONTRACT_PUBKEY_TOPIC,
    DELIVER_TOPIC,
    DEPOSIT_TOPIC,
    HALTED_TOPIC,
    INSTANTIATE_TOPIC,
    MAX_REPORT_MESSAGE,
    MAX_REPORTS,
    MESSAGE_TOPIC,
    PAYOUT_TOPIC,
    REPORT_TOPIC,
    REPORTS_TOPIC,
    RESUME_TOPIC,
    CommandReport,
    CommandReports,
    ContractCommand,
    ContractDelivery,
    ContractDeposit,
    ContractInfo,
    ContractInstantiated,
    ContractMessage,
    ContractPubkey,
    ContractResumed,
    Payout,
    contract_account,
    contract_id,
)
from phala.core.hashing import blake2_256
from phala.core.mq import ClusterOrigin, ContractOrigin, Message, PalletOrigin, WorkerOrigin

from . import balances, cluster, mq, system
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
    ensure_signed,
)

PALLET_INDEX = 9
NAME = "Contracts"

MESSAGE_ORIGIN = PalletOrigin(NAME.encode())

# The largest contract source (UTF-8). An extrinsic is at most 128 KiB
# (``executive.MAX_EXTRINSIC_SIZE``), which is the tighter bound today.
MAX_CODE_BYTES = 256 * 1024
# The largest salt.
MAX_SALT = 64
# The largest sealed constructor arguments or command.
MAX_PAYLOAD = 64 * 1024
# The largest gas limit of a constructor or command, and balance units per unit of gas:
# the gas schedule (phala.core.gas, docs/contracts.md).
MAX_GAS_LIMIT = gas.MAX_GAS_LIMIT
GAS_PRICE = gas.GAS_PRICE
# A report's status when the command succeeded (phala.contracts.protocol.OK).
OK = 0
# Blocks after which the payer may take back a fee its command was never reported for (the
# cluster gone, or all its workers halted on that contract); at once once the contract is
# Halted on chain.
FEE_TIMEOUT = 600

# -- storage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingFee:
    """A fee reserved for a command (or constructor) until the workers report its gas."""

    payer: AccountId
    reserved: u128  # gas_limit × GAS_PRICE
    submitted: u32  # the block that included the command


# Contract sources (UTF-8), by blake2_256 of the source.
Code: StorageMap[bytes, bytes] = StorageMap(NAME, "Code", H256, bytes)
# Every contract instantiated, by id.
Contracts: StorageMap[bytes, ContractInfo] = StorageMap(NAME, "Contracts", H256, ContractInfo)
# Each contract's latest published public keys (absent until the workers first publish them).
ContractKeys: StorageMap[bytes, ContractPubkey] = StorageMap(NAME, "ContractKeys", H256, ContractPubkey)
# The index of each contract's next command (the constructor is 0: 1 after instantiation).
CommandCount: StorageMap[bytes, int] = StorageMap(NAME, "CommandCount", H256, u64, 0)
# Fees reserved for commands whose gas is not reported yet, by (contract, command index).
PendingFees: StorageMap[tuple[bytes, int], PendingFee] = StorageMap(
    NAME, "PendingFees", tuple[H256, u64], PendingFee
)
# How many of each contract's commands have a fee in ``PendingFees`` (absent: none).
PendingCount: StorageMap[bytes, int] = StorageMap(NAME, "PendingCount", H256, u64, 0)
# Each contract's status when it is not simply active: ConstructorFailed(message) or
# Halted(reason) (absent: active, or its constructor not reported yet).
ContractStatus: StorageMap[bytes, payloads.ContractStatus] = StorageMap(
    NAME, "ContractStatus", H256, payloads.ContractStatus
)
# How many contracts were instantiated; the n-th (from 0) is ``ContractByIndex[n]``.
ContractCount: StorageValue[int] = StorageValue(NAME, "ContractCount", u64, 0)
# The contract runtime the workers must run (phala.contracts.vm.build.runtime_identity):
# from the chain spec, changed by root for an upgrade. None: no runtime is pinned (tests).
RuntimeIdentity: StorageValue[bytes | None] = StorageValue(NAME, "RuntimeIdentity", H256)
# The gas limits of this block's commands to each cluster's contracts, together (the block
# number they belong to, and the sum): at most gas.BLOCK_GAS_PER_CLUSTER.
BlockGas: StorageMap[bytes, tuple[int, int]] = StorageMap(NAME, "BlockGas", H256, tuple[u32, u64])
# How many of each cluster's contracts have a call in this block (the block number, the
# count), and the last block each contract had one: at most gas.MAX_CONTRACTS_PER_BLOCK, since
# a worker keeps one VM instance open per contract with calls in the block.
BlockContracts: StorageMap[bytes, tuple[int, int]] = StorageMap(NAME, "BlockContracts", H256, tuple[u32, u32])
ContractBlock: StorageMap[bytes, int] = StorageMap(NAME, "ContractBlock", H256, u32)
ContractByIndex: StorageMap[int, bytes] = StorageMap(NAME, "ContractByIndex", u64, H256)

# -- events -----------------------------------------------------------------------------------


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class CodeUploaded(Event, index=0):
    code_hash: H256
    uploader: AccountId


@dataclass(frozen=True)
class Instantiated(Event, index=1):
    contract: H256
    code_hash: H256
    cluster: H256
    deployer: AccountId


@dataclass(frozen=True)
class ContractPubkeyPublished(Event, index=2):
    contract: H256
    epoch: u64
    pubkey: H256
    ecdh: H256


@dataclass(frozen=True)
class CommandSubmitted(Event, index=3):
    contract: H256
    index: u64
    sender: AccountId


@dataclass(frozen=True)
class CommandReported(Event, index=4):
    """The workers reported command ``index`` (0: the constructor); ``refunded`` went back to
    the payer's free balance, ``gas_used × GAS_PRICE`` to the treasury; ``message`` says why
    it failed (empty when ok)."""

    contract: H256
    index: u64
    status: u8
    gas_used: u64
    refunded: u128
    message: str


@dataclass(frozen=True)
class Deposited(Event, index=5):
    contract: H256
    who: AccountId
    amount: u128


@dataclass(frozen=True)
class PaidOut(Event, index=6):
    contract: H256
    to: AccountId
    amount: u128


@dataclass(frozen=True)
class MessageSent(Event, index=7):
    """A contract sent another a sealed message (delivered to the target's workers)."""

    source: H256
    to: H256


@dataclass(frozen=True)
class FeeReclaimed(Event, index=8):
    """A fee its command was never reported for, returned to its payer."""

    contract: H256
    index: u64
    payer: AccountId
    amount: u128


@dataclass(frozen=True)
class InstantiationFailed(Event, index=9):
    """The constructor's report was not ok: the contract is ConstructorFailed and accepts no
    commands. ``message`` is the constructor's error, or why the workers refused the code."""

    contract: H256
    status: u8
    message: str


@dataclass(frozen=True)
class Halted(Event, index=10):
    """The cluster's workers stopped running the contract (a watchdog fired): it accepts no
    commands until root resumes it, and its pending fees can be reclaimed at once."""

    contract: H256
    reason: str


@dataclass(frozen=True)
class Resumed(Event, index=11):
    """Root resumed a halted contract; its workers were told on ``phala/contracts/resume``."""

    contract: H256


@dataclass(frozen=True)
class ReportSkipped(Event, index=13):
    """A report of a ``CommandReports`` message that the chain refused (``error`` the code of
    this pallet's error, ``reason`` its text); the batch's other reports settled."""

    contract: H256
    index: u64
    error: u8
    reason: str


@dataclass(frozen=True)
class RuntimeIdentitySet(Event, index=12):
    """Root pinned the contract runtime the workers must run (an upgrade)."""

    identity: H256


# -- errors -----------------------------------------------------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class CodeTooLarge(Error):
    """The code is larger than MAX_CODE_BYTES (256 KiB)."""

    code = 0


class InvalidCode(Error):
    """The code is not valid UTF-8."""

    code = 1


class CodeNotFound(Error):
    """No code is stored under this hash."""

    code = 2


class SaltTooLong(Error):
    """The salt is longer than MAX_SALT (64) bytes."""

    code = 3


class PayloadTooLarge(Error):
    """The constructor arguments or command are larger than MAX_PAYLOAD (64 KiB)."""

    code = 4


class BadGasLimit(Error):
    """The gas limit is zero or above MAX_GAS_LIMIT (phala.core.gas)."""

    code = 5


class ClusterNotReady(Error):
    """No cluster has this id, or its current epoch's public keys are not published yet."""

    code = 6


class ContractExists(Error):
    """A contract with this id (deployer, code, cluster, salt) already exists: change the salt."""

    code = 7


class InsufficientBalance(Error):
    """The signer's usable balance cannot cover the fee reserved for the gas limit."""

    code = 8


class ContractNotFound(Error):
    """No contract has this id."""

    code = 9


class InvalidContractMessage(Error):
    """A message on a contracts topic is malformed: its topic, sender kind or payload."""

    code = 10


class WrongCluster(Error):
    """The message comes from a cluster the contract is not in."""

    code = 11


class WrongEpoch(Error):
    """The contract keys are not for the cluster's current epoch."""

    code = 12


class PubkeyAlreadyPublished(Error):
    """The contract's keys for this epoch are already published: the chain keeps the first."""

    code = 13


class UnknownCommand(Error):
    """The contract has no command with this index awaiting its report (never submitted, or
    already reported)."""

    code = 14


class GasExceedsLimit(Error):
    """The reported gas is above the command's gas limit."""

    code = 15


class BadAmount(Error):
    """A deposit of nothing."""

    code = 16


class FeeNotReclaimable(Error):
    """The fee is not the signer's, or its command may still be reported."""

    code = 17


class ConstructorFailed(Error):
    """The contract's constructor failed: it accepts no commands, deposits or messages (its
    status on chain holds the reason)."""

    code = 18


class ContractHalted(Error):
    """The contract is halted (its workers stopped running it): it accepts no commands,
    deposits or messages until root resumes it; its pending fees can be reclaimed."""

    code = 19


class MessageTooLong(Error):
    """A report's message or a halt's reason is longer than MAX_REPORT_MESSAGE (256) UTF-8
    bytes."""

    code = 20


class NotHalted(Error):
    """The contract is not halted: there is nothing to resume."""

    code = 21


class AlreadyHalted(Error):
    """The contract is halted already: the chain keeps the first reason."""

    code = 22


class BlockGasExhausted(Error):
    """This block's commands to the cluster's contracts already reserve
    gas.BLOCK_GAS_PER_CLUSTER together: send it in a later block."""

    code = 23


class BlockContractsExhausted(Error):
    """gas.MAX_CONTRACTS_PER_BLOCK of the cluster's contracts already have a call in this
    block: send it in a later block."""

    code = 24


# -- helpers: the interface other pallets use -------------------------------------------------


def code(env: Env, code_hash: bytes) -> bytes | None:
    """The source stored under ``code_hash``, or ``None``."""
    return Code.get_opt(env.state, code_hash)


def contract(env: Env, contract: bytes) -> ContractInfo | None:
    """The contract ``contract``'s deployer, code, cluster and block, or ``None``."""
    return Contracts.get_opt(env.state, contract)


def contract_keys(env: Env, contract: bytes) -> ContractPubkey | None:
    """The contract's latest published public keys, or ``None`` before the first publication."""
    return ContractKeys.get_opt(env.state, contract)


def status(env: Env, contract: bytes) -> payloads.ContractStatus:
    """The contract's status: ``Active()`` when none is stored (active, or its constructor not
    reported yet), else ``ConstructorFailed(message)`` or ``Halted(reason)``."""
    return ContractStatus.get_opt(env.state, contract) or payloads.Active()


def _ensure_runs(env: Env, contract: bytes) -> None:
    """Raise :class:`ConstructorFailed` or :class:`ContractHalted` unless the contract may be
    sent something."""
    found = ContractStatus.get_opt(env.state, contract)
    if isinstance(found, payloads.ConstructorFailed):
        raise ConstructorFailed(
            f"contract {contract.hex()}'s constructor failed: {found.message[:80]}"
        )
    if isinstance(found, payloads.Halted):
        raise ContractHalted(f"contract {contract.hex()} is halted: {found.reason[:80]}")


def _check_message(text: str, what: str) -> None:
    size = len(text.encode())
    if size > MAX_REPORT_MESSAGE:
        raise MessageTooLong(f"{what} of {size} bytes exceeds {MAX_REPORT_MESSAGE}")


def _take_block_gas(env: Env, cluster_id: bytes, gas_limit: int) -> None:
    """Count ``gas_limit`` against this block's gas for ``cluster_id``; raises
    :class:`BlockGasExhausted` (and counts nothing) past gas.BLOCK_GAS_PER_CLUSTER."""
    block, used = BlockGas.get_opt(env.state, cluster_id) or (env.block.number, 0)
    if block != env.block.number:
        used = 0
    if used + gas_limit > gas.BLOCK_GAS_PER_CLUSTER:
        raise BlockGasExhausted(
            f"this block's commands to the cluster reserve {used} gas; {gas_limit} more would pass "
            f"{gas.BLOCK_GAS_PER_CLUSTER}")
    BlockGas.put(env.state, cluster_id, (env.block.number, used + gas_limit))


def _take_contract_slot(env: Env, contract: bytes) -> None:
    """Count ``contract`` among the contracts of its cluster with a call in this block;
    raises :class:`BlockContractsExhausted` (and counts nothing) past gas.MAX_CONTRACTS_PER_BLOCK."""
    number = env.block.number
    if ContractBlock.get_opt(env.state, contract) == number:
        return
    cluster_id = Contracts.get(env.state, contract).cluster
    block, count = BlockContracts.get_opt(env.state, cluster_id) or (number, 0)
    if block != number:
        count = 0
    if count >= gas.MAX_CONTRACTS_PER_BLOCK:
        raise BlockContractsExhausted(
            f"{count} contracts of this cluster have calls in this block already; the limit is "
            f"{gas.MAX_CONTRACTS_PER_BLOCK}")
    BlockContracts.put(env.state, cluster_id, (number, count + 1))
    ContractBlock.put(env.state, contract, number)


def _check_gas_limit(gas_limit: int) -> None:
    if not 0 < gas_limit <= MAX_GAS_LIMIT:
        raise BadGasLimit(f"gas limit {gas_limit} is not in 1..{MAX_GAS_LIMIT}")


def _check_payload(payload: bytes, what: str) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise PayloadTooLarge(f"{what}: {len(payload)} bytes, more than {MAX_PAYLOAD}")


def _reserve_fee(env: Env, payer: bytes, contract: bytes, index: int, gas_limit: int) -> None:
    """Reserve ``gas_limit × GAS_PRICE`` from ``payer`` for command ``index`` of ``contract``;
    raises :class:`InsufficientBalance` if the usable balance is short."""
    fee = gas_limit * GAS_PRICE
    usable = balances.usable_balance(env, payer)
    if usable < fee:
        raise InsufficientBalance(
            f"the fee for gas limit {gas_limit} is {fee}; the usable balance is {usable}"
        )
    balances.reserve(env, payer, fee)
    PendingFees.put(env.state, (contract, index), PendingFee(payer, fee, env.block.number))
    PendingCount.put(env.state, contract, PendingCount.get(env.state, contract) + 1)


def _remove_pending(env: Env, contract: bytes, index: int) -> None:
    """Remove the pending fee of command ``index`` (settled or reclaimed) and count it out."""
    PendingFees.remove(env.state, (contract, index))
    left = PendingCount.get(env.state, contract) - 1
    if left > 0:
        PendingCount.put(env.state, contract, left)
    else:
        PendingCount.remove(env.state, contract)


def _current_epoch(env: Env, cluster_id: bytes) -> int:
    info = cluster.cluster(env, cluster_id)
    assert info is not None, "a contract's cluster does not exist"
    return len(info.epoch_rotations) - 1


# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class upload_code(Call, index=0):  # noqa: N801
    """Store a contract's source ``code`` under ``blake2_256(code)``.

    Checks in order: signed, at most MAX_CODE_BYTES (:class:`CodeTooLarge`), valid UTF-8
    (:class:`InvalidCode`). Emits ``CodeUploaded``. Uploading code that is already stored
    succeeds and does nothing (no event).
    """

    code: bytes

    def dispatch(self, env: Env, origin: Origin) -> None:
        uploader = ensure_signed(origin)
        if len(self.code) > MAX_CODE_BYTES:
            raise CodeTooLarge(f"code of {len(self.code)} bytes exceeds {MAX_CODE_BYTES}")
        try:
            self.code.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidCode(f"the code is not valid UTF-8: {exc}") from None
        code_hash = blake2_256(self.code)
        if Code.contains(env.state, code_hash):
            return
        Code.put(env.state, code_hash, self.code)
        env.deposit_event(CodeUploaded(code_hash, uploader))


@dataclass(frozen=True)
class instantiate(Call, index=1):  # noqa: N801
    """Instantiate the code ``code_hash`` in ``cluster``; ``args`` are the constructor's
    ``(method, args)`` sealed to the cluster's current ECDH key by the client.

    Checks in order: signed, the code exists (:class:`CodeNotFound`), the salt is at most
    MAX_SALT (:class:`SaltTooLong`), the args at most MAX_PAYLOAD (:class:`PayloadTooLarge`),
    ``0 < gas_limit ≤ MAX_GAS_LIMIT`` (:class:`BadGasLimit`), the cluster exists and its
    current epoch's keys are published (:class:`ClusterNotReady`), the id
    ``contract_id(signer, code_hash, cluster, salt)`` is unused (:class:`ContractExists`),
    the signer's usable balance covers ``gas_limit × GAS_PRICE`` (:class:`InsufficientBalance`).
    Reserves that fee for command 0 (the constructor), stores the contract with
    ``CommandCount`` 1 and lists it (``ContractByIndex[ContractCount]``), emits
    ``Instantiated`` and sends the workers ``phala/contracts/instantiate`` with the cluster's
    current epoch.
    """

    code_hash: H256
    cluster: H256
    salt: bytes
    args: bytes
    gas_limit: u64

    def dispatch(self, env: Env, origin: Origin) -> None:
        deployer = ensure_signed(origin)
        if not Code.contains(env.state, self.code_hash):
            raise CodeNotFound(f"no code is stored under {self.code_hash.hex()}")
        if len(self.salt) > MAX_SALT:
            raise SaltTooLong(f"salt of {len(self.salt)} bytes exceeds {MAX_SALT}")
        _check_payload(self.args, "constructor arguments")
        _check_gas_limit(self.gas_limit)
        if cluster.current_pubkeys(env, self.cluster) is None:
            raise ClusterNotReady(
                f"cluster {self.cluster.hex()} does not exist or its current keys are unpublished"
            )
        new_id = contract_id(deployer, self.code_hash, self.cluster, self.salt)
        if Contracts.contains(env.state, new_id):
            raise ContractExists(f"contract {new_id.hex()} already exists: change the salt")
        _reserve_fee(env, deployer, new_id, 0, self.gas_limit)
        info = ContractInfo(deployer, self.code_hash, self.cluster, env.block.number)
        Contracts.put(env.state, new_id, info)
        _take_block_gas(env, self.cluster, self.gas_limit)
        _take_contract_slot(env, new_id)
        CommandCount.put(env.state, new_id, 1)
        listed = ContractCount.get(env.state)
        ContractByIndex.put(env.state, listed, new_id)
        ContractCount.put(env.state, listed + 1)
        env.deposit_event(Instantiated(new_id, self.code_hash, self.cluster, deployer))
        event = ContractInstantiated(
            new_id,
            self.code_hash,
            self.cluster,
            deployer,
            _current_epoch(env, self.cluster),
            self.args,
            self.gas_limit,
        )
        mq.push_outbound(env, Message(MESSAGE_ORIGIN, INSTANTIATE_TOPIC, encode(event)))


@dataclass(frozen=True)
class command(Call, index=2):  # noqa: N801
    """Send ``contract`` a command: ``payload`` is ``(method, args, reply key)`` sealed by the
    client to the contract's ECDH key, bound to the signer (the command's sender).

    Checks in order: signed, the contract exists (:class:`ContractNotFound`), its
    constructor did not fail (:class:`ConstructorFailed`) and it is not halted
    (:class:`ContractHalted`), the payload is at most MAX_PAYLOAD (:class:`PayloadTooLarge`),
    ``0 < gas_limit ≤ MAX_GAS_LIMIT`` (:class:`BadGasLimit`), the signer's usable balance
    covers ``gas_limit × GAS_PRICE`` (:class:`InsufficientBalance`), and the block's commands
    to the contract's cluster stay within gas.BLOCK_GAS_PER_CLUSTER (:class:`BlockGasExhausted`).
    The command's index is ``CommandCount`` (then one more);
    reserves the fee for it, emits ``CommandSubmitted`` and sends the workers
    ``phala/contracts/command`` with this block's number.
    """

    contract: H256
    payload: bytes
    gas_limit: u64

    def dispatch(self, env: Env, origin: Origin) -> None:
        sender = ensure_signed(origin)
        if not Contracts.contains(env.state, self.contract):
            raise ContractNotFound(f"no contract has id {self.contract.hex()}")
        _ensure_runs(env, self.contract)
        _check_payload(self.payload, "the command")
        _check_gas_limit(self.gas_limit)
        index = CommandCount.get(env.state, self.contract)
        _reserve_fee(env, sender, self.contract, index, self.gas_limit)
        _take_block_gas(env, Contracts.get(env.state, self.contract).cluster, self.gas_limit)
        _take_contract_slot(env, self.contract)
        CommandCount.put(env.state, self.contract, index + 1)
        env.deposit_event(CommandSubmitted(self.contract, index, sender))
        sent = ContractCommand(
            self.contract, index, sender, self.payload, self.gas_limit, env.block.number
        )
        mq.push_outbound(env, Message(MESSAGE_ORIGIN, COMMAND_TOPIC, encode(sent)))


@dataclass(frozen=True)
class deposit(Call, index=3):  # noqa: N801
    """Move ``amount`` of the signer's free balance into the contract's account
    (``contract_account(contract)``, which no one holds the key of) and tell the contract.

    Checks in order: signed, the contract exists (:class:`ContractNotFound`), it runs (as
    for :class:`command`: :class:`ConstructorFailed`, :class:`ContractHalted`), ``amount > 0``
    (:class:`BadAmount`), then the transfer's own checks (balances' errors, keeping the
    signer alive). Emits ``Deposited`` and sends the workers ``phala/contracts/deposit``;
    they call the contract's ``deposit(who, amount)`` handler.
    """

    contract: H256
    amount: Balance

    def dispatch(self, env: Env, origin: Origin) -> None:
        who = ensure_signed(origin)
        if not Contracts.contains(env.state, self.contract):
            raise ContractNotFound(f"no contract has id {self.contract.hex()}")
        _ensure_runs(env, self.contract)
        if self.amount <= 0:
            raise BadAmount("a deposit must be positive")
        _take_contract_slot(env, self.contract)
        balances.transfer(env, who, contract_account(self.contract), self.amount, keep_alive=True)
        env.deposit_event(Deposited(self.contract, who, self.amount))
        note = ContractDeposit(self.contract, who, self.amount)
        mq.push_outbound(env, Message(MESSAGE_ORIGIN, DEPOSIT_TOPIC, encode(note)))


@dataclass(frozen=True)
class reclaim_fee(Call, index=4):  # noqa: N801
    """Take back the whole fee reserved for command ``index`` of ``contract`` when no report
    came for FEE_TIMEOUT blocks (the cluster's workers gone, or halted on the contract), or at
    once when the contract is Halted on chain.

    Checks in order: signed, a fee is pending for the command (:class:`UnknownCommand`), the
    signer paid it and the contract is Halted or FEE_TIMEOUT blocks have passed since it was
    included (:class:`FeeNotReclaimable`). Unreserves it, removes the pending fee (a late
    report then finds none) and emits ``FeeReclaimed``.
    """

    contract: H256
    index: u64

    def dispatch(self, env: Env, origin: Origin) -> None:
        who = ensure_signed(origin)
        pending = PendingFees.get_opt(env.state, (self.contract, self.index))
        if pending is None:
            raise UnknownCommand(f"command {self.index} of this contract awaits no report")
        if pending.payer != who:
            raise FeeNotReclaimable("only the payer may take the fee back")
        halted = isinstance(ContractStatus.get_opt(env.state, self.contract), payloads.Halted)
        if not halted and env.block.number < pending.submitted + FEE_TIMEOUT:
            left = pending.submitted + FEE_TIMEOUT - env.block.number
            raise FeeNotReclaimable(f"the command may still be reported for {left} blocks")
        refunded = pending.reserved - balances.unreserve(env, who, pending.reserved)
        _remove_pending(env, self.contract, self.index)
        env.deposit_event(FeeReclaimed(self.contract, self.index, who, refunded))


@dataclass(frozen=True)
class resume_contract(Call, index=5):  # noqa: N801
    """Root: resume a contract its workers halted (say, once they are upgraded). Checks root,
    the contract exists (:class:`ContractNotFound`) and is halted (:class:`NotHalted`).
    Clears its status (active again), emits ``Resumed`` and sends the workers
    ``phala/contracts/resume``. Fees reclaimed meanwhile stay reclaimed: their commands'
    late reports find nothing to settle."""

    contract: H256

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        if not Contracts.contains(env.state, self.contract):
            raise ContractNotFound(f"no contract has id {self.contract.hex()}")
        if not isinstance(ContractStatus.get_opt(env.state, self.contract), payloads.Halted):
            raise NotHalted(f"contract {self.contract.hex()} is not halted")
        ContractStatus.remove(env.state, self.contract)
        env.deposit_event(Resumed(self.contract))
        note = ContractResumed(self.contract)
        mq.push_outbound(env, Message(MESSAGE_ORIGIN, RESUME_TOPIC, encode(note)))


@dataclass(frozen=True)
class set_runtime_identity(Call, index=6):  # noqa: N801
    """Root: pin the contract runtime the workers must run (``runtime_identity`` of the
    component they run, with its wasmtime version and architecture), say for an upgrade.
    Workers whose runtime differs run no contracts and say why. Emits ``RuntimeIdentitySet``."""

    identity: H256

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        RuntimeIdentity.put(env.state, self.identity)
        env.deposit_event(RuntimeIdentitySet(self.identity))


def build_genesis(env: Env, spec: dict) -> None:
    """``{"runtime": identity or None}``: the contract runtime the workers must run."""
    if spec.get("runtime") is not None:
        RuntimeIdentity.put(env.state, spec["runtime"])


# -- mq ---------------------------------------------------------------------------------------


def on_message(env: Env, message: Any) -> None:
    """A chain-only message the mq pallet accepted on one of this pallet's topics:

    * ``^phala/contracts/pubkey``: see :func:`_on_pubkey`;
    * ``^phala/contracts/report``: see :func:`_on_report`;
    * ``^phala/contracts/halted``: see :func:`_on_halted`;
    * ``^phala/contracts/payout``: see :func:`_on_payout`;
    * ``^phala/contracts/message``: see :func:`_on_contract_message`.

    Raises :class:`InvalidContractMessage` for any other topic.
    """
    handler = _HANDLERS.get(message.topic)
    if handler is None:
        raise InvalidContractMessage(
            f"the contracts pallet handles no topic {message.topic[:80]!r}"
        )
    handler(env, message)


def _about_contract(env: Env, message: Any, payload_type: type) -> tuple[Any, ContractInfo]:
    """The message's payload, a ``payload_type`` naming a contract (:class:`InvalidContractMessage`),
    and that contract (:class:`ContractNotFound`)."""
    topic = message.topic.decode(errors="replace")
    try:
        payload = decode(payload_type, message.payload)
    except DecodeError as exc:
        raise InvalidContractMessage(f"{topic} payload must be a {payload_type.__name__}: {exc}") from exc
    info = Contracts.get_opt(env.state, payload.contract)
    if info is None:
        raise ContractNotFound(f"{topic} for contract {payload.contract.hex()}, which does not exist")
    return payload, info


def _from_cluster(env: Env, message: Any, payload_type: type) -> tuple[Any, ContractInfo]:
    """The decoded payload of a message a cluster sends about one of its contracts, and the
    contract. Checks in order: the sender is a cluster origin and the payload a
    ``payload_type`` (:class:`InvalidContractMessage`), the contract it names exists
    (:class:`ContractNotFound`) and is in the sender's cluster (:class:`WrongCluster`)."""
    topic = message.topic.decode(errors="replace")
    sender = message.sender
    if not isinstance(sender, ClusterOrigin):
        raise InvalidContractMessage(f"{topic} must come from the contract's cluster origin")
    payload, info = _about_contract(env, message, payload_type)
    if info.cluster != sender.cluster:
        raise WrongCluster(
            f"{topic} from cluster {sender.cluster.hex()}; the contract is in {info.cluster.hex()}"
        )
    return payload, info


def _on_pubkey(env: Env, message: Any) -> None:
    """From ``ClusterOrigin(cluster)`` (signed with its current epoch key, as the mq pallet
    checked), payload ``encode(ContractPubkey)``. Checks as :func:`_from_cluster` does, then
    the epoch is the cluster's current one (:class:`WrongEpoch`) and the contract's keys for
    it are not stored yet (:class:`PubkeyAlreadyPublished`: every worker sends the same
    payload, the chain keeps the first). Stores them in ``ContractKeys`` (replacing an earlier
    epoch's) and emits ``ContractPubkeyPublished``.
    """
    published, info = _from_cluster(env, message, ContractPubkey)
    current = _current_epoch(env, info.cluster)
    if published.epoch != current:
        raise WrongEpoch(f"keys for epoch {published.epoch}; the cluster is in epoch {current}")
    stored = ContractKeys.get_opt(env.state, published.contract)
    if stored is not None and stored.epoch == published.epoch:
        raise PubkeyAlreadyPublished(f"the keys for epoch {published.epoch} are already published")
    ContractKeys.put(env.state, published.contract, published)
    env.deposit_event(
        ContractPubkeyPublished(
            published.contract, published.epoch, published.pubkey, published.ecdh
        )
    )


def _on_report(env: Env, message: Any) -> None:
    """From ``ClusterOrigin(cluster)``, payload ``encode(CommandReport)``. Checks as
    :func:`_from_cluster` does, then the message is at most MAX_REPORT_MESSAGE bytes
    (:class:`MessageTooLong`) and empty if the status is ok (:class:`InvalidContractMessage`),
    a fee is pending for the command (:class:`UnknownCommand`: never submitted, or already
    reported) and the gas used is within its gas limit (:class:`GasExceedsLimit`). Moves
    ``gas_used × GAS_PRICE`` of the payer's reserve to the treasury, unreserves the rest,
    removes the pending fee and emits ``CommandReported``. A constructor (command 0) reported
    not ok makes the contract ``ConstructorFailed(message)`` and emits ``InstantiationFailed``.
    """
    report, _ = _from_cluster(env, message, CommandReport)
    _settle_report(env, report)


def _settle_report(env: Env, report: CommandReport) -> None:
    """Settle one report (see :func:`_on_report`); checks everything before it changes
    anything, so a refusal changes nothing."""
    _check_message(report.message, "the report's message")
    if report.status == OK and report.message:
        raise InvalidContractMessage("a report with status ok carries no message")
    key = (report.contract, report.index)
    pending = PendingFees.get_opt(env.state, key)
    if pending is None:
        raise UnknownCommand(f"command {report.index} of this contract awaits no report")
    gas_limit = pending.reserved // GAS_PRICE
    if report.gas_used > gas_limit:
        raise GasExceedsLimit(f"gas used {report.gas_used} exceeds the gas limit {gas_limit}")
    refunded = _settle(env, pending, report.gas_used * GAS_PRICE)
    _remove_pending(env, report.contract, report.index)
    env.deposit_event(
        CommandReported(
            report.contract,
            report.index,
            report.status,
            report.gas_used,
            refunded,
            report.message,
        )
    )
    if report.index == 0 and report.status != OK:
        ContractStatus.put(env.state, report.contract, payloads.ConstructorFailed(report.message))
        env.deposit_event(InstantiationFailed(report.contract, report.status, report.message))


def _on_reports(env: Env, message: Any) -> None:
    """From ``ClusterOrigin(cluster)``, payload ``encode(CommandReports)``: the reports of one
    block's commands to one contract. Checks as :func:`_from_cluster` does and that there are
    at most MAX_REPORTS (:class:`InvalidContractMessage`), then settles each in order as
    :func:`_on_report` would. A report the chain refuses (its fee reclaimed meanwhile, say)
    changes nothing and emits ``ReportSkipped`` with the error; the others still settle."""
    batch, _ = _from_cluster(env, message, CommandReports)
    if len(batch.reports) > MAX_REPORTS:
        raise InvalidContractMessage(f"at most {MAX_REPORTS} reports in one message")
    for item in batch.reports:
        report = CommandReport(batch.contract, item.index, item.status, item.gas_used, item.message)
        try:
            _settle_report(env, report)
        except Error as exc:
            env.deposit_event(ReportSkipped(batch.contract, item.index, type(exc).code, str(exc)[:MAX_REPORT_MESSAGE]))


def _from_member(env: Env, message: Any, payload_type: type) -> tuple[Any, ContractInfo]:
    """As :func:`_from_cluster`, for what one worker of the contract's cluster sends as itself
    (``WorkerOrigin``, its own sequence): a halt is that worker's own finding, which the
    cluster's shared origin cannot carry (its sequence is for what every member sends
    alike). The sender must be a current member of the contract's cluster (:class:`WrongCluster`)."""
    topic = message.topic.decode(errors="replace")
    sender = message.sender
    if not isinstance(sender, WorkerOrigin):
        raise InvalidContractMessage(f"{topic} must come from a worker of the contract's cluster")
    payload, info = _about_contract(env, message, payload_type)
    members = cluster.Clusters.get_opt(env.state, info.cluster)
    if members is None or sender.identity not in members.workers:
        raise WrongCluster(f"{topic} from a worker that is not in the contract's cluster")
    return payload, info


def _on_halted(env: Env, message: Any) -> None:
    """From ``WorkerOrigin(worker)`` of a member of the contract's cluster, payload
    ``encode(ContractHalted)``. Checks as :func:`_from_member` does, then the reason is at
    most MAX_REPORT_MESSAGE bytes (:class:`MessageTooLong`), the constructor did not fail
    (:class:`ConstructorFailed`: such a contract runs nothing) and the contract is not halted
    already (:class:`AlreadyHalted`: another worker's halt came first, the chain keeps it). Makes it ``Halted(reason)`` and
    emits ``Halted``; its pending fees can then be reclaimed at once.
    """
    halted, _ = _from_member(env, message, payloads.ContractHalted)
    _check_message(halted.reason, "the halt's reason")
    found = ContractStatus.get_opt(env.state, halted.contract)
    if isinstance(found, payloads.ConstructorFailed):
        raise ConstructorFailed("a contract whose constructor failed runs nothing to halt")
    if isinstance(found, payloads.Halted):
        raise AlreadyHalted(f"contract {halted.contract.hex()} is halted already")
    ContractStatus.put(env.state, halted.contract, payloads.Halted(halted.reason))
    env.deposit_event(Halted(halted.contract, halted.reason))


def _settle(env: Env, pending: PendingFee, charged: int) -> int:
    """Pay ``charged`` of ``pending``'s reserve to the treasury and unreserve the rest;
    returns what went back to the payer. If the payer's reserve shrank meanwhile (an account
    reaped with a reserve below the existential deposit loses it), only what is left moves."""
    payer = pending.payer
    held = system.account(env, payer).data.reserved
    paid = min(charged, held)
    if paid:
        balances.repatriate_reserved(env, payer, balances.TREASURY, paid)
    refund = pending.reserved - charged
    return refund - balances.unreserve(env, payer, refund)


def _from_contract(env: Env, message: Any, payload_type: type) -> tuple[bytes, Any]:
    """The sending contract and the decoded payload of a message a contract sends itself
    (``ContractOrigin``: the mq pallet checked the contract key's signature). Raises
    :class:`InvalidContractMessage` for another sender kind or payload."""
    topic = message.topic.decode(errors="replace")
    sender = message.sender
    if not isinstance(sender, ContractOrigin):
        raise InvalidContractMessage(f"{topic} must come from the contract's own origin")
    try:
        return sender.contract, decode(payload_type, message.payload)
    except DecodeError as exc:
        raise InvalidContractMessage(f"{topic} payload must be a {payload_type.__name__}: {exc}") from exc


def _on_payout(env: Env, message: Any) -> None:
    """From ``ContractOrigin(contract)``, payload ``encode(Payout)``: transfers ``amount`` from
    the contract's account to ``to`` (balances' errors if it holds too little) and emits
    ``PaidOut``."""
    source, payout = _from_contract(env, message, Payout)
    balances.transfer(env, contract_account(source), payout.to, payout.amount, keep_alive=False)
    env.deposit_event(PaidOut(source, payout.to, payout.amount))


def _on_contract_message(env: Env, message: Any) -> None:
    """From ``ContractOrigin(source)``, payload ``encode(ContractMessage)``: the target must
    exist (:class:`ContractNotFound`) and run (:class:`ConstructorFailed`,
    :class:`ContractHalted`); passes the sealed payload on to the target's workers on
    ``phala/contracts/deliver`` and emits ``MessageSent``."""
    source, sent = _from_contract(env, message, ContractMessage)
    if not Contracts.contains(env.state, sent.to):
        raise ContractNotFound(f"message to contract {sent.to.hex()}, which does not exist")
    _ensure_runs(env, sent.to)
    _check_payload(sent.payload, "a contract message")
    _take_contract_slot(env, sent.to)
    delivery = ContractDelivery(source, sent.to, sent.payload)
    mq.push_outbound(env, Message(MESSAGE_ORIGIN, DELIVER_TOPIC, encode(delivery)))
    env.deposit_event(MessageSent(source, sent.to))


_HANDLERS: dict[bytes, Callable[[Env, Any], None]] = {
    CONTRACT_PUBKEY_TOPIC: _on_pubkey,
    REPORT_TOPIC: _on_report,
    REPORTS_TOPIC: _on_reports,
    HALTED_TOPIC: _on_halted,
    PAYOUT_TOPIC: _on_payout,
    MESSAGE_TOPIC: _on_contract_message,
}

PALLET = Pallet(
    name=NAME,
    index=PALLET_INDEX,
    call=Call,
    event=Event,
    error=Error,
    topics=tuple(_HANDLERS),
    on_message=on_message,
    build_genesis=build_genesis,
)
