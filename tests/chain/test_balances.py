"""Balances pallet: transfers, the existential deposit, reaping, fees and tips, total issuance,
reserves and locks, and the root-only force_set_balance."""

import pytest

from phala.chain.runtime import balances, sudo, system
from phala.chain.runtime.frame import BadOrigin

from .harness import (
    ALICE,
    BARE_SPEC,
    BOB,
    CHARLIE,
    DAVE,
    ED,
    GENESIS,
    INITIAL,
    NOBODY,
    PARAMS,
    account,
    account_record,
    assert_issuance_consistent,
    body,
    error_info,
    events,
    events_of,
    expect_invalid,
    failures,
    fee_of,
    free,
    head_env,
    make_node,
    run_in_block,
    sign,
    submit_and_produce,
    total_issuance,
)

UNIT = 10**12
TREASURY = balances.TREASURY


def event_types(chain):
    return [type(r.event) for r in events(chain)]


# -- transfers --------------------------------------------------------------------------------


def test_transfer_allow_death_creates_the_receiver(node):
    chain = node.chain
    amount = 3 * ED
    raw = sign(BOB, balances.transfer_allow_death(NOBODY.public_key, amount), 0)
    issuance = total_issuance(chain)
    submit_and_produce(node, raw)
    assert failures(chain) == []
    assert events_of(chain, system.NewAccount) == [system.NewAccount(NOBODY.public_key)]
    assert events_of(chain, balances.Endowed) == [balances.Endowed(NOBODY.public_key, amount)]
    assert events_of(chain, balances.Transfer) == [
        balances.Transfer(BOB.public_key, NOBODY.public_key, amount)
    ]
    assert free(chain, NOBODY) == amount
    assert account(chain, NOBODY).providers == 1
    assert free(chain, BOB) == INITIAL - amount - fee_of(raw)
    assert total_issuance(chain) == issuance  # the fee moved to the treasury
    assert_issuance_consistent(chain)


def test_transfer_below_existential_deposit_to_a_new_account_fails(node):
    chain = node.chain
    raw = sign(BOB, balances.transfer_allow_death(NOBODY.public_key, ED - 1), 0)
    submit_and_produce(node, raw)
    assert failures(chain) == [(0, error_info(balances.ExistentialDeposit))]
    assert account_record(chain, NOBODY) is None
    assert free(chain, BOB) == INITIAL - fee_of(raw)
    # An existing account may receive less than the ED.
    raw = sign(BOB, balances.transfer_allow_death(CHARLIE.public_key, 1), 1)
    submit_and_produce(node, raw)
    assert failures(chain) == []
    assert free(chain, CHARLIE) == INITIAL + 1
    assert_issuance_consistent(chain)


def test_transfer_more_than_free_fails(node):
    raw = sign(BOB, balances.transfer_allow_death(CHARLIE.public_key, INITIAL), 0)
    submit_and_produce(node, raw)
    assert failures(node.chain) == [(0, error_info(balances.InsufficientBalance))]
    assert free(node.chain, CHARLIE) == INITIAL
    assert free(node.chain, BOB) == INITIAL - fee_of(raw)


def _draining(keypair, dest, nonce, balance, leave, keep_alive):
    """A transfer that leaves ``leave`` after its own fee, and that fee."""
    call_type = balances.transfer_keep_alive if keep_alive else balances.transfer_allow_death
    probe = sign(keypair, call_type(dest, balance), nonce)
    fee = fee_of(probe)
    raw = sign(keypair, call_type(dest, balance - fee - leave), nonce)
    assert len(raw) == len(probe)  # same compact width: the fee is exact
    return raw, fee


def test_transfer_keep_alive_refuses_to_kill_the_sender(node):
    chain = node.chain
    raw, fee = _draining(BOB, CHARLIE.public_key, 0, INITIAL, ED - 1, keep_alive=True)
    submit_and_produce(node, raw)
    assert failures(chain) == [(0, error_info(balances.KeepAlive))]
    assert free(chain, BOB) == INITIAL - fee
    assert free(chain, CHARLIE) == INITIAL
    # Leaving exactly the ED is allowed.
    raw, fee2 = _draining(BOB, CHARLIE.public_key, 1, INITIAL - fee, ED, keep_alive=True)
    submit_and_produce(node, raw)
    assert failures(chain) == []
    assert free(chain, BOB) == ED
    assert account(chain, BOB).providers == 1
    assert_issuance_consistent(chain)


