"""Contracts through the chain, in process: a gatekeeper, two workers of one cluster and an
outsider. Code is uploaded and instantiated with sealed constructor arguments; commands from
two accounts are sealed to the contract's key; both workers reach byte-identical state; the
outsider sees only ciphertext; a command copied into another account's extrinsic does not
open and changes nothing; fees are refunded down to the gas used."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from phala.chain.runtime import cluster, contracts, mq, registry, system
from phala.chain.runtime.executive import InvalidTransaction
from phala.chain.runtime.frame import RuntimeCall
from phala.client.contracts import (
    QueryAnswerError,
    new_query,
    open_answer,
    seal_command,
    seal_constructor,
    seal_query,
    unseal_for_account,
)
from phala.contracts import protocol as p
from phala.contracts.values import decode_plain, encode_plain
from phala.core.cluster import cluster_id
from phala.core.codec import encode
from phala.core.contracts import (
    COMMAND_TOPIC,
    DELIVER_TOPIC,
    PAYOUT_TOPIC,
    QUERY_EVENTS,
    QUERY_METHOD,
    QUERY_RECEIPT,
    ContractCommand,
    ContractDelivery,
    Payout,
    SignedQuery,
    contract_account,
    contract_id,
    events_aad,
    query_aad,
    query_signing_bytes,
    receipt_aad,
)
from phala.core.envelope import seal
from phala.core.hashing import blake2_256
from phala.core.keys import dev_keypair
from phala.core.mq import ContractOrigin, Message, sign_message
from phala.core.types import UnsignedExtrinsic
from phala.devnet.inprocess import Network
from phala.pruntime.checkpoint import CheckpointError, RoleState, restore, take
from phala.pruntime.queries import QueryError, QueryService
from phala.pruntime.runtime import Worker
from phala.pruntime.service import attach_roles

ALICE, BOB, CHARLIE = dev_keypair("Alice"), dev_keypair("Bob"), dev_keypair("Charlie")
CID = cluster_id(0)
TOKEN = (Path(__file__).resolve().parents[2] / "examples" / "token.py").read_bytes()
GAS = 10_000_000
UNIT = 10**12


@pytest.fixture
def net(tmp_path: Path):
    net = Network(tmp_path, [b"gk1", b"wk1", b"wk2", b"out"])
    net.launch(gatekeepers=1)
    gk, wk1, wk2, out = net.members
    net.sudo(cluster.create_cluster([wk1.identity, wk2.identity]))
    yield net
    for m in net.members:
        m.contracts.close()


def deploy(net: Network) -> bytes:
    code_hash = blake2_256(TOKEN)
    net.block((ALICE, contracts.upload_code(TOKEN)))
    epoch_keys = net.read_map(cluster.ClusterPubkeys, CID)[-1]
    contract = contract_id(ALICE.public_key, code_hash, CID, b"salt")
    args = seal_constructor(epoch_keys.ecdh, net.chain.genesis_hash, contract, ALICE, "init", [1_000])
    net.block((ALICE, contracts.instantiate(code_hash, CID, b"salt", args, GAS)))
    net.settle()
    return contract


def command(net: Network, contract: bytes, sender, method: str, args: list, gas: int = GAS) -> None:
    keys = net.read_map(contracts.ContractKeys, contract)
    payload = seal_command(keys.ecdh, net.chain.genesis_hash, contract, sender, method, args)
    net.block((sender, contracts.command(contract, payload, gas)))
    net.settle()


def receipt(member, contract: bytes, index: int):
    return member.contracts.receipts[(contract, index)]


def field(member, contract: bytes, name: str):
    """A contract field as the worker's copy of its storage holds it."""
    return decode_plain(member.contracts.contracts[contract].storage[b"\x00" + name.encode()])


def balance(member, contract: bytes, account: bytes) -> int:
    """An entry of the token's ``balances`` Mapping."""
    raw = member.contracts.contracts[contract].storage.get(b"\x01balances\x00" + encode_plain(account))
    return 0 if raw is None else decode_plain(raw)


