"""The async contract SDK: deploy a contract, send it commands, query it, read receipts and
events, against a node (:class:`~phala.client.rpc.RpcClient`) and the workers of its cluster.

Every key something is sealed to comes from chain state read with a Merkle proof against a
finalized block's state root (:func:`phala.client.chain.verified_storage`), never from a
worker: the cluster's current X25519 key for constructor arguments (``Cluster.ClusterPubkeys``),
the contract's for commands (``Contracts.ContractKeys``), the worker's for queries
(``Registry.Workers``). A worker's ``get_info`` is used only to *choose* it (and to know
how far it has synced); a worker's address, when not given, is the endpoint its
registration records on chain::

    async with ContractSession("http://127.0.0.1:9944") as session:
        deployed = await session.deploy("examples/token.py", cluster, [1_000_000], ALICE)
        done = await session.call(deployed.contract, "transfer", [BOB.public_key, 10], ALICE)
        answer = await session.query(deployed.contract, "balance_of", [BOB.public_key], BOB,
                                     min_block=done.block_number)
        print(answer.value, answer.block_number)

Failures a caller can cause or meet (the chain refusing an extrinsic, a worker refusing a
query, a contract that does not exist, a worker that cannot be reached, code the workers
would refuse, a contract its workers halted) raise :class:`ContractClientError` subclasses
with a one-line reason. A command that the contract fails (an error, out of gas) is no
exception: its :class:`CommandResult` says so, with the workers' message from the chain.

A contract's status, its pending fees and the list of every contract are read from chain
state with proofs too (:meth:`ContractSession.contract_state`, :meth:`~ContractSession.pending_fees`,
:meth:`~ContractSession.contracts`); :meth:`~ContractSession.reclaim` takes back the fees the
signer is owed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import orjson

from phala.chain.runtime import cluster as cluster_pallet
from phala.chain.runtime import contracts as contracts_pallet
from phala.chain.runtime import registry, system
from phala.chain.runtime.frame import RuntimeCall
from phala.contracts import protocol as p
from phala.contracts.values import decode_plain
from phala.core.attestation import WorkerInfo
from phala.core.cluster import ClusterInfo, EpochKeys, cluster_id
from phala.core.codec import DecodeError
from phala.core.contracts import (
    QUERY_EVENTS,
    QUERY_METHOD,
    QUERY_RECEIPT,
    ConstructorFailed,
    ContractInfo,
    ContractPubkey,
    ContractStatus,
    Halted,
    Query,
    contract_id,
    events_aad,
    receipt_aad,
)
from phala.core.envelope import X25519Keypair
from phala.core.gas import COMMAND_GAS
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair
from phala.core.types import Header

from . import chain, tx
from .chain import ChainEvent, VerificationError
from .contracts import (
    InterfaceError,
    QueryAnswerError,
    check_code,
    contract_interface,
    new_query,
    open_answer,
    seal_command,
    seal_constructor,
    seal_query,
    unseal_for_account,
)
from .describe import call_name, dispatch_outcome, error_text
from .rpc import RpcClient

__all__ = [
    "CodeRefused",
    "CommandResult",
    "ContractClientError",
    "ContractEvent",
    "ContractHaltedError",
    "ContractNotFound",
    "ContractSession",
    "ContractState",
    "Deployment",
    "DispatchFailed",
    "PendingFee",
    "PreparedQuery",
    "QueryRefused",
    "QueryResult",
    "Reclaimed",
    "Report",
    "SentCommand",
    "WorkerTarget",
    "WorkerUnavailable",
    "DEFAULT_GAS",
    "RECEIPT_BLOCKS",
]

DEFAULT_GAS = COMMAND_GAS  # the gas schedule (phala.core.gas)
# How long a worker keeps a command's receipt (phala.pruntime.contracts.RECEIPT_BLOCKS).
RECEIPT_BLOCKS = 600
QUERY_LIFETIME = 20  # blocks a query stays valid after the worker's current block
READ_BATCH = 256  # storage keys read with one proof when listing

T = TypeVar("T")


class ContractClientError(Exception):
    """A contract operation failed; the message says why, in one line."""


class DispatchFailed(ContractClientError):
    """The chain included the extrinsic but its call failed (``error`` names the error)."""

    def __init__(self, message: str, error: str):
        super().__init__(message)
        self.error = error


class ContractNotFound(ContractClientError):
    """No contract has this id on chain."""


class QueryRefused(ContractClientError):
    """The worker refused the query (replayed, expired, not yet at the block asked for, …)."""


class WorkerUnavailable(ContractClientError):
    """No worker to ask: none reachable, none with an endpoint on chain, or not in the cluster."""


class CodeRefused(ContractClientError):
    """The workers would refuse this code (:func:`phala.client.contracts.check_code`):
    nothing was uploaded. ``errors`` are ``(line, message)``."""

    def __init__(self, errors: list[tuple[int, str]]):
        first = "; ".join(f"line {line}: {message}" for line, message in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(f"the workers would refuse this code: {first}{more}")
        self.errors = list(errors)


class ContractHaltedError(ContractClientError):
    """The contract was halted (its workers stopped running it) while a report was awaited:
    no report will come; the pending fees can be reclaimed at once."""

    def __init__(self, message: str, reason: str, block_number: int):
        super().__init__(message)
        self.reason, self.block_number = reason, block_number


@dataclass(frozen=True)
class Report:
    """A command's (or the constructor's) report on chain: ``Contracts.CommandReported``."""

    index: int
    status: int
    gas_used: int
    refunded: int
    block_number: int
    block_hash: bytes
    message: str = ""  # why it failed, as the workers reported it (empty when ok)

    @property
    def status_name(self) -> str:
        return _status_name(self.status)

    @property
    def ok(self) -> bool:
        return self.status == p.OK


@dataclass(frozen=True)
class Deployment:
    contract: bytes
    code_hash: bytes
    cluster: bytes
    salt: bytes
    deployer: bytes
    constructor: str
    uploaded: bool  # this deploy uploaded the code (False: it was on chain already)
    existed: bool  # the contract was on chain already (deploy(..., exist_ok=True))
    block_number: int  # the block that included the instantiation (or its ContractInfo's)
    keys: ContractPubkey | None  # None only when the constructor failed before they were published
    report: Report | None  # the constructor's; None when it existed and is not looked up


@dataclass(frozen=True)
class CommandResult:
    contract: bytes
    index: int
    tx_hash: bytes
    block_number: int  # the block that included the command
    block_hash: bytes
    gas_limit: int
    report: Report

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def status(self) -> int:
        return self.report.status

    @property
    def status_name(self) -> str:
        return self.report.status_name

    @property
    def gas_used(self) -> int:
        return self.report.gas_used


@dataclass(frozen=True)
class WorkerTarget:
    """A worker to query: where it answers, its identity and its X25519 key (the key from
    ``Registry.Workers``, proof-verified at ``header``), and the block it has dispatched."""

    url: str
    identity: bytes
    ecdh: bytes
    cluster: bytes
    synced: int
    header: Header


@dataclass(frozen=True)
class PreparedQuery:
    """A signed, sealed query: send it with :meth:`ContractSession.send_query`. Sending the
    same one twice is a replay, which the worker refuses."""

    target: WorkerTarget
    query: Query
    reply: X25519Keypair
    sealed: bytes


@dataclass(frozen=True)
class QueryResult:
    status: int
    message: str
    gas_used: int
    value: Any  # the decoded plain value (None unless ok)
    block_number: int  # the state the answer was computed at
    block_hash: bytes
    worker: WorkerTarget

    @property
    def ok(self) -> bool:
        return self.status == p.OK

    @property
    def status_name(self) -> str:
        return _status_name(self.status)


@dataclass(frozen=True)
class SentCommand:
    """One of the account's commands, as its receipt tells (``receipt`` None: not readable,
    ``message`` says why)."""

    index: int
    block_number: int
    receipt: dict | None
    message: str


@dataclass(frozen=True)
class ContractEvent:
    """An event the contract emitted for the account: in one of its own commands, or in
    another account's command that named it."""

    block_number: int
    index: int  # the command that emitted it
    event: Any