def test_reaping_burns_the_dust_and_the_nonce_survives(node):
    chain = node.chain
    dust = 5
    raw, fee = _draining(BOB, ALICE.public_key, 0, INITIAL, dust, keep_alive=False)
    issuance = total_issuance(chain)
    submit_and_produce(node, raw)
    assert failures(chain) == []
    assert event_types(chain) == [
        balances.TransactionFeePaid,
        balances.DustLost,
        system.KilledAccount,
        balances.Transfer,
        system.ExtrinsicSuccess,
    ]
    assert events_of(chain, balances.DustLost) == [balances.DustLost(BOB.public_key, dust)]
    assert events_of(chain, system.KilledAccount) == [system.KilledAccount(BOB.public_key)]
    # The fee went to the treasury; only the dust left circulation.
    assert total_issuance(chain) == issuance - dust
    assert_issuance_consistent(chain)
    # A tombstone: no balance, no provider, but the nonce.
    assert account_record(chain, BOB) == system.AccountInfo(nonce=1, consumers=0, providers=0)

    # Refund Bob: the account comes back with its old nonce.
    submit_and_produce(node, sign(ALICE, balances.transfer_allow_death(BOB.public_key, 10 * ED), 0))
    assert events_of(chain, system.NewAccount) == [system.NewAccount(BOB.public_key)]
    assert account(chain, BOB).nonce == 1
    assert free(chain, BOB) == 10 * ED

    # Bob's old extrinsic is signed correctly and could pay its fee now: only the kept nonce
    # stops the replay.
    expect_invalid(node, raw, "Stale")
    submit_and_produce(node, sign(BOB, system.remark(b"still me"), 1))
    assert failures(chain) == [] and account(chain, BOB).nonce == 2
    assert_issuance_consistent(chain)


def test_fee_can_reap_the_payer(node):
    """An account paying its whole usable balance as fee is reaped; its call still runs."""
    chain = node.chain
    # Fund a fresh account with exactly the ED: after any fee it is below the ED.
    submit_and_produce(node, sign(ALICE, balances.transfer_allow_death(NOBODY.public_key, ED), 0))
    raw = sign(NOBODY, system.remark(b"last words"), 0)
    submit_and_produce(node, raw)
    assert events_of(chain, system.KilledAccount) == [system.KilledAccount(NOBODY.public_key)]
    assert events_of(chain, balances.DustLost) == [
        balances.DustLost(NOBODY.public_key, ED - fee_of(raw))
    ]
    assert len(events_of(chain, system.Remarked)) == 1
    assert account_record(chain, NOBODY) == system.AccountInfo(nonce=1)
    assert_issuance_consistent(chain)


# -- fees and tips ----------------------------------------------------------------------------


def test_fees_go_to_the_treasury_and_tips_to_the_author(node):
    chain = node.chain
    amount, tip = 7 * UNIT, 3 * UNIT
    transfer = sign(BOB, balances.transfer_keep_alive(CHARLIE.public_key, amount), 0, tip=tip)
    remark = sign(DAVE, system.remark(b"z" * 1000), 0)
    treasury, issuance = free(chain, TREASURY), total_issuance(chain)
    alice = free(chain, ALICE)
    submit_and_produce(node, transfer, remark)
    paid = events_of(chain, balances.TransactionFeePaid)
    assert paid == [
        balances.TransactionFeePaid(BOB.public_key, fee_of(transfer), tip),
        balances.TransactionFeePaid(DAVE.public_key, fee_of(remark), 0),
    ]
    # fee = base + per byte of the whole extrinsic.
    assert paid[1].fee == PARAMS.base_fee + PARAMS.byte_fee * len(remark)
    assert paid[1].fee > PARAMS.base_fee + 1000 * PARAMS.byte_fee
    assert free(chain, BOB) == INITIAL - amount - fee_of(transfer) - tip
    assert free(chain, CHARLIE) == INITIAL + amount
    assert free(chain, DAVE) == INITIAL - fee_of(remark)
    assert free(chain, TREASURY) == treasury + fee_of(transfer) + fee_of(remark)
    assert free(chain, ALICE) == alice + tip  # Alice authored the block
    assert chain.head.author == ALICE.public_key
    assert total_issuance(chain) == issuance
    assert_issuance_consistent(chain)


