"""Contracts pallet: code upload, instantiation in a cluster, commands, the fees reserved for
their gas and refunded on the workers' reports, the contract keys the cluster publishes, the
cluster origin's signatures (its current epoch key) in the mq pallet, and a contract's status:
its constructor failed, or halted by its workers and resumed by root.

Every refusal is asserted by its error (pallet index and code). Sealed payloads are just
bytes to the chain: the tests use stand-ins."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from phala.chain.node import Node
from phala.chain.runtime import balances, cluster, contracts, executive, mq
from phala.chain.runtime.contracts import GAS_PRICE, MAX_GAS_LIMIT, MAX_PAYLOAD, MAX_SALT
from phala.chain.runtime.frame import BadOrigin, Origin, RuntimeCall
from phala.chain.spec import UNIT
from phala.core.cluster import CLUSTER_PUBKEY_TOPIC, ClusterPubkey, cluster_id
from phala.core.codec import decode, encode
from phala.core.contracts import (
    COMMAND_TOPIC,
    CONTRACT_PUBKEY_TOPIC,
    DELIVER_TOPIC,
    HALTED_TOPIC,
    INSTANTIATE_TOPIC,
    MAX_REPORT_MESSAGE,
    MAX_REPORTS,
    MESSAGE_TOPIC,
    PAYOUT_TOPIC,
    REPORT_TOPIC,
    REPORTS_TOPIC,
    RESUME_TOPIC,
    Active,
    CommandOutcome,
    CommandReport,
    CommandReports,
    ConstructorFailed,
    ContractCommand,
    ContractDelivery,
    ContractHalted,
    ContractInfo,
    ContractInstantiated,
    ContractMessage,
    ContractPubkey,
    ContractResumed,
    Halted,
    contract_id,
)
from phala.core.derivation import KeyNode, cluster_epoch_key, contract_key
from phala.core.gas import BLOCK_GAS_PER_CLUSTER
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair, dev_keypair
from phala.core.mq import (
    ClusterOrigin,
    ContractOrigin,
    Message,
    MessageOrigin,
    PalletOrigin,
    WorkerOrigin,
)

from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    account,
    assert_issuance_consistent,
    error_info,
    events_of,
    expect_invalid,
    failures,
    fee_of,
    free,
    head_env,
    message_failures,
    read,
    register_sim_worker,
    root,
    sign,
    submit_and_produce,
    synced,
)
from .test_cluster import gatekeeper_synced
from .test_gatekeeper_rotation import GK1, Sequences, launch, sent

W1, W2, W3 = (Keypair.from_uri(f"//ContractsTestWorker{i}") for i in range(1, 4))
ECDH = {w: bytes([0x20 + i]) * 32 for i, w in enumerate((W1, W2, W3))}
POOR = Keypair.from_uri("//ContractsTestPoor")
ORIGIN = PalletOrigin(b"Contracts")
# The master key the cluster epoch keys of these tests derive from (the chain never sees it).
MASTER = KeyNode(bytes(range(32)))
C0, C1, C7 = cluster_id(0), cluster_id(1), cluster_id(7)
CODE = b"class Token:\n    pass\n"
CODE_HASH = blake2_256(CODE)
GAS = 1_000_000
ARGS = b"sealed constructor arguments"
SEALED = b"a sealed command"

# -- helpers ----------------------------------------------------------------------------------


def epoch_key(cid: bytes, epoch: int) -> KeyNode:
    return cluster_epoch_key(MASTER, cid, epoch)


def signer(cid: bytes, epoch: int) -> Keypair:
    """The sr25519 key a cluster's workers sign its messages with in ``epoch``."""
    return epoch_key(cid, epoch).sr25519()


def publish_cluster(node: Node, seq: Sequences, cid: bytes, epoch: int) -> None:
    """Publish the cluster's ``epoch`` keys (derived from :data:`MASTER`) as the gatekeeper."""
    key = epoch_key(cid, epoch)
    payload = encode(ClusterPubkey(cid, epoch, key.sr25519().public_key, key.x25519().public))
    submit_and_produce(node, gatekeeper_synced(node, seq, CLUSTER_PUBKEY_TOPIC, payload))
    assert message_failures(node) == []


@pytest.fixture
def seq() -> Sequences:
    return Sequences()


@pytest.fixture
def chain(node, seq) -> Node:
    """A node with a gatekeeper, cluster C0 = [W1, W3] and C1 = [W2], both with their epoch 0
    keys published, and :data:`CODE` uploaded by Alice."""
    launch(node, seq, GK1)
    for w in (W1, W2, W3):
        register_sim_worker(node, w, ECDH[w])
    root(node, cluster.create_cluster([W1.public_key, W3.public_key]))
    root(node, cluster.create_cluster([W2.public_key]))
    publish_cluster(node, seq, C0, 0)
    publish_cluster(node, seq, C1, 0)
    ok(node, ALICE, contracts.upload_code(CODE))
    return node


