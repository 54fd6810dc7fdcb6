"""The consensus seam: who authors the next block, when, and who finalizes it.

The node asks its engine three things: whether it may author on top of the head
(:meth:`author`), when to make the next block (:meth:`run`), and for the finality proof of a
block it made (:meth:`justify`). The runtime knows nothing of the engine; a BFT engine with
many validators can replace :class:`DevConsensus` behind the same methods, producing
justifications that :func:`phala.core.finality.verify_justification` accepts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal, Protocol

from phala.core.finality import sign_vote
from phala.core.keys import Keypair
from phala.core.types import AuthoritySet, Header, Justification

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("phala.consensus")

SealMode = Literal["interval", "instant", "manual"]


class CannotFinalize(Exception):
    """This node does not hold enough of the authority set's keys to finalize."""


class Consensus(Protocol):
    def author(self, authority_set: AuthoritySet) -> bytes | None: ...

    def justify(self, genesis_hash: bytes, authority_set: AuthoritySet, header: Header) -> Justification: ...

    async def run(self, node: Node) -> None: ...

    def notify_new_transaction(self) -> None: ...


class DevConsensus:
    """One node that holds the authority keys: it authors every block and finalizes it at
    once with its own signatures.

    Modes: ``interval`` (a block every ``block_time`` seconds), ``instant`` (a block as soon
    as a transaction arrives) and ``manual`` (only on ``engine_createBlock``).
    """

    def __init__(self, keys: list[Keypair], mode: SealMode = "interval", block_time: float = 1.0):
        self.keys = {k.public_key: k for k in keys}
        self.mode = mode
        self.block_time = block_time
        self._wake = asyncio.Event()
        self.stalled = False

    def author(self, authority_set: AuthoritySet) -> bytes | None:
        held = [a for a in authority_set.authorities if a in self.keys]
        if len(held) < authority_set.threshold():
            return None
        return held[0]

    def justify(self, genesis_hash: bytes, authority_set: AuthoritySet, header: Header) -> Justification:
        block_hash = header.hash
        signatures = [
            sign_vote(self.keys[a], genesis_hash, authority_set.set_id, header.number, block_hash)
            for a in authority_set.authorities
            if a in self.keys
        ]
        if len(signatures) < authority_set.threshold():
            raise CannotFinalize(f"hold {len(signatures)} of {authority_set.threshold()} needed keys")
        return Justification(authority_set.set_id, header.number, block_hash, signatures)

    def notify_new_transaction(self) -> None:
        if self.mode == "instant":
            self._wake.set()

    async def run(self, node: Node) -> None:
        if self.mode == "manual":
            return
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if self.mode == "interval":
                next_at += self.block_time
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at = max(next_at, loop.time() - self.block_time)
            else:
                await self._wake.wait()
                self._wake.clear()
                await asyncio.sleep(0)  # let a burst of submissions land in one block
            try:
                node.produce_block()
            except CannotFinalize as exc:
                if not self.stalled:
                    log.error("block production stalled: %s", exc)
                self.stalled = True
            if self.mode == "instant" and node.pool_has_ready():
                self._wake.set()