def test_fee_is_kept_when_the_call_fails(node):
    chain = node.chain
    raw = sign(BOB, balances.force_set_balance(BOB.public_key, 10**30), 0, tip=5)
    treasury = free(chain, TREASURY)
    submit_and_produce(node, raw)
    assert failures(chain) == [(0, error_info(BadOrigin))]
    assert free(chain, BOB) == INITIAL - fee_of(raw) - 5
    assert free(chain, TREASURY) == treasury + fee_of(raw)
    assert_issuance_consistent(chain)


def test_treasury_is_endowed_at_genesis_and_keeps_fees_below_the_ed(tmp_path):
    """With the bare dev spec the treasury is endowed with the ED at genesis, so a block's
    fees below the ED are credited to it, not burnt, and nothing is minted."""
    node = make_node(tmp_path / "bare", spec=BARE_SPEC)
    try:
        chain = node.chain
        genesis = chain.genesis_hash
        assert genesis != GENESIS
        assert free(chain, TREASURY) == ED
        issuance = total_issuance(chain)
        raws = [sign(BOB, system.remark(b"r"), n, genesis=genesis) for n in range(3)]
        submit_and_produce(node, *raws)
        fees = sum(fee_of(r) for r in raws)
        assert fees < ED
        assert free(chain, TREASURY) == ED + fees
        assert total_issuance(chain) == issuance
        assert_issuance_consistent(chain)
    finally:
        node.close()


def test_total_issuance_matches_accounts_through_a_busy_history(node):
    chain = node.chain
    assert_issuance_consistent(chain)
    steps = [
        [
            sign(BOB, balances.transfer_allow_death(NOBODY.public_key, 2 * ED), 0, tip=11),
            sign(CHARLIE, balances.transfer_keep_alive(DAVE.public_key, 5 * UNIT), 0),
        ],
        [
            sign(ALICE, sudo.sudo(balances.force_set_balance(DAVE.public_key, 3 * INITIAL)), 0),
            _draining(NOBODY, BOB.public_key, 0, 2 * ED, 0, keep_alive=False)[0],
        ],
        [
            sign(ALICE, sudo.sudo(balances.force_set_balance(CHARLIE.public_key, 0)), 1),
            sign(BOB, balances.transfer_allow_death(NOBODY.public_key, ED - 1), 1),  # fails
        ],
        [],
    ]
    expected_failures = [[], [], [(1, error_info(balances.ExistentialDeposit))], []]
    for step, expected in zip(steps, expected_failures, strict=True):
        submit_and_produce(node, *step)
        assert len(body(node)) == len(step)
        assert failures(chain) == expected
        assert_issuance_consistent(chain)
    assert account_record(chain, NOBODY) == system.AccountInfo(nonce=1)
    assert account_record(chain, CHARLIE) == system.AccountInfo(nonce=1)
    assert free(chain, DAVE) == 3 * INITIAL


# -- force_set_balance ------------------------------------------------------------------------


def test_force_set_balance_needs_root(node):
    chain = node.chain
    issuance = total_issuance(chain)
    raw = sign(ALICE, balances.force_set_balance(BOB.public_key, 1), 0)
    submit_and_produce(node, raw)
    assert failures(chain) == [(0, error_info(BadOrigin))]
    assert free(chain, BOB) == INITIAL
    assert total_issuance(chain) == issuance

    raw = sign(ALICE, sudo.sudo(balances.force_set_balance(BOB.public_key, 5 * INITIAL)), 1)
    submit_and_produce(node, raw)
    assert events_of(chain, balances.BalanceSet) == [
        balances.BalanceSet(BOB.public_key, 5 * INITIAL)
    ]
    assert free(chain, BOB) == 5 * INITIAL
    assert total_issuance(chain) == issuance + 4 * INITIAL
    assert_issuance_consistent(chain)

    raw = sign(ALICE, sudo.sudo(balances.force_set_balance(BOB.public_key, 0)), 2)
    submit_and_produce(node, raw)
    assert events_of(chain, system.KilledAccount) == [system.KilledAccount(BOB.public_key)]
    assert account_record(chain, BOB) is None  # never sent: nothing to keep
    assert total_issuance(chain) == issuance - INITIAL
    assert_issuance_consistent(chain)