def signed(node: Node, who: Keypair, call: RuntimeCall) -> int:
    """Include ``who``'s ``call`` in a new block; the transaction fee it paid."""
    raw = sign(who, call, node.account_next_index(who.public_key))
    submit_and_produce(node, raw)
    return fee_of(raw)


def ok(node: Node, who: Keypair, call: RuntimeCall) -> int:
    fee = signed(node, who, call)
    assert failures(node.chain) == []
    return fee


def pallet_state(node: Node) -> list[tuple[bytes, bytes]]:
    """Everything the pallet stores (its keys share the prefix twox_128("Contracts"))."""
    return read(node.chain, lambda st: sorted(st.iter_prefix(contracts.Code.prefix[:16])))


def reserved(node: Node, who: Keypair | bytes) -> int:
    return account(node.chain, who).data.reserved


def refused(node: Node, who: Keypair, call: RuntimeCall, error: type) -> None:
    """``who``'s ``call`` fails with ``error``: the fee is paid, nothing else changes."""
    before = pallet_state(node)
    held = reserved(node, who)
    signed(node, who, call)
    assert failures(node.chain) == [(0, error_info(error))]
    assert pallet_state(node) == before
    assert reserved(node, who) == held
    assert sent(node) == []
    assert events_of(node.chain, contracts.Event) == []


def instantiate(
    node: Node, who: Keypair = BOB, cid: bytes = C0, salt: bytes = b"salt", gas: int = GAS
) -> bytes:
    """``who`` instantiates :data:`CODE` in ``cid``; the contract's id."""
    ok(node, who, contracts.instantiate(CODE_HASH, cid, salt, ARGS, gas))
    return contract_id(who.public_key, CODE_HASH, cid, salt)


def cluster_message(seq: Sequences, cid: bytes, topic: bytes, payload: bytes, epoch: int = 0) -> bytes:
    """A synced message of ``ClusterOrigin(cid)`` signed by the cluster's ``epoch`` key, with
    the origin's next sequence."""
    return synced(signer(cid, epoch), topic, payload, seq.take(b"cluster " + cid), sender=ClusterOrigin(cid))


def deliver(node: Node, seq: Sequences, cid: bytes, topic: bytes, payload: bytes, epoch: int = 0) -> None:
    """The cluster origin's message is accepted by the mq (its handler may still refuse it)."""
    submit_and_produce(node, cluster_message(seq, cid, topic, payload, epoch))
    assert failures(node.chain) == []
    assert len(events_of(node.chain, mq.OffchainMessageAccepted)) == 1


def pubkey_of(contract: bytes, cid: bytes = C0, epoch: int = 0) -> ContractPubkey:
    """The keys the workers derive for ``contract`` from the cluster's ``epoch`` key."""
    key = contract_key(epoch_key(cid, epoch), contract)
    return ContractPubkey(contract, epoch, key.sr25519().public_key, key.x25519().public)


def report(contract: bytes, index: int, gas_used: int, status: int = 0, message: str = "") -> bytes:
    return encode(CommandReport(contract, index, status, gas_used, message))


def halted(contract: bytes, reason: str = "the watchdog fired: 10 s") -> bytes:
    return encode(ContractHalted(contract, reason))


def halt(node: Node, seq: Sequences, payload: bytes, worker: Keypair = W1) -> None:
    """``worker`` sends the halt as itself (a watchdog fired on it: its own finding, which the
    cluster's shared origin cannot carry); the mq accepts it (the pallet may still refuse)."""
    submit_and_produce(node, synced(worker, HALTED_TOPIC, payload, seq.take(worker)))
    assert failures(node.chain) == []
    assert len(events_of(node.chain, mq.OffchainMessageAccepted)) == 1


def handler_refused(node: Node, error: type, origin: MessageOrigin = ClusterOrigin(C0)) -> None:  # noqa: B008
    assert message_failures(node) == [(origin, error_info(error))]
    assert events_of(node.chain, contracts.Event) == []


def contract_keys(node: Node, contract: bytes) -> ContractPubkey | None:
    return read(node.chain, lambda st: contracts.ContractKeys.get_opt(st, contract))


def pending(node: Node, contract: bytes, index: int) -> contracts.PendingFee | None:
    return read(node.chain, lambda st: contracts.PendingFees.get_opt(st, (contract, index)))


def count(node: Node, contract: bytes) -> int:
    return read(node.chain, lambda st: contracts.CommandCount.get(st, contract))


def outbound_of(node: Node, topic: bytes, kind: type) -> list:
    found = [m for m in sent(node) if m.topic == topic]
    assert all(m.sender == ORIGIN for m in found)
    return [decode(kind, m.payload) for m in found]


# -- the pallet in the runtime ----------------------------------------------------------------


