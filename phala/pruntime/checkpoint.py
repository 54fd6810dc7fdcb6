"""Checkpoints: the worker's state, sealed to disk every N blocks.

A checkpoint holds everything the worker derived from the chain (light client position,
pending finalized headers, verified chain state, egress queue). It is sealed with the
enclave's sealing key (AES-256-GCM) and its associated data binds the format, the worker's
identity key and the genesis hash, so a flipped byte, another worker's checkpoint or a
checkpoint of another chain all fail to open. After a restart the worker resumes from its
newest checkpoint and replays blocks from there. What a host can still do with old
checkpoints is in ``docs/pruntime.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from phala.core.codec import H256, AccountId, DecodeError, decode, encode, u64
from phala.core.light_client import LightClient
from phala.core.mq import SignedMessage
from phala.core.trie import StateTree
from phala.core.types import AuthoritySet, Header

from .chain_state import ChainState
from .enclave.files import replace_file

FORMAT = b"phala/checkpoint/v2"  # v2: roles' own state (running contracts)
KEEP = 3

log = logging.getLogger("phala.pruntime.checkpoint")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why."""


@dataclass(frozen=True)
class RoleState:
    """A role's own part of a checkpoint: roles with ``checkpoint() -> bytes`` and
    ``restore_checkpoint(bytes)`` and a ``checkpoint_name``."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Snapshot:
    genesis_hash: H256
    identity: AccountId
    finalized: Header
    authority_set: AuthoritySet
    pending_headers: list[Header]  # finalized, not yet dispatched
    dispatched: Header | None
    state: list[tuple[bytes, bytes]]  # sorted by key
    operator: AccountId | None
    registered: bool
    next_sequence: u64
    egress: list[SignedMessage]
    roles: list[RoleState]  # what roles derived from the chain besides (e.g. contract states)




def associated_data(identity: bytes, genesis_hash: bytes) -> bytes:
    return FORMAT + identity + genesis_hash


def take(worker) -> Snapshot:
    chain: ChainState = worker.chain
    return Snapshot(
        genesis_hash=chain.genesis_hash,
        identity=worker.identity.public_key,
        finalized=chain.light.finalized,
        authority_set=chain.light.authority_set,
        pending_headers=[chain.headers[n] for n in sorted(chain.headers) if n >= chain.next_block],
        dispatched=chain.dispatched,
        state=sorted(chain.kv.items()),
        operator=worker.operator,
        registered=worker.registered,
        next_sequence=worker.next_sequence,
        egress=list(worker.egress),
        roles=[
            RoleState(role.checkpoint_name, role.checkpoint())
            for role in worker.roles
            if hasattr(role, "checkpoint_name")
        ],
    )


def restore(worker, snapshot: Snapshot) -> None:
    """Put ``worker`` in the snapshot's state (after checking it belongs to this worker)."""
    if snapshot.identity != worker.identity.public_key or snapshot.genesis_hash != worker.pinned_genesis_hash:
        raise CheckpointError("checkpoint belongs to another worker or another chain")
    tree = StateTree.from_items(snapshot.state, keep_blobs=False)
    if snapshot.dispatched is not None and tree.root() != snapshot.dispatched.state_root:
        raise CheckpointError("checkpoint state does not match its block's state root")
    # The roles first: their part may not decode (written by another version), and then
    # nothing of the worker may have changed yet.
    saved = {r.name: r.data for r in snapshot.roles}
    for role in worker.roles:
        name = getattr(role, "checkpoint_name", None)
        if name is not None:
            try:
                role.restore_checkpoint(saved.get(name))
            except DecodeError as exc:
                raise CheckpointError(f"the {name} part of the checkpoint does not decode: {exc}") from exc
    light = LightClient.restore(snapshot.genesis_hash, snapshot.finalized, snapshot.authority_set)
    chain = ChainState(light)
    chain.headers = {h.number: h for h in snapshot.pending_headers}
    chain.tree = tree
    chain.kv = dict(snapshot.state)
    chain.dispatched = snapshot.dispatched
    worker.chain = chain
    worker.operator = snapshot.operator
    worker.registered = snapshot.registered
    worker.next_sequence = snapshot.next_sequence
    worker.egress = list(snapshot.egress)
    for role in worker.roles:  # roles that prepare once the worker is whole again
        resumed = getattr(role, "on_resumed", None)
        if resumed is not None:
            resumed()


class CheckpointStore:
    """Sealed checkpoint files in ``<data_dir>/checkpoints``; the newest few are kept."""

    def __init__(self, data_dir: Path, seal, unseal):
        """``seal(data, aad) -> bytes`` and ``unseal(blob, aad) -> bytes`` use the enclave's
        sealing key."""
        self.dir = Path(data_dir) / "checkpoints"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._seal, self._unseal = seal, unseal

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("checkpoint-*.sealed"))

    def save(self, worker) -> Path:
        snapshot = take(worker)
        number = -1 if snapshot.dispatched is None else snapshot.dispatched.number
        blob = self._seal(encode(snapshot), associated_data(snapshot.identity, snapshot.genesis_hash))
        path = self.dir / f"checkpoint-{number + 1:010d}.sealed"
        replace_file(path, blob)  # a crash leaves the old file or the new one, never half
        for old in self.files()[:-KEEP]:
            old.unlink(missing_ok=True)
        return path

    def load(self, path: Path, identity: bytes, genesis_hash: bytes) -> Snapshot:
        try:
            data = self._unseal(path.read_bytes(), associated_data(identity, genesis_hash))
        except OSError as exc:
            raise CheckpointError(f"cannot read {path.name}: {exc.strerror}") from exc
        except Exception as exc:  # the sealing layer's error: tampered, or not ours
            raise CheckpointError(f"{path.name} does not open: {exc}") from exc
        try:
            return decode(Snapshot, data)
        except DecodeError as exc:
            raise CheckpointError(f"{path.name} does not decode: {exc}") from exc

    def load_newest(self, worker) -> Snapshot | None:
        """The newest checkpoint that opens for this worker; bad ones are skipped."""
        for path in reversed(self.files()):
            try:
                return self.load(path, worker.identity.public_key, worker.pinned_genesis_hash)
            except CheckpointError as exc:
                log.warning("skipping checkpoint: %s", exc)
                continue
        return None

