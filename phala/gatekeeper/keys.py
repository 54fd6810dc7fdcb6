"""A gatekeeper's master keys: every rotation's key, sealed to the enclave.

Rotation ``0`` is the key the first gatekeeper generated; rotation ``n`` the key adopted at
the ``n``-th rotation. A new gatekeeper may learn keys out of order (a rotation can complete
before the handover of the older keys reaches it), so the store keeps a slot per rotation
and is *complete* once every slot up to the newest is filled. Only a complete store acts:
handing the history on, deriving cluster keys, signing as the gatekeeper origin.

Each change is sealed to disk before it is used, so a crash never loses a key that was
acted on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from phala.core.codec import H256
from phala.core.derivation import KeyNode
from phala.pruntime.enclave.files import SealedFile

MASTER_KEY_FILE = "master_keys.sealed"
MASTER_KEY_AAD = b"phala/gatekeeper/master-keys/v1"


@dataclass(frozen=True)
class SealedMasterKeys:
    keys: list[H256 | None]  # by rotation id; None where the key is not known yet


class MasterKeys:
    """``MasterKeys(path, seal, unseal, aad)``: the sealed key slots at ``path``."""

    def __init__(
        self,
        path: Path,
        seal: Callable[[bytes, bytes], bytes],
        unseal: Callable[[bytes, bytes], bytes],
        aad: bytes,
    ):
        self.file = SealedFile(path, SealedMasterKeys, seal, unseal, MASTER_KEY_AAD + aad)
        stored = self.file.load()
        self.slots: list[KeyNode | None] = [] if stored is None else [None if k is None else KeyNode(k) for k in stored.keys]

    @property
    def complete(self) -> bool:
        return bool(self.slots) and all(k is not None for k in self.slots)

    @property
    def current(self) -> KeyNode | None:
        """The newest master key, once every older one is known too."""
        return self.slots[-1] if self.complete else None

    @property
    def rotation(self) -> int:
        """The newest rotation id this store has a slot for."""
        return len(self.slots) - 1

    def history(self) -> list[KeyNode]:
        """Every key, rotation 0 first (only when complete)."""
        assert self.complete
        return list(self.slots)  # type: ignore[arg-type]

    def get(self, rotation_id: int) -> KeyNode | None:
        return self.slots[rotation_id] if 0 <= rotation_id < len(self.slots) else None

    def put(self, rotation_id: int, key: KeyNode) -> None:
        """Fill the slot of ``rotation_id`` (and seal). A filled slot is never overwritten:
        the chain fixes each rotation's key once."""
        slots = list(self.slots) + [None] * (rotation_id + 1 - len(self.slots))
        if slots[rotation_id] is not None:
            return
        slots[rotation_id] = key
        self._store(slots)

    def merge(self, history: list[KeyNode]) -> None:
        """Fill the slots ``0..len(history)-1`` that are still empty (and seal)."""
        slots = list(self.slots) + [None] * (len(history) - len(self.slots))
        merged = [old if old is not None else (history[i] if i < len(history) else None) for i, old in enumerate(slots)]
        if merged != self.slots:
            self._store(merged)

    def _store(self, slots: list[KeyNode | None]) -> None:
        self.file.store(SealedMasterKeys([None if k is None else k.secret for k in slots]))
        self.slots = slots
