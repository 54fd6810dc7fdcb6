"""Running a cluster's contracts inside a worker.

A worker that holds a cluster's key (:mod:`phala.pruntime.cluster_keys`) runs every contract
of that cluster in its executor process (:mod:`phala.contracts.host`, which runs them in the
WebAssembly VM) and feeds them what the chain orders:

* ``phala/contracts/instantiate``: read the code from chain state, open the constructor's
  arguments with the cluster's epoch key, run the constructor; then, as the cluster origin
  (signed with the cluster key), publish the contract's public keys and report the gas;
* ``phala/contracts/command``: open the command with the contract's key (bound to the chain,
  the contract and the sender), run it, keep its receipt, report the gas used. A command
  that does not open (sealed to another key, or copied from another sender's extrinsic) is
  reported as an error that used no gas, and changes nothing.

A block's calls of a contract are collected while its messages are dispatched and run
together at the end of the block (:meth:`ContractRunner.on_block_end`), in chain order, in
one fresh VM instance; receipts, reports and outgoing messages follow in the same order.
Every worker of the cluster does the same, so their contract storages are byte-identical
(:meth:`ContractRunner.state_hash` is a Merkle root over the storage, updated by each
block's writes) and their reports are the same payload; the chain keeps the first copy.

The worker keeps each contract's storage (for the root, checkpoints and restarts); the
executor keeps a copy it runs calls over and hands back each block's writes. The executor
is started lazily, as a fresh interpreter, by the launcher: this process holds keys, the
executor never sees any.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from phala.contracts import protocol as p
from phala.contracts.host import Executor, ExecutorAlarm
from phala.contracts.launcher import Launcher
from phala.contracts.values import DecodeError as PlainDecodeError
from phala.contracts.values import (
    decode_plain,
    encode_plain,
    split_event,
    split_message,
)
from phala.core.cluster import CLUSTER_KEY_TOPIC, ClusterInfo, ClusterKeyDistribution
from phala.core.codec import H256, DecodeError, decode, encode, u8, u32, u64
from phala.core.contracts import (
    COMMAND_INFO,
    COMMAND_TOPIC,
    CONSTRUCTOR_INFO,
    CONTRACT_PUBKEY_TOPIC,
    DELIVER_TOPIC,
    DEPOSIT_TOPIC,
    HALTED_TOPIC,
    INSTANTIATE_TOPIC,
    MAX_REPORT_MESSAGE,
    MAX_REPORTS,
    MESSAGE_INFO,
    MESSAGE_TOPIC,
    PAYOUT_TOPIC,
    REPORT_TOPIC,
    REPORTS_TOPIC,
    RESUME_TOPIC,
    CommandOutcome,
    CommandPlain,
    CommandReport,
    CommandReports,
    ContractCommand,
    ContractDelivery,
    ContractDeposit,
    ContractHalted,
    ContractInstantiated,
    ContractMessage,
    ContractPubkey,
    ContractResumed,
    Payout,
    command_aad,
    constructor_aad,
    message_aad,
)
from phala.core.derivation import KeyNode, contract_key, iv_generator, u64le
from phala.core.envelope import Envelope, EnvelopeError, open_envelope, seal
from phala.core.gas import HANDLER_GAS, QUERY_GAS, WATCHDOG_SECONDS
from phala.core.hashing import blake2_256
from phala.core.mq import ClusterOrigin, ContractOrigin, GatekeeperOrigin, Message, PalletOrigin
from phala.core.trie import StateTree
from phala.core.types import Header

from . import chain_reads
from .cluster_keys import ClusterKeys

log = logging.getLogger("phala.pruntime")

CONTRACTS_PALLET = PalletOrigin(b"Contracts")
MAX_PAYOUT_BYTES = 200  # a payout message is {"payout": account, "amount": int}: decoded only if this small


RECEIPT_BLOCKS = 600  # how long a command's receipt can be queried


@dataclass(frozen=True)
class Receipt:
    index: int
    sender: bytes
    block: int
    status: int
    gas_used: int
    value: bytes  # encoded plain value (empty unless ok)
    events: list[bytes]
    message: str
    reply_key: bytes | None  # the sender's X25519 key its command carried (None: did not open)


@dataclass(frozen=True)
class AccountEvent:
    block: u32
    index: u64  # the command that emitted it
    event: bytes  # encoded plain value


@dataclass(frozen=True)
class SavedEvents:
    contract: H256
    account: H256
    events: list[AccountEvent]


@dataclass(frozen=True)
class SavedContract:
    contract: H256
    cluster: H256
    epoch: u64
    previous_epochs: list[u64]
    code_hash: H256
    storage: list[tuple[bytes, bytes]]  # sorted by key
    halted: str | None
    failed: str | None


@dataclass(frozen=True)
class SavedReceipt:
    contract: H256
    index: u64
    sender: H256
    block: u32
    status: u8
    gas_used: u64
    value: bytes
    events: list[bytes]
    message: str
    reply_key: H256 | None


@dataclass(frozen=True)
class SavedReplyKey:
    contract: H256
    account: H256
    key: H256


@dataclass(frozen=True)
class SavedRunner:
    contracts: list[SavedContract]  # by contract id
    receipts: list[SavedReceipt]
    events: list[SavedEvents]
    reply_keys: list[SavedReplyKey]


@dataclass
class Running:
    """One contract this worker runs."""

    contract: bytes
    cluster: bytes
    epoch: int
    code_hash: bytes
    storage: dict[bytes, bytes] = field(default_factory=dict)
    tree: StateTree = field(default_factory=lambda: StateTree(keep_blobs=False))
    halted: str | None = None  # why this worker stopped serving it (a watchdog fired)
    failed: str | None = None  # its code was refused or its constructor failed: no commands
    previous_epochs: list[int] = field(default_factory=list)
    installed: bool = False  # in the current executor (code and storage)


@dataclass
class Pending:
    """A call collected during a block, run at its end."""

    call: p.Call
    index: int  # the command's number (0: the constructor); -1: a handler, which has no receipt
    sender: bytes | None
    reply_key: bytes | None
    what: str  # for logs


class WrongRuntime(Exception):
    """This worker's contract runtime is not the chain's: it runs no contract (and reports
    nothing; the workers that run the right one do)."""


class ContractRunner:
    """Attach to a worker: ``ContractRunner(worker, cluster_keys)``."""

    def __init__(self, worker, cluster_keys: ClusterKeys, launcher: Launcher | None = None):
        self.worker = worker
        self.launcher = launcher  # starts the executor (a pRuntime's, started before any key)
        self.cluster_keys = cluster_keys
        self.contracts: dict[bytes, Running] = {}
        self.receipts: dict[tuple[bytes, int], Receipt] = {}
        self._keys: dict[tuple[bytes, bytes, int], KeyNode] = {}
        # Events by (contract, account concerned), kept as long as receipts.
        self.account_events: dict[tuple[bytes, bytes], list[AccountEvent]] = {}
        # Each account's X25519 key as its latest command to a contract carried it: receipts
        # and events are sealed to it when the account asks for them.
        self.reply_keys: dict[tuple[bytes, bytes], bytes] = {}
        self.watchdog_seconds = WATCHDOG_SECONDS  # the last line behind gas (host.py)
        self.executor: Executor | None = None
        self.pending: dict[bytes, list[Pending]] = {}  # this block's calls, by contract, in chain order
        self._streaming_lost = False  # the executor failed while this block's calls were handed over
        self.queued: list[bytes] = []  # the contract of each call handed to the executor, in order
        self._clusters: tuple[object, dict[bytes, ClusterInfo | None]] = (None, {})
        self._block_seeds: tuple[object, KeyNode | None] = (None, None)
        self._pinned: tuple[object, bytes | None] = (object(), None)
        worker.subscribe(INSTANTIATE_TOPIC, ContractInstantiated, self.on_instantiate, CONTRACTS_PALLET)
        worker.subscribe(COMMAND_TOPIC, ContractCommand, self.on_command, CONTRACTS_PALLET)
        worker.subscribe(DEPOSIT_TOPIC, ContractDeposit, self.on_deposit, CONTRACTS_PALLET)
        worker.subscribe(DELIVER_TOPIC, ContractDelivery, self.on_delivery, CONTRACTS_PALLET)
        worker.subscribe(RESUME_TOPIC, ContractResumed, self.on_resume, CONTRACTS_PALLET)
        # After ClusterKeys (attached first) has taken a new epoch's key: move the contracts on.
        worker.subscribe(CLUSTER_KEY_TOPIC, ClusterKeyDistribution, self.on_cluster_key, GatekeeperOrigin())
        worker.roles.append(self)

    # -- keys ----------------------------------------------------------------------------------

    def contract_key(self, running: Running) -> KeyNode | None:
        """The contract's key in its current epoch (derived once, then kept)."""
        return self._epoch_key(running, running.epoch)

    def _epoch_key(self, running: Running, epoch: int) -> KeyNode | None:
        """The contract's key in ``epoch`` (derived once, then kept)."""
        memo = (running.contract, running.cluster, epoch)
        key = self._keys.get(memo)
        if key is None:
            cluster_key = self.cluster_keys.key(running.cluster, epoch)
            if cluster_key is None:
                return None
            key = self._keys[memo] = contract_key(cluster_key, running.contract)
        return key

    def _seed(self, key: KeyNode, header: Header, index: int) -> bytes:
        """The command's random seed: from the contract's secret, the block and the index,
        so it is the same on every worker and unpredictable outside the cluster."""
        memo = (key.secret, header.hash)
        if self._block_seeds[0] != memo:  # derive(a, b, c) is derive(a, b).derive(c): once a block
            self._block_seeds = (memo, key.derive("random", header.hash))
        return self._block_seeds[1].derive(u64le(index)).bytes32("seed")

    def _current_epoch(self, cluster: bytes) -> int | None:
        info = self._cluster(cluster)
        return None if info is None else len(info.epoch_rotations) - 1

    def _is_member(self, cluster: bytes) -> bool:
        info = self._cluster(cluster)
        return info is not None and self.worker.identity.public_key in info.workers

    def _cluster(self, cluster: bytes) -> ClusterInfo | None:
        """The cluster as the chain state of the block being dispatched has it (read once per
        block: every command and report asks)."""
        at = self.worker.chain.dispatched
        if self._clusters[0] is not at:
            self._clusters = (at, {})
        known = self._clusters[1]
        if cluster not in known:
            known[cluster] = chain_reads.cluster(self.worker.chain, cluster)
        return known[cluster]

    def _send_as_cluster(self, cluster: bytes, topic: bytes, payload: bytes) -> None:
        """Send as the cluster origin, signed with the cluster's current epoch key (the one
        the chain checks)."""
        epoch = self._current_epoch(cluster)
        key = None if epoch is None else self.cluster_keys.key(cluster, epoch)
        if key is None:
            log.warning("cannot speak for cluster 0x%s: its current key is not held here", cluster.hex())
            return
        self.worker.send(Message(ClusterOrigin(cluster), topic, payload), key=key.sr25519())

    # -- the executor -----------------------------------------------------------------------

    def runtime_refusal(self) -> str | None:
        """Why this worker runs no contracts: its contract runtime is not the one the chain
        pins (fuel, hashes and traps would differ from the other workers'). None if it is, or
        if the chain pins none. Starts the executor to ask it."""
        pinned = self._pinned_runtime()
        if pinned is None:
            return None
        if self.executor is None:
            self._start_executor()
        assert self.executor is not None
        ours = self.executor.hello.runtime
        if ours != "0x" + pinned.hex():
            return f"this worker's contract runtime {ours} is not the chain's 0x{pinned.hex()}"
        return None

    def _pinned_runtime(self) -> bytes | None:
        """The chain's runtime identity at the block being dispatched (read once per block:
        every call asks)."""
        at = self.worker.chain.dispatched
        if self._pinned[0] is not at:
            self._pinned = (at, chain_reads.contract_runtime(self.worker.chain))
        return self._pinned[1]

    def _start_executor(self) -> None:
        self.executor = Executor(timeout=self.watchdog_seconds, launcher=self.launcher)
        for other in self.contracts.values():
            other.installed = False

    def _ready(self, running: Running) -> Executor:
        """The executor, started if needed, with ``running``'s code and storage installed.
        Raises ExecutorAlarm, and :class:`WrongRuntime` when the chain pins another runtime."""
        refusal = self.runtime_refusal()
        if refusal is not None:
            raise WrongRuntime(refusal)
        if self.executor is None:
            self._start_executor()
        assert self.executor is not None
        if not running.installed:
            source = chain_reads.contract_code(self.worker.chain, running.code_hash) or ""
            try:
                loaded = self.executor.install(running.contract, source)
                if loaded.status == p.OK:
                    self.executor.restore(running.contract, sorted(running.storage.items()))
            except ExecutorAlarm:
                if self.executor.proc.poll() is not None:
                    self.executor = None  # gone: the next call starts a fresh one
                raise
            if loaded.status != p.OK:
                raise ExecutorAlarm(f"the contract's code no longer loads: {loaded.message}")
            running.installed = True
        return self.executor

    def _lost_executor(self, running: Running, why: str) -> None:
        """A watchdog fired (or the executor broke the protocol) while running ``running``:
        not deterministic, so stop serving it, raise an alarm and tell the chain."""
        running.halted = why
        log.error("ALARM: contract 0x%s halted on this worker: %s", running.contract.hex(), why)
        if self.executor is not None:
            self.executor.kill()
            self.executor = None
        # As this worker (its own sequence): only it found this, the others report normally.
        halted = ContractHalted(running.contract, _clip(why))
        self.worker.send(Message(self.worker.origin, HALTED_TOPIC, encode(halted)))

    def on_resume(self, header: Header, message: Message, resumed: ContractResumed) -> None:
        running = self.contracts.get(resumed.contract)
        if running is not None and running.halted is not None:
            log.info("contract 0x%s resumed by the chain", running.contract.hex())
            running.halted = None
            running.installed = False

    # -- instantiation -------------------------------------------------------------------------

    def on_instantiate(self, header: Header, message: Message, event: ContractInstantiated) -> None:
        cluster_key = self.cluster_keys.key(event.cluster, event.epoch)
        if cluster_key is None or event.contract in self.contracts:
            return  # not a worker of that cluster (or already running it: a replay)
        running = Running(event.contract, event.cluster, event.epoch, event.code_hash)
        self.contracts[event.contract] = running
        key = self.contract_key(running)
        assert key is not None
        pubkey = ContractPubkey(event.contract, event.epoch, key.sr25519().public_key, key.x25519().public)
        self._send_as_cluster(event.cluster, CONTRACT_PUBKEY_TOPIC, encode(pubkey))
        source = chain_reads.contract_code(self.worker.chain, event.code_hash)
        try:
            plain = decode(CommandPlain, open_envelope(
                cluster_key.x25519().secret, Envelope.from_bytes(event.args),
                constructor_aad(self.worker.pinned_genesis_hash, event.contract, event.deployer),
                info=CONSTRUCTOR_INFO,
            ))
        except (EnvelopeError, DecodeError) as exc:
            self._refuse_construction(running, event.deployer, header, None,
                                      p.failure(p.ERROR, f"the constructor's arguments do not open: {exc}"))
            return
        if source is None:
            self._refuse_construction(running, event.deployer, header, plain.reply_key,
                                      p.failure(p.ERROR, "the contract's code is not on chain"))
            return
        try:
            loaded = self._ready(running)
        except WrongRuntime as exc:
            log.error("contract 0x%s not run here: %s", running.contract.hex(), exc)
            return
        except ExecutorAlarm as exc:
            refused = str(exc).removeprefix("the contract's code no longer loads: ")
            self._refuse_construction(running, event.deployer, header, plain.reply_key, p.failure(p.REFUSED, refused))
            return
        del loaded
        context = p.CallContext(event.deployer, header.number, self.worker.chain.timestamp(), event.contract,
                                self._seed(key, header, 0))
        call = p.Call(p.CONSTRUCTOR, plain.method, plain.args, context, event.gas_limit)
        self._enqueue(running, Pending(call, 0, event.deployer, plain.reply_key, "the constructor"))

    def _refuse_construction(self, running: Running, deployer: bytes, header: Header, reply_key: bytes | None,
                             outcome: p.Outcome) -> None:
        running.failed = outcome.message
        self._keep_receipt(running.contract, 0, deployer, header.number, outcome, reply_key)
        self._report(running, 0, outcome)

    # -- collecting a block's calls, running them at its end ----------------------------------

    def _enqueue(self, running: Running, pending: Pending) -> None:
        """Collect a call for the end of the block, and hand it to the executor now, which
        runs it while this worker goes on opening the block's other commands."""
        calls = self.pending.setdefault(running.contract, [])
        calls.append(pending)
        if running.halted is not None or self._streaming_lost:
            return
        try:
            self._ready(running).queue(running.contract, pending.call)
        except (WrongRuntime, ExecutorAlarm):
            self._streaming_lost = True  # on_block_end sorts it out, one contract at a time
        else:
            self.queued.append(running.contract)

    def on_block_end(self, header: Header) -> None:
        """Take the outcomes of this block's calls and commit each contract's block, in the
        order the contracts first had a call; then receipts, reports and messages."""
        pending, self.pending = self.pending, {}
        queued, self.queued = self.queued, []
        lost, self._streaming_lost = self._streaming_lost, False
        results: dict[bytes, tuple[list[p.Outcome], list]] = {}
        executor = self.executor
        if lost and executor is not None:
            # Some calls were handed over, some not: start again from a fresh executor, each
            # contract's block by itself (the same outcomes, by construction).
            executor.kill()
            self.executor = None
        elif executor is not None and queued:
            per_contract: dict[bytes, list[p.Outcome]] = {}
            taken = 0
            try:
                for contract in queued:
                    per_contract.setdefault(contract, []).append(executor.next_outcome())
                    taken += 1
                for contract, outcomes in per_contract.items():
                    results[contract] = (outcomes, executor.commit(contract))
            except ExecutorAlarm as exc:
                # The call whose outcome did not come ran past the watchdog: halt its contract
                # (if every outcome came, the executor went during a commit: no call to blame).
                # The others' blocks died with the executor and run again.
                if taken < len(queued):
                    self._lost_executor(self.contracts[queued[taken]], str(exc))
                else:
                    executor.kill()
                    self.executor = None
                results = {}
        for contract, calls in pending.items():
            running = self.contracts.get(contract)
            if running is None or running.halted is not None:
                continue  # this worker stopped serving it: record nothing (the others report)
            if contract not in results:
                result = self._run_alone(running, calls)
                if result is None:
                    continue
                results[contract] = result
            outcomes, writes = results[contract]
            self._finish_block(running, header, calls, outcomes, writes)

    def _run_alone(self, running: Running, calls: list[Pending]) -> tuple[list[p.Outcome], list] | None:
        """Run one contract's block of calls by itself (after the executor was lost)."""
        try:
            return self._ready(running).run(running.contract, [c.call for c in calls])
        except WrongRuntime as exc:
            log.error("contract 0x%s not run here: %s", running.contract.hex(), exc)
        except ExecutorAlarm as exc:
            self._lost_executor(running, str(exc))
        return None

    def _finish_block(self, running: Running, header: Header, calls: list[Pending], outcomes: list[p.Outcome],
                      writes: list[tuple[bytes, bytes | None]]) -> None:
        for key, value in writes:
            if value is None:
                running.storage.pop(key, None)
            else:
                running.storage[key] = value
        running.tree.apply(writes)
        reports = []
        for pending, outcome in zip(calls, outcomes, strict=True):
            if outcome.status == p.OK:
                self._send_outputs(running, outcome.messages)
            elif pending.index == 0:
                running.failed = outcome.message or p.STATUS_NAMES[outcome.status]
            if pending.index < 0:
                if outcome.status != p.OK:
                    log.warning("contract 0x%s failed %s: %s", running.contract.hex(), pending.what, outcome.message)
                continue
            assert pending.sender is not None
            self._keep_receipt(running.contract, pending.index, pending.sender, header.number, outcome,
                               pending.reply_key)
            reports.append(CommandOutcome(pending.index, outcome.status, outcome.gas_used, _report_message(outcome)))
        # One message for the block's reports: one signature and one sequence, not one each.
        for start in range(0, len(reports), MAX_REPORTS):
            batch = CommandReports(running.contract, reports[start : start + MAX_REPORTS])
            self._send_as_cluster(running.cluster, REPORTS_TOPIC, encode(batch))

    # -- what a contract sends -----------------------------------------------------------------

    def _send_outputs(self, running: Running, messages: list[bytes]) -> None:
        """A successful call's messages, in the order the contract sent them: payouts to the
        Contracts pallet, sealed messages to other contracts. Each goes out as the contract's
        own origin, signed with its key; every worker of the cluster sends the same bytes
        (ephemeral key and IV derive from the contract key, the target and the sequence)."""
        key = self.contract_key(running)
        origin = ContractOrigin(running.contract)
        for raw in messages:
            try:
                to, value = split_message(raw)
            except PlainDecodeError as exc:
                log.warning("contract 0x%s sent a malformed message: %s", running.contract.hex(), exc)
                continue
            if to == "Contracts":
                payout = _payout(value)
                if payout is not None:
                    self.worker.send(Message(origin, PAYOUT_TOPIC, encode(payout)), key=key.sr25519())
                    continue
            if type(to) is bytes:
                target = chain_reads.contract_keys(self.worker.chain, to)
                if target is not None:
                    sequence = self.worker.sequence_for(origin)
                    context = (to, u64le(sequence))
                    sealed = seal(
                        target.ecdh, value, message_aad(self.worker.pinned_genesis_hash, running.contract, to),
                        info=MESSAGE_INFO, ephemeral=key.derive("message", *context).x25519(),
                        nonce=iv_generator(key, "message", to, 0, sequence),
                    )
                    payload = encode(ContractMessage(to, sealed.to_bytes()))
                    self.worker.send(Message(origin, MESSAGE_TOPIC, payload), key=key.sr25519())
                    continue
            log.warning("contract 0x%s sent an undeliverable message to %r", running.contract.hex(), to)

    # -- what a contract receives --------------------------------------------------------------

    def _handler(self, running: Running, header: Header, method: str, args: bytes, sender: bytes | None,
                 salt: bytes, what: str) -> None:
        key = self.contract_key(running)
        if key is None or running.failed is not None:
            return
        context = p.CallContext(sender, header.number, self.worker.chain.timestamp(), running.contract,
                                key.derive("handler", header.hash, salt).bytes32("seed"))
        self._enqueue(running, Pending(p.Call(p.HANDLER, method, args, context, HANDLER_GAS), -1, sender, None, what))

    def on_deposit(self, header: Header, message: Message, note: ContractDeposit) -> None:
        running = self.contracts.get(note.contract)
        if running is None:
            return
        self._handler(running, header, "deposit", encode_plain([note.who, note.amount]), None,
                      note.who + note.amount.to_bytes(16, "little"), "a deposit")

    def on_delivery(self, header: Header, message: Message, delivery: ContractDelivery) -> None:
        running = self.contracts.get(delivery.to)
        if running is None:
            return
        key = self.contract_key(running)
        if key is None:
            return
        try:
            value = open_envelope(
                key.x25519().secret, Envelope.from_bytes(delivery.payload),
                message_aad(self.worker.pinned_genesis_hash, delivery.source, delivery.to), info=MESSAGE_INFO)
        except (EnvelopeError, DecodeError) as exc:
            log.warning("a message to contract 0x%s does not open: %s", delivery.to.hex(), exc)
            return
        # The arguments [source, message] are spliced, not decoded: the receiving contract
        # decodes the message inside its own metered call.
        args = bytes([6, 2 << 2]) + encode_plain(delivery.source) + value
        self._handler(running, header, "on_message", args, delivery.source, blake2_256(delivery.payload), "a message")

    # -- epochs --------------------------------------------------------------------------------

    def on_cluster_key(self, header: Header, message: Message, dist: ClusterKeyDistribution) -> None:
        """A new epoch of a cluster whose contracts this worker runs: their keys now derive
        from the new epoch key; publish them (every worker of the cluster sends the same)."""
        if dist.recipient != self.worker.identity.public_key:
            return
        for contract, running in sorted(self.contracts.items()):
            if running.cluster != dist.cluster or running.epoch >= dist.epoch:
                continue
            if self.cluster_keys.key(dist.cluster, dist.epoch) is None:
                continue
            running.previous_epochs.append(running.epoch)
            running.epoch = dist.epoch
            key = self.contract_key(running)
            pubkey = ContractPubkey(contract, running.epoch, key.sr25519().public_key, key.x25519().public)
            self._send_as_cluster(running.cluster, CONTRACT_PUBKEY_TOPIC, encode(pubkey))

    # -- commands ------------------------------------------------------------------------------

    def _open_command(self, running: Running, command: ContractCommand) -> tuple[CommandPlain, KeyNode]:
        """Open with the contract's current key, else the one of the epoch before (a command
        sealed just before the keys changed). Raises EnvelopeError/DecodeError."""
        aad = command_aad(self.worker.pinned_genesis_hash, command.contract, command.sender)
        epochs = [running.epoch, *running.previous_epochs[-1:]]
        error: Exception | None = None
        for epoch in epochs:
            key = self._epoch_key(running, epoch)
            if key is None:
                continue
            try:
                plain = open_envelope(key.x25519().secret, Envelope.from_bytes(command.payload), aad, info=COMMAND_INFO)
                return decode(CommandPlain, plain), self.contract_key(running)
            except (EnvelopeError, DecodeError) as exc:
                error = exc
        raise error or EnvelopeError("no key of this contract is held here")

    def on_command(self, header: Header, message: Message, command: ContractCommand) -> None:
        running = self.contracts.get(command.contract)
        if running is None or running.halted:
            return
        if not self._is_member(running.cluster):
            self._stop(running, "this worker left the cluster")
            return
        reply_key = None
        try:
            plain, key = self._open_command(running, command)
        except (EnvelopeError, DecodeError) as exc:
            outcome = p.failure(p.ERROR, f"the command does not open for this sender and contract: {exc}")
        else:
            reply_key = plain.reply_key
            if running.failed is None:
                context = p.CallContext(command.sender, header.number, self.worker.chain.timestamp(),
                                        command.contract, self._seed(key, header, command.index))
                call = p.Call(p.COMMAND, plain.method, plain.args, context, command.gas_limit)
                self._enqueue(running, Pending(call, command.index, command.sender, reply_key, "a command"))
                return
            outcome = p.failure(p.REFUSED, f"the contract's constructor failed: {running.failed}")
        self._keep_receipt(command.contract, command.index, command.sender, header.number, outcome, reply_key)
        self._report(running, command.index, outcome)

    def _keep_receipt(self, contract: bytes, index: int, sender: bytes, block: int, outcome: p.Outcome,
                      reply_key: bytes | None) -> None:
        """Keep the call's receipt (for its sender) and its events (for the accounts they
        concern) for RECEIPT_BLOCKS blocks, and the sender's reply key."""
        if reply_key is not None:
            self.reply_keys[(contract, sender)] = reply_key
        pairs = [split_event(e) for e in outcome.events]  # (accounts, encoded event), checked by the executor
        events = [event for _, event in pairs]
        self.receipts[(contract, index)] = Receipt(
            index, sender, block, outcome.status, outcome.gas_used, outcome.value, events, outcome.message, reply_key)
        for accounts, event in pairs:
            for account in dict.fromkeys([sender, *accounts]):  # once each, in order
                self.account_events.setdefault((contract, account), []).append(AccountEvent(block, index, event))
        horizon = block - RECEIPT_BLOCKS
        if self.receipts and next(iter(self.receipts.values())).block < horizon:
            self.receipts = {k: r for k, r in self.receipts.items() if r.block >= horizon}
            self.account_events = {
                k: kept for k, log_ in self.account_events.items() if (kept := [e for e in log_ if e.block >= horizon])
            }

    def _report(self, running: Running, index: int, outcome: p.Outcome) -> None:
        """Report one command on its own (one that never reached the VM)."""
        report = CommandReport(running.contract, index, outcome.status, outcome.gas_used, _report_message(outcome))
        self._send_as_cluster(running.cluster, REPORT_TOPIC, encode(report))

    # -- queries -------------------------------------------------------------------------------

    def run_query(self, running: Running, method: str, args: bytes, sender: bytes, nonce: bytes) -> p.Outcome:
        """Run a ``@query`` method in a fresh instance over the committed storage."""
        if running.halted:
            return p.failure(p.REFUSED, f"the contract is halted on this worker: {running.halted}")
        if running.failed is not None:
            return p.failure(p.REFUSED, f"the contract's constructor failed: {running.failed}")
        key = self.contract_key(running)
        chain = self.worker.chain
        header = chain.dispatched
        seed = key.derive("query", header.hash, nonce).bytes32("seed")
        context = p.CallContext(sender, header.number, chain.timestamp(), running.contract, seed)
        try:
            return self._ready(running).query(running.contract, p.Call(p.QUERY, method, args, context, QUERY_GAS))
        except WrongRuntime as exc:
            return p.failure(p.REFUSED, str(exc))
        except ExecutorAlarm as exc:
            # A query answered by this worker alone: losing the executor to it is not the
            # contract's fault; restart it for the next call, the contract keeps running.
            log.error("ALARM: a query of contract 0x%s lost the executor: %s", running.contract.hex(), exc)
            if self.executor is not None:
                self.executor.kill()
                self.executor = None
            return p.failure(p.REFUSED, f"the query stopped the executor: {exc}")

    # -- checkpoints ---------------------------------------------------------------------------

    checkpoint_name = "contracts"

    def checkpoint(self) -> bytes:
        contracts = [
            SavedContract(c, r.cluster, r.epoch, list(r.previous_epochs), r.code_hash, sorted(r.storage.items()),
                          r.halted, r.failed)
            for c, r in sorted(self.contracts.items())
        ]
        receipts = [
            SavedReceipt(c, i, r.sender, r.block, r.status, r.gas_used, r.value, list(r.events), r.message,
                         r.reply_key)
            for (c, i), r in self.receipts.items()
        ]
        events = [SavedEvents(c, a, list(log_)) for (c, a), log_ in self.account_events.items()]
        keys = [SavedReplyKey(c, a, k) for (c, a), k in self.reply_keys.items()]
        return encode(SavedRunner(contracts, receipts, events, keys))

    def restore_checkpoint(self, data: bytes | None) -> None:
        self.close()
        self.contracts, self.receipts, self.account_events, self.reply_keys = {}, {}, {}, {}
        self.pending = {}
        if not data:
            return
        saved = decode(SavedRunner, data)
        for c in saved.contracts:
            storage = dict(c.storage)
            self.contracts[c.contract] = Running(
                c.contract, c.cluster, c.epoch, c.code_hash, storage, StateTree.from_items(storage.items(), False),
                c.halted, c.failed, list(c.previous_epochs))
        for e in saved.events:
            self.account_events[(e.contract, e.account)] = list(e.events)
        for r in saved.receipts:
            self.receipts[(r.contract, r.index)] = Receipt(
                r.index, r.sender, r.block, r.status, r.gas_used, r.value, list(r.events), r.message, r.reply_key)
        self.reply_keys = {(k.contract, k.account): k.key for k in saved.reply_keys}

    def on_resumed(self) -> None:
        """After a checkpoint is restored: start the executor and install the contracts now,
        not at the first block (starting it takes a fifth of a second, installing compiles
        each contract). Failing here changes nothing: the first call tries again."""
        if self.worker.chain is None:
            return
        for running in self.contracts.values():
            if running.halted is None and running.failed is None:
                try:
                    self._ready(running)
                except (ExecutorAlarm, WrongRuntime) as exc:
                    log.warning("contract 0x%s not ready yet: %s", running.contract.hex(), exc)
                    return

    # -- reporting -----------------------------------------------------------------------------

    def state_hash(self, contract: bytes) -> bytes | None:
        """The Merkle root over the contract's storage (:mod:`phala.core.trie`)."""
        running = self.contracts.get(contract)
        return None if running is None else running.tree.root()

    def _stop(self, running: Running, why: str) -> None:
        log.info("stopped running contract 0x%s: %s", running.contract.hex(), why)
        if self.executor is not None and running.installed:
            try:
                self.executor.remove(running.contract)
            except ExecutorAlarm:
                self.executor = None
        del self.contracts[running.contract]

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
            self.executor = None

    def info(self) -> dict:
        if not self.contracts:
            return {"contracts": None}
        hello = None if self.executor is None else self.executor.hello
        sandbox = None if hello is None else {
            "runtime": hello.runtime, "wasmtime": hello.wasmtime, "python": hello.python,
            "confinement": hello.confinement, "refused": self.runtime_refusal()}
        return {"sandbox": sandbox, "contracts": {
            "0x" + c.hex(): {"stateHash": "0x" + r.tree.root().hex(), "keys": len(r.storage), "halted": r.halted,
                             "failed": r.failed}
            for c, r in sorted(self.contracts.items())
        }}


def _report_message(outcome: p.Outcome) -> str:
    return "" if outcome.status == p.OK else _clip(outcome.message or p.STATUS_NAMES[outcome.status])


def _clip(text: str) -> str:
    """``text`` cut to what a report or halt may carry (:data:`MAX_REPORT_MESSAGE` bytes)."""
    data = text.encode("utf-8")[:MAX_REPORT_MESSAGE]
    return data.decode("utf-8", "ignore")


def _payout(value: bytes) -> Payout | None:
    """``{"payout": account, "amount": n}`` as a :class:`Payout`, else None (decoded only
    when small, so a contract cannot make the host build a big dict)."""
    if len(value) > MAX_PAYOUT_BYTES:
        return None
    try:
        decoded = decode_plain(value)
    except PlainDecodeError:
        return None
    if type(decoded) is not dict or set(decoded) != {"payout", "amount"}:
        return None
    who, amount = decoded["payout"], decoded["amount"]
    if type(who) is bytes and len(who) == 32 and type(amount) is int and 0 < amount < 1 << 128:
        return Payout(who, amount)
    return None
