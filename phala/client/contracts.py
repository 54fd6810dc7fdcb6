"""Client-side contract helpers: sealing constructor arguments and commands, and the
account's X25519 key that receipts and events are sealed to.

The chain never sees a command in the clear: the client seals ``(method, args, reply key)``
to the contract's X25519 key with associated data naming the chain, the contract and the
sender (:func:`phala.core.contracts.command_aad`), and submits the ciphertext in an
extrinsic it signs. Copied into another account's extrinsic, the ciphertext names the wrong
sender and does not open.
"""

from __future__ import annotations

import os
from typing import Any

from phala.contracts.values import encode_plain
from phala.core.codec import DecodeError, decode, encode
from phala.core.contracts import (
    COMMAND_INFO,
    CONSTRUCTOR_INFO,
    CommandPlain,
    Query,
    QueryAnswer,
    SignedQuery,
    answer_aad,
    command_aad,
    constructor_aad,
    query_aad,
    query_signing_bytes,
)
from phala.core.envelope import (
    Envelope,
    EnvelopeError,
    X25519Keypair,
    hkdf_sha256,
    open_envelope,
    seal,
)
from phala.core.keys import Keypair

ACCOUNT_ECDH_INFO = b"phala/account/x25519/v1"


def account_ecdh(account: Keypair) -> X25519Keypair:
    """The account's X25519 keypair, derived from its sr25519 secret: receipts and events
    for the account are sealed to its public half (which commands carry as the reply key)."""
    return X25519Keypair.from_secret(hkdf_sha256(account.secret_key, ACCOUNT_ECDH_INFO, 32))


def seal_constructor(cluster_ecdh: bytes, genesis_hash: bytes, contract: bytes, deployer: Keypair,
                     method: str, args: list[Any]) -> bytes:
    """The ``args`` bytes of ``Contracts.instantiate``: the constructor call sealed to the
    cluster's current X25519 key."""
    plain = CommandPlain(method, encode_plain(list(args)), account_ecdh(deployer).public)
    aad = constructor_aad(genesis_hash, contract, deployer.public_key)
    return seal(cluster_ecdh, encode(plain), aad, info=CONSTRUCTOR_INFO).to_bytes()


def seal_command(contract_ecdh: bytes, genesis_hash: bytes, contract: bytes, sender: Keypair,
                 method: str, args: list[Any]) -> bytes:
    """The ``payload`` of ``Contracts.command``: the call sealed to the contract's X25519 key."""
    plain = CommandPlain(method, encode_plain(list(args)), account_ecdh(sender).public)
    aad = command_aad(genesis_hash, contract, sender.public_key)
    return seal(contract_ecdh, encode(plain), aad, info=COMMAND_INFO).to_bytes()


class QueryAnswerError(Exception):
    """An answer that does not open with the query's reply key, or is malformed."""


def seal_query(worker_ecdh: bytes, genesis_hash: bytes, signer: Keypair, query: Query) -> bytes:
    """Sign ``query`` with the account's key and seal it to the worker's X25519 key (which
    the caller read from chain state with a proof, never from the worker itself)."""
    signed = SignedQuery(query, signer.public_key, signer.sign(query_signing_bytes(genesis_hash, query)))
    return seal(worker_ecdh, encode(signed), query_aad(genesis_hash)).to_bytes()


def new_query(kind: int, contract: bytes, method: str, args: list[Any], worker: bytes, at_block: int,
              lifetime: int = 20, min_block: int = 0) -> tuple[Query, X25519Keypair]:
    """A query with a fresh nonce and reply key, valid until ``at_block + lifetime``."""
    reply = X25519Keypair.generate()
    query = Query(kind, contract, method, encode_plain(list(args)), os.urandom(32), at_block + lifetime,
                  min_block, worker, reply.public)
    return query, reply


def open_answer(reply: X25519Keypair, genesis_hash: bytes, query: Query, sealed: bytes) -> QueryAnswer:
    try:
        plain = open_envelope(reply.secret, Envelope.from_bytes(sealed), answer_aad(genesis_hash, query))
        return decode(QueryAnswer, plain)
    except (EnvelopeError, DecodeError) as exc:
        raise QueryAnswerError(f"the answer does not open: {exc}") from exc
