"""Authorities pallet: set changes through sudo, the header digest, set ids, finality
hand-over to the new set, and refusal of invalid sets."""

import pytest

from phala.chain.consensus import CannotFinalize
from phala.chain.runtime import authorities, sudo
from phala.chain.runtime.frame import BadOrigin
from phala.core.finality import FinalityError, verify_justification
from phala.core.types import AuthoritiesChange, AuthoritySet

from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    error_info,
    events,
    events_of,
    failures,
    make_node,
    produce,
    read,
    sign,
    snapshot,
    submit_and_produce,
)


def current_set(chain) -> AuthoritySet:
    return read(chain, authorities.CurrentSet.get)


def justification(node, header):
    found = node.chain.db.justification(header.hash)
    assert found is not None
    return found


def test_genesis_set(node):
    assert current_set(node.chain) == AuthoritySet(0, [ALICE.public_key])
    header = produce(node)
    just = justification(node, header)
    assert just.set_id == 0 and [s.authority for s in just.signatures] == [ALICE.public_key]
    verify_justification(
        just, node.chain.genesis_hash, header.number, header.hash, current_set(node.chain)
    )


def test_change_announced_in_digest_and_old_set_finalizes_then_stall(node):
    chain = node.chain
    produce(node)
    header = submit_and_produce(
        node, sign(ALICE, sudo.sudo(authorities.set_authorities([BOB.public_key])), 0)
    )
    assert events_of(chain, sudo.Sudid) == [sudo.Sudid(None)]
    assert header.digest == [AuthoritiesChange(1, [BOB.public_key])]
    assert header.authorities_change() == AuthoritiesChange(1, [BOB.public_key])
    new_events = [
        (r.phase, r.event) for r in events(chain) if isinstance(r.event, authorities.NewAuthorities)
    ]
    assert new_events == [(None, authorities.NewAuthorities(1, [BOB.public_key]))]
    assert current_set(chain) == AuthoritySet(1, [BOB.public_key])
    assert read(chain, authorities.PendingChange.get) is None

    # The change block itself is finalized by the old set (Alice, set 0).
    just = justification(node, header)
    assert just.set_id == 0
    verify_justification(
        just, chain.genesis_hash, header.number, header.hash, AuthoritySet(0, [ALICE.public_key])
    )
    with pytest.raises(FinalityError):
        verify_justification(
            just, chain.genesis_hash, header.number, header.hash, current_set(chain)
        )

    # This node holds only Alice's key: it can neither author nor finalize any more.
    before = snapshot(node)
    with pytest.raises(CannotFinalize):
        node.produce_block()
    assert snapshot(node) == before
    assert chain.head == header


def test_new_set_justifies_the_next_block(tmp_path):
    node = make_node(tmp_path / "db", keys=(ALICE, BOB))
    try:
        chain = node.chain
        change = submit_and_produce(
            node, sign(ALICE, sudo.sudo(authorities.set_authorities([BOB.public_key])), 0)
        )
        assert change.author == ALICE.public_key
        assert justification(node, change).set_id == 0

        header = produce(node)
        assert header.number == change.number + 1
        assert header.author == BOB.public_key
        assert header.digest == []
        just = justification(node, header)
        assert just.set_id == 1
        assert [s.authority for s in just.signatures] == [BOB.public_key]
        verify_justification(
            just, chain.genesis_hash, header.number, header.hash, AuthoritySet(1, [BOB.public_key])
        )
        with pytest.raises(FinalityError):
            verify_justification(
                just,
                chain.genesis_hash,
                header.number,
                header.hash,
                AuthoritySet(0, [ALICE.public_key]),
            )

        # A second change moves to set 2.
        third = submit_and_produce(
            node,
            sign(
                ALICE, sudo.sudo(authorities.set_authorities([ALICE.public_key, BOB.public_key])), 1
            ),
        )
        assert third.digest == [AuthoritiesChange(2, [ALICE.public_key, BOB.public_key])]
        assert justification(node, third).set_id == 1
        fourth = produce(node)
        just = justification(node, fourth)
        assert just.set_id == 2
        assert {s.authority for s in just.signatures} == {ALICE.public_key, BOB.public_key}
    finally:
        node.close()


def test_threshold_needs_more_than_two_thirds(tmp_path):
    node = make_node(tmp_path / "db", keys=(ALICE, BOB))
    try:
        three = [ALICE.public_key, BOB.public_key, CHARLIE.public_key]
        submit_and_produce(node, sign(ALICE, sudo.sudo(authorities.set_authorities(three)), 0))
        assert current_set(node.chain) == AuthoritySet(1, three)
        assert AuthoritySet(1, three).threshold() == 3
        before = snapshot(node)
        with pytest.raises(CannotFinalize):
            node.produce_block()  # two of three keys are not enough
        assert snapshot(node) == before
    finally:
        node.close()


@pytest.mark.parametrize(
    "new_set",
    [
        [],
        [BOB.public_key, BOB.public_key],
        [i.to_bytes(32, "big") for i in range(authorities.MAX_AUTHORITIES + 1)],
    ],
    ids=["empty", "duplicates", "too-large"],
)
def test_invalid_sets_are_refused(node, new_set):
    chain = node.chain
    header = submit_and_produce(
        node, sign(ALICE, sudo.sudo(authorities.set_authorities(new_set)), 0)
    )
    assert events_of(chain, sudo.Sudid) == [sudo.Sudid(error_info(authorities.InvalidAuthoritySet))]
    assert header.digest == []
    assert current_set(chain) == AuthoritySet(0, [ALICE.public_key])
    produce(node)  # Alice still finalizes


def test_set_authorities_needs_root(node):
    header = submit_and_produce(node, sign(ALICE, authorities.set_authorities([BOB.public_key]), 0))
    assert failures(node.chain) == [(0, error_info(BadOrigin))]
    assert header.digest == []
    assert current_set(node.chain).set_id == 0


def test_one_change_per_block(node):
    chain = node.chain
    header = submit_and_produce(
        node,
        sign(ALICE, sudo.sudo(authorities.set_authorities([ALICE.public_key, BOB.public_key])), 0),
        sign(ALICE, sudo.sudo(authorities.set_authorities([BOB.public_key])), 1),
    )
    assert events_of(chain, sudo.Sudid) == [
        sudo.Sudid(None),
        sudo.Sudid(error_info(authorities.ChangePending)),
    ]
    assert header.digest == [AuthoritiesChange(1, [ALICE.public_key, BOB.public_key])]
    assert current_set(chain) == AuthoritySet(1, [ALICE.public_key, BOB.public_key])
