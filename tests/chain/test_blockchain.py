"""Blockchain: restart from disk, tamper detection, and import of blocks made by another node."""

import dataclasses

import lmdb
import pytest

from phala.chain.blockchain import Blockchain, BlockError
from phala.chain.db import ChainDB, DatabaseError
from phala.chain.runtime import authorities, balances, sudo, system
from phala.core.finality import sign_vote
from phala.core.types import AuthoritySet, Justification

from .harness import (
    ALICE,
    BARE_SPEC,
    BOB,
    CHARLIE,
    DAVE,
    SPEC,
    account,
    all_accounts,
    assert_issuance_consistent,
    body,
    free,
    make_node,
    produce,
    read,
    sign,
    snapshot,
    submit_and_produce,
)


def signed_block(node, header):
    db = node.chain.db
    return header, db.body(header.hash), db.justification(header.hash)


def state(node):
    return list(node.chain.db.state_items())


# -- restart and tampering --------------------------------------------------------------------


def build_some_history(node):
    submit_and_produce(
        node,
        sign(BOB, balances.transfer_keep_alive(CHARLIE.public_key, 10**13), 0),
        sign(DAVE, system.remark(b"persist me"), 0),
    )
    produce(node)
    submit_and_produce(
        node, sign(BOB, balances.transfer_keep_alive(DAVE.public_key, 10**13), 1, tip=7)
    )


def test_restart_gives_the_same_head_and_root(tmp_path):
    path = tmp_path / "db"
    node = make_node(path)
    build_some_history(node)
    head, root, items = node.chain.head, node.chain.tree.root(), state(node)
    accounts = all_accounts(node.chain)
    node.close()

    for spec in (None, SPEC):  # the stored spec, or the same one given again
        node = make_node(path, spec=spec)
        assert node.chain.head == head
        assert node.chain.tree.root() == root == head.state_root
        assert state(node) == items
        assert all_accounts(node.chain) == accounts
        assert node.chain.spec == SPEC
        node.close()

    # The chain goes on where it stopped: nonces and the head survived.
    node = make_node(path)
    try:
        header = submit_and_produce(node, sign(BOB, system.remark(b"after restart"), 2))
        assert header.number == head.number + 1 and header.parent_hash == head.hash
        assert account(node.chain, BOB).nonce == 3
        assert_issuance_consistent(node.chain)
    finally:
        node.close()


def test_reopening_with_another_spec_is_refused(tmp_path):
    path = tmp_path / "db"
    make_node(path).close()
    db = ChainDB(path)
    try:
        with pytest.raises(DatabaseError, match="another chain"):
            Blockchain(db, BARE_SPEC)
    finally:
        db.close()


def test_empty_database_needs_a_spec(tmp_path):
    db = ChainDB(tmp_path / "empty")
    try:
        with pytest.raises(DatabaseError):
            Blockchain(db)
    finally:
        db.close()


def _edit_state(path, edit):
    env = lmdb.open(str(path), max_dbs=16)
    try:
        table = env.open_db(b"state")
        with env.begin(write=True, db=table) as txn:
            edit(txn)
    finally:
        env.close()


@pytest.mark.parametrize("how", ["change", "delete", "insert"])
def test_tampered_state_is_detected(tmp_path, how):
    path = tmp_path / "db"
    node = make_node(path)
    build_some_history(node)
    bob_key = system.Account.key(BOB.public_key)
    original = node.chain.db.state_get(bob_key)
    assert original is not None
    node.close()

    def tamper(txn):
        if how == "change":
            forged = bytearray(original)
            forged[-1] ^= 0x01
            txn.put(bob_key, bytes(forged))
        elif how == "delete":
            txn.delete(bob_key)
        else:
            txn.put(system.Account.key(b"\x42" * 32), original)

    _edit_state(path, tamper)
    db = ChainDB(path)
    try:
        with pytest.raises(DatabaseError, match="tampered"):
            Blockchain(db)
    finally:
        db.close()

    # Undo the edit: the database is accepted again, so it was the content that was checked.
    def restore(txn):
        txn.put(bob_key, original)
        txn.delete(system.Account.key(b"\x42" * 32))

    _edit_state(path, restore)
    make_node(path).close()


# -- import -----------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path):
    """Node A authors with Alice's key; node B, same spec, holds no keys and only imports."""
    a = make_node(tmp_path / "a")
    b = make_node(tmp_path / "b", keys=())
    yield a, b
    a.close()
    b.close()


def test_import_blocks_made_by_another_node(pair):
    a, b = pair
    assert a.chain.genesis_hash == b.chain.genesis_hash
    build_some_history(a)
    for number in range(1, a.chain.head.number + 1):
        header = a.chain.db.header(a.chain.db.hash_of(number))
        b.chain.import_block(*signed_block(a, header))
        assert b.chain.head == header
    assert b.chain.tree.root() == a.chain.tree.root()
    assert state(b) == state(a)
    head = a.chain.head.hash
    assert b.chain.db.body(head) == a.chain.db.body(head)
    assert b.chain.db.justification(head) == a.chain.db.justification(head)
    assert free(b.chain, DAVE) == free(a.chain, DAVE)
    assert_issuance_consistent(b.chain)


def test_import_refuses_a_block_that_does_not_extend_the_head(pair):
    a, b = pair
    first = produce(a)
    second = produce(a)
    before = snapshot(b)
    with pytest.raises(BlockError, match="extend"):
        b.chain.import_block(*signed_block(a, second))
    assert snapshot(b) == before
    b.chain.import_block(*signed_block(a, first))
    with pytest.raises(BlockError, match="extend"):
        b.chain.import_block(*signed_block(a, first))  # already imported
    b.chain.import_block(*signed_block(a, second))