# -- reserves ---------------------------------------------------------------------------------


def test_reserve_and_unreserve(node, monkeypatch):
    chain = node.chain
    bob = BOB.public_key
    issuance = total_issuance(chain)
    run_in_block(monkeypatch, node, lambda env: balances.reserve(env, bob, 100 * UNIT))
    assert account(chain, BOB).data == system.AccountData(INITIAL - 100 * UNIT, 100 * UNIT, 0)
    assert [(r.phase, r.event) for r in events(chain)] == [
        (None, balances.Reserved(bob, 100 * UNIT))
    ]

    left = []
    run_in_block(
        monkeypatch, node, lambda env: left.append(balances.unreserve(env, bob, 30 * UNIT))
    )
    assert left == [0]
    assert account(chain, BOB).data == system.AccountData(INITIAL - 70 * UNIT, 70 * UNIT, 0)
    assert events_of(chain, balances.Unreserved) == [balances.Unreserved(bob, 30 * UNIT)]

    run_in_block(
        monkeypatch, node, lambda env: left.append(balances.unreserve(env, bob, 100 * UNIT))
    )
    assert left[-1] == 30 * UNIT  # only 70 were reserved
    assert account(chain, BOB).data == system.AccountData(INITIAL, 0, 0)
    assert total_issuance(chain) == issuance
    assert_issuance_consistent(chain)


def test_reserve_more_than_usable_is_refused(node):
    with head_env(node.chain) as env:
        with pytest.raises(balances.InsufficientBalance):
            balances.reserve(env, BOB.public_key, INITIAL + 1)
        balances.set_lock(env, b"staking\0", BOB.public_key, INITIAL - 10)
        with pytest.raises(balances.InsufficientBalance):
            balances.reserve(env, BOB.public_key, 11)
        balances.reserve(env, BOB.public_key, 10)
        assert balances.usable_balance(env, BOB.public_key) == 0


def test_slash_reserved_burns(node, monkeypatch):
    chain = node.chain
    bob = BOB.public_key
    issuance = total_issuance(chain)
    left = []

    def hook(env):
        balances.reserve(env, bob, 50 * UNIT)
        left.append(balances.slash_reserved(env, bob, 20 * UNIT))
        left.append(balances.slash_reserved(env, bob, 100 * UNIT))

    run_in_block(monkeypatch, node, hook)
    assert left == [0, 70 * UNIT]
    assert events_of(chain, balances.Slashed) == [
        balances.Slashed(bob, 20 * UNIT),
        balances.Slashed(bob, 30 * UNIT),
    ]
    assert account(chain, BOB).data == system.AccountData(INITIAL - 50 * UNIT, 0, 0)
    assert total_issuance(chain) == issuance - 50 * UNIT
    assert_issuance_consistent(chain)


def test_reserved_balance_keeps_an_account_alive_until_slashed(node, monkeypatch):
    chain = node.chain
    who = NOBODY.public_key

    def hook(env):
        balances.deposit(env, who, 2 * ED)
        balances.reserve(env, who, 2 * ED)

    run_in_block(monkeypatch, node, hook)
    assert account(chain, NOBODY).data == system.AccountData(0, 2 * ED, 0)
    assert account(chain, NOBODY).providers == 1
    issuance = total_issuance(chain)
    run_in_block(monkeypatch, node, lambda env: balances.slash_reserved(env, who, ED + 1))
    # ED - 1 remains: below the ED, so it is dust.
    assert events_of(chain, balances.DustLost) == [balances.DustLost(who, ED - 1)]
    assert events_of(chain, system.KilledAccount) == [system.KilledAccount(who)]
    assert account_record(chain, NOBODY) is None
    assert total_issuance(chain) == issuance - 2 * ED
    assert_issuance_consistent(chain)


