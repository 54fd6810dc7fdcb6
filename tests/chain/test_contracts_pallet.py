"""Contracts pallet: code upload, instantiation in a cluster, commands, the fees reserved for
their gas and refunded on the workers' reports, the contract keys the cluster publishes, the
cluster origin's signatures (its current epoch key) in the mq pallet, and a contract's status:
its constructor failed, or halted by its workers and resumed by root.

Every refusal is asserted by its error (pallet index and code). Sealed payloads are just
bytes to the chain: the tests use stand-ins."""

from __future__ import annotations

import pytest

from phala.chain.runtime import balances, cluster, contracts, executive, mq
from phala.chain.runtime.contracts import GAS_PRICE, MAX_GAS_LIMIT, MAX_PAYLOAD, MAX_SALT
from phala.chain.runtime.frame import BadOrigin, Origin
from phala.chain.spec import UNIT
from phala.core.cluster import cluster_id
from phala.core.codec import encode
from phala.core.contracts import (
    COMMAND_TOPIC,
    CONTRACT_PUBKEY_TOPIC,
    HALTED_TOPIC,
    INSTANTIATE_TOPIC,
    MESSAGE_TOPIC,
    PAYOUT_TOPIC,
    REPORT_TOPIC,
    REPORTS_TOPIC,
    RESUME_TOPIC,
    ContractCommand,
    ContractInfo,
    ContractInstantiated,
    ContractPubkey,
    contract_id,
)
from phala.core.hashing import blake2_256
from phala.core.mq import (
    ClusterOrigin,
    Message,
    WorkerOrigin,
)

# The master key the cluster epoch keys of these tests derive from (the chain never sees it).
from .contracts_support import (
    ARGS,
    C0,
    C1,
    C7,
    CODE,
    CODE_HASH,
    GAS,
    POOR,
    SEALED,
    W1,
    W3,
    contract_keys,
    count,
    deliver,
    handler_refused,
    instantiate,
    ok,
    outbound_of,
    pallet_state,
    pending,
    pubkey_of,
    publish_cluster,
    refused,
    report,
    reserved,
    signer,
)
from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    account,
    assert_issuance_consistent,
    events_of,
    expect_invalid,
    failures,
    fee_of,
    free,
    head_env,
    message_failures,
    register_sim_worker,
    root,
    sign,
    submit_and_produce,
    synced,
)
from .test_gatekeeper_rotation import GK1, sent

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