def test_pallet_in_the_runtime():
    indices = [p.index for p in executive.PALLETS]
    assert contracts.PALLET in executive.PALLETS and indices.count(9) == 1
    assert executive.PALLETS.index(cluster.PALLET) < executive.PALLETS.index(contracts.PALLET)
    assert executive.PALLETS[-1] is mq.PALLET
    assert contracts.PALLET.name == "Contracts"
    assert contracts.PALLET.topics == (
        CONTRACT_PUBKEY_TOPIC, REPORT_TOPIC, REPORTS_TOPIC, HALTED_TOPIC, PAYOUT_TOPIC, MESSAGE_TOPIC
    )  # fmt: skip
    for outbound in (INSTANTIATE_TOPIC, RESUME_TOPIC):  # pallet → workers
        assert outbound not in contracts.PALLET.topics and not outbound.startswith(b"^")
    names = {i: c.__name__ for i, c in contracts.Call.__variants__.items()}
    assert names == {
        0: "upload_code", 1: "instantiate", 2: "command", 3: "deposit", 4: "reclaim_fee",
        5: "resume_contract", 6: "set_runtime_identity",
    }  # fmt: skip
    codes = {code: cls.__name__ for code, cls in contracts.PALLET.errors().items()}
    assert sorted(codes) == list(range(25))
    assert [codes[c] for c in range(18, 25)] == [
        "ConstructorFailed", "ContractHalted", "MessageTooLong", "NotHalted", "AlreadyHalted",
        "BlockGasExhausted", "BlockContractsExhausted",
    ]  # fmt: skip
    events = {i: c.__name__ for i, c in contracts.Event.__variants__.items()}
    assert [events[i] for i in (9, 10, 11, 12, 13)] == [
        "InstantiationFailed", "Halted", "Resumed", "RuntimeIdentitySet", "ReportSkipped"
    ]  # fmt: skip
    # A dev account's balance pays the largest gas limit many times over.
    assert MAX_GAS_LIMIT * GAS_PRICE == UNIT


def test_genesis_state(node):
    assert pallet_state(node) == []
    with head_env(node.chain) as env:
        assert contracts.code(env, CODE_HASH) is None
        assert contracts.contract(env, bytes(32)) is None
        assert contracts.contract_keys(env, bytes(32)) is None


# -- upload_code ------------------------------------------------------------------------------


def test_upload_code(node):
    ok(node, BOB, contracts.upload_code(CODE))
    assert events_of(node.chain, contracts.CodeUploaded) == [
        contracts.CodeUploaded(CODE_HASH, BOB.public_key)
    ]
    with head_env(node.chain) as env:
        assert contracts.code(env, CODE_HASH) == CODE
    # Existing code: a success that changes nothing and emits nothing.
    before = pallet_state(node)
    ok(node, ALICE, contracts.upload_code(CODE))
    assert events_of(node.chain, contracts.Event) == []
    assert pallet_state(node) == before
    # Any UTF-8 text, the empty one too.
    ok(node, BOB, contracts.upload_code("π = 3\n".encode()))
    ok(node, BOB, contracts.upload_code(b""))
    assert len(events_of(node.chain, contracts.CodeUploaded)) == 1


def test_upload_code_refusals(node):
    refused(node, BOB, contracts.upload_code(b"x = '\xff'\n"), contracts.InvalidCode)
    refused(node, BOB, contracts.upload_code("é".encode()[:1]), contracts.InvalidCode)
    root(node, contracts.upload_code(CODE), BadOrigin)  # an account uploads, not root
    # Code above the limit does not fit in an extrinsic either: dispatch it directly.
    big = b"#" * (contracts.MAX_CODE_BYTES + 1)
    expect_invalid(node, sign(BOB, contracts.upload_code(big), 0), "ExhaustsResources")
    with head_env(node.chain) as env:
        with pytest.raises(contracts.CodeTooLarge):
            contracts.upload_code(big).dispatch(env, Origin(BOB.public_key))
        contracts.upload_code(big[:-1]).dispatch(env, Origin(BOB.public_key))
        assert contracts.code(env, blake2_256(big[:-1])) == big[:-1]
    assert pallet_state(node) == []


# -- instantiate ------------------------------------------------------------------------------


def test_instantiate(chain):
    free_before = free(chain.chain, BOB)
    fee = ok(chain, BOB, contracts.instantiate(CODE_HASH, C0, b"salt", ARGS, GAS))
    contract = contract_id(BOB.public_key, CODE_HASH, C0, b"salt")
    number = chain.chain.head.number
    # The fee for the gas limit is reserved, on top of the transaction fee.
    assert free(chain.chain, BOB) == free_before - fee - GAS * GAS_PRICE
    assert reserved(chain, BOB) == GAS * GAS_PRICE
    assert_issuance_consistent(chain.chain)
    assert events_of(chain.chain, contracts.Instantiated) == [
        contracts.Instantiated(contract, CODE_HASH, C0, BOB.public_key)
    ]
    assert events_of(chain.chain, balances.Reserved) == [
        balances.Reserved(BOB.public_key, GAS * GAS_PRICE)
    ]
    assert outbound_of(chain, INSTANTIATE_TOPIC, ContractInstantiated) == [
        ContractInstantiated(contract, CODE_HASH, C0, BOB.public_key, 0, ARGS, GAS)
    ]
    with head_env(chain.chain) as env:
        assert contracts.contract(env, contract) == ContractInfo(BOB.public_key, CODE_HASH, C0, number)
        assert contracts.contract_keys(env, contract) is None  # until the cluster publishes
    assert count(chain, contract) == 1  # the constructor was command 0
    assert pending(chain, contract, 0) == contracts.PendingFee(BOB.public_key, GAS * GAS_PRICE, number)
    # Another salt, another deployer or another cluster: another contract.
    assert instantiate(chain, BOB, salt=b"") != contract
    assert instantiate(chain, CHARLIE) != contract
    assert instantiate(chain, BOB, C1) != contract
    assert instantiate(chain, BOB, salt=b"s" * MAX_SALT, gas=MAX_GAS_LIMIT)
    assert reserved(chain, BOB) == (3 * GAS + MAX_GAS_LIMIT) * GAS_PRICE


