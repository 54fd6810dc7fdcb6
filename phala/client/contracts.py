"""Client-side contract helpers: sealing constructor arguments and commands, and the
account's X25519 key that receipts and events are sealed to.

The chain never sees a command in the clear: the client seals ``(method, args, reply key)``
to the contract's X25519 key with associated data naming the chain, the contract and the
sender (:func:`phala.core.contracts.command_aad`), and submits the ciphertext in an
extrinsic it signs. Copied into another account's extrinsic, the ciphertext names the wrong
sender and does not open.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from typing import Any

from phala.contracts.checker import CheckResult, check_source
from phala.contracts.values import decode_plain, encode_plain
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


# -- a contract's interface, read from its source without running it ----------------------------

KINDS = ("constructor", "command", "query", "handler")


class InterfaceError(ValueError):
    """Source that is not a contract module: it does not parse, or has no single Contract class."""


@dataclass(frozen=True)
class MethodSpec:
    """A marked method: its kind, and its parameters after ``self`` and ``ctx`` with their
    annotations as written (``None``: not annotated)."""

    name: str
    kind: str
    params: tuple[tuple[str, str | None], ...]
    required: int  # parameters without a default

    def signature(self) -> str:
        parts = [name if ann is None else f"{name}: {ann}" for name, ann in self.params]
        return f"{self.name}({', '.join(parts)})"


@dataclass(frozen=True)
class ContractInterface:
    name: str
    methods: dict[str, MethodSpec]

    def of_kind(self, kind: str) -> list[MethodSpec]:
        return [m for m in self.methods.values() if m.kind == kind]

    def constructor(self) -> MethodSpec | None:
        found = self.of_kind("constructor")
        return found[0] if found else None


def contract_interface(source: str | bytes) -> ContractInterface:
    """The contract class's name and marked methods, read from the syntax tree of ``source``
    (nothing is executed: the executor checks the code itself when it loads it). Raises
    :class:`InterfaceError`."""
    text = source.decode("utf-8") if isinstance(source, bytes) else source
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise InterfaceError(f"the source does not parse: {exc.msg} (line {exc.lineno})") from None
    classes = [
        node for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id == "Contract" for b in node.bases)
    ]
    if len(classes) != 1:
        raise InterfaceError("a contract module defines exactly one class deriving from Contract")
    methods: dict[str, MethodSpec] = {}
    for item in classes[0].body:
        if not isinstance(item, ast.FunctionDef):
            continue
        kinds = [d.id for d in item.decorator_list if isinstance(d, ast.Name) and d.id in KINDS]
        if not kinds:
            continue
        params = tuple(
            (a.arg, None if a.annotation is None else ast.unparse(a.annotation))
            for a in item.args.args[2:]
        )
        methods[item.name] = MethodSpec(item.name, kinds[0], params, len(params) - len(item.args.defaults))
    return ContractInterface(classes[0].name, methods)


def check_code(source: str | bytes) -> CheckResult:
    """Run on ``source`` exactly the checks a worker runs when it loads a contract's code
    (:func:`phala.contracts.checker.check_source`), here, without a node: ``ok``, the errors
    as ``(line, message)`` and, when ok, the interface. Raises :class:`InterfaceError` for
    bytes that are not UTF-8 (which the chain refuses to store)."""
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = source[: exc.start].count(b"\n") + 1
            raise InterfaceError(f"line {line}: the source is not valid UTF-8 ({exc.reason})") from None
    return check_source(source)


def unseal_for_account(account: Keypair, value: Any, aad: bytes) -> Any:
    """A receipt's or events' value as the worker answered it: ``{"sealed": envelope}``
    sealed to the account's X25519 key (opened here), or the plain value."""
    if type(value) is dict and set(value) == {"sealed"} and type(value["sealed"]) is bytes:
        try:
            plain = open_envelope(account_ecdh(account).secret, Envelope.from_bytes(value["sealed"]), aad)
        except EnvelopeError as exc:
            raise QueryAnswerError(f"the sealed value does not open with this account's key: {exc}") from exc
        return decode_plain(plain)
    return value
