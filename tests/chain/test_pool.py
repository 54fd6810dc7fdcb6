"""Transaction pool: duplicates, replacement by tip, limits, ordering, and pruning after blocks."""

from phala.chain.pool import ALREADY_IMPORTED, IMMEDIATELY_DROPPED, PRIORITY_TOO_LOW, TxPool
from phala.chain.runtime import balances, system
from phala.core.hashing import blake2_256

from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    DAVE,
    ED,
    INITIAL,
    account,
    account_record,
    body,
    events_of,
    expect_invalid,
    expect_pool_error,
    fee_of,
    free,
    make_node,
    produce,
    sign,
    submit_and_produce,
)


def remark(keypair=BOB, nonce=0, tip=0, data=b"hi"):
    return sign(keypair, system.remark(data), nonce, tip=tip)


def test_duplicate_submission(node):
    raw = remark()
    node.submit(raw)
    expect_pool_error(node, raw, ALREADY_IMPORTED)
    produce(node)
    # Once included, the same bytes are stale rather than a duplicate.
    expect_invalid(node, raw, "Stale")


def test_same_nonce_needs_a_higher_tip(node):
    first = remark(tip=5)
    node.submit(first)
    expect_pool_error(node, remark(tip=5, data=b"same tip"), PRIORITY_TOO_LOW)
    expect_pool_error(node, remark(tip=4, data=b"lower tip"), PRIORITY_TOO_LOW)
    better = remark(tip=6, data=b"higher tip")
    node.submit(better)
    assert node.pool.pending() == [better]
    assert blake2_256(first) not in node.pool
    header = produce(node)
    assert body(node, header) == [better]


def test_replacement_after_the_first_nonce(node):
    """Replacing the only pooled extrinsic of an account whose nonce is not 0."""
    chain = node.chain
    submit_and_produce(node, remark(nonce=0))
    assert account(chain, BOB).nonce == 1
    node.submit(remark(nonce=1, tip=0, data=b"cheap"))
    better = remark(nonce=1, tip=9, data=b"generous")
    node.submit(better)
    assert node.pool.pending() == [better]
    assert node.pool_has_ready()
    alice = free(chain, ALICE)
    header = produce(node)
    assert body(node, header) == [better]
    assert free(chain, ALICE) == alice + 9
    assert len(node.pool) == 0


def test_replacement_keeps_the_queue_order(node):
    node.submit(remark(nonce=0, data=b"a"))
    node.submit(remark(nonce=1, data=b"b"))
    node.submit(remark(nonce=2, data=b"c"))
    better = remark(nonce=1, tip=3, data=b"B")
    node.submit(better)
    header = produce(node)
    assert [blake2_256(d) for d in (b"a", b"B", b"c")] == [
        e.hash for e in events_of(node.chain, system.Remarked)
    ]
    assert body(node, header)[1] == better


def test_pool_full(tmp_path):
    pool = TxPool(max_count=2)
    node = make_node(tmp_path / "db", pool=pool)
    try:
        assert node.pool is pool  # an empty pool is still the pool to use
        node.submit(remark(BOB))
        node.submit(remark(CHARLIE))
        expect_pool_error(node, remark(DAVE), IMMEDIATELY_DROPPED)
        # Replacing a pooled extrinsic does not need room.
        node.submit(remark(BOB, tip=1, data=b"replacement"))
        assert len(node.pool) == 2
        produce(node)
        assert len(node.pool) == 0
        node.submit(remark(DAVE))
    finally:
        node.close()


def test_pool_byte_limit(tmp_path):
    small = remark(BOB)
    node = make_node(tmp_path / "db", pool=TxPool(max_bytes=2 * len(small)))
    try:
        node.submit(small)
        expect_pool_error(node, remark(CHARLIE, data=b"x" * 100), IMMEDIATELY_DROPPED)
        node.submit(remark(CHARLIE))
        assert node.pool.bytes == 2 * len(small)
    finally:
        node.close()


def test_future_limit_per_sender(tmp_path):
    node = make_node(tmp_path / "db", pool=TxPool(max_future_per_sender=1))
    try:
        node.submit(remark(nonce=2))
        expect_pool_error(node, remark(nonce=3), IMMEDIATELY_DROPPED)
        # Ready ones are not limited, and filling the gap makes room.
        node.submit(remark(nonce=0))
        node.submit(remark(nonce=1))
        node.submit(remark(nonce=3))
        header = produce(node)
        assert len(body(node, header)) == 4
    finally:
        node.close()


def test_block_takes_higher_tips_first_and_each_sender_in_nonce_order(node):
    low = remark(BOB, nonce=0, tip=0, data=b"bob 0")
    bob_next = remark(BOB, nonce=1, tip=100, data=b"bob 1")
    high = remark(CHARLIE, nonce=0, tip=50, data=b"charlie 0")
    mid = remark(DAVE, nonce=0, tip=10, data=b"dave 0")
    for raw in (low, bob_next, high, mid):
        node.submit(raw)
    header = produce(node)
    # Charlie (50), Dave (10), Bob 0 (0) which unlocks Bob 1 (100).
    assert body(node, header) == [high, mid, low, bob_next]


def test_transactions_invalidated_by_the_block_are_dropped(node):
    """Bob's first extrinsic spends everything; the second, valid when pooled, cannot pay."""
    chain = node.chain
    probe = sign(BOB, balances.transfer_allow_death(ALICE.public_key, INITIAL), 0)
    drain = sign(BOB, balances.transfer_allow_death(ALICE.public_key, INITIAL - fee_of(probe)), 0)
    assert len(drain) == len(probe)
    then = remark(BOB, nonce=1)
    node.submit(drain)
    node.submit(then)
    header = produce(node)
    assert body(node, header) == [drain]
    assert account_record(chain, BOB) == system.AccountInfo(nonce=1)
    assert len(node.pool) == 0
    # Refunded, Bob can send nonce 1 again.
    submit_and_produce(node, sign(ALICE, balances.transfer_allow_death(BOB.public_key, ED), 0))
    submit_and_produce(node, remark(BOB, nonce=1, data=b"back"))
    assert account(chain, BOB).nonce == 2
