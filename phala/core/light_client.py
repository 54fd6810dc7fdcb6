"""A light client of the chain: it follows finality with nothing but headers,
justifications and storage proofs, and trusts nothing its feeder hands it.

It starts from a genesis header whose hash its operator pins and from the genesis authority
set, proven against the genesis state root. It then accepts only header chains that extend
its last finalized header and end in a justification by the current authority set. A header
that announces a new authority set must be the last of its batch (so it is itself
finalized by the old set); the new set then judges every later batch. Values of state are
accepted only with a proof against the state root of a header it has accepted.
"""

from __future__ import annotations

from .codec import DecodeError, decode
from .finality import FinalityError, verify_justification
from .storage_keys import storage_prefix
from .trie import ProofError, verify_proof
from .types import AuthoritySet, Header, Justification

AUTHORITY_SET_KEY = storage_prefix("Authorities", "CurrentSet")
MAX_ACCEPTED = 4096  # recent accepted headers kept for storage reads


class LightClientError(Exception):
    """An input the light client refuses; the message says why. Its state is unchanged."""


class LightClient:
    def __init__(self, genesis: Header, authority_proof: list[bytes], pinned_genesis_hash: bytes):
        """``pinned_genesis_hash`` comes from the operator, never from the feeder."""
        if genesis.hash != pinned_genesis_hash:
            raise LightClientError("genesis header does not match the pinned genesis hash")
        if genesis.number != 0:
            raise LightClientError("the genesis header must have number 0")
        self.genesis_hash = pinned_genesis_hash
        self.authority_set = self._proven_authority_set(genesis, authority_proof)
        self.finalized = genesis
        self.accepted: dict[bytes, Header] = {genesis.hash: genesis}

    @classmethod
    def restore(cls, genesis_hash: bytes, finalized: Header, authority_set: AuthoritySet) -> LightClient:
        """A light client resumed from state the worker sealed itself (a checkpoint)."""
        client = cls.__new__(cls)
        client.genesis_hash = genesis_hash
        client.authority_set = authority_set
        client.finalized = finalized
        client.accepted = {finalized.hash: finalized}
        return client

    @staticmethod
    def _proven_authority_set(header: Header, proof: list[bytes]) -> AuthoritySet:
        try:
            raw = verify_proof(header.state_root, proof, [AUTHORITY_SET_KEY])[AUTHORITY_SET_KEY]
        except ProofError as exc:
            raise LightClientError(f"bad authority set proof: {exc}") from exc
        if raw is None:
            raise LightClientError("the proof shows no authority set in genesis state")
        try:
            return decode(AuthoritySet, raw)
        except DecodeError as exc:
            raise LightClientError(f"authority set does not decode: {exc}") from exc

    def import_headers(self, headers: list[Header], justification: Justification) -> Header:
        """Accept ``headers`` (consecutive, extending the last finalized header) if the
        justification finalizes the last one. Returns the new finalized header."""
        if not headers:
            raise LightClientError("no headers")
        parent = self.finalized
        for i, header in enumerate(headers):
            if header.parent_hash != parent.hash or header.number != parent.number + 1:
                raise LightClientError(f"header #{header.number} does not extend #{parent.number}")
            if i < len(headers) - 1 and header.authorities_change() is not None:
                raise LightClientError(
                    f"header #{header.number} changes the authority set and must end its batch"
                )
            parent = header
        last = headers[-1]
        try:
            verify_justification(justification, self.genesis_hash, last.number, last.hash, self.authority_set)
        except FinalityError as exc:
            raise LightClientError(f"header #{last.number} is not finalized: {exc}") from exc
        change = last.authorities_change()
        if change is not None and change.set_id != self.authority_set.set_id + 1:
            raise LightClientError("authority change skips a set id")
        # Every check passed: only now change state.
        for header in headers:
            self.accepted[header.hash] = header
        while len(self.accepted) > MAX_ACCEPTED:
            del self.accepted[next(iter(self.accepted))]
        self.finalized = last
        if change is not None:
            self.authority_set = AuthoritySet(change.set_id, list(change.authorities))
        return last

    def read_storage(self, block_hash: bytes, proof: list[bytes], keys: list[bytes]) -> dict[bytes, bytes | None]:
        """Values of ``keys`` at an accepted block, checked against its state root."""
        header = self.accepted.get(block_hash)
        if header is None:
            raise LightClientError("block is not one this light client has accepted")
        try:
            return verify_proof(header.state_root, proof, keys)
        except ProofError as exc:
            raise LightClientError(f"bad storage proof: {exc}") from exc
