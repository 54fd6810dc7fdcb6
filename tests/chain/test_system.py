"""System pallet: remarks, block hash history, parent hash and number, randomness, events."""

import pytest

from phala.chain.runtime import balances, sudo, system
from phala.chain.runtime.authorities import NewAuthorities, set_authorities
from phala.chain.runtime.frame import BadOrigin, Origin
from phala.core.hashing import blake2_256

from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    assert_issuance_consistent,
    error_info,
    events,
    events_of,
    failures,
    fee_of,
    free,
    head_env,
    produce,
    read,
    sign,
    submit_and_produce,
)


def test_remark_emits_the_hash_of_its_data(node):
    data = b"confidential contracts, public remark"
    raw = sign(BOB, system.remark(data), 0)
    before = free(node.chain, BOB)
    submit_and_produce(node, raw)
    assert events_of(node.chain, system.Remarked) == [
        system.Remarked(BOB.public_key, blake2_256(data))
    ]
    assert events_of(node.chain, system.ExtrinsicSuccess) == [system.ExtrinsicSuccess()]
    assert free(node.chain, BOB) == before - fee_of(raw)


def test_remark_too_long_fails_the_call_but_keeps_the_fee(node, monkeypatch):
    # At the real limit (128 KiB) an extrinsic carrying the remark is already larger than
    # MAX_EXTRINSIC_SIZE, so the call-level check is driven with a lowered limit.
    monkeypatch.setattr(system, "MAX_REMARK", 16)
    ok = sign(BOB, system.remark(b"x" * 16), 0)
    too_long = sign(BOB, system.remark(b"x" * 17), 1)
    before = free(node.chain, BOB)
    submit_and_produce(node, ok, too_long)
    assert failures(node.chain) == [(1, error_info(system.RemarkTooLong))]
    assert [r.phase for r in events(node.chain) if isinstance(r.event, system.Remarked)] == [0]
    # Both fees are kept and both nonces used.
    assert free(node.chain, BOB) == before - fee_of(ok) - fee_of(too_long)
    assert read(node.chain, lambda st: system.Account.get(st, BOB.public_key).nonce) == 2


def test_remark_limit_at_dispatch(node):
    with head_env(node.chain) as env:
        system.remark(b"x" * system.MAX_REMARK).dispatch(env, Origin(BOB.public_key))
        with pytest.raises(system.RemarkTooLong):
            system.remark(b"x" * (system.MAX_REMARK + 1)).dispatch(env, Origin(BOB.public_key))
        with pytest.raises(BadOrigin):
            system.remark(b"root has no account").dispatch(env, Origin(None))


def test_number_and_parent_hash_follow_the_chain(node):
    chain = node.chain
    assert read(chain, system.Number.get) == 0
    previous = chain.head.hash
    for n in range(1, 5):
        header = produce(node)
        assert header.number == n and header.parent_hash == previous
        assert read(chain, system.Number.get) == n
        assert read(chain, system.ParentHash.get) == previous
        previous = header.hash


def test_block_hash_history_is_kept(node):
    hashes = [node.chain.head.hash] + [produce(node).hash for _ in range(6)]
    stored = read(node.chain, lambda st: dict(system.BlockHash.items(st)))
    # Block n records block n-1's hash, so the head's own hash is not stored yet.
    assert stored == {n: hashes[n] for n in range(6)}
    for n in range(6):
        assert node.chain.db.hash_of(n) == hashes[n]


def test_block_hash_history_is_pruned_but_genesis_stays(node, monkeypatch):
    monkeypatch.setattr(system, "BLOCK_HASH_COUNT", 3)
    hashes = [node.chain.head.hash] + [produce(node).hash for _ in range(8)]
    stored = read(node.chain, lambda st: dict(system.BlockHash.items(st)))
    # At block 8: the last three (5, 6, 7) and genesis, which immortal extrinsics sign over.
    assert stored == {0: hashes[0], 5: hashes[5], 6: hashes[6], 7: hashes[7]}


def test_randomness_seed_changes_every_block(node):
    seeds = [read(node.chain, system.RandomnessSeed.get)]
    for _ in range(5):
        parent = node.chain.head.hash
        produce(node)
        seed = read(node.chain, system.RandomnessSeed.get)
        assert seed == blake2_256(seeds[-1] + parent)
        seeds.append(seed)
    assert len(set(seeds)) == len(seeds)


def test_events_are_stored_per_block_with_their_phase(node):
    remark = sign(BOB, system.remark(b"one"), 0)
    transfer = sign(CHARLIE, balances.transfer_keep_alive(BOB.public_key, 10**12), 0)
    # A finalization event: re-setting the same authority set announces it in on_finalize.
    change = sign(ALICE, sudo.sudo(set_authorities([ALICE.public_key])), 0)
    submit_and_produce(node, remark, transfer, change)
    records = events(node.chain)
    by_phase = {}
    for record in records:
        by_phase.setdefault(record.phase, []).append(type(record.event))
    assert by_phase[0] == [balances.TransactionFeePaid, system.Remarked, system.ExtrinsicSuccess]
    assert by_phase[1] == [balances.TransactionFeePaid, balances.Transfer, system.ExtrinsicSuccess]
    assert by_phase[2] == [balances.TransactionFeePaid, sudo.Sudid, system.ExtrinsicSuccess]
    assert by_phase[None] == [NewAuthorities]
    # Phases appear in order: extrinsics first, finalization last.
    assert [r.phase for r in records] == sorted(
        (r.phase for r in records), key=lambda p: float("inf") if p is None else p
    )
    assert_issuance_consistent(node.chain)

    # The next block starts a fresh list: events are per block, not accumulated.
    produce(node)
    assert events(node.chain) == []
    submit_and_produce(node, sign(BOB, system.remark(b"two"), 1))
    assert events_of(node.chain, system.Remarked) == [
        system.Remarked(BOB.public_key, blake2_256(b"two"))
    ]
    assert {r.phase for r in events(node.chain)} == {0}