def test_instantiate_names_the_current_epoch(chain, seq):
    root(chain, cluster.remove_worker(C0, W3.public_key))  # starts epoch 1
    refused(chain, BOB, contracts.instantiate(CODE_HASH, C0, b"", ARGS, GAS), contracts.ClusterNotReady)
    publish_cluster(chain, seq, C0, 1)
    contract = instantiate(chain)
    [event] = outbound_of(chain, INSTANTIATE_TOPIC, ContractInstantiated)
    assert (event.contract, event.epoch) == (contract, 1)


def test_instantiate_refusals(chain):
    def call(code_hash=CODE_HASH, cid=C0, salt=b"salt", args=ARGS, gas=GAS):
        return contracts.instantiate(code_hash, cid, salt, args, gas)

    refused(chain, BOB, call(code_hash=blake2_256(b"other")), contracts.CodeNotFound)
    refused(chain, BOB, call(salt=b"s" * (MAX_SALT + 1)), contracts.SaltTooLong)
    refused(chain, BOB, call(args=bytes(MAX_PAYLOAD + 1)), contracts.PayloadTooLarge)
    refused(chain, BOB, call(gas=0), contracts.BadGasLimit)
    refused(chain, BOB, call(gas=MAX_GAS_LIMIT + 1), contracts.BadGasLimit)
    refused(chain, BOB, call(cid=C7), contracts.ClusterNotReady)  # no such cluster
    # The checks run in order: an unknown code is reported before a bad gas limit.
    refused(chain, BOB, call(code_hash=bytes(32), gas=0), contracts.CodeNotFound)
    root(chain, contracts.instantiate(CODE_HASH, C0, b"salt", ARGS, GAS), BadOrigin)
    instantiate(chain, BOB)
    refused(chain, BOB, call(), contracts.ContractExists)


def test_instantiate_in_a_cluster_without_published_keys(chain, seq):
    register_sim_worker(chain, POOR, bytes(32))
    root(chain, cluster.create_cluster([POOR.public_key]))
    C2 = cluster_id(2)  # noqa: N806
    refused(chain, BOB, contracts.instantiate(CODE_HASH, C2, b"", ARGS, GAS), contracts.ClusterNotReady)
    publish_cluster(chain, seq, C2, 0)
    instantiate(chain, BOB, C2)


def test_fees_need_a_usable_balance(chain):
    part = MAX_GAS_LIMIT * GAS_PRICE // 20  # Poor's balance is 10 parts, half the largest fee
    gas = part // GAS_PRICE  # the gas limit that reserves one part
    ok(chain, ALICE, balances.transfer_allow_death(POOR.public_key, 10 * part))
    call = contracts.instantiate(CODE_HASH, C0, b"", ARGS, MAX_GAS_LIMIT)
    refused(chain, POOR, call, contracts.InsufficientBalance)
    contract = instantiate(chain, POOR, gas=5 * gas)
    assert reserved(chain, POOR) == 5 * part
    # The reserve is not usable: what is left (less transaction fees) cannot cover 5 more.
    refused(chain, POOR, contracts.command(contract, SEALED, 5 * gas), contracts.InsufficientBalance)
    ok(chain, POOR, contracts.command(contract, SEALED, 4 * gas))
    assert reserved(chain, POOR) == 9 * part
    assert_issuance_consistent(chain.chain)


# -- command ----------------------------------------------------------------------------------