def test_repatriate_reserved(node, monkeypatch):
    chain = node.chain
    bob, charlie = BOB.public_key, CHARLIE.public_key
    issuance = total_issuance(chain)

    def hook(env):
        balances.reserve(env, bob, 40 * UNIT)
        balances.repatriate_reserved(env, bob, charlie, 25 * UNIT)

    run_in_block(monkeypatch, node, hook)
    assert account(chain, BOB).data == system.AccountData(INITIAL - 40 * UNIT, 15 * UNIT, 0)
    assert account(chain, CHARLIE).data == system.AccountData(INITIAL + 25 * UNIT, 0, 0)
    assert total_issuance(chain) == issuance
    assert_issuance_consistent(chain)

    with head_env(chain) as env:
        with pytest.raises(balances.InsufficientReserve):
            balances.repatriate_reserved(env, bob, charlie, 15 * UNIT + 1)
        with pytest.raises(balances.ExistentialDeposit):
            balances.repatriate_reserved(env, bob, NOBODY.public_key, ED - 1)
        # Refusals write nothing.
        assert env.state.changes() == {} and env.events == []
        balances.repatriate_reserved(env, bob, NOBODY.public_key, ED)
        assert balances.free_balance(env, NOBODY.public_key) == ED


# -- locks ------------------------------------------------------------------------------------


STAKING = b"staking\0"
VESTING = b"vesting\0"


def test_largest_lock_counts_and_locked_funds_cannot_move(node, monkeypatch):
    chain = node.chain
    bob = BOB.public_key

    def lock(env):
        balances.set_lock(env, STAKING, bob, 500_000 * UNIT)
        balances.set_lock(env, VESTING, bob, 200_000 * UNIT)

    run_in_block(monkeypatch, node, lock)
    assert account(chain, BOB).data.frozen == 500_000 * UNIT
    # Spending into the largest lock fails; the smaller lock alone would have allowed it.
    raw = sign(BOB, balances.transfer_allow_death(CHARLIE.public_key, 600_000 * UNIT), 0)
    submit_and_produce(node, raw)
    assert failures(chain) == [(0, error_info(balances.LiquidityRestrictions))]
    assert free(chain, CHARLIE) == INITIAL
    # Spending the unlocked part works.
    raw = sign(BOB, balances.transfer_allow_death(CHARLIE.public_key, 400_000 * UNIT), 1)
    submit_and_produce(node, raw)
    assert failures(chain) == []

    # Removing the larger lock leaves the smaller one in force.
    run_in_block(monkeypatch, node, lambda env: balances.remove_lock(env, STAKING, bob))
    assert account(chain, BOB).data.frozen == 200_000 * UNIT
    raw = sign(BOB, balances.transfer_allow_death(CHARLIE.public_key, 300_000 * UNIT), 2)
    submit_and_produce(node, raw)
    assert failures(chain) == []
    assert free(chain, CHARLIE) == INITIAL + 700_000 * UNIT
    run_in_block(monkeypatch, node, lambda env: balances.remove_lock(env, VESTING, bob))
    assert account(chain, BOB).data.frozen == 0
    assert_issuance_consistent(chain)


def test_set_lock_replaces_a_lock_with_the_same_id(node):
    with head_env(node.chain) as env:
        bob = BOB.public_key
        balances.set_lock(env, STAKING, bob, 10)
        balances.set_lock(env, STAKING, bob, 3)
        assert balances.Locks.get(env.state, bob) == [balances.BalanceLock(STAKING, 3)]
        assert system.account(env, bob).data.frozen == 3
        balances.set_lock(env, STAKING, bob, 0)  # amount 0 removes it
        assert balances.Locks.get(env.state, bob) == []
        assert system.account(env, bob).data.frozen == 0
        for i in range(balances.MAX_LOCKS):
            balances.set_lock(env, i.to_bytes(8, "big"), bob, i + 1)
        with pytest.raises(balances.TooManyLocks):
            balances.set_lock(env, b"one more", bob, 1)
        assert system.account(env, bob).data.frozen == balances.MAX_LOCKS


def test_locked_funds_cannot_pay_fees(node, monkeypatch):
    bob = BOB.public_key
    run_in_block(monkeypatch, node, lambda env: balances.set_lock(env, STAKING, bob, INITIAL))
    expect_invalid(node, sign(BOB, system.remark(b"fee?"), 0), "Payment")
    run_in_block(
        monkeypatch, node, lambda env: balances.set_lock(env, STAKING, bob, INITIAL - UNIT)
    )
    submit_and_produce(node, sign(BOB, system.remark(b"fee!"), 0))
    assert failures(node.chain) == [] and account(node.chain, BOB).nonce == 1
