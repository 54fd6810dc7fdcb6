"""The node: chain, transaction pool and consensus engine, behind one object the RPC uses.

Everything runs on one asyncio loop, so the node's methods are never re-entered: a block
is executed, finalized and written before the next submission is looked at.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from phala.core.mq import MessageOrigin
from phala.core.types import Header

from .blockchain import Blockchain, ExecutedBlock
from .consensus import CannotFinalize, Consensus
from .pool import TxPool
from .runtime import executive, mq, system
from .runtime.frame import Env
from .state import Overlay

log = logging.getLogger("phala.node")

MAX_BLOCK_EXTRINSICS = 20_000
MAX_BLOCK_BYTES = 16 << 20


class Node:
    def __init__(self, chain: Blockchain, consensus: Consensus, pool: TxPool | None = None):
        self.chain = chain
        self.consensus = consensus
        self.pool = pool if pool is not None else TxPool()  # an empty pool is falsy
        self.head_listeners: list[Callable[[Header], None]] = []
        self.started = time.time()
        self._view = None

    # -- submissions --------------------------------------------------------------------------

    def _head_env(self) -> Env:
        """An environment over the finalized state for validating the next block's
        extrinsics (read only: writes go to a throwaway overlay)."""
        if self._view is None:
            self._view = self.chain.db.state_view()
        ctx = self.chain.next_context(author=bytes(32))
        return Env(Overlay(self._view), ctx)

    def submit(self, raw: bytes) -> bytes:
        """Validate an extrinsic against the finalized state and pool it; returns its hash.
        Raises :class:`executive.InvalidTransaction` or :class:`pool.PoolError`."""
        checked = executive.check_extrinsic(self._head_env(), raw)
        tx_hash = self.pool.add(raw, checked)
        self.consensus.notify_new_transaction()
        return tx_hash

    def pool_has_ready(self) -> bool:
        return bool(self.pool.ready(1, MAX_BLOCK_BYTES))

    def account_next_index(self, account: bytes) -> int:
        nonce = system.Account.get(self._head_env().state, account).nonce
        return self.pool.next_nonce(account, nonce)

    def mq_next_sequence(self, origin: MessageOrigin) -> int:
        """The sequence ``origin``'s next message should use, counting ready ones pooled."""
        sequence = mq.next_sequence(self._head_env(), origin)
        return self.pool.next_nonce(mq.sender_key(origin), sequence)

    # -- block production ---------------------------------------------------------------------

    def produce_block(self, allow_empty: bool = True) -> Header | None:
        """Author, finalize and write one block with the pool's ready extrinsics.

        Raises :class:`CannotFinalize` if this node may not author on the current head.
        """
        authority_set = self.chain.authority_set()
        author = self.consensus.author(authority_set)
        if author is None:
            raise CannotFinalize("this node holds too few keys of the current authority set")
        entries = self.pool.ready(MAX_BLOCK_EXTRINSICS, MAX_BLOCK_BYTES)
        if not entries and not allow_empty:
            return None
        ctx = self.chain.next_context(author)
        block = self.chain.execute(ctx, [e.raw for e in entries])
        try:
            justification = self.consensus.justify(self.chain.genesis_hash, authority_set, block.header)
        except CannotFinalize:
            self.chain.abort(block)
            raise
        self.chain.commit(block, justification)
        self._after_commit(block, entries)
        return block.header

    def _after_commit(self, block: ExecutedBlock, entries: list) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None
        for _raw, err in block.rejected:
            log.info("dropped a pooled transaction at block %d: %s", block.header.number, err.message)
        env = self._head_env()
        # Only senders in this block changed nonce: an account's nonce moves only when it
        # sends, an unsigned sender's sequence (an mq origin's) only when its call is applied.
        senders = {e.sender for e in entries}
        expected = executive.expected_nonce
        nonces = {s: expected(env, s) for s in senders}
        # Every candidate leaves the pool: included (an unsigned one whose call failed did
        # not advance its sequence, yet must not be offered again) or found invalid.
        self.pool.prune(nonces, block.header.number + 1, [e.hash for e in entries])
        header = block.header
        log.info(
            "finalized #%d %s with %d extrinsics (%d failed calls)",
            header.number,
            header.hash.hex()[:12],
            len(block.extrinsics),
            block.failed_calls,
        )
        for listener in list(self.head_listeners):
            listener(header)

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        await self.consensus.run(self)
        await asyncio.Event().wait()  # manual seal: blocks come only from RPC calls

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None
        self.chain.db.close()