@dataclass(frozen=True)
class ContractState:
    """A contract as the chain holds it at ``header``: its record, its status, how many
    commands it was sent (the constructor is #0) and how many of their fees are pending."""

    contract: bytes
    info: ContractInfo
    stored_status: ContractStatus | None  # Contracts.ContractStatus (None: active or pending)
    command_count: int
    pending_count: int
    constructor_pending: bool  # the constructor's fee awaits its report
    keys: ContractPubkey | None
    header: Header
    cluster_index: int | None  # its cluster was the n-th created (None: not found)
    index: int | None = None  # its place in Contracts.ContractByIndex, when listed

    @property
    def halted(self) -> bool:
        return isinstance(self.stored_status, Halted)

    @property
    def constructor_failed(self) -> bool:
        return isinstance(self.stored_status, ConstructorFailed)

    @property
    def status(self) -> str:
        """``active``, ``pending`` (the constructor not reported yet), ``constructor failed``
        or ``halted``."""
        if self.halted:
            return "halted"
        if self.constructor_failed:
            return "constructor failed"
        return "pending" if self.constructor_pending else "active"

    @property
    def reason(self) -> str:
        """Why it is halted or its constructor failed, as the workers reported it."""
        found = self.stored_status
        if isinstance(found, Halted):
            return found.reason
        if isinstance(found, ConstructorFailed):
            return found.message
        return ""


@dataclass(frozen=True)
class PendingFee:
    """A fee reserved for command ``index`` whose report has not come (``Contracts.PendingFees``)."""

    index: int
    payer: bytes
    reserved: int
    submitted: int  # the block that included the command
    reclaimable_from: int  # the first block whose reclaim_fee the chain accepts

    def reclaimable_at(self, block_number: int) -> bool:
        return block_number >= self.reclaimable_from


@dataclass(frozen=True)
class Reclaimed:
    """A fee taken back with ``Contracts.reclaim_fee`` (``error``: the chain refused it)."""

    index: int
    amount: int
    block_number: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _status_name(status: int) -> str:
    return p.STATUS_NAMES[status] if 0 <= status < len(p.STATUS_NAMES) else f"status {status}"






def _decode(item: Any, raw: bytes | None) -> Any:
    if raw is None:
        return item.default if hasattr(item, "default") else None
    try:
        return item.codec.decode(raw)
    except DecodeError as exc:
        raise VerificationError(f"{item.pallet}.{item.name} does not decode: {exc}") from exc


def load_code(source: str | Path | bytes) -> bytes:
    """A contract's source: ``bytes`` as they are, else the file at that path."""
    if isinstance(source, bytes):
        return source
    path = Path(source)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ContractClientError(f"cannot read {path}: {exc.strerror or exc}") from None