def test_deploy_and_commands_from_two_accounts(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    assert net.read_map(contracts.ContractKeys, contract) is not None
    command(net, contract, ALICE, "transfer", [BOB.public_key, 100])
    command(net, contract, BOB, "transfer", [ALICE.public_key, 30])
    for index in (1, 2):
        assert receipt(wk1, contract, index).status == p.OK
        assert receipt(wk1, contract, index) == receipt(wk2, contract, index)
    assert wk1.contracts.state_hash(contract) == wk2.contracts.state_hash(contract)
    assert balance(wk1, contract, ALICE.public_key) == 930
    assert balance(wk1, contract, BOB.public_key) == 70
    assert wk1.contracts.contracts[contract].storage == wk2.contracts.contracts[contract].storage
    # Neither the gatekeeper nor the outsider runs it or learns anything.
    assert contract not in out.contracts.contracts and contract not in gk.contracts.contracts


def test_a_command_copied_into_another_extrinsic_does_not_open(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    command(net, contract, ALICE, "transfer", [BOB.public_key, 100])
    [sealed] = [m for m in net.sent(COMMAND_TOPIC, ContractCommand) if m.index == 1]
    before = wk1.contracts.state_hash(contract)
    # Bob copies Alice's sealed transfer into his own extrinsic.
    net.block((BOB, contracts.command(contract, sealed.payload, GAS)))
    net.settle()
    copied = receipt(wk1, contract, 2)
    assert copied.status == p.ERROR and "does not open" in copied.message
    assert wk1.contracts.state_hash(contract) == before == wk2.contracts.state_hash(contract)


def test_fees_are_refunded_down_to_the_gas_used(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    command(net, contract, ALICE, "transfer", [BOB.public_key, 100])
    reported = [e for e in net.events if isinstance(e, contracts.CommandReported)]
    assert [(e.index, e.status) for e in reported] == [(0, p.OK), (1, p.OK)]
    used = receipt(wk1, contract, 1).gas_used
    assert 0 < used < GAS
    assert reported[1].gas_used == used
    assert reported[1].refunded == (GAS - used) * contracts.GAS_PRICE
    # Nothing stays reserved once both are reported.
    assert net.read_map(system.Account, ALICE.public_key).data.reserved == 0


def test_removing_a_worker_moves_the_contract_to_the_new_epoch(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    old_keys = net.read_map(contracts.ContractKeys, contract)
    net.sudo(cluster.remove_worker(CID, wk2.identity))
    new_keys = net.read_map(contracts.ContractKeys, contract)
    assert (old_keys.epoch, new_keys.epoch) == (0, 1) and new_keys.ecdh != old_keys.ecdh
    command(net, contract, ALICE, "transfer", [BOB.public_key, 5])
    assert receipt(wk1, contract, 1).status == p.OK
    # The removed worker stopped running it and never saw the command in the clear.
    assert contract not in wk2.contracts.contracts
    assert (contract, 1) not in wk2.contracts.receipts
    reported = [e for e in net.events if isinstance(e, contracts.CommandReported) and e.index == 1]
    assert [e.status for e in reported] == [p.OK]  # signed with the new epoch's key


# -- queries ------------------------------------------------------------------------------------


def ask(net: Network, member, signer, kind: int, contract: bytes, method: str, args: list, **overrides):
    at = member.worker.chain.dispatched.number
    query, reply = new_query(kind, contract, method, args, member.identity, at)
    query = dataclasses.replace(query, **overrides)
    ecdh = net.read_map(registry.Workers, member.identity).info.ecdh  # from chain state
    sealed = seal_query(ecdh, net.chain.genesis_hash, signer, query)
    return query, reply, sealed


def answer_of(net: Network, member, query, reply, sealed):
    return open_answer(reply, net.chain.genesis_hash, query, member.queries.answer(sealed))


def test_queries_with_access_control(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    command(net, contract, ALICE, "transfer", [BOB.public_key, 100])
    query, reply, sealed = ask(net, wk1, BOB, QUERY_METHOD, contract, "balance_of", [BOB.public_key])
    answer = answer_of(net, wk1, query, reply, sealed)
    assert (answer.status, decode_plain(answer.value)) == (p.OK, 100)
    assert answer.block_number == net.chain.head.number and answer.block_hash == net.chain.head.hash
    # Alice may not read Bob's balance: the contract sees the signer.
    query, reply, sealed = ask(net, wk2, ALICE, QUERY_METHOD, contract, "balance_of", [BOB.public_key])
    refused = answer_of(net, wk2, query, reply, sealed)
    assert refused.status == p.ERROR and "only the account itself" in refused.message
    # A receipt: only the command's sender may read it.
    query, reply, sealed = ask(net, wk1, ALICE, QUERY_RECEIPT, contract, "", [1])
    raw = decode_plain(answer_of(net, wk1, query, reply, sealed).value)
    assert set(raw) == {"sealed"}  # sealed to Alice's own X25519 key, inside the answer
    with pytest.raises(QueryAnswerError):
        unseal_for_account(BOB, raw, receipt_aad(net.chain.genesis_hash, contract, 1))
    receipt_value = unseal_for_account(ALICE, raw, receipt_aad(net.chain.genesis_hash, contract, 1))
    assert receipt_value["status"] == "ok" and receipt_value["events"][0]["amount"] == 100
    query, reply, sealed = ask(net, wk1, BOB, QUERY_RECEIPT, contract, "", [1])
    assert "only the command's sender" in answer_of(net, wk1, query, reply, sealed).message


def test_replayed_expired_misaddressed_and_forged_queries_are_refused(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    query, reply, sealed = ask(net, wk1, ALICE, QUERY_METHOD, contract, "total_supply", [])
    assert answer_of(net, wk1, query, reply, sealed).status == p.OK
    with pytest.raises(QueryError, match="replayed"):
        wk1.queries.answer(sealed)
    # The nonce survives a restart of the worker's query service.
    again = QueryService(wk1.worker, wk1.contracts, wk1.path)
    with pytest.raises(QueryError, match="replayed"):
        again.answer(sealed)
    now = wk1.worker.chain.dispatched.number
    for overrides, reason in [
        ({"expiry": now - 1}, "expired"),
        ({"expiry": now + 101}, "at most 100 blocks ahead"),
        ({"min_block": now + 5}, "has not reached block"),
        ({"worker": wk2.identity}, "names another worker"),
    ]:
        _, _, bad = ask(net, wk1, ALICE, QUERY_METHOD, contract, "total_supply", [], **overrides)
        with pytest.raises(QueryError, match=reason):
            wk1.queries.answer(bad)
    # Sealed to another worker's key: does not open here.
    _, _, for_wk2 = ask(net, wk2, ALICE, QUERY_METHOD, contract, "total_supply", [])
    with pytest.raises(QueryError, match="does not open"):
        wk1.queries.answer(for_wk2)
    # A signature by someone else than the named signer.
    query, _, _ = ask(net, wk1, ALICE, QUERY_METHOD, contract, "total_supply", [])
    forged = SignedQuery(query, BOB.public_key, ALICE.sign(query_signing_bytes(net.chain.genesis_hash, query)))
    ecdh = net.read_map(registry.Workers, wk1.identity).info.ecdh
    sealed_forged = seal(ecdh, encode(forged), query_aad(net.chain.genesis_hash)).to_bytes()
    with pytest.raises(QueryError, match="bad signature"):
        wk1.queries.answer(sealed_forged)


def test_a_restarted_worker_catches_up_to_the_same_state(net: Network):
    """wk2 checkpoints, more commands run, wk2 crashes and resumes from its checkpoint: its
    contract (state included) comes back from the sealed checkpoint, it replays the blocks
    since, and reaches wk1's state hash."""
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    command(net, contract, ALICE, "transfer", [BOB.public_key, 100])
    wk2.checkpoint()
    command(net, contract, BOB, "transfer", [ALICE.public_key, 7])
    command(net, contract, ALICE, "approve", [BOB.public_key, 3])
    wk2.contracts.close()
    wk2.restart(net)
    assert wk2.contracts.state_hash(contract) != wk1.contracts.state_hash(contract)  # as of the checkpoint
    net.sync()
    assert wk2.contracts.state_hash(contract) == wk1.contracts.state_hash(contract)
    assert receipt(wk2, contract, 3) == receipt(wk1, contract, 3)
    command(net, contract, BOB, "transfer", [ALICE.public_key, 1])
    assert wk2.contracts.state_hash(contract) == wk1.contracts.state_hash(contract)


# -- balance and messages ---------------------------------------------------------------------

INBOX = b"""
from phala.contracts.sdk import AccountId, Contract, command, constructor, handler, query


class Inbox(Contract):
    @constructor
    def init(self, ctx):
        self.received = []

    @command
    def ping(self, ctx, target: AccountId, text: str) -> bool:
        ctx.send(target, {"text": text, "from_sender": ctx.sender})
        return True

    @handler
    def on_message(self, ctx, sender: AccountId, message: dict) -> None:
        self.received.append([sender, message["text"]])

    @query
    def inbox(self, ctx) -> list:
        return self.received
"""


def deploy_code(net: Network, code: bytes, salt: bytes, args: list) -> bytes:
    code_hash = blake2_256(code)
    net.block((ALICE, contracts.upload_code(code)))
    epoch_keys = net.read_map(cluster.ClusterPubkeys, CID)[-1]
    contract = contract_id(ALICE.public_key, code_hash, CID, salt)
    sealed = seal_constructor(epoch_keys.ecdh, net.chain.genesis_hash, contract, ALICE, "init", args)
    net.block((ALICE, contracts.instantiate(code_hash, CID, salt, sealed, GAS)))
    net.settle()
    return contract


def free(net: Network, who: bytes) -> int:
    return net.read_map(system.Account, who).data.free


def test_deposit_then_withdraw_through_the_contract(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    account = contract_account(contract)
    net.block((BOB, contracts.deposit(contract, 5 * UNIT)))
    net.settle()
    assert free(net, account) == 5 * UNIT
    assert balance(wk1, contract, BOB.public_key) == 5 * UNIT  # the deposit handler credited Bob
    before = free(net, BOB.public_key)
    command(net, contract, BOB, "withdraw", [2 * UNIT])
    paid = [e for e in net.events if isinstance(e, contracts.PaidOut)]
    assert [(e.contract, e.to, e.amount) for e in paid] == [(contract, BOB.public_key, 2 * UNIT)]
    assert free(net, account) == 3 * UNIT
    assert free(net, BOB.public_key) > before  # the payout, less the command's fees
    assert wk1.contracts.state_hash(contract) == wk2.contracts.state_hash(contract)


def test_a_payout_signed_by_anyone_but_the_contract_key_is_refused(net: Network):
    contract = deploy(net)
    net.block((BOB, contracts.deposit(contract, 5 * UNIT)))
    forged = sign_message(BOB, net.chain.genesis_hash,
                          Message(ContractOrigin(contract), PAYOUT_TOPIC, encode(Payout(BOB.public_key, UNIT))), 0)
    with pytest.raises(InvalidTransaction) as info:
        net.node.submit(UnsignedExtrinsic(encode(mq.sync_offchain_message(forged), RuntimeCall)).encode())
    assert info.value.kind == "BadProof"


def test_contracts_message_each_other_through_the_chain(net: Network):
    gk, wk1, wk2, out = net.members
    first = deploy_code(net, INBOX, b"a", [])
    second = deploy_code(net, INBOX, b"b", [])
    command(net, first, ALICE, "ping", [second, "hello"])
    sent = [e for e in net.events if isinstance(e, contracts.MessageSent)]
    assert [(e.source, e.to) for e in sent] == [(first, second)]
    for worker in (wk1, wk2):
        inbox = field(worker, second, "received")
        assert inbox == [[first, "hello"]]
    assert wk1.contracts.state_hash(second) == wk2.contracts.state_hash(second)
    # On chain the message is only ciphertext.
    [delivered] = net.sent(DELIVER_TOPIC, ContractDelivery)
    assert b"hello" not in delivered.payload


AUCTION = (Path(__file__).resolve().parents[2] / "examples" / "auction.py").read_bytes()
VOTING = (Path(__file__).resolve().parents[2] / "examples" / "voting.py").read_bytes()


def test_a_copied_sealed_bid_is_refused(net: Network):
    """Charlie copies Bob's sealed bid into his own extrinsic: it does not open (it names Bob
    as the sender), so Charlie learns nothing and bids nothing; Bob's bid stands."""
    gk, wk1, wk2, out = net.members
    auction = deploy_code(net, AUCTION, b"auction", ["vase", net.chain.head.number + 30])
    command(net, auction, BOB, "bid", [40])
    [bobs] = [m for m in net.sent(COMMAND_TOPIC, ContractCommand) if m.contract == auction and m.index == 1]
    net.block((CHARLIE, contracts.command(auction, bobs.payload, GAS)))
    net.settle()
    copied = receipt(wk1, auction, 2)
    assert copied.status == p.ERROR and "does not open" in copied.message
    assert field(wk1, auction, "bids") == {BOB.public_key: 40}
    query, reply, sealed = ask(net, wk2, CHARLIE, QUERY_METHOD, auction, "my_bid", [])
    assert decode_plain(answer_of(net, wk2, query, reply, sealed).value) == 0


def test_a_private_vote_through_the_chain(net: Network):
    gk, wk1, wk2, out = net.members
    deadline = net.chain.head.number + 12
    vote = deploy_code(net, VOTING, b"vote", ["Ship it?", ["yes", "no"], deadline])
    command(net, vote, ALICE, "vote", ["yes"])
    command(net, vote, BOB, "vote", ["no"])
    query, reply, sealed = ask(net, wk1, ALICE, QUERY_METHOD, vote, "tally", [])
    assert "secret until the deadline" in answer_of(net, wk1, query, reply, sealed).message
    while net.chain.head.number < deadline:
        net.block()
    query, reply, sealed = ask(net, wk1, ALICE, QUERY_METHOD, vote, "tally", [])
    assert decode_plain(answer_of(net, wk1, query, reply, sealed).value) == {"yes": 1, "no": 1}
    assert wk1.contracts.state_hash(vote) == wk2.contracts.state_hash(vote)


LOOPER = b"""
from phala.contracts.sdk import Contract, command, constructor


class Looper(Contract):
    @constructor
    def init(self, ctx):
        self.n = 0

    @command
    def spin(self, ctx) -> int:
        while True:
            self.n = self.n + 1
"""


def test_a_looping_contract_is_stopped_by_gas_and_the_token_carries_on(net: Network):
    gk, wk1, wk2, out = net.members
    token = deploy(net)
    looper = deploy_code(net, LOOPER, b"loop", [])
    command(net, looper, ALICE, "spin", [])
    spun = receipt(wk1, looper, 1)
    assert (spun.status, spun.gas_used) == (p.OUT_OF_GAS, GAS)
    assert receipt(wk2, looper, 1) == spun
    assert field(wk1, looper, "n") == 0  # reverted
    command(net, token, ALICE, "transfer", [BOB.public_key, 1])
    assert receipt(wk1, token, 1).status == p.OK


def test_the_watchdog_halts_a_contract_instead_of_recording_a_result(net: Network):
    """If a call runs past the watchdog anyway (here: a watchdog far shorter than the gas
    allows), its outcome is not deterministic: the worker stops serving the contract, raises
    an alarm and reports nothing for that command."""
    gk, wk1, wk2, out = net.members
    looper = deploy_code(net, LOOPER, b"loop", [])
    wk1.contracts.executor.timeout = 0.001
    command(net, looper, ALICE, "spin", [], gas=contracts.MAX_GAS_LIMIT)
    assert wk1.contracts.contracts[looper].halted is not None
    assert wk1.contracts.executor is None  # killed; the next call starts a fresh one
    assert (looper, 1) not in wk1.contracts.receipts
    assert wk1.worker.info()["contracts"]["0x" + looper.hex()]["halted"]
    # The other worker, unharmed, reported it: the chain settled the fee.
    assert receipt(wk2, looper, 1).status == p.OUT_OF_GAS
    assert net.read_map(contracts.PendingFees, (looper, 1)) is None
    # The halting worker told the chain as itself (the others' reports keep the cluster's sequence).
    status = net.read_map(contracts.ContractStatus, looper)
    assert type(status).__name__ == "Halted" and "watchdog" in status.reason


def test_events_reach_the_accounts_concerned_and_only_them(net: Network):
    """The token's transfer emits its event for the sender and the receiver: each reads it
    with a signed query (the answer sealed to them); a third account reads nothing."""
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    command(net, contract, ALICE, "transfer", [BOB.public_key, 9])
    expected = {"event": "transfer", "from": ALICE.public_key, "to": BOB.public_key, "amount": 9}
    for who in (ALICE, BOB):
        query, reply, sealed = ask(net, wk1, who, QUERY_EVENTS, contract, "", [0])
        raw = decode_plain(answer_of(net, wk1, query, reply, sealed).value)
        [seen] = unseal_for_account(who, raw, events_aad(net.chain.genesis_hash, contract, who.public_key))
        assert seen["event"] == expected and seen["index"] == 1
    # Alice sent a command, so her events come sealed to her own key; Bob never did.
    query, reply, sealed = ask(net, wk1, ALICE, QUERY_EVENTS, contract, "", [0])
    assert set(decode_plain(answer_of(net, wk1, query, reply, sealed).value)) == {"sealed"}
    query, reply, sealed = ask(net, wk1, CHARLIE, QUERY_EVENTS, contract, "", [0])
    assert decode_plain(answer_of(net, wk1, query, reply, sealed).value) == []


def test_a_checkpoint_whose_contract_part_does_not_decode_changes_nothing(net: Network):
    """Written by another version, say: restoring it fails before the worker changes, so the
    pRuntime syncs from genesis instead (which rebuilds its contracts from the chain)."""
    gk, wk1, wk2, out = net.members
    deploy(net)
    snapshot = dataclasses.replace(take(wk1.worker), roles=[RoleState("contracts", b"\xff")])
    fresh = Worker(wk1.worker.identity, wk1.enclave, net.chain.genesis_hash)
    roles = attach_roles(fresh, wk1.path / "fresh", wk1.enclave.seal, wk1.enclave.unseal)
    with pytest.raises(CheckpointError, match="contracts part"):
        restore(fresh, snapshot)
    assert fresh.chain is None and roles.contracts.contracts == {}


def test_the_constructor_has_a_receipt(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    query, reply, sealed = ask(net, wk1, ALICE, QUERY_RECEIPT, contract, "", [0])
    raw = decode_plain(answer_of(net, wk1, query, reply, sealed).value)
    assert unseal_for_account(ALICE, raw, receipt_aad(net.chain.genesis_hash, contract, 0))["status"] == "ok"


def test_a_contract_that_cannot_be_installed_mid_block_costs_the_others_nothing(net: Network, monkeypatch):
    """A block's calls are handed to the executor as they are opened. If one contract cannot
    be installed midway (here: its code refused on this worker), the worker starts over from a
    fresh executor, each contract's block by itself: the others' outcomes are exactly those
    of a worker that had no trouble, then and in the next block (no outcome of the abandoned
    hand-over is taken for a later call)."""
    gk, wk1, wk2, out = net.members
    token = deploy(net)
    other = deploy_code(net, TOKEN, b"other", [1_000])
    broken = wk1.contracts.contracts[other]
    broken.installed = False  # wk1 must install it again at its next call, and will be refused
    real_install = type(wk1.contracts.executor).install

    def install(executor, contract, source):
        if contract == other:
            return p.Loaded(p.REFUSED, "refused for the test", 1, b"")
        return real_install(executor, contract, source)

    monkeypatch.setattr(type(wk1.contracts.executor), "install", install)
    keys = {c: net.read_map(contracts.ContractKeys, c) for c in (token, other)}

    def sealed(contract, to, amount):
        payload = seal_command(keys[contract].ecdh, net.chain.genesis_hash, contract, ALICE, "transfer", [to, amount])
        return ALICE, contracts.command(contract, payload, GAS)

    net.block(sealed(token, BOB.public_key, 1), sealed(other, BOB.public_key, 2), sealed(token, BOB.public_key, 3))
    net.settle()
    monkeypatch.undo()
    command(net, token, ALICE, "transfer", [BOB.public_key, 4])
    for index in (1, 2, 3):
        assert receipt(wk1, token, index) == receipt(wk2, token, index)
        assert receipt(wk1, token, index).status == p.OK
    assert wk1.contracts.state_hash(token) == wk2.contracts.state_hash(token)
    assert wk1.contracts.contracts[other].halted is not None  # refused here: this worker stopped serving it
    assert receipt(wk2, other, 1).status == p.OK  # the other worker ran it
