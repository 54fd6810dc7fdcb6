"""The worker's own copy of chain state, moved forward only by verified blocks.

The relayer hands the worker finalized headers (checked by the light client) and, for each
block, the storage changes the block made. A block's changes are applied only if they move
the state to exactly the header's state root; otherwise they are undone and refused. So a
relayer can withhold blocks, but it cannot make the worker see state the chain does not have.
"""

from __future__ import annotations

from dataclasses import dataclass

from phala.core.codec import DecodeError, codec_of, decode, u64
from phala.core.light_client import LightClient, LightClientError
from phala.core.mq import Message, MessageOrigin
from phala.core.storage_keys import map_key, storage_prefix
from phala.core.trie import StateTree
from phala.core.types import BlockChanges, Header, Justification

# Storage the worker reads (the chain's layout: see docs/formats.md).
TIMESTAMP_KEY = storage_prefix("Timestamp", "Now")
OUTBOUND_KEY = storage_prefix("Mq", "OutboundMessages")
MAX_KEPT_HEADERS = 4096  # headers finalized but not yet dispatched


class SyncError(Exception):
    """Input from the relayer that the worker refuses; nothing was changed."""


def mq_sequence_key(origin: MessageOrigin) -> bytes:
    return map_key("Mq", "OffchainSequence", codec_of(MessageOrigin).encode(origin))


@dataclass(frozen=True)
class DispatchedBlock:
    """What a verified block tells the worker."""

    header: Header
    timestamp: int
    messages: list[Message]


class ChainState:
    """Light client plus verified chain state.

    ``headers`` keeps finalized headers by number from the next block to dispatch up to the
    light client's finalized head.
    """

    def __init__(self, light_client: LightClient):
        self.light = light_client
        self.headers: dict[int, Header] = {0: light_client.finalized}
        self.tree = StateTree(keep_blobs=False)  # the worker keeps no archive
        self.kv: dict[bytes, bytes] = {}
        self.dispatched: Header | None = None  # last block whose changes were applied

    @property
    def genesis_hash(self) -> bytes:
        return self.light.genesis_hash

    @property
    def next_block(self) -> int:
        return 0 if self.dispatched is None else self.dispatched.number + 1

    # -- headers ------------------------------------------------------------------------------

    def sync_headers(self, headers: list[Header], justification: Justification) -> Header:
        """Accept a finalized header chain (see :class:`LightClient`). Raises SyncError."""
        pending = self.light.finalized.number - self.next_block
        if pending + len(headers) > MAX_KEPT_HEADERS:
            raise SyncError(f"dispatch blocks first: more than {MAX_KEPT_HEADERS} headers would wait")
        try:
            last = self.light.import_headers(headers, justification)
        except LightClientError as exc:
            raise SyncError(str(exc)) from exc
        for header in headers:
            self.headers[header.number] = header
        return last

    # -- blocks -------------------------------------------------------------------------------

    def dispatch(self, block: BlockChanges) -> DispatchedBlock:
        """Apply one block's storage changes. The block must be the next one, its header
        must be finalized, and the changes must reach the header's state root exactly."""
        expected = self.next_block
        if block.number != expected:
            raise SyncError(f"expected block #{expected}, got #{block.number}")
        header = self.headers.get(block.number)
        if header is None:
            raise SyncError(f"block #{block.number} is not finalized yet: sync its header first")
        if header.hash != block.block_hash:
            raise SyncError(f"block #{block.number} has hash 0x{block.block_hash.hex()}, not the finalized one")
        keys = [c.key for c in block.changes]
        if len(set(keys)) != len(keys):
            raise SyncError(f"block #{block.number}: a key changes twice")
        inverse = [(k, self.kv.get(k)) for k in keys]
        self.tree.apply((c.key, c.value) for c in block.changes)
        if self.tree.root() != header.state_root:
            self.tree.apply(inverse)
            raise SyncError(
                f"block #{block.number}: storage changes do not reach the header's state root "
                "(altered, added or missing changes)"
            )
        for change in block.changes:
            if change.value is None:
                self.kv.pop(change.key, None)
            else:
                self.kv[change.key] = change.value
        if self.dispatched is not None:
            self.headers.pop(self.dispatched.number, None)
        self.dispatched = header
        return DispatchedBlock(header, self.timestamp(), self.outbound_messages())

    # -- reading verified state ---------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self.kv.get(key)

    def timestamp(self) -> int:
        raw = self.kv.get(TIMESTAMP_KEY)
        return 0 if raw is None else decode(u64, raw)

    def outbound_messages(self) -> list[Message]:
        raw = self.kv.get(OUTBOUND_KEY)
        if raw is None:
            return []
        try:
            return decode(list[Message], raw)
        except DecodeError as exc:  # verified state that does not decode: a chain/worker mismatch
            raise SyncError(f"outbound messages do not decode: {exc}") from exc

    def mq_next_sequence(self, origin: MessageOrigin) -> int:
        raw = self.kv.get(mq_sequence_key(origin))
        return 0 if raw is None else decode(u64, raw)
