"""Sudo pallet: dispatching as root, the sudo key, inner failures and their reverted writes."""

from phala.chain.runtime import authorities, balances, sudo, system
from phala.chain.runtime.frame import BadOrigin

from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    INITIAL,
    assert_issuance_consistent,
    error_info,
    events,
    events_of,
    failures,
    free,
    read,
    sign,
    submit_and_produce,
    total_issuance,
)


def sudo_key(chain):
    return read(chain, sudo.Key.get)


def test_sudo_dispatches_as_root(node):
    chain = node.chain
    issuance = total_issuance(chain)
    raw = sign(ALICE, sudo.sudo(balances.force_set_balance(CHARLIE.public_key, 42 * INITIAL)), 0)
    submit_and_produce(node, raw)
    assert failures(chain) == []
    assert events_of(chain, sudo.Sudid) == [sudo.Sudid(None)]
    assert events_of(chain, balances.BalanceSet) == [
        balances.BalanceSet(CHARLIE.public_key, 42 * INITIAL)
    ]
    assert free(chain, CHARLIE) == 42 * INITIAL
    assert total_issuance(chain) == issuance + 41 * INITIAL
    assert_issuance_consistent(chain)


def test_non_sudo_signer_gets_require_sudo(node):
    chain = node.chain
    raw = sign(BOB, sudo.sudo(balances.force_set_balance(BOB.public_key, 42 * INITIAL)), 0)
    submit_and_produce(node, raw)
    assert failures(chain) == [(0, error_info(sudo.RequireSudo))]
    assert events_of(chain, sudo.Sudid) == []
    assert free(chain, BOB) < INITIAL  # just the fee gone
    submit_and_produce(node, sign(BOB, sudo.set_key(BOB.public_key), 1))
    assert failures(chain) == [(0, error_info(sudo.RequireSudo))]
    assert sudo_key(chain) == ALICE.public_key


def test_inner_failure_is_reported_in_sudid(node):
    chain = node.chain
    before = read(chain, authorities.CurrentSet.get)
    raws = [
        sign(ALICE, sudo.sudo(authorities.set_authorities([])), 0),
        sign(ALICE, sudo.sudo(authorities.set_authorities([BOB.public_key, BOB.public_key])), 1),
        sign(ALICE, sudo.sudo(system.remark(b"root has no account")), 2),
    ]
    submit_and_produce(node, *raws)
    # The outer extrinsics succeed; the inner errors are in the events.
    assert failures(chain) == []
    assert events_of(chain, sudo.Sudid) == [
        sudo.Sudid(error_info(authorities.InvalidAuthoritySet)),
        sudo.Sudid(error_info(authorities.InvalidAuthoritySet)),
        sudo.Sudid(error_info(BadOrigin)),
    ]
    assert read(chain, authorities.CurrentSet.get) == before
    assert node.chain.head.digest == []


def test_inner_failure_reverts_its_writes_and_events(node, monkeypatch):
    """A call that writes, emits an event and then fails leaves neither behind."""
    chain = node.chain
    original = balances.force_set_balance.dispatch

    def write_then_fail(self, env, origin):
        original(self, env, origin)
        raise balances.InsufficientBalance("failing after the write")

    monkeypatch.setattr(balances.force_set_balance, "dispatch", write_then_fail)
    issuance = total_issuance(chain)
    raw = sign(ALICE, sudo.sudo(balances.force_set_balance(CHARLIE.public_key, 7)), 0)
    submit_and_produce(node, raw)
    assert failures(chain) == []
    assert events_of(chain, sudo.Sudid) == [sudo.Sudid(error_info(balances.InsufficientBalance))]
    assert free(chain, CHARLIE) == INITIAL
    assert total_issuance(chain) == issuance
    # The reverted call's events are dropped with its writes (KilledAccount, DustLost and
    # BalanceSet would otherwise describe changes that never happened).
    assert [type(r.event) for r in events(chain)] == [
        balances.TransactionFeePaid,
        sudo.Sudid,
        system.ExtrinsicSuccess,
    ]
    assert_issuance_consistent(chain)


def test_failed_extrinsic_drops_its_call_events(node, monkeypatch):
    """The same rule one level up: a signed call that emits and fails reports only the failure."""
    chain = node.chain
    original = balances.transfer_keep_alive.dispatch

    def transfer_then_fail(self, env, origin):
        original(self, env, origin)
        raise balances.InsufficientBalance("failing after the transfer")

    monkeypatch.setattr(balances.transfer_keep_alive, "dispatch", transfer_then_fail)
    raw = sign(BOB, balances.transfer_keep_alive(CHARLIE.public_key, 10**12), 0)
    submit_and_produce(node, raw)
    assert failures(chain) == [(0, error_info(balances.InsufficientBalance))]
    assert free(chain, CHARLIE) == INITIAL
    assert [type(r.event) for r in events(chain)] == [
        balances.TransactionFeePaid,
        system.ExtrinsicFailed,
    ]


def test_set_key(node):
    chain = node.chain
    submit_and_produce(node, sign(ALICE, sudo.set_key(BOB.public_key), 0))
    assert events_of(chain, sudo.KeyChanged) == [sudo.KeyChanged(ALICE.public_key, BOB.public_key)]
    assert sudo_key(chain) == BOB.public_key
    # Alice lost the key, Bob has it.
    submit_and_produce(
        node,
        sign(ALICE, sudo.sudo(balances.force_set_balance(ALICE.public_key, 1)), 1),
        sign(BOB, sudo.sudo(balances.force_set_balance(CHARLIE.public_key, 2 * INITIAL)), 0),
    )
    assert failures(chain) == [(0, error_info(sudo.RequireSudo))]
    assert events_of(chain, sudo.Sudid) == [sudo.Sudid(None)]
    assert free(chain, ALICE) > 1
    assert free(chain, CHARLIE) == 2 * INITIAL
