"""The storage changes a node records per block are exactly what a worker needs: replaying
them from block 0 (the whole genesis state) reaches every header's state root."""

from __future__ import annotations

from phala.chain.runtime import balances, system
from phala.core.trie import StateTree

from .harness import ALICE, BOB, CHARLIE, sign, submit_and_produce


def test_replaying_changes_reaches_every_state_root(node):
    chain = node.chain
    submit_and_produce(node, sign(ALICE, balances.transfer_keep_alive(BOB.public_key, 10**13), 0))
    submit_and_produce(
        node,
        sign(BOB, system.remark(b"x" * 300), 0),
        sign(CHARLIE, balances.transfer_allow_death(ALICE.public_key, 10**12), 0),
    )
    submit_and_produce(node)
    tree = StateTree()
    for number in range(chain.head.number + 1):
        changes = chain.db.changes(number)
        assert changes is not None
        if number:
            assert changes, "every block changes at least the system bookkeeping"
        assert [c.key for c in changes] == sorted(c.key for c in changes)
        tree.apply((c.key, c.value) for c in changes)
        header = chain.db.header(chain.db.hash_of(number))
        assert tree.root() == header.state_root, f"block {number}"


def test_changes_list_only_keys_whose_value_changed(node):
    chain = node.chain
    submit_and_produce(node)
    before = dict(chain.db.state_items())
    submit_and_produce(node, sign(ALICE, balances.transfer_keep_alive(BOB.public_key, 10**13), 0))
    after = dict(chain.db.state_items())
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    recorded = {c.key: c.value for c in chain.db.changes(chain.head.number)}
    assert set(recorded) == changed
    assert all(recorded[k] == after.get(k) for k in changed)
