"""Timestamp pallet: block n is stamped start_time + n * slot; time never goes backwards."""

import pytest

from phala.chain.blockchain import BlockError
from phala.chain.runtime import timestamp

from .harness import ALICE, SLOT, START_TIME_MS, produce, read, snapshot


def test_blocks_are_stamped_one_slot_apart(node):
    chain = node.chain
    assert chain.head.timestamp == START_TIME_MS
    assert read(chain, timestamp.Now.get) == START_TIME_MS
    for n in range(1, 6):
        header = produce(node)
        assert header.timestamp == START_TIME_MS + n * SLOT
        assert read(chain, timestamp.Now.get) == header.timestamp
    assert read(chain, timestamp.Parameters.get) == timestamp.Params(SLOT, SLOT // 2)


@pytest.mark.parametrize(
    "offset",
    [-SLOT, -1, 0, SLOT // 2 - 1],
    ids=["one-slot-back", "one-ms-back", "same-time", "below-minimum-period"],
)
def test_block_going_back_in_time_is_refused(node, offset):
    chain = node.chain
    produce(node)
    produce(node)
    before = snapshot(node)
    ctx = chain.next_context(ALICE.public_key, timestamp=chain.head.timestamp + offset)
    with pytest.raises(BlockError, match="initialization"):
        chain.execute(ctx, [])
    assert snapshot(node) == before
    # The chain goes on normally afterwards.
    assert produce(node).timestamp == START_TIME_MS + 3 * SLOT


def test_minimum_period_is_enough(node):
    chain = node.chain
    produce(node)
    before = snapshot(node)
    ctx = chain.next_context(ALICE.public_key, timestamp=chain.head.timestamp + SLOT // 2)
    block = chain.execute(ctx, [])
    assert block.header.timestamp == chain.head.timestamp + SLOT // 2
    assert chain.tree.root() == block.header.state_root != before[1]
    chain.abort(block)
    assert snapshot(node) == before
