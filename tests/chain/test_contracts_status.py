"""The Contracts pallet: a contract's status on chain. Its constructor failed (with the
workers' message), halted by a worker whose watchdog fired, resumed by root; what a
contract that does not run refuses; listing contracts and their pending fees."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from phala.chain.node import Node
from phala.chain.runtime import cluster, contracts, mq
from phala.chain.runtime.contracts import GAS_PRICE, MAX_PAYLOAD
from phala.chain.runtime.frame import BadOrigin
from phala.chain.spec import UNIT
from phala.core.codec import encode
from phala.core.contracts import (
    CONTRACT_PUBKEY_TOPIC,
    DELIVER_TOPIC,
    HALTED_TOPIC,
    MAX_REPORT_MESSAGE,
    MESSAGE_TOPIC,
    REPORT_TOPIC,
    RESUME_TOPIC,
    Active,
    ConstructorFailed,
    ContractDelivery,
    ContractMessage,
    ContractResumed,
    Halted,
)
from phala.core.derivation import contract_key
from phala.core.keys import Keypair
from phala.core.mq import (
    ClusterOrigin,
    ContractOrigin,
    WorkerOrigin,
)

# The master key the cluster epoch keys of these tests derive from (the chain never sees it).
from .contracts_support import (
    ARGS,
    C0,
    C1,
    CODE_HASH,
    GAS,
    SEALED,
    W1,
    W2,
    W3,
    count,
    deliver,
    epoch_key,
    halt,
    halted,
    handler_refused,
    instantiate,
    ok,
    outbound_of,
    pallet_state,
    pending,
    pubkey_of,
    refused,
    report,
    reserved,
)
from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    assert_issuance_consistent,
    events_of,
    head_env,
    message_failures,
    read,
    root,
    submit_and_produce,
    synced,
)
from .test_gatekeeper_rotation import Sequences, sent

# -- a contract's status: its constructor failed, halted by its workers, resumed by root -----


def status_of(node: Node, contract: bytes):  # noqa: ANN201
    """What ``ContractStatus`` stores for the contract (None: nothing)."""
    return read(node.chain, lambda st: contracts.ContractStatus.get_opt(st, contract))


def pending_count(node: Node, contract: bytes) -> int:
    return read(node.chain, lambda st: contracts.PendingCount.get(st, contract))


def deliver_refused(node: Node, seq: Sequences, topic: bytes, payload: bytes, error: type,
                    cid: bytes = C0) -> None:  # fmt: skip
    """The cluster's message is accepted by the mq and refused by the pallet with ``error``:
    nothing the pallet stores changes, no reserve moves, nothing goes to the workers."""
    with unchanged(node):
        deliver(node, seq, cid, topic, payload)
        handler_refused(node, error, ClusterOrigin(cid))


def halt_refused(node: Node, seq: Sequences, payload: bytes, error: type, worker: Keypair = W1) -> None:
    """As :func:`deliver_refused`, for a halt ``worker`` sends as itself."""
    with unchanged(node):
        halt(node, seq, payload, worker)
        handler_refused(node, error, WorkerOrigin(worker.public_key))


@contextmanager
def unchanged(node: Node) -> Iterator[None]:
    """Nothing the pallet stores changes, no reserve moves, nothing goes to the workers."""
    before = pallet_state(node)
    held = reserved(node, BOB), reserved(node, CHARLIE)
    yield
    assert pallet_state(node) == before
    assert (reserved(node, BOB), reserved(node, CHARLIE)) == held
    assert sent(node) == []


def test_a_constructor_reported_ok_leaves_the_contract_active(chain, seq):
    contract = instantiate(chain)
    with head_env(chain.chain) as env:
        assert contracts.status(env, contract) == Active()  # nothing stored while pending
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 100))
    assert status_of(chain, contract) is None
    assert events_of(chain.chain, contracts.InstantiationFailed) == []
    with head_env(chain.chain) as env:
        assert contracts.status(env, contract) == Active()


def test_a_failed_constructor_leaves_its_message_on_chain_and_the_contract_refuses_commands(chain, seq):
    contract = instantiate(chain)
    # Charlie's command lands before the constructor's report: it is accepted and pending.
    ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))
    why = "line 1: import of os is not allowed: a contract imports only from phala.contracts.sdk"
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 0, status=4, message=why))
    assert message_failures(chain) == []
    assert events_of(chain.chain, contracts.CommandReported) == [
        contracts.CommandReported(contract, 0, 4, 0, GAS * GAS_PRICE, why)
    ]
    assert events_of(chain.chain, contracts.InstantiationFailed) == [
        contracts.InstantiationFailed(contract, 4, why)
    ]
    assert status_of(chain, contract) == ConstructorFailed(why)
    assert reserved(chain, BOB) == 0  # the constructor's fee is settled as any other
    # No more commands or deposits, whoever sends them.
    for who in (BOB, CHARLIE):
        refused(chain, who, contracts.command(contract, SEALED, GAS), contracts.ConstructorFailed)
    refused(chain, BOB, contracts.deposit(contract, UNIT), contracts.ConstructorFailed)
    # The status is checked before the payload and the gas limit.
    refused(chain, BOB, contracts.command(contract, bytes(MAX_PAYLOAD + 1), 0), contracts.ConstructorFailed)
    assert count(chain, contract) == 2
    # The command sent before still settles, and its failure keeps the status as it is.
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 1, 0, status=4, message="not instantiated"))
    assert events_of(chain.chain, contracts.CommandReported) == [
        contracts.CommandReported(contract, 1, 4, 0, GAS * GAS_PRICE, "not instantiated")
    ]
    assert reserved(chain, CHARLIE) == 0 and pending_count(chain, contract) == 0
    assert status_of(chain, contract) == ConstructorFailed(why)
    # It cannot be halted (it runs nothing), nor resumed.
    halt_refused(chain, seq, halted(contract), contracts.ConstructorFailed)
    root(chain, contracts.resume_contract(contract), contracts.NotHalted)
    assert status_of(chain, contract) == ConstructorFailed(why)


@pytest.mark.parametrize("status", [1, 2, 3, 4])
def test_any_failed_status_of_the_constructor_fails_it(chain, seq, status):
    contract = instantiate(chain)
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 7, status=status, message=""))
    assert status_of(chain, contract) == ConstructorFailed("")
    assert events_of(chain.chain, contracts.InstantiationFailed) == [
        contracts.InstantiationFailed(contract, status, "")
    ]


def test_a_failed_command_reports_its_message_and_the_contract_carries_on(chain, seq):
    contract = instantiate(chain)
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 10))
    ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 1, 42, status=1, message="by must be positive"))
    assert events_of(chain.chain, contracts.CommandReported) == [
        contracts.CommandReported(contract, 1, 1, 42, (GAS - 42) * GAS_PRICE, "by must be positive")
    ]
    assert events_of(chain.chain, contracts.InstantiationFailed) == []
    assert status_of(chain, contract) is None
    ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))


def test_report_messages_are_bounded_and_only_failures_carry_one(chain, seq):
    contract = instantiate(chain)
    ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))
    longest = "é" * (MAX_REPORT_MESSAGE // 2)  # 256 UTF-8 bytes, 128 characters
    assert len(longest.encode()) == MAX_REPORT_MESSAGE
    # One byte more: refused, whatever the status, and the fee stays pending.
    for status in (1, 4):
        deliver_refused(chain, seq, REPORT_TOPIC, report(contract, 1, 5, status, longest + "x"),
                        contracts.MessageTooLong)  # fmt: skip
    deliver_refused(chain, seq, REPORT_TOPIC, report(contract, 0, 5, 4, "x" * 1000), contracts.MessageTooLong)
    # A success with a message is malformed.
    deliver_refused(chain, seq, REPORT_TOPIC, report(contract, 1, 5, 0, "fine"), contracts.InvalidContractMessage)
    # The length is checked before whether the command awaits a report.
    deliver_refused(chain, seq, REPORT_TOPIC, report(contract, 9, 5, 1, longest + "x"), contracts.MessageTooLong)
    assert pending(chain, contract, 1) is not None and status_of(chain, contract) is None
    # Exactly the limit is fine.
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 1, 5, status=1, message=longest))
    [reported] = events_of(chain.chain, contracts.CommandReported)
    assert reported.message == longest
    # A report in the layout before messages (no message field) does not decode.
    short = report(contract, 0, 5)[:-1]
    deliver_refused(chain, seq, REPORT_TOPIC, short, contracts.InvalidContractMessage)


def test_a_halted_contract_refuses_commands_and_its_pending_fees_come_back_at_once(chain, seq):
    contract = instantiate(chain)
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 10))
    ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))  # 1
    ok(chain, BOB, contracts.command(contract, SEALED, 2 * GAS))  # 2
    ok(chain, CHARLIE, contracts.command(contract, SEALED, 3 * GAS))  # 3
    assert pending_count(chain, contract) == 3
    reason = "the watchdog fired: command 1 ran past 10 s"
    halt(chain, seq, halted(contract, reason))
    assert message_failures(chain) == []
    assert events_of(chain.chain, contracts.Event) == [contracts.Halted(contract, reason)]
    assert status_of(chain, contract) == Halted(reason)
    assert sent(chain) == []
    # No commands or deposits while halted.
    refused(chain, ALICE, contracts.command(contract, SEALED, GAS), contracts.ContractHalted)
    refused(chain, BOB, contracts.deposit(contract, UNIT), contracts.ContractHalted)
    # Another worker's halt (its watchdog fired too): the chain keeps the first reason.
    halt_refused(chain, seq, halted(contract, "another reason"), contracts.AlreadyHalted, worker=W3)
    assert status_of(chain, contract) == Halted(reason)
    # A report that still comes settles as usual.
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 3, 30))
    assert reserved(chain, CHARLIE) == GAS * GAS_PRICE
    # The payers take the rest back at once, without waiting FEE_TIMEOUT blocks; each only
    # their own.
    refused(chain, BOB, contracts.reclaim_fee(contract, 1), contracts.FeeNotReclaimable)
    refused(chain, CHARLIE, contracts.reclaim_fee(contract, 3), contracts.UnknownCommand)
    ok(chain, CHARLIE, contracts.reclaim_fee(contract, 1))
    assert events_of(chain.chain, contracts.FeeReclaimed) == [
        contracts.FeeReclaimed(contract, 1, CHARLIE.public_key, GAS * GAS_PRICE)
    ]
    ok(chain, BOB, contracts.reclaim_fee(contract, 2))
    assert reserved(chain, CHARLIE) == 0 and reserved(chain, BOB) == 0
    assert pending_count(chain, contract) == 0
    assert_issuance_consistent(chain.chain)
    # A late report of a reclaimed command finds nothing to settle.
    deliver_refused(chain, seq, REPORT_TOPIC, report(contract, 1, 5), contracts.UnknownCommand)


def test_a_contract_halted_before_its_constructor_was_reported(chain, seq):
    contract = instantiate(chain)
    halt(chain, seq, halted(contract, "the constructor ran past 10 s"))
    ok(chain, BOB, contracts.reclaim_fee(contract, 0))  # at once
    assert reserved(chain, BOB) == 0
    root(chain, contracts.resume_contract(contract))
    assert status_of(chain, contract) is None  # active again, or pending: nothing stored


def test_halt_refusals_change_nothing(chain, seq):
    contract = instantiate(chain)
    other = instantiate(chain, BOB, C1)
    ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))
    good = halted(contract)
    halt_refused(chain, seq, halted(contract, "x" * (MAX_REPORT_MESSAGE + 1)), contracts.MessageTooLong)
    halt_refused(chain, seq, halted(bytes(32)), contracts.ContractNotFound)
    # A worker of another cluster, about this contract; a member, about another cluster's.
    halt_refused(chain, seq, good, contracts.WrongCluster, worker=W2)
    halt_refused(chain, seq, halted(other), contracts.WrongCluster)
    for payload in (good[:-1], good + b"\x00", b"", encode(ContractResumed(contract))):
        halt_refused(chain, seq, payload, contracts.InvalidContractMessage)
    # Not from a worker as itself: the cluster's shared origin, the contract, an account.
    deliver_refused(chain, seq, HALTED_TOPIC, good, contracts.InvalidContractMessage)
    refused(chain, CHARLIE, mq.push_message(HALTED_TOPIC, good), contracts.InvalidContractMessage)
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(pubkey_of(contract)))
    as_contract = contract_key(epoch_key(C0, 0), contract).sr25519()
    submit_and_produce(
        chain, synced(as_contract, HALTED_TOPIC, good, 0, sender=ContractOrigin(contract))
    )
    handler_refused(chain, contracts.InvalidContractMessage, ContractOrigin(contract))
    assert status_of(chain, contract) is None
    # Nothing halted, so the fee is not reclaimable before its time.
    refused(chain, CHARLIE, contracts.reclaim_fee(contract, 1), contracts.FeeNotReclaimable)
    ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))
    # A worker removed from the cluster is no member any more.
    root(chain, cluster.remove_worker(C0, W3.public_key))
    halt_refused(chain, seq, good, contracts.WrongCluster, worker=W3)
    assert status_of(chain, contract) is None


def test_root_resumes_a_halted_contract(chain, seq):
    contract = instantiate(chain)
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 10))
    root(chain, contracts.resume_contract(contract), contracts.NotHalted)
    root(chain, contracts.resume_contract(bytes(32)), contracts.ContractNotFound)
    halt(chain, seq, halted(contract, "the memory watchdog fired"))
    # Only root resumes: signed by anyone, even the deployer, it is a bad origin.
    for who in (BOB, ALICE):
        refused(chain, who, contracts.resume_contract(contract), BadOrigin)
    assert status_of(chain, contract) == Halted("the memory watchdog fired")
    root(chain, contracts.resume_contract(contract))
    assert events_of(chain.chain, contracts.Event) == [contracts.Resumed(contract)]
    assert status_of(chain, contract) is None
    assert outbound_of(chain, RESUME_TOPIC, ContractResumed) == [ContractResumed(contract)]
    # Active again: commands are accepted and their fees wait FEE_TIMEOUT blocks as usual.
    ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))
    refused(chain, CHARLIE, contracts.reclaim_fee(contract, 1), contracts.FeeNotReclaimable)
    ok(chain, BOB, contracts.deposit(contract, UNIT))
    # It can be halted again, and resumed again.
    halt(chain, seq, halted(contract, "again"), worker=W3)
    assert status_of(chain, contract) == Halted("again")
    root(chain, contracts.resume_contract(contract))
    root(chain, contracts.resume_contract(contract), contracts.NotHalted)


def test_messages_to_a_contract_that_does_not_run_are_refused(chain, seq):
    source, target = instantiate(chain, salt=b"source"), instantiate(chain, salt=b"target")
    for c in (source, target):
        deliver(chain, seq, C0, REPORT_TOPIC, report(c, 0, 10))
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(pubkey_of(source)))
    as_source = contract_key(epoch_key(C0, 0), source).sr25519()
    sequence = iter(range(100))

    def message_to(to: bytes) -> None:
        payload = encode(ContractMessage(to, b"sealed"))
        raw = synced(as_source, MESSAGE_TOPIC, payload, next(sequence), sender=ContractOrigin(source))
        submit_and_produce(chain, raw)

    message_to(target)
    assert message_failures(chain) == []
    assert outbound_of(chain, DELIVER_TOPIC, ContractDelivery) == [ContractDelivery(source, target, b"sealed")]
    halt(chain, seq, halted(target))
    message_to(target)
    handler_refused(chain, contracts.ContractHalted, ContractOrigin(source))
    assert sent(chain) == []
    failed = instantiate(chain, salt=b"failed")
    deliver(chain, seq, C0, REPORT_TOPIC, report(failed, 0, 0, status=1, message="boom"))
    message_to(failed)
    handler_refused(chain, contracts.ConstructorFailed, ContractOrigin(source))


def test_contracts_are_listed_and_their_pending_fees_counted(chain, seq):
    with head_env(chain.chain) as env:
        assert contracts.ContractCount.get(env.state) == 0
    first = instantiate(chain, BOB)
    second = instantiate(chain, CHARLIE, C1)
    with head_env(chain.chain) as env:
        assert contracts.ContractCount.get(env.state) == 2
        assert [contracts.ContractByIndex.get_opt(env.state, i) for i in range(3)] == [first, second, None]
    # A refused instantiation lists nothing (refused() checks the whole pallet's storage).
    refused(chain, BOB, contracts.instantiate(CODE_HASH, C0, b"salt", ARGS, GAS), contracts.ContractExists)
    assert pending_count(chain, first) == 1
    ok(chain, CHARLIE, contracts.command(first, SEALED, GAS))
    ok(chain, ALICE, contracts.command(first, SEALED, GAS))
    assert pending_count(chain, first) == 3 and pending_count(chain, second) == 1
    deliver(chain, seq, C0, REPORT_TOPIC, report(first, 1, 10))
    assert pending_count(chain, first) == 2
    deliver(chain, seq, C0, REPORT_TOPIC, report(first, 0, 10))
    deliver(chain, seq, C0, REPORT_TOPIC, report(first, 2, 10))
    # None pending: the count is removed, not kept at zero.
    with head_env(chain.chain) as env:
        assert not contracts.PendingCount.contains(env.state, first)