def test_commands_are_numbered_in_chain_order(chain):
    contract = instantiate(chain, BOB)
    free_before = free(chain.chain, CHARLIE)
    fee = ok(chain, CHARLIE, contracts.command(contract, SEALED, 2 * GAS))
    number = chain.chain.head.number
    assert free(chain.chain, CHARLIE) == free_before - fee - 2 * GAS * GAS_PRICE
    assert reserved(chain, CHARLIE) == 2 * GAS * GAS_PRICE
    assert events_of(chain.chain, contracts.CommandSubmitted) == [
        contracts.CommandSubmitted(contract, 1, CHARLIE.public_key)
    ]
    assert outbound_of(chain, COMMAND_TOPIC, ContractCommand) == [
        ContractCommand(contract, 1, CHARLIE.public_key, SEALED, 2 * GAS, number)
    ]
    assert pending(chain, contract, 1) == contracts.PendingFee(CHARLIE.public_key, 2 * GAS * GAS_PRICE, number)
    # Two in one block: numbered in the order of the block.
    raws = [
        sign(BOB, contracts.command(contract, b"first", GAS), chain.account_next_index(BOB.public_key)),
        sign(ALICE, contracts.command(contract, bytes(MAX_PAYLOAD), MAX_GAS_LIMIT),
             chain.account_next_index(ALICE.public_key)),
    ]
    submit_and_produce(chain, *raws)
    assert failures(chain.chain) == []
    [first, second] = outbound_of(chain, COMMAND_TOPIC, ContractCommand)
    assert (first.index, first.sender, first.payload) == (2, BOB.public_key, b"first")
    assert (second.index, second.sender, second.gas_limit) == (3, ALICE.public_key, MAX_GAS_LIMIT)
    assert count(chain, contract) == 4
    assert_issuance_consistent(chain.chain)


def test_command_refusals(chain):
    contract = instantiate(chain, BOB)
    refused(chain, BOB, contracts.command(bytes(32), SEALED, GAS), contracts.ContractNotFound)
    refused(chain, BOB, contracts.command(contract, bytes(MAX_PAYLOAD + 1), GAS), contracts.PayloadTooLarge)
    refused(chain, BOB, contracts.command(contract, SEALED, 0), contracts.BadGasLimit)
    refused(chain, BOB, contracts.command(contract, SEALED, MAX_GAS_LIMIT + 1), contracts.BadGasLimit)
    root(chain, contracts.command(contract, SEALED, GAS), BadOrigin)
    assert count(chain, contract) == 1  # refused commands take no index


# -- contract keys ----------------------------------------------------------------------------


def test_publish_contract_keys(chain, seq):
    contract = instantiate(chain)
    keys = pubkey_of(contract)
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(keys))
    assert message_failures(chain) == []
    assert contract_keys(chain, contract) == keys
    assert events_of(chain.chain, contracts.ContractPubkeyPublished) == [
        contracts.ContractPubkeyPublished(contract, 0, keys.pubkey, keys.ecdh)
    ]
    with head_env(chain.chain) as env:
        assert contracts.contract_keys(env, contract) == keys
    # Every worker sends the same keys: the chain keeps the first copy.
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(keys))
    handler_refused(chain, contracts.PubkeyAlreadyPublished)
    other = ContractPubkey(contract, 0, bytes(32), bytes(32))
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(other))
    handler_refused(chain, contracts.PubkeyAlreadyPublished)
    assert contract_keys(chain, contract) == keys


def test_contract_keys_follow_the_cluster_epoch(chain, seq):
    contract = instantiate(chain)
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(pubkey_of(contract)))
    root(chain, cluster.remove_worker(C0, W3.public_key))
    publish_cluster(chain, seq, C0, 1)
    # Keys of the old epoch, now signed by the new epoch's key: refused.
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(pubkey_of(contract)), epoch=1)
    handler_refused(chain, contracts.WrongEpoch)
    renewed = pubkey_of(contract, epoch=1)
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(renewed), epoch=1)
    assert message_failures(chain) == []
    assert contract_keys(chain, contract) == renewed
    assert events_of(chain.chain, contracts.ContractPubkeyPublished) == [
        contracts.ContractPubkeyPublished(contract, 1, renewed.pubkey, renewed.ecdh)
    ]


def test_contract_keys_refusals(chain, seq):
    contract = instantiate(chain)
    keys = pubkey_of(contract)
    # An epoch that has not begun.
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(pubkey_of(contract, epoch=1)))
    handler_refused(chain, contracts.WrongEpoch)
    # An unknown contract.
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(pubkey_of(bytes(32))))
    handler_refused(chain, contracts.ContractNotFound)
    # Another cluster's origin, properly signed by that cluster's key.
    deliver(chain, seq, C1, CONTRACT_PUBKEY_TOPIC, encode(keys))
    handler_refused(chain, contracts.WrongCluster, ClusterOrigin(C1))
    # A malformed payload.
    for payload in (encode(keys)[:-1], encode(keys) + b"\x00"):
        deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, payload)
        handler_refused(chain, contracts.InvalidContractMessage)
    # From a worker of the cluster as itself, not as the cluster.
    submit_and_produce(chain, synced(W1, CONTRACT_PUBKEY_TOPIC, encode(keys), seq.take(W1)))
    handler_refused(chain, contracts.InvalidContractMessage, WorkerOrigin(W1.public_key))
    # From an account.
    refused(chain, BOB, mq.push_message(CONTRACT_PUBKEY_TOPIC, encode(keys)), contracts.InvalidContractMessage)
    assert contract_keys(chain, contract) is None


# -- reports and refunds ----------------------------------------------------------------------


