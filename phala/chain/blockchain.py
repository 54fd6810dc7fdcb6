"""The finalized chain: genesis, block execution, import and commitment to the database.

Blocks are executed by the runtime (:mod:`phala.chain.runtime.executive`) against the
finalized state; their storage changes move the state trie to the header's root, and a
block with its justification is written in one database transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phala.core.finality import FinalityError, verify_justification
from phala.core.trie import StateTree
from phala.core.types import (
    ZERO_HASH,
    AuthoritySet,
    Header,
    Justification,
    extrinsics_root,
)

from .db import ChainDB, DatabaseError
from .runtime import authorities, executive
from .runtime.executive import InvalidTransaction
from .runtime.frame import BlockContext, Env
from .spec import ChainSpec
from .state import MemoryBackend, Overlay


class BlockError(Exception):
    """A block cannot be imported; the message says which check failed."""


@dataclass
class ExecutedBlock:
    """A block executed on top of the finalized head, not yet committed."""

    header: Header
    extrinsics: list[bytes]
    changes: list[tuple[bytes, bytes | None]]
    inverse: list[tuple[bytes, bytes | None]]
    rejected: list[tuple[bytes, InvalidTransaction]] = field(default_factory=list)
    failed_calls: int = 0


def genesis_block(spec: ChainSpec) -> tuple[Header, dict[bytes, bytes], StateTree]:
    """Genesis header, state and trie for ``spec``."""
    backend = MemoryBackend()
    overlay = Overlay(backend)
    env = Env(overlay, executive.genesis_context(spec.start_time_ms))
    executive.build_genesis(env, spec.runtime_genesis())
    state = {k: v for k, v in overlay.changes().items() if v is not None}
    tree = StateTree.from_items(state.items())
    header = Header(
        parent_hash=ZERO_HASH,
        number=0,
        state_root=tree.root(),
        extrinsics_root=extrinsics_root([]),
        timestamp=spec.start_time_ms,
        author=ZERO_HASH,
        digest=[],
    )
    return header, state, tree


class Blockchain:
    """The node's view of the finalized chain."""

    def __init__(self, db: ChainDB, spec: ChainSpec | None = None):
        self.db = db
        stored = db.meta("spec")
        if stored is None:
            if spec is None:
                raise DatabaseError("the database is empty and no chain spec was given")
            header, state, tree = genesis_block(spec)
            _, blobs = tree.commit()
            db.write_genesis(spec.to_json(), header, state.items(), blobs)
        else:
            stored_spec = ChainSpec.from_json(stored.decode())
            if spec is not None and genesis_block(spec)[0].hash != db.meta("genesis"):
                raise DatabaseError("the database holds another chain than the given chain spec")
            spec = stored_spec
        self.spec: ChainSpec = spec
        self.genesis_hash: bytes = db.meta("genesis")  # type: ignore[assignment]
        head_hash = db.meta("finalized")
        head = db.header(head_hash) if head_hash else None
        if head is None:
            raise DatabaseError("the finalized head is missing from the database")
        self.head: Header = head
        self.tree = StateTree.from_items(db.state_items())
        if self.tree.root() != head.state_root:
            raise DatabaseError(
                f"state does not match the finalized header #{head.number}: "
                "the database was corrupted or tampered with"
            )
        self.tree.commit()  # the loaded version is already in the archive

    # -- reading ------------------------------------------------------------------------------

    def authority_set(self) -> AuthoritySet:
        view = self.db.state_view()
        try:
            return authorities.CurrentSet.get(Overlay(view))
        finally:
            view.close()

    def next_timestamp(self, number: int) -> int:
        """Block timestamps count from the spec's start time, one slot per block."""
        return self.spec.start_time_ms + number * self.spec.parameters.slot_duration_ms

    def next_context(self, author: bytes, timestamp: int | None = None) -> BlockContext:
        number = self.head.number + 1
        return BlockContext(
            number=number,
            parent_hash=self.head.hash,
            timestamp=self.next_timestamp(number) if timestamp is None else timestamp,
            author=author,
            genesis_hash=self.genesis_hash,
        )

    # -- execution ----------------------------------------------------------------------------

    def execute(
        self,
        ctx: BlockContext,
        candidates: list[bytes],
        strict: bool = False,
    ) -> ExecutedBlock:
        """Execute a block on top of the finalized head and move the trie to its root.

        ``strict`` (import): any invalid extrinsic makes the block invalid. Otherwise
        (authoring) invalid candidates are left out and returned in ``rejected``.
        The trie is left at the new root: call :meth:`commit` or :meth:`abort` next.
        """
        if ctx.parent_hash != self.head.hash:
            raise BlockError("block does not build on the finalized head")
        view = self.db.state_view()
        try:
            overlay = Overlay(view)
            env = Env(overlay, ctx)
            try:
                executive.initialize_block(env)
            except Exception as exc:  # a hook refusing the block (a bad timestamp, say)
                raise BlockError(f"block initialization failed: {exc}") from exc
            included: list[bytes] = []
            rejected: list[tuple[bytes, InvalidTransaction]] = []
            failed = 0
            for i, raw in enumerate(candidates):
                try:
                    outcome = executive.apply_extrinsic(env, raw, len(included))
                except InvalidTransaction as err:
                    if strict:
                        raise BlockError(f"extrinsic {i} is invalid: {err.message}") from err
                    rejected.append((raw, err))
                    continue
                included.append(raw)
                failed += outcome.error is not None
            digest = executive.finalize_block(env)
            changes = overlay.sorted_changes()
            inverse = [(k, view.get(k)) for k, _ in changes]
        finally:
            view.close()
        self.tree.apply(changes)
        header = Header(
            parent_hash=ctx.parent_hash,
            number=ctx.number,
            state_root=self.tree.root(),
            extrinsics_root=extrinsics_root(included),
            timestamp=ctx.timestamp,
            author=ctx.author,
            digest=list(digest),
        )
        return ExecutedBlock(header, included, changes, inverse, rejected, failed)

    def abort(self, block: ExecutedBlock) -> None:
        """Undo an executed block's trie changes."""
        self.tree.apply(block.inverse)

    def commit(self, block: ExecutedBlock, justification: Justification) -> None:
        """Write a finalized block; it is durable when this returns."""
        _, blobs = self.tree.commit()
        self.db.write_block(block.header, block.extrinsics, justification, block.changes, blobs)
        self.head = block.header

    def import_block(self, header: Header, extrinsics: list[bytes], justification: Justification) -> None:
        """Import a finalized block made elsewhere: check its justification against the
        current authority set, re-execute it (signatures included), and require the same
        roots. Raises :class:`BlockError` and changes nothing if any check fails."""
        if header.parent_hash != self.head.hash or header.number != self.head.number + 1:
            raise BlockError("block does not extend the finalized head")
        try:
            verify_justification(justification, self.genesis_hash, header.number, header.hash, self.authority_set())
        except FinalityError as exc:
            raise BlockError(f"bad justification: {exc}") from exc
        ctx = BlockContext(header.number, header.parent_hash, header.timestamp, header.author, self.genesis_hash)
        executed = self.execute(ctx, extrinsics, strict=True)
        if executed.header != header:
            self.abort(executed)
            raise BlockError("executing the block gives another header (state root, extrinsics root or digest)")
        self.commit(executed, justification)