class ContractSession:
    """A connection to a node (and, for queries, to workers). Use as an async context manager.

    ``node`` is a URL or an open :class:`RpcClient` (then left open at the end); ``timeout``
    bounds every wait (finalization, keys, reports); ``poll`` is the pause between reads."""

    def __init__(
        self,
        node: str | RpcClient,
        *,
        timeout: float = 60.0,
        poll: float = 0.2,
        worker_timeout: float = 20.0,
    ):
        self.client = node if isinstance(node, RpcClient) else RpcClient(node)
        self._owns_client = not isinstance(node, RpcClient)
        self.timeout, self.poll = timeout, poll
        self.worker_timeout = worker_timeout
        self._http: aiohttp.ClientSession | None = None
        self._genesis: bytes | None = None

    async def __aenter__(self) -> ContractSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._owns_client:
            await self.client.close()

    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.worker_timeout)
            )
        return self._http

    async def genesis_hash(self) -> bytes:
        if self._genesis is None:
            genesis = await chain.block_hash(self.client, 0)
            if genesis is None:
                raise VerificationError("the node has no genesis block")
            self._genesis = genesis
        return self._genesis

    # -- proof-checked reads ------------------------------------------------------------------

    async def read(
        self, entries: list[tuple[Any, Any]], at: bytes | None = None
    ) -> tuple[Header, list[Any]]:
        """``[(storage item, key or None for a value)]`` read at block ``at`` (default: the
        finalized head) with one proof; absent entries read as the item's default (or None)."""
        keys = [item.key if key is None else item.key(key) for item, key in entries]
        proven = await chain.verified_storage(self.client, keys, at)
        return proven.header, [
            _decode(item, proven[k]) for (item, _), k in zip(entries, keys, strict=True)
        ]

    async def contract_info(self, contract: bytes, at: bytes | None = None) -> ContractInfo | None:
        _, [info] = await self.read([(contracts_pallet.Contracts, contract)], at)
        return info

    async def contract_keys(
        self, contract: bytes, at: bytes | None = None
    ) -> ContractPubkey | None:
        _, [keys] = await self.read([(contracts_pallet.ContractKeys, contract)], at)
        return keys

    async def code(self, code_hash: bytes, at: bytes | None = None) -> bytes | None:
        _, [code] = await self.read([(contracts_pallet.Code, code_hash)], at)
        return code

    async def contract_code(self, contract: bytes) -> tuple[ContractInfo, bytes]:
        """The contract's record and its source (both proof-verified)."""
        header, [info] = await self.read([(contracts_pallet.Contracts, contract)])
        if info is None:
            raise ContractNotFound(f"no contract has id 0x{contract.hex()}")
        _, [code] = await self.read([(contracts_pallet.Code, info.code_hash)], header.hash)
        if code is None:
            raise VerificationError(f"contract 0x{contract.hex()}'s code is not on chain")
        return info, code

    async def cluster(
        self, cluster: bytes, at: bytes | None = None
    ) -> tuple[Header, ClusterInfo | None, list[EpochKeys]]:
        header, [info, pubkeys] = await self.read(
            [(cluster_pallet.Clusters, cluster), (cluster_pallet.ClusterPubkeys, cluster)], at
        )
        return header, info, pubkeys

    async def cluster_ecdh(self, cluster: bytes, at: bytes | None = None) -> tuple[int, EpochKeys]:
        """The cluster's current epoch and its published public keys. Raises
        :class:`ContractClientError` if there is no such cluster or they are unpublished."""
        _, info, pubkeys = await self.cluster(cluster, at)
        if info is None:
            raise ContractClientError(f"no cluster has id 0x{cluster.hex()}")
        epoch = len(info.epoch_rotations) - 1
        if len(pubkeys) != len(info.epoch_rotations):
            raise ContractClientError(
                f"cluster 0x{cluster.hex()} is in epoch {epoch}, whose public keys the gatekeepers "
                "have not published yet"
            )
        return epoch, pubkeys[-1]

    async def events_at(self, block: bytes) -> list[system.EventRecord]:
        """The events of block ``block`` from ``System.Events``, proof-verified."""
        _, [records] = await self.read([(system.Events, None)], block)
        return records

    # -- extrinsics ---------------------------------------------------------------------------

    async def submit(
        self, signer: Keypair, call: RuntimeCall
    ) -> tuple[bytes, Header, list[ChainEvent]]:
        """Submit ``call`` signed by ``signer``, wait until a finalized block includes it and
        return its hash, that block's header and the extrinsic's events. Raises
        :class:`DispatchFailed` when the call failed."""
        since = await self._next_block()
        tx_hash = await tx.submit(self.client, signer, call)
        header, events, failed = await self._included(call, tx_hash, since)
        if failed is not None:
            raise failed
        return tx_hash, header, events

    async def submit_all(
        self, signer: Keypair, calls: list[RuntimeCall]
    ) -> list[tuple[Header, list[ChainEvent], str | None]]:
        """Submit ``calls`` signed by ``signer`` one after the other (consecutive nonces),
        then wait for each: its block's header, its events and, when it failed, the error
        (``Pallet.Error: what it means``)."""
        since = await self._next_block()
        hashes = [await tx.submit(self.client, signer, call) for call in calls]
        out = []
        for call, tx_hash in zip(calls, hashes, strict=True):
            header, events, failed = await self._included(call, tx_hash, since)
            out.append((header, events, None if failed is None else str(failed)))
        return out

    async def _next_block(self) -> int:
        head = await chain.get_header(self.client)
        if head is None:
            raise VerificationError("the node has no finalized head")
        return head.number + 1

    async def _included(
        self, call: RuntimeCall, tx_hash: bytes, since: int
    ) -> tuple[Header, list[ChainEvent], DispatchFailed | None]:
        """Wait until a finalized block from #``since`` on includes ``tx_hash``: the block's
        header, the extrinsic's events, and None or, if the call failed, the
        :class:`DispatchFailed` to raise."""
        block_hash, events = await tx.wait_finalized(self.client, tx_hash, self.timeout, since=since)
        header = await chain.get_header(self.client, block_hash)
        if header is None:
            raise VerificationError(f"the node does not serve block 0x{block_hash.hex()}")
        outcome = dispatch_outcome(events)
        if outcome is None:
            raise VerificationError("the block holds no success or failure event for the extrinsic")
        if outcome.ok:
            return header, events, None
        text = error_text(outcome.pallet, outcome.code)
        failed = DispatchFailed(
            f"{call_name(call)} failed in block #{header.number}: {text}", outcome.error or "unknown"
        )
        return header, events, failed

    async def _until(
        self, what: str, check: Callable[[], Awaitable[T | None]], timeout: float | None = None
    ) -> T:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = await check()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{what}: not within {self.timeout if timeout is None else timeout:g} s"
                )
            await asyncio.sleep(self.poll)

    async def wait_report(
        self, contract: bytes, index: int, since: int, timeout: float | None = None
    ) -> Report:
        """Follow finalized blocks from #``since`` until ``Contracts.CommandReported`` for
        command ``index`` of ``contract`` (read from proof-verified ``System.Events``).
        Raises :class:`ContractHaltedError` if ``Contracts.Halted`` for the contract comes
        first: its workers stopped running it, so no report will."""
        next_number = since

        async def scan() -> Report | None:
            nonlocal next_number
            head = await chain.get_header(self.client)
            if head is None:
                return None
            while next_number <= head.number:
                at = (
                    head.hash
                    if next_number == head.number
                    else await chain.block_hash(self.client, next_number)
                )
                if at is None:
                    return None
                for record in await self.events_at(at):
                    ev = record.event
                    if (
                        isinstance(ev, contracts_pallet.CommandReported)
                        and ev.contract == contract
                        and ev.index == index
                    ):
                        return Report(
                            index, ev.status, ev.gas_used, ev.refunded, next_number, at, ev.message
                        )
                    if isinstance(ev, contracts_pallet.Halted) and ev.contract == contract:
                        raise ContractHaltedError(
                            f"contract 0x{contract.hex()} was halted by its workers in block "
                            f"#{next_number} before command {index} was reported: {ev.reason}; "
                            "its pending fees can be reclaimed at once",
                            ev.reason,
                            next_number,
                        )
                next_number += 1
            return None

        return await self._until(
            f"the report of command {index} of contract 0x{contract.hex()}", scan, timeout
        )

    # -- deploy -------------------------------------------------------------------------------

    async def upload_code(self, code: bytes, signer: Keypair) -> tuple[bytes, bool]:
        """Store ``code`` on chain unless it is there; returns its hash and whether this call
        uploaded it."""
        code_hash = blake2_256(code)
        _, [stored] = await self.read([(contracts_pallet.Code, code_hash)])
        if stored is not None:
            return code_hash, False
        await self.submit(signer, contracts_pallet.upload_code(code))
        return code_hash, True

    async def deploy(
        self,
        source: str | Path | bytes,
        cluster: bytes,
        constructor_args: list[Any],
        signer: Keypair,
        *,
        salt: bytes = b"",
        gas_limit: int = DEFAULT_GAS,
        constructor: str | None = None,
        exist_ok: bool = False,
        check: bool = True,
    ) -> Deployment:
        """Check the code as the workers will (:class:`CodeRefused`, before anything is sent),
        upload it (unless on chain), seal the constructor call to the cluster's current X25519
        key (proof-verified), instantiate, and wait until the workers reported the constructor
        and, if it succeeded, published the contract's keys (``Contracts.ContractKeys``). A
        failed constructor is no exception: ``report`` says so, with the workers' message.

        ``constructor`` defaults to the method the source marks ``@constructor``. With
        ``exist_ok``, a contract already deployed with this deployer, code, cluster and salt
        is returned (once its keys are published) instead of refused. ``check=False`` skips
        the local check (to see what the workers do with code they refuse)."""
        code = load_code(source)
        if check:
            result = check_code(code)
            if not result.ok:
                raise CodeRefused(result.errors)
        try:
            interface = contract_interface(code)
        except (InterfaceError, UnicodeDecodeError) as exc:
            raise ContractClientError(f"not a contract: {exc}") from None
        if constructor is None:
            found = interface.constructor()
            if found is None:
                raise ContractClientError(f"contract {interface.name} has no @constructor method")
            constructor = found.name
        code_hash = blake2_256(code)
        new_id = contract_id(signer.public_key, code_hash, cluster, salt)
        existing = await self.contract_info(new_id)
        if existing is not None:
            if not exist_ok:
                raise ContractClientError(
                    f"contract 0x{new_id.hex()} (this deployer, code, cluster and salt) exists "
                    "already: change the salt"
                )
            keys = await self._until(
                f"the keys of contract 0x{new_id.hex()}", lambda: self.contract_keys(new_id)
            )
            return Deployment(
                new_id,
                code_hash,
                cluster,
                salt,
                signer.public_key,
                constructor,
                False,
                True,
                existing.instantiated_at,
                keys,
                None,
            )
        _, epoch_keys = await self.cluster_ecdh(cluster)
        code_hash, uploaded = await self.upload_code(code, signer)
        genesis = await self.genesis_hash()
        sealed = seal_constructor(
            epoch_keys.ecdh, genesis, new_id, signer, constructor, list(constructor_args)
        )
        _, header, _ = await self.submit(
            signer, contracts_pallet.instantiate(code_hash, cluster, salt, sealed, gas_limit)
        )
        report = await self.wait_report(new_id, 0, header.number + 1)
        if report.ok:
            keys = await self._until(
                f"the keys of contract 0x{new_id.hex()}", lambda: self.contract_keys(new_id)
            )
        else:
            keys = await self.contract_keys(new_id)
        return Deployment(
            new_id,
            code_hash,
            cluster,
            salt,
            signer.public_key,
            constructor,
            uploaded,
            False,
            header.number,
            keys,
            report,
        )

    # -- commands -----------------------------------------------------------------------------

    async def submit_command(
        self, contract: bytes, payload: bytes, signer: Keypair, gas_limit: int = DEFAULT_GAS
    ) -> CommandResult:
        """Submit an already sealed command and wait for its report."""
        tx_hash, header, events = await self.submit(
            signer, contracts_pallet.command(contract, payload, gas_limit)
        )
        phase = next((e.phase for e in events if e.phase is not None), None)
        records = await self.events_at(header.hash)
        submitted = [
            r.event
            for r in records
            if r.phase == phase and isinstance(r.event, contracts_pallet.CommandSubmitted)
        ]
        if len(submitted) != 1 or submitted[0].contract != contract:
            raise VerificationError(
                "the extrinsic's events hold no Contracts.CommandSubmitted for it"
            )
        index = submitted[0].index
        report = await self.wait_report(contract, index, header.number + 1)
        return CommandResult(
            contract, index, tx_hash, header.number, header.hash, gas_limit, report
        )

    async def call(
        self,
        contract: bytes,
        method: str,
        args: list[Any],
        signer: Keypair,
        gas_limit: int = DEFAULT_GAS,
    ) -> CommandResult:
        """Seal ``method(*args)`` to the contract's X25519 key (``Contracts.ContractKeys``,
        proof-verified), submit it signed by ``signer``, wait for finalization and for the
        workers' report (``Contracts.CommandReported``) of its index. A contract whose
        constructor failed, or that its workers halted, is refused here, before anything is
        sealed or paid."""
        c = contracts_pallet
        header, [info, keys, status] = await self.read(
            [(c.Contracts, contract), (c.ContractKeys, contract), (c.ContractStatus, contract)]
        )
        if info is None:
            raise ContractNotFound(f"no contract has id 0x{contract.hex()}")
        if isinstance(status, ConstructorFailed):
            raise ContractClientError(
                f"contract 0x{contract.hex()}'s constructor failed, so it accepts no commands: "
                f"{status.message or 'the workers gave no reason'}"
            )
        if isinstance(status, Halted):
            raise ContractClientError(
                f"contract 0x{contract.hex()} is halted (its workers stopped running it: "
                f"{status.reason}); it accepts no commands until root resumes it"
            )
        if keys is None:
            raise ContractClientError(
                f"contract 0x{contract.hex()}'s keys are not published yet (its workers have not "
                "instantiated it)"
            )
        genesis = await self.genesis_hash()
        payload = seal_command(keys.ecdh, genesis, contract, signer, method, list(args))
        return await self.submit_command(contract, payload, signer, gas_limit)

    # -- status, pending fees, reclaiming them --------------------------------------------------

    async def contract_states(
        self, contracts: list[bytes], at: bytes | None = None
    ) -> tuple[Header, list[ContractState | None]]:
        """Each contract's :class:`ContractState` at block ``at`` (default: the finalized head),
        None for an id no contract has; all proof-verified at one block."""
        c = contracts_pallet
        header = None
        found: list[ContractState | None] = []
        per = 6  # keys read for each contract
        indices: dict[bytes, int] = {}
        for start in range(0, len(contracts), READ_BATCH // per):
            part = contracts[start : start + READ_BATCH // per]
            entries: list[tuple[Any, Any]] = [(cluster_pallet.ClusterCount, None)]
            for cid in part:
                entries += [
                    (c.Contracts, cid),
                    (c.ContractStatus, cid),
                    (c.CommandCount, cid),
                    (c.PendingCount, cid),
                    (c.PendingFees, (cid, 0)),
                    (c.ContractKeys, cid),
                ]
            header, [clusters, *values] = await self.read(entries, at)
            at = header.hash
            if len(indices) != clusters:
                indices = {cluster_id(i): i for i in range(clusters)}
            for n, cid in enumerate(part):
                info, status, commands, pending, first, keys = values[n * per : (n + 1) * per]
                found.append(
                    None
                    if info is None
                    else ContractState(
                        cid,
                        info,
                        status,
                        commands,
                        pending,
                        first is not None,
                        keys,
                        header,
                        indices.get(info.cluster),
                    )
                )
        if header is None:  # no ids were asked for: just the block
            header = await chain.get_header(self.client, at)
            if header is None:
                raise VerificationError("the node has no such block")
        return header, found

    async def contract_state(self, contract: bytes, at: bytes | None = None) -> ContractState:
        """The contract's record, status and counts, proof-verified; raises
        :class:`ContractNotFound`."""
        _, [state] = await self.contract_states([contract], at)
        if state is None:
            raise ContractNotFound(f"no contract has id 0x{contract.hex()}")
        return state

    async def contracts(self) -> tuple[Header, list[ContractState]]:
        """Every contract, in instantiation order (``Contracts.ContractByIndex``), at the
        finalized head, proof-verified."""
        c = contracts_pallet
        header, [total] = await self.read([(c.ContractCount, None)])
        ids: list[bytes] = []
        for start in range(0, total, READ_BATCH):
            indices = range(start, min(total, start + READ_BATCH))
            _, part = await self.read([(c.ContractByIndex, i) for i in indices], header.hash)
            if any(cid is None for cid in part):
                raise VerificationError(
                    f"Contracts.ContractCount is {total} but an index below it lists no contract"
                )
            ids += part
        _, states = await self.contract_states(ids, header.hash)
        listed = []
        for index, state in enumerate(states):
            if state is None:
                raise VerificationError(f"contract {index} of Contracts.ContractByIndex has no record")
            listed.append(dataclasses.replace(state, index=index))
        return header, listed

    async def pending_fees(
        self, contract: bytes, at: bytes | None = None
    ) -> tuple[ContractState, list[PendingFee]]:
        """The contract's state and every fee of its commands still awaiting a report, oldest
        first: ``Contracts.PendingFees`` read down from its last command until as many are
        found as ``Contracts.PendingCount`` says (all proof-verified at one block)."""
        state = await self.contract_state(contract, at)
        at = state.header.hash
        found: list[PendingFee] = []
        top = state.command_count
        while len(found) < state.pending_count and top > 0:
            indices = range(max(0, top - READ_BATCH), top)
            _, fees = await self.read(
                [(contracts_pallet.PendingFees, (contract, i)) for i in indices], at
            )
            for index, fee in zip(indices, fees, strict=True):
                if fee is not None:
                    start = (
                        state.header.number + 1
                        if state.halted
                        else fee.submitted + contracts_pallet.FEE_TIMEOUT
                    )
                    found.append(PendingFee(index, fee.payer, fee.reserved, fee.submitted, start))
            top = indices.start
        if len(found) != state.pending_count:
            raise VerificationError(
                f"Contracts.PendingCount is {state.pending_count} for contract 0x{contract.hex()}, "
                f"but {len(found)} of its commands have a pending fee"
            )
        return state, sorted(found, key=lambda f: f.index)

    async def reclaim(
        self, contract: bytes, signer: Keypair, index: int | None = None
    ) -> list[Reclaimed]:
        """Take back with ``Contracts.reclaim_fee`` the fee of command ``index``, or (None)
        every pending fee ``signer`` paid that the chain would return now: at once when the
        contract is halted, else FEE_TIMEOUT blocks after its command. The extrinsics are
        submitted together and each awaited; a refused one is a :class:`Reclaimed` with its
        error. Raises :class:`ContractClientError` when there is nothing to reclaim, saying
        why."""
        state, fees = await self.pending_fees(contract)
        next_block = state.header.number + 1
        name = f"contract 0x{contract.hex()}"
        if index is not None:
            fee = next((f for f in fees if f.index == index), None)
            if fee is None:
                raise ContractClientError(
                    f"command {index} of {name} has no pending fee (never sent, reported, or "
                    "reclaimed already)"
                )
            if fee.payer != signer.public_key:
                raise ContractClientError(
                    f"the fee of command {index} was paid by 0x{fee.payer.hex()}: only its payer "
                    "takes it back"
                )
            if not fee.reclaimable_at(next_block):
                raise ContractClientError(
                    f"the fee of command {index} may still be reported: it is reclaimable from "
                    f"block #{fee.reclaimable_from} (the head is #{state.header.number}), or at "
                    "once if the contract is halted"
                )
            wanted = [fee]
        else:
            mine = [f for f in fees if f.payer == signer.public_key]
            wanted = [f for f in mine if f.reclaimable_at(next_block)]
            if not mine:
                raise ContractClientError(
                    f"no pending fee of {name} was paid by this account ({len(fees)} pending in all)"
                )
            if not wanted:
                first = min(f.reclaimable_from for f in mine)
                raise ContractClientError(
                    f"none of this account's {len(mine)} pending fee(s) of {name} is reclaimable "
                    f"yet: the first is from block #{first} (the head is #{state.header.number}), "
                    "or at once if the contract is halted"
                )
        calls = [contracts_pallet.reclaim_fee(contract, f.index) for f in wanted]
        out = []
        for fee, (header, events, error) in zip(
            wanted, await self.submit_all(signer, calls), strict=True
        ):
            amount = 0
            for ev in events:
                if ev.name == "Contracts.FeeReclaimed" and isinstance(ev.fields, dict):
                    amount = int(ev.fields.get("amount") or 0)
            out.append(Reclaimed(fee.index, amount, header.number, error))
        return out

    # -- workers ------------------------------------------------------------------------------

    async def worker_info(self, url: str) -> dict:
        try:
            async with self.http().get(f"{url.rstrip('/')}/get_info") as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise WorkerUnavailable(
                f"cannot reach the worker at {url}: {str(exc) or type(exc).__name__}"
            ) from None
        if (
            not isinstance(body, dict)
            or "error" in body
            or not isinstance(body.get("identity"), str)
        ):
            raise WorkerUnavailable(f"the worker at {url} answers get_info with {str(body)[:200]}")
        return body

    async def _target(
        self, url: str, cluster: bytes, expected: bytes | None = None
    ) -> WorkerTarget:
        info = await self.worker_info(url)
        try:
            identity = bytes.fromhex(info["identity"][2:])
        except ValueError:
            raise WorkerUnavailable(f"the worker at {url} reports a malformed identity") from None
        if expected is not None and identity != expected:
            raise WorkerUnavailable(
                f"the worker at {url} is 0x{identity.hex()}, not 0x{expected.hex()} as its endpoint on chain says"
            )
        genesis = await self.genesis_hash()
        if info.get("genesisHash") not in (None, "0x" + genesis.hex()):
            raise WorkerUnavailable(
                f"the worker at {url} follows another chain (genesis {info.get('genesisHash')})"
            )
        header, [record, member_of] = await self.read(
            [(registry.Workers, identity), (cluster_pallet.WorkerCluster, identity)]
        )
        if record is None:
            raise WorkerUnavailable(
                f"the worker at {url} (0x{identity.hex()}) is not registered on chain"
            )
        if member_of != cluster:
            raise WorkerUnavailable(
                f"the worker at {url} (0x{identity.hex()}) is not in cluster 0x{cluster.hex()}"
            )
        synced = info.get("blockNumber")
        return WorkerTarget(
            url.rstrip("/"),
            identity,
            record.info.ecdh,
            cluster,
            synced if isinstance(synced, int) else header.number,
            header,
        )

    async def cluster_endpoints(self, cluster: bytes) -> list[tuple[bytes, WorkerInfo | None]]:
        """The cluster's members and their ``Registry.Workers`` records, proof-verified."""
        header, info, _ = await self.cluster(cluster)
        if info is None:
            raise ContractClientError(f"no cluster has id 0x{cluster.hex()}")
        if not info.workers:
            return []
        _, records = await self.read([(registry.Workers, w) for w in info.workers], header.hash)
        return list(zip(info.workers, records, strict=True))

    async def find_worker(self, contract: bytes, url: str | None = None) -> WorkerTarget:
        """The worker to query about ``contract``: the one at ``url``, else the first member
        of the contract's cluster whose endpoint is on chain and answers. Its X25519 key is
        read from ``Registry.Workers`` with a proof."""
        info = await self.contract_info(contract)
        if info is None:
            raise ContractNotFound(f"no contract has id 0x{contract.hex()}")
        if url is not None:
            return await self._target(url, info.cluster)
        reasons = []
        for identity, record in await self.cluster_endpoints(info.cluster):
            if record is None or not record.active or not record.endpoint:
                continue
            endpoint = record.endpoint.decode("utf-8", "replace")
            try:
                return await self._target(endpoint, info.cluster, identity)
            except WorkerUnavailable as exc:
                reasons.append(str(exc))
        if reasons:
            raise WorkerUnavailable(
                "no worker of the contract's cluster answers: " + "; ".join(reasons)
            )
        raise WorkerUnavailable(
            f"no worker of cluster 0x{info.cluster.hex()} has an endpoint on chain: give the worker's URL"
        )

    # -- queries ------------------------------------------------------------------------------

    async def prepare_query(
        self,
        kind: int,
        contract: bytes,
        method: str,
        args: list[Any],
        signer: Keypair,
        worker: str | WorkerTarget | None = None,
        min_block: int = 0,
    ) -> PreparedQuery:
        """Sign and seal a query for one worker (``worker``: a URL, a target, or None to find
        one from chain state)."""
        target = (
            worker if isinstance(worker, WorkerTarget) else await self.find_worker(contract, worker)
        )
        query, reply = new_query(
            kind,
            contract,
            method,
            list(args),
            target.identity,
            target.synced,
            QUERY_LIFETIME,
            min_block,
        )
        sealed = seal_query(target.ecdh, await self.genesis_hash(), signer, query)
        return PreparedQuery(target, query, reply, sealed)

    async def send_query(self, prepared: PreparedQuery) -> QueryResult:
        """POST the sealed query to its worker's ``/contract_query`` and open the answer.
        Raises :class:`QueryRefused` with the worker's reason."""
        url = f"{prepared.target.url}/contract_query"
        try:
            async with self.http().post(
                url, data=prepared.sealed, headers={"Content-Type": "application/octet-stream"}
            ) as resp:
                raw = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise WorkerUnavailable(
                f"cannot reach the worker at {prepared.target.url}: "
                f"{str(exc) or type(exc).__name__}"
            ) from None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise WorkerUnavailable(
                f"the worker at {prepared.target.url} answered with no JSON"
            ) from None
        if not isinstance(body, dict):
            raise WorkerUnavailable(
                f"the worker at {prepared.target.url} answered {str(body)[:200]}"
            )
        if "error" in body:
            raise QueryRefused(str(body["error"]))
        try:
            sealed = chain.hex_bytes(body.get("answer"), "answer")
            answer = open_answer(prepared.reply, await self.genesis_hash(), prepared.query, sealed)
        except (VerificationError, QueryAnswerError) as exc:
            raise ContractClientError(f"the worker's answer does not open: {exc}") from None
        try:
            value = decode_plain(answer.value) if answer.value else None
        except (DecodeError, ValueError) as exc:
            raise ContractClientError(f"the answer's value does not decode: {exc}") from None
        return QueryResult(
            answer.status,
            answer.message,
            answer.gas_used,
            value,
            answer.block_number,
            answer.block_hash,
            prepared.target,
        )

    async def _ask(
        self,
        kind: int,
        contract: bytes,
        method: str,
        args: list[Any],
        signer: Keypair,
        worker: str | WorkerTarget | None,
        min_block: int,
    ) -> QueryResult:
        """Prepare and send; a worker not yet at ``min_block`` is asked again (with a new
        nonce) until it is, within the session's timeout."""
        target = (
            worker if isinstance(worker, WorkerTarget) else await self.find_worker(contract, worker)
        )
        deadline = time.monotonic() + self.timeout
        while True:
            prepared = await self.prepare_query(
                kind, contract, method, args, signer, target, min_block
            )
            try:
                return await self.send_query(prepared)
            except QueryRefused as exc:
                if "has not reached block" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(self.poll)
            target = await self._target(target.url, target.cluster, target.identity)

    async def query(
        self,
        contract: bytes,
        method: str,
        args: list[Any],
        signer: Keypair,
        worker: str | WorkerTarget | None = None,
        *,
        min_block: int = 0,
    ) -> QueryResult:
        """Call the ``@query`` method ``method(*args)`` as ``signer`` on one worker of the
        contract's cluster (``worker``: its URL; default: found from chain state). The answer
        names the block its state is from; ``min_block`` waits for a worker at least there."""
        return await self._ask(QUERY_METHOD, contract, method, args, signer, worker, min_block)

    async def receipt(
        self,
        contract: bytes,
        index: int,
        signer: Keypair,
        worker: str | WorkerTarget | None = None,
        *,
        min_block: int = 0,
    ) -> QueryResult:
        """Command ``index``'s receipt (``value``: status, gas_used, value, events, message),
        which only the command's sender may read: the worker seals it to the sender's own
        X25519 key (the reply key its command carried), opened here."""
        answer = await self._ask(QUERY_RECEIPT, contract, "", [index], signer, worker, min_block)
        aad = receipt_aad(await self.genesis_hash(), contract, index)
        return await self._unsealed(answer, signer, aad)

    async def _unsealed(self, answer: QueryResult, signer: Keypair, aad: bytes) -> QueryResult:
        if not answer.ok:
            return answer
        try:
            return dataclasses.replace(answer, value=unseal_for_account(signer, answer.value, aad))
        except QueryAnswerError as exc:
            raise ContractClientError(str(exc)) from None

    async def commands_of(
        self, contract: bytes, sender: bytes, blocks: int = RECEIPT_BLOCKS
    ) -> list[tuple[int, int]]:
        """``(index, block number)`` of the commands ``sender`` sent ``contract`` in the last
        ``blocks`` finalized blocks (from ``Contracts.CommandSubmitted`` in proof-verified
        ``System.Events``)."""
        header, [info] = await self.read([(contracts_pallet.Contracts, contract)])
        if info is None:
            raise ContractNotFound(f"no contract has id 0x{contract.hex()}")
        first = max(info.instantiated_at, header.number - blocks + 1, 0)
        numbers = list(range(first, header.number + 1))
        found: list[tuple[int, int]] = []

        async def scan(number: int) -> list[tuple[int, int]]:
            at = (
                header.hash
                if number == header.number
                else await chain.block_hash(self.client, number)
            )
            if at is None:
                raise VerificationError(f"the node has no finalized block #{number}")
            return [
                (r.event.index, number)
                for r in await self.events_at(at)
                if isinstance(r.event, contracts_pallet.CommandSubmitted)
                and r.event.contract == contract
                and r.event.sender == sender
            ]

        for start in range(0, len(numbers), 16):
            for part in await asyncio.gather(*(scan(n) for n in numbers[start : start + 16])):
                found.extend(part)
        return sorted(found)

    async def sent_commands(
        self,
        contract: bytes,
        signer: Keypair,
        worker: str | WorkerTarget | None = None,
        blocks: int = RECEIPT_BLOCKS,
    ) -> list[SentCommand]:
        """The account's own commands to ``contract`` in the last ``blocks`` blocks (found in
        ``Contracts.CommandSubmitted`` on chain) with what their receipts say: status, gas,
        return value and the events the contract emitted."""
        commands = await self.commands_of(contract, signer.public_key, blocks)
        if not commands:
            return []
        target = (
            worker if isinstance(worker, WorkerTarget) else await self.find_worker(contract, worker)
        )
        out = []
        for index, number in commands:
            try:
                answer = await self.receipt(contract, index, signer, target, min_block=number)
            except QueryRefused as exc:
                out.append(SentCommand(index, number, None, str(exc)))
                continue
            if answer.ok and isinstance(answer.value, dict):
                out.append(SentCommand(index, number, answer.value, ""))
            else:
                out.append(SentCommand(index, number, None, answer.message or answer.status_name))
        return out

    async def events(
        self,
        contract: bytes,
        signer: Keypair,
        worker: str | WorkerTarget | None = None,
        *,
        from_block: int = 0,
        min_block: int = 0,
    ) -> tuple[list[ContractEvent], QueryResult]:
        """The events the contract emitted for the account from block ``from_block`` on, oldest
        first (an events query: the worker keeps them 600 blocks), and the answer they came in
        (its block). Raises :class:`ContractClientError` if the worker does not answer ok."""
        answer = await self._ask(
            QUERY_EVENTS, contract, "", [from_block], signer, worker, min_block
        )
        aad = events_aad(await self.genesis_hash(), contract, signer.public_key)
        answer = await self._unsealed(answer, signer, aad)
        if not answer.ok or not isinstance(answer.value, list):
            raise ContractClientError(
                f"the events query failed ({answer.status_name}): {answer.message}"
            )
        try:
            found = [ContractEvent(e["block"], e["index"], e["event"]) for e in answer.value]
        except (KeyError, TypeError) as exc:
            raise ContractClientError(f"the worker's events are malformed: {exc}") from None
        return found, answer


def random_salt() -> bytes:
    return os.urandom(16)