def test_reports_refund_the_unused_gas(chain, seq):
    treasury = free(chain.chain, balances.TREASURY)
    start = free(chain.chain, BOB)
    fee = ok(chain, BOB, contracts.instantiate(CODE_HASH, C0, b"salt", ARGS, GAS))
    contract = contract_id(BOB.public_key, CODE_HASH, C0, b"salt")
    treasury += fee
    assert free(chain.chain, balances.TREASURY) == treasury
    # The constructor (command 0) used 1,234 gas.
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 1_234))
    assert message_failures(chain) == []
    refund = (GAS - 1_234) * GAS_PRICE
    assert events_of(chain.chain, contracts.CommandReported) == [
        contracts.CommandReported(contract, 0, 0, 1_234, refund, "")
    ]
    assert free(chain.chain, BOB) == start - fee - 1_234 * GAS_PRICE
    assert reserved(chain, BOB) == 0
    assert free(chain.chain, balances.TREASURY) == treasury + 1_234 * GAS_PRICE
    assert pending(chain, contract, 0) is None
    assert_issuance_consistent(chain.chain)
    # A report for the same command again (another worker's copy) finds nothing pending.
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 1_234))
    handler_refused(chain, contracts.UnknownCommand)
    assert free(chain.chain, BOB) == start - fee - 1_234 * GAS_PRICE
    # Two commands from Charlie, reported out of order; one used all its gas and failed.
    charlie = free(chain.chain, CHARLIE)
    fees = ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))
    fees += ok(chain, CHARLIE, contracts.command(contract, SEALED, 3 * GAS))
    assert reserved(chain, CHARLIE) == 4 * GAS * GAS_PRICE
    treasury = free(chain.chain, balances.TREASURY)
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 2, 3 * GAS, status=2))
    assert events_of(chain.chain, contracts.CommandReported) == [
        contracts.CommandReported(contract, 2, 2, 3 * GAS, 0, "")
    ]
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 1, 0, status=1))
    assert events_of(chain.chain, contracts.CommandReported) == [
        contracts.CommandReported(contract, 1, 1, 0, GAS * GAS_PRICE, "")
    ]
    assert free(chain.chain, CHARLIE) == charlie - fees - 3 * GAS * GAS_PRICE
    assert reserved(chain, CHARLIE) == 0
    assert free(chain.chain, balances.TREASURY) == treasury + 3 * GAS * GAS_PRICE
    assert_issuance_consistent(chain.chain)


def test_report_refusals(chain, seq):
    contract = instantiate(chain)
    ok(chain, CHARLIE, contracts.command(contract, SEALED, GAS))
    held = reserved(chain, BOB), reserved(chain, CHARLIE)
    # More gas than the command's limit.
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 1, GAS + 1))
    handler_refused(chain, contracts.GasExceedsLimit)
    # A command never submitted; an unknown contract.
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 2, 0))
    handler_refused(chain, contracts.UnknownCommand)
    deliver(chain, seq, C0, REPORT_TOPIC, report(bytes(32), 0, 0))
    handler_refused(chain, contracts.ContractNotFound)
    # Another cluster reports on this contract.
    deliver(chain, seq, C1, REPORT_TOPIC, report(contract, 1, 0))
    handler_refused(chain, contracts.WrongCluster, ClusterOrigin(C1))
    # Malformed; from a worker as itself; from an account.
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 1, 0)[:-1])
    handler_refused(chain, contracts.InvalidContractMessage)
    submit_and_produce(chain, synced(W1, REPORT_TOPIC, report(contract, 1, 0), seq.take(W1)))
    handler_refused(chain, contracts.InvalidContractMessage, WorkerOrigin(W1.public_key))
    refused(chain, CHARLIE, mq.push_message(REPORT_TOPIC, report(contract, 1, 0)), contracts.InvalidContractMessage)
    assert (reserved(chain, BOB), reserved(chain, CHARLIE)) == held
    assert pending(chain, contract, 0) is not None and pending(chain, contract, 1) is not None
    # A topic of the pallet's that it does not handle would be an unknown chain-only topic.
    with head_env(chain.chain) as env:
        with pytest.raises(contracts.InvalidContractMessage):
            contracts.on_message(env, Message(ClusterOrigin(C0), b"^phala/contracts/other", b""))


def test_a_report_after_the_payer_was_reaped(chain, seq):
    """A reserve below the existential deposit is lost when its account is reaped: the
    report then moves only what is left, and issuance stays consistent."""
    ok(chain, ALICE, balances.transfer_allow_death(POOR.public_key, UNIT))
    contract = instantiate(chain, POOR, gas=1_000)  # reserves 1,000 × GAS_PRICE, below the ED
    assert 1_000 * GAS_PRICE < chain.chain.spec.parameters.existential_deposit
    rest = free(chain.chain, POOR)
    fee = fee_of(sign(POOR, balances.transfer_allow_death(ALICE.public_key, rest), 1))
    ok(chain, POOR, balances.transfer_allow_death(ALICE.public_key, rest - fee))
    assert account(chain.chain, POOR).data.reserved == 0  # reaped: the reserve was dust
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 10))
    assert events_of(chain.chain, contracts.CommandReported) == [
        contracts.CommandReported(contract, 0, 0, 10, 0, "")
    ]
    assert pending(chain, contract, 0) is None
    assert_issuance_consistent(chain.chain)


