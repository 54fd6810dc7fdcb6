"""Running a cluster's contracts inside a worker.

A worker that holds a cluster's key (:mod:`phala.pruntime.cluster_keys`) runs every contract
of that cluster, each in its own executor process (:mod:`phala.contracts.host`), and feeds
them what the chain orders:

* ``phala/contracts/instantiate``: read the code from chain state, open the constructor's
  arguments with the cluster's epoch key, run the constructor; then, as the cluster origin
  (signed with the cluster key), publish the contract's public keys and report the gas;
* ``phala/contracts/command``: open the command with the contract's key (bound to the chain,
  the contract and the sender), run it, keep its receipt, report the gas used. A command
  that does not open (sealed to another key, or copied from another sender's extrinsic) is
  reported as an error that used no gas, and changes nothing.

Every worker of the cluster does the same in the same order, so their contract states are
byte-identical (:meth:`ContractRunner.state_hash`) and their reports are the same payload;
the chain keeps the first copy.

The executors are started lazily, one per contract, as fresh interpreters: this process
holds keys, the executors never see any.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from phala.contracts import protocol as p
from phala.contracts.host import WATCHDOG_SECONDS, Executor, ExecutorAlarm
from phala.contracts.launcher import Launcher
from phala.contracts.values import decode_plain, encode_plain, split_pair
from phala.core.cluster import CLUSTER_KEY_TOPIC, ClusterKeyDistribution
from phala.core.codec import H256, DecodeError, decode, encode, u8, u32, u64
from phala.core.contracts import (
    COMMAND_INFO,
    COMMAND_TOPIC,
    CONSTRUCTOR_INFO,
    CONTRACT_PUBKEY_TOPIC,
    DELIVER_TOPIC,
    DEPOSIT_TOPIC,
    INSTANTIATE_TOPIC,
    MESSAGE_INFO,
    MESSAGE_TOPIC,
    PAYOUT_TOPIC,
    REPORT_TOPIC,
    CommandPlain,
    CommandReport,
    ContractCommand,
    ContractDelivery,
    ContractDeposit,
    ContractInstantiated,
    ContractMessage,
    ContractPubkey,
    Payout,
    command_aad,
    constructor_aad,
    message_aad,
)
from phala.core.derivation import KeyNode, contract_key, iv_generator, u64le
from phala.core.envelope import Envelope, EnvelopeError, open_envelope, seal
from phala.core.hashing import blake2_256
from phala.core.mq import ClusterOrigin, ContractOrigin, GatekeeperOrigin, Message, PalletOrigin
from phala.core.types import Header

from . import chain_reads
from .cluster_keys import ClusterKeys

log = logging.getLogger("phala.pruntime")

CONTRACTS_PALLET = PalletOrigin(b"Contracts")
QUERY_GAS = 10_000_000
HANDLER_GAS = 1_000_000  # deposits and messages from other contracts carry no fee of their own
NO_STATE = b""


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
    state: bytes
    halted: str | None


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
    executor: Executor | None
    state: bytes = NO_STATE
    halted: str | None = None  # why this worker stopped serving it (the watchdog fired)
    previous_epochs: list[int] = field(default_factory=list)
    restored: bool = False  # from a checkpoint: its executor must load the saved state


class ContractRunner:
    """Attach to a worker: ``ContractRunner(worker, cluster_keys)``."""

    def __init__(self, worker, cluster_keys: ClusterKeys, launcher: Launcher | None = None):
        self.worker = worker
        self.launcher = launcher  # starts the executors (a pRuntime's, started before any key)
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
        worker.subscribe(INSTANTIATE_TOPIC, ContractInstantiated, self.on_instantiate, CONTRACTS_PALLET)
        worker.subscribe(COMMAND_TOPIC, ContractCommand, self.on_command, CONTRACTS_PALLET)
        worker.subscribe(DEPOSIT_TOPIC, ContractDeposit, self.on_deposit, CONTRACTS_PALLET)
        worker.subscribe(DELIVER_TOPIC, ContractDelivery, self.on_delivery, CONTRACTS_PALLET)
        # After ClusterKeys (attached first) has taken a new epoch's key: move the contracts on.
        worker.subscribe(CLUSTER_KEY_TOPIC, ClusterKeyDistribution, self.on_cluster_key, GatekeeperOrigin())
        worker.roles.append(self)

    # -- keys ----------------------------------------------------------------------------------

    def contract_key(self, running: Running) -> KeyNode | None:
        """The contract's key in its current epoch (derived once, then kept)."""
        memo = (running.contract, running.cluster, running.epoch)
        key = self._keys.get(memo)
        if key is None:
            cluster_key = self.cluster_keys.key(running.cluster, running.epoch)
            if cluster_key is None:
                return None
            key = self._keys[memo] = contract_key(cluster_key, running.contract)
        return key

    def _seed(self, key: KeyNode, header: Header, index: int) -> bytes:
        """The command's random seed: from the contract's secret, the block and the index,
        so it is the same on every worker and unpredictable outside the cluster."""
        return key.derive("random", header.hash, u64le(index)).bytes32("seed")

    def _current_epoch(self, cluster: bytes) -> int | None:
        info = chain_reads.cluster(self.worker.chain, cluster)
        return None if info is None else len(info.epoch_rotations) - 1

    def _is_member(self, cluster: bytes) -> bool:
        info = chain_reads.cluster(self.worker.chain, cluster)
        return info is not None and self.worker.identity.public_key in info.workers

    def _send_as_cluster(self, cluster: bytes, topic: bytes, payload: bytes) -> None:
        """Send as the cluster origin, signed with the cluster's current epoch key (the one
        the chain checks)."""
        epoch = self._current_epoch(cluster)
        key = None if epoch is None else self.cluster_keys.key(cluster, epoch)
        if key is None:
            log.warning("cannot speak for cluster 0x%s: its current key is not held here", cluster.hex())
            return
        self.worker.send(Message(ClusterOrigin(cluster), topic, payload), key=key.sr25519())

    # -- instantiation -------------------------------------------------------------------------

    def on_instantiate(self, header: Header, message: Message, event: ContractInstantiated) -> None:
        cluster_key = self.cluster_keys.key(event.cluster, event.epoch)
        if cluster_key is None or event.contract in self.contracts:
            return  # not a worker of that cluster (or already running it: a replay)
        source = chain_reads.contract_code(self.worker.chain, event.code_hash)
        running = Running(event.contract, event.cluster, event.epoch, event.code_hash, None)
        self.contracts[event.contract] = running
        key = self.contract_key(running)
        assert key is not None
        try:
            outcome, reply_key = self._construct(running, event, cluster_key, source, key, header)
        except ExecutorAlarm:
            return  # halted on this worker: record nothing (the other workers report)
        pubkey = ContractPubkey(event.contract, event.epoch, key.sr25519().public_key, key.x25519().public)
        self._send_as_cluster(event.cluster, CONTRACT_PUBKEY_TOPIC, encode(pubkey))
        self._keep_receipt(running.contract, 0, event.deployer, header.number, outcome, reply_key)
        self._report(running, 0, outcome)

    def _construct(self, running: Running, event: ContractInstantiated, cluster_key: KeyNode,
                   source: str | None, key: KeyNode, header: Header) -> tuple[p.Outcome, bytes | None]:
        """Run the constructor; returns its outcome and the deployer's reply key (None when
        the arguments do not open)."""
        if source is None:
            return p.failure(p.ERROR, "the contract's code is not on chain"), None
        try:
            plain = decode(CommandPlain, open_envelope(
                cluster_key.x25519().secret, Envelope.from_bytes(event.args),
                constructor_aad(self.worker.pinned_genesis_hash, event.contract, event.deployer),
                info=CONSTRUCTOR_INFO,
            ))
        except (EnvelopeError, DecodeError) as exc:
            return p.failure(p.ERROR, f"the constructor's arguments do not open: {exc}"), None
        executor = self._executor(running)
        if executor is None:
            return p.failure(p.REFUSED, running.halted or "halted"), plain.reply_key
        loaded = executor.load(source, NO_STATE, event.gas_limit)
        if loaded.status != p.OK:
            return loaded, plain.reply_key
        context = p.CallContext(event.deployer, header.number, self.worker.chain.timestamp(), event.contract,
                                self._seed(key, header, 0))
        return self._call(running, p.CONSTRUCTOR, plain, context, event.gas_limit - loaded.gas_used), plain.reply_key

    def _executor(self, running: Running) -> Executor | None:
        if running.halted is None and running.executor is None:
            running.executor = Executor(timeout=self.watchdog_seconds, launcher=self.launcher)
            if running.restored:
                self._reload(running)
        return None if running.halted else running.executor

    def _reload(self, running: Running) -> None:
        """A contract restored from a checkpoint: its code from chain state, its state as
        saved. Loading runs only the module body, never a method."""
        source = chain_reads.contract_code(self.worker.chain, running.code_hash) or ""
        loaded = running.executor.load(source, running.state, QUERY_GAS)
        if loaded.status != p.OK:
            running.halted = f"cannot reload from the checkpoint: {loaded.message}"
            log.error("contract 0x%s: %s", running.contract.hex(), running.halted)
        running.restored = False

    def _call(self, running: Running, kind: int, plain: CommandPlain, context: p.CallContext, gas: int) -> p.Outcome:
        executor = self._executor(running)
        if executor is None:
            return p.failure(p.REFUSED, running.halted or "halted")
        try:
            outcome = executor.request(p.Call(kind, plain.method, plain.args, context, max(gas, 0)))
        except ExecutorAlarm as exc:
            # Not deterministic: stop serving this contract rather than record a result.
            running.halted = str(exc)
            log.error("ALARM: contract 0x%s halted on this worker: %s", running.contract.hex(), exc)
            raise
        if outcome.status == p.OK:
            running.state = outcome.state
            self._send_outputs(running, outcome.messages)
        return outcome

    # -- what a contract sends -----------------------------------------------------------------

    def _send_outputs(self, running: Running, messages: list[bytes]) -> None:
        """A successful call's messages, in the order the contract sent them: payouts to the
        Contracts pallet, sealed messages to other contracts. Each goes out as the contract's
        own origin, signed with its key; every worker of the cluster sends the same bytes
        (ephemeral key and IV derive from the contract key, the target and the sequence)."""
        key = self.contract_key(running)
        origin = ContractOrigin(running.contract)
        for raw in messages:
            to, value = decode_plain(raw)
            if to == "Contracts" and type(value) is dict and set(value) == {"payout", "amount"}:
                who, amount = value["payout"], value["amount"]
                if type(who) is bytes and len(who) == 32 and type(amount) is int and 0 < amount < 1 << 128:
                    payload = encode(Payout(who, amount))
                    self.worker.send(Message(origin, PAYOUT_TOPIC, payload), key=key.sr25519())
                    continue
            if type(to) is bytes and len(to) == 32:
                target = chain_reads.contract_keys(self.worker.chain, to)
                if target is not None:
                    sequence = self.worker.sequence_for(origin)
                    context = (to, u64le(sequence))
                    sealed = seal(
                        target.ecdh, encode_plain(value), message_aad(self.worker.pinned_genesis_hash, running.contract, to),
                        info=MESSAGE_INFO, ephemeral=key.derive("message", *context).x25519(),
                        nonce=iv_generator(key, "message", to, 0, sequence),
                    )
                    payload = encode(ContractMessage(to, sealed.to_bytes()))
                    self.worker.send(Message(origin, MESSAGE_TOPIC, payload), key=key.sr25519())
                    continue
            log.warning("contract 0x%s sent an undeliverable message to %r", running.contract.hex(), to)

    # -- what a contract receives --------------------------------------------------------------

    def _handle(self, running: Running, header: Header, method: str, args: list, sender: bytes | None,
                salt: bytes) -> p.Outcome:
        key = self.contract_key(running)
        context = p.CallContext(sender, header.number, self.worker.chain.timestamp(), running.contract,
                                key.derive("handler", header.hash, salt).bytes32("seed"))
        try:
            return self._call(running, p.HANDLER, CommandPlain(method, encode_plain(args), bytes(32)), context, HANDLER_GAS)
        except ExecutorAlarm as exc:
            return p.failure(p.REFUSED, str(exc))

    def on_deposit(self, header: Header, message: Message, note: ContractDeposit) -> None:
        running = self.contracts.get(note.contract)
        if running is None or running.halted or self.contract_key(running) is None:
            return
        outcome = self._handle(running, header, "deposit", [note.who, note.amount], None,
                               note.who + note.amount.to_bytes(16, "little"))
        if outcome.status != p.OK:
            log.warning("contract 0x%s refused a deposit: %s", note.contract.hex(), outcome.message)

    def on_delivery(self, header: Header, message: Message, delivery: ContractDelivery) -> None:
        running = self.contracts.get(delivery.to)
        if running is None or running.halted:
            return
        key = self.contract_key(running)
        if key is None:
            return
        try:
            value = decode_plain(open_envelope(
                key.x25519().secret, Envelope.from_bytes(delivery.payload),
                message_aad(self.worker.pinned_genesis_hash, delivery.source, delivery.to), info=MESSAGE_INFO))
        except (EnvelopeError, DecodeError) as exc:
            log.warning("a message to contract 0x%s does not open: %s", delivery.to.hex(), exc)
            return
        outcome = self._handle(running, header, "on_message", [delivery.source, value], delivery.source,
                               blake2_256(delivery.payload))
        if outcome.status != p.OK:
            log.warning("contract 0x%s failed on a message: %s", delivery.to.hex(), outcome.message)

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
            cluster_key = self.cluster_keys.key(running.cluster, epoch)
            if cluster_key is None:
                continue
            key = contract_key(cluster_key, running.contract)
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
            context = p.CallContext(command.sender, header.number, self.worker.chain.timestamp(), command.contract,
                                    self._seed(key, header, command.index))
            try:
                outcome = self._call(running, p.COMMAND, plain, context, command.gas_limit)
            except ExecutorAlarm:
                return
        self._keep_receipt(command.contract, command.index, command.sender, header.number, outcome, reply_key)
        self._report(running, command.index, outcome)

    def _keep_receipt(self, contract: bytes, index: int, sender: bytes, block: int, outcome: p.Outcome,
                      reply_key: bytes | None) -> None:
        """Keep the call's receipt (for its sender) and its events (for the accounts they
        concern) for RECEIPT_BLOCKS blocks, and the sender's reply key."""
        if reply_key is not None:
            self.reply_keys[(contract, sender)] = reply_key
        pairs = [split_pair(e) for e in outcome.events]  # (accounts, encoded event)
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
        report = CommandReport(running.contract, index, outcome.status, outcome.gas_used)
        self._send_as_cluster(running.cluster, REPORT_TOPIC, encode(report))

    # -- queries -------------------------------------------------------------------------------

    def run_query(self, running: Running, method: str, args: bytes, sender: bytes, nonce: bytes) -> p.Outcome:
        """Run a ``@query`` method read-only against the current state."""
        if running.halted:
            return p.failure(p.REFUSED, f"the contract is halted on this worker: {running.halted}")
        key = self.contract_key(running)
        chain = self.worker.chain
        header = chain.dispatched
        seed = key.derive("query", header.hash, nonce).bytes32("seed")
        context = p.CallContext(sender, header.number, chain.timestamp(), running.contract, seed)
        return self._call(running, p.QUERY, CommandPlain(method, args, bytes(32)), context, QUERY_GAS)

    # -- checkpoints ---------------------------------------------------------------------------

    checkpoint_name = "contracts"

    def checkpoint(self) -> bytes:
        contracts = [
            SavedContract(c, r.cluster, r.epoch, list(r.previous_epochs), r.code_hash, r.state, r.halted)
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
        if not data:
            return
        saved = decode(SavedRunner, data)
        for c in saved.contracts:
            self.contracts[c.contract] = Running(
                c.contract, c.cluster, c.epoch, c.code_hash, None, c.state, c.halted, list(c.previous_epochs), True)
        for e in saved.events:
            self.account_events[(e.contract, e.account)] = list(e.events)
        for r in saved.receipts:
            self.receipts[(r.contract, r.index)] = Receipt(
                r.index, r.sender, r.block, r.status, r.gas_used, r.value, list(r.events), r.message, r.reply_key)
        self.reply_keys = {(k.contract, k.account): k.key for k in saved.reply_keys}

    # -- reporting -----------------------------------------------------------------------------

    def state_hash(self, contract: bytes) -> bytes | None:
        running = self.contracts.get(contract)
        return None if running is None else blake2_256(running.state)

    def _stop(self, running: Running, why: str) -> None:
        log.info("stopped running contract 0x%s: %s", running.contract.hex(), why)
        if running.executor is not None:
            running.executor.close()
        del self.contracts[running.contract]

    def close(self) -> None:
        for running in self.contracts.values():
            if running.executor is not None:
                running.executor.close()

    def info(self) -> dict:
        if not self.contracts:
            return {"contracts": None}
        hello = next((r.executor.hello for r in self.contracts.values() if r.executor is not None), None)
        sandbox = None if hello is None else {
            "python": hello.python, "policy": f"RestrictedPython {hello.policy}", "confinement": hello.confinement}
        return {"sandbox": sandbox, "contracts": {
            "0x" + c.hex(): {"stateHash": "0x" + blake2_256(r.state).hex(), "halted": r.halted}
            for c, r in sorted(self.contracts.items())
        }}