def _forgeries(genesis, header, good):
    n, h = header.number, header.hash
    alice_vote = good.signatures[0]
    flipped = bytearray(alice_vote.signature)
    flipped[0] ^= 0x01
    return {
        "bad-signature": dataclasses.replace(
            good, signatures=[dataclasses.replace(alice_vote, signature=bytes(flipped))]
        ),
        "signed-by-non-authority": Justification(0, n, h, [sign_vote(BOB, genesis, 0, n, h)]),
        "no-signatures": Justification(0, n, h, []),
        "duplicate-signer": Justification(0, n, h, [alice_vote, alice_vote]),
        "wrong-set-id": Justification(1, n, h, [sign_vote(ALICE, genesis, 1, n, h)]),
        "other-genesis": Justification(0, n, h, [sign_vote(ALICE, bytes(32), 0, n, h)]),
        "other-block": Justification(0, n, bytes(32), [sign_vote(ALICE, genesis, 0, n, bytes(32))]),
        "vote-for-other-block": Justification(
            0, n, h, [sign_vote(ALICE, genesis, 0, n, bytes(32))]
        ),
    }


@pytest.mark.parametrize(
    "forgery",
    [
        "bad-signature",
        "signed-by-non-authority",
        "no-signatures",
        "duplicate-signer",
        "wrong-set-id",
        "other-genesis",
        "other-block",
        "vote-for-other-block",
    ],
)
def test_forged_justification_is_refused(pair, forgery):
    a, b = pair
    header = submit_and_produce(a, sign(BOB, system.remark(b"x"), 0))
    _, extrinsics, good = signed_block(a, header)
    forged = _forgeries(a.chain.genesis_hash, header, good)[forgery]
    before = snapshot(b)
    with pytest.raises(BlockError, match="justification"):
        b.chain.import_block(header, extrinsics, forged)
    assert snapshot(b) == before
    b.chain.import_block(header, extrinsics, good)
    assert b.chain.head == header


def _tampered_bodies(extrinsics):
    first, second = extrinsics
    return {
        "dropped": [first],
        "reordered": [second, first],
        "re-signed": [first, sign(CHARLIE, system.remark(b"two"), 0)],
        "appended": [first, second, sign(DAVE, system.remark(b"three"), 0)],
        "bad-signature": [first, second[:40] + bytes([second[40] ^ 1]) + second[41:]],
        "malformed-signer": [first, second[:2] + b"\xff" * 32 + second[34:]],
        "empty": [],
    }


@pytest.mark.parametrize(
    "tamper",
    ["dropped", "reordered", "re-signed", "appended", "bad-signature", "malformed-signer", "empty"],
)
def test_tampered_extrinsic_list_is_refused(pair, tamper):
    a, b = pair
    header = submit_and_produce(
        a, sign(BOB, system.remark(b"one"), 0), sign(CHARLIE, system.remark(b"two"), 0)
    )
    _, extrinsics, justification = signed_block(a, header)
    assert len(extrinsics) == 2
    before = snapshot(b)
    with pytest.raises(BlockError):
        b.chain.import_block(header, _tampered_bodies(extrinsics)[tamper], justification)
    assert snapshot(b) == before
    b.chain.import_block(header, extrinsics, justification)
    assert state(b) == state(a)


def _justify(node, header):
    """A genuine justification by node's keys for any header: the authority signed a lie."""
    chain = node.chain
    return node.consensus.justify(chain.genesis_hash, chain.authority_set(), header)


@pytest.mark.parametrize(
    "field", ["state_root", "extrinsics_root", "timestamp-backwards", "digest"]
)
def test_header_that_execution_does_not_reproduce_is_refused(pair, field):
    a, b = pair
    produce(a)
    b.chain.import_block(*signed_block(a, a.chain.head))
    header = submit_and_produce(a, sign(BOB, system.remark(b"x"), 0))
    extrinsics = body(a, header)
    if field == "state_root":
        forged = dataclasses.replace(header, state_root=bytes(32))
    elif field == "extrinsics_root":
        forged = dataclasses.replace(header, extrinsics_root=bytes(32))
    elif field == "timestamp-backwards":
        forged = dataclasses.replace(header, timestamp=b.chain.head.timestamp - 1)
    else:
        forged = dataclasses.replace(
            header, digest=[authorities.AuthoritiesChange(1, [BOB.public_key])]
        )
    before = snapshot(b)
    with pytest.raises(BlockError):
        b.chain.import_block(forged, extrinsics, _justify(a, forged))
    assert snapshot(b) == before
    b.chain.import_block(*signed_block(a, header))
    assert state(b) == state(a)


def test_import_follows_an_authority_change(tmp_path):
    a = make_node(tmp_path / "a", keys=(ALICE, BOB))
    b = make_node(tmp_path / "b", keys=())
    try:
        change = submit_and_produce(
            a, sign(ALICE, sudo.sudo(authorities.set_authorities([BOB.public_key])), 0)
        )
        after = produce(a)
        assert a.chain.db.justification(after.hash).set_id == 1

        b.chain.import_block(*signed_block(a, change))
        assert b.chain.authority_set() == AuthoritySet(1, [BOB.public_key])
        # The old set can no longer finalize.
        stale = Justification(
            0,
            after.number,
            after.hash,
            [sign_vote(ALICE, a.chain.genesis_hash, 0, after.number, after.hash)],
        )
        before = snapshot(b)
        with pytest.raises(BlockError, match="justification"):
            b.chain.import_block(after, body(a, after), stale)
        assert snapshot(b) == before
        b.chain.import_block(*signed_block(a, after))
        assert b.chain.head == after
        assert read(b.chain, authorities.CurrentSet.get) == AuthoritySet(1, [BOB.public_key])
    finally:
        a.close()
        b.close()