# -- the cluster origin's signatures ----------------------------------------------------------


def test_cluster_origin_signed_by_its_current_epoch_key(chain, seq):
    contract = instantiate(chain)
    payload = report(contract, 0, 5)
    name = b"cluster " + C0
    # Any key but the cluster's current epoch key: a bad proof, the sequence stays unused.
    for key in (signer(C1, 0), signer(C0, 1), W1, GK1):
        raw = synced(key, REPORT_TOPIC, payload, seq.next.get(name, 0), sender=ClusterOrigin(C0))
        expect_invalid(chain, raw, "BadProof")
    with head_env(chain.chain) as env:
        assert mq.next_sequence(env, ClusterOrigin(C0)) == 0
    # An unknown cluster has no key.
    raw = synced(signer(C7, 0), REPORT_TOPIC, payload, 0, sender=ClusterOrigin(C7))
    assert "no key on chain" in expect_invalid(chain, raw, "BadSigner").message
    # The current epoch key: accepted, and the sequence is used up.
    deliver(chain, seq, C0, REPORT_TOPIC, payload)
    assert message_failures(chain) == []
    with head_env(chain.chain) as env:
        assert mq.next_sequence(env, ClusterOrigin(C0)) == 1
    # A new epoch whose keys are unpublished: no key at all, with the old or the new one.
    root(chain, cluster.remove_worker(C0, W3.public_key))
    for epoch in (0, 1):
        raw = synced(signer(C0, epoch), REPORT_TOPIC, payload, 1, sender=ClusterOrigin(C0))
        expect_invalid(chain, raw, "BadSigner")
    # Once published, only the new epoch's key signs for the cluster.
    publish_cluster(chain, seq, C0, 1)
    raw = synced(signer(C0, 0), REPORT_TOPIC, payload, 1, sender=ClusterOrigin(C0))
    expect_invalid(chain, raw, "BadProof")
    deliver(chain, seq, C0, CONTRACT_PUBKEY_TOPIC, encode(pubkey_of(contract, epoch=1)), epoch=1)
    assert message_failures(chain) == []


def test_cluster_origin_messages_for_workers_go_outbound(chain, seq):
    """A cluster may send non chain-only topics: the mq pushes them to the pRuntimes."""
    deliver(chain, seq, C0, b"phala/cluster/notice", b"hello")
    assert sent(chain) == [Message(ClusterOrigin(C0), b"phala/cluster/notice", b"hello")]



def test_a_fee_never_reported_can_be_reclaimed_by_its_payer_after_the_timeout(chain, seq):
    contract = instantiate(chain, BOB)
    submitted = chain.chain.head.number
    refused(chain, CHARLIE, contracts.reclaim_fee(contract, 0), contracts.FeeNotReclaimable)
    refused(chain, BOB, contracts.reclaim_fee(contract, 0), contracts.FeeNotReclaimable)  # too early
    refused(chain, BOB, contracts.reclaim_fee(contract, 7), contracts.UnknownCommand)
    while chain.chain.head.number < submitted + contracts.FEE_TIMEOUT - 1:
        chain.produce_block()
    before = free(chain.chain, BOB)
    fee = ok(chain, BOB, contracts.reclaim_fee(contract, 0))
    assert reserved(chain, BOB) == 0 and pending(chain, contract, 0) is None
    assert events_of(chain.chain, contracts.FeeReclaimed) == [
        contracts.FeeReclaimed(contract, 0, BOB.public_key, GAS * GAS_PRICE)
    ]
    assert free(chain.chain, BOB) == before + GAS * GAS_PRICE - fee  # less this call's fee
    # A late report finds nothing to settle.
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 10))
    handler_refused(chain, contracts.UnknownCommand)


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


def test_root_pins_the_contract_runtime(chain):
    with head_env(chain.chain) as env:
        assert contracts.RuntimeIdentity.get(env.state) is None  # the test spec pins none
    root(chain, contracts.set_runtime_identity(b"\x05" * 32))
    with head_env(chain.chain) as env:
        assert contracts.RuntimeIdentity.get(env.state) == b"\x05" * 32
    assert events_of(chain.chain, contracts.RuntimeIdentitySet) == [contracts.RuntimeIdentitySet(b"\x05" * 32)]
    refused(chain, BOB, contracts.set_runtime_identity(bytes(32)), BadOrigin)


