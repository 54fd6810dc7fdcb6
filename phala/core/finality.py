"""Finality proofs: checking that an authority set finalized a block.

A justification carries signatures of authorities of set ``set_id`` over
``FINALITY_CONTEXT ++ encode(FinalityVote(genesis_hash, set_id, number, block_hash))``.
It is valid when it names the right set and block, every signer is a distinct member of the
set, every signature verifies, and more than two thirds of the set signed.
"""

from __future__ import annotations

from .keys import verify
from .types import AuthoritySet, AuthoritySignature, Justification, finality_message


class FinalityError(Exception):
    """A justification does not prove finality of the block it claims."""


def verify_justification(
    justification: Justification,
    genesis_hash: bytes,
    number: int,
    block_hash: bytes,
    authority_set: AuthoritySet,
) -> None:
    """Raise :class:`FinalityError` with the reason unless ``justification`` finalizes
    block ``number`` with hash ``block_hash`` under ``authority_set``."""
    if justification.set_id != authority_set.set_id:
        raise FinalityError(
            f"justification is for authority set {justification.set_id}, expected {authority_set.set_id}"
        )
    if justification.number != number or justification.block_hash != block_hash:
        raise FinalityError("justification is for another block")
    members = set(authority_set.authorities)
    message = finality_message(genesis_hash, authority_set.set_id, number, block_hash)
    seen: set[bytes] = set()
    for sig in justification.signatures:
        if sig.authority not in members:
            raise FinalityError("justification signed by a key outside the authority set")
        if sig.authority in seen:
            raise FinalityError("justification has two signatures by one authority")
        if not verify(sig.authority, message, sig.signature):
            raise FinalityError("invalid signature in justification")
        seen.add(sig.authority)
    if len(seen) < authority_set.threshold():
        raise FinalityError(
            f"{len(seen)} of {len(members)} authorities signed; {authority_set.threshold()} needed"
        )


def sign_vote(
    keypair: object, genesis_hash: bytes, set_id: int, number: int, block_hash: bytes
) -> AuthoritySignature:
    """One authority's signature for a justification (``keypair`` is a ``keys.Keypair``)."""
    message = finality_message(genesis_hash, set_id, number, block_hash)
    return AuthoritySignature(keypair.public_key, keypair.sign(message))  # type: ignore[attr-defined]