def test_a_blocks_commands_to_one_cluster_share_a_gas_cap(chain):
    """Commands of one block to the contracts of one cluster reserve at most
    BLOCK_GAS_PER_CLUSTER together; the one that would pass it fails and changes nothing;
    another cluster, and the next block, have their own."""
    in_c0, in_c1 = instantiate(chain, BOB), instantiate(chain, BOB, C1, b"other")
    per = BLOCK_GAS_PER_CLUSTER // MAX_GAS_LIMIT
    who = [ALICE, BOB, CHARLIE, dev_keypair("Dave"), dev_keypair("Eve")][: per + 1]
    ferdie = dev_keypair("Ferdie")
    raws = [sign(k, contracts.command(in_c0, SEALED, MAX_GAS_LIMIT), chain.account_next_index(k.public_key))
            for k in who]
    raws.append(sign(ferdie, contracts.command(in_c1, SEALED, MAX_GAS_LIMIT), chain.account_next_index(ferdie.public_key)))
    before = count(chain, in_c0)
    submit_and_produce(chain, *raws)
    assert [error for _, error in failures(chain.chain)] == [error_info(contracts.BlockGasExhausted)]
    assert count(chain, in_c0) == before + per  # the last one took no number
    assert count(chain, in_c1) == 2  # the constructor, and the other cluster's own cap
    assert reserved(chain, who[-1]) == 0
    # The next block starts again.
    ok(chain, who[-1], contracts.command(in_c0, SEALED, MAX_GAS_LIMIT))


def test_a_block_reaches_at_most_max_contracts_per_block_of_a_cluster(chain, monkeypatch):
    """A worker keeps one VM instance open per contract with calls in the block: the chain
    lets at most MAX_CONTRACTS_PER_BLOCK of a cluster's contracts have calls in one block
    (commands, deposits, instantiations, messages); more calls to the same ones are fine."""
    monkeypatch.setattr(contracts.gas, "MAX_CONTRACTS_PER_BLOCK", 2)
    a, b, c = (instantiate(chain, BOB, C0, salt) for salt in (b"a", b"b", b"c"))
    raws = [
        sign(ALICE, contracts.command(a, SEALED, GAS), chain.account_next_index(ALICE.public_key)),
        sign(BOB, contracts.command(b, SEALED, GAS), chain.account_next_index(BOB.public_key)),
        sign(CHARLIE, contracts.command(a, SEALED, GAS), chain.account_next_index(CHARLIE.public_key)),
        sign(dev_keypair("Dave"), contracts.command(c, SEALED, GAS), chain.account_next_index(dev_keypair("Dave").public_key)),
    ]
    submit_and_produce(chain, *raws)
    assert [error for _, error in failures(chain.chain)] == [error_info(contracts.BlockContractsExhausted)]
    assert (count(chain, a), count(chain, b), count(chain, c)) == (3, 2, 1)
    ok(chain, ALICE, contracts.command(c, SEALED, GAS))  # a new block, a new count


def test_one_message_reports_a_blocks_commands_and_skips_what_no_fee_awaits(chain, seq):
    """``^phala/contracts/reports`` settles each of a block's commands as its own report
    would, in order; one the chain refuses (its fee reclaimed already, or a gas above its
    limit) changes nothing and is named in ``ReportSkipped``; the others still settle."""
    contract = instantiate(chain)
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 10))
    for who, gas in ((CHARLIE, GAS), (BOB, 2 * GAS), (CHARLIE, 3 * GAS)):
        ok(chain, who, contracts.command(contract, SEALED, gas))  # 1, 2, 3
    batch = CommandReports(contract, [
        CommandOutcome(1, 0, GAS // 2),
        CommandOutcome(2, 1, 3 * GAS, "too much"),  # more than its limit: skipped
        CommandOutcome(3, 2, 3 * GAS, "out of gas"),
        CommandOutcome(3, 0, 1),  # reported already: skipped
    ])
    deliver(chain, seq, C0, REPORTS_TOPIC, encode(batch))
    assert message_failures(chain) == []
    reported = events_of(chain.chain, contracts.CommandReported)
    assert [(e.index, e.status, e.gas_used) for e in reported] == [(1, 0, GAS // 2), (3, 2, 3 * GAS)]
    skipped = events_of(chain.chain, contracts.ReportSkipped)
    assert [(e.index, e.error) for e in skipped] == [(2, contracts.GasExceedsLimit.code), (3, contracts.UnknownCommand.code)]
    assert pending(chain, contract, 2) is not None and pending(chain, contract, 1) is None
    assert reserved(chain, CHARLIE) == 0 and reserved(chain, BOB) == 2 * GAS * GAS_PRICE
    assert_issuance_consistent(chain.chain)
    # From another cluster, or too many: refused whole, nothing changes.
    handler_refused_before = pending(chain, contract, 2)
    deliver(chain, seq, C1, REPORTS_TOPIC, encode(CommandReports(contract, [CommandOutcome(2, 0, 1)])))
    assert [error for _, error in message_failures(chain)] == [error_info(contracts.WrongCluster)]
    too_many = CommandReports(contract, [CommandOutcome(2, 0, 1)] * (MAX_REPORTS + 1))
    deliver(chain, seq, C0, REPORTS_TOPIC, encode(too_many))
    assert [error for _, error in message_failures(chain)] == [error_info(contracts.InvalidContractMessage)]
    assert pending(chain, contract, 2) == handler_refused_before
