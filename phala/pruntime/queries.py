"""Answering signed, encrypted contract queries (the pRuntime's public ``/contract_query``).

A query reaches one worker directly (:mod:`phala.core.contracts`, "queries"). The worker:

1. opens it with its ECDH key (it was sealed to the key the chain registered for it);
2. checks the account's signature over (genesis hash, query), that the query names this
   worker, that ``expiry`` is not passed and at most ``MAX_QUERY_AHEAD`` blocks ahead, that
   ``min_block`` has been dispatched, and that the nonce was not seen before (nonces are kept
   until their expiry, in a file that survives restarts);
3. runs it read-only against the current state (a ``@query`` method, or a command's receipt,
   which only the command's sender may read);
4. seals a :class:`~phala.core.contracts.QueryAnswer` naming the block it was computed at to
   the query's reply key.

Every refusal is a :class:`QueryError` with the reason; nothing changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from phala.contracts import protocol as p
from phala.contracts.host import ExecutorAlarm
from phala.contracts.values import Raw, decode_record, encode_plain
from phala.core.codec import DecodeError, decode, encode
from phala.core.contracts import (
    MAX_QUERY_AHEAD,
    QUERY_EVENTS,
    QUERY_METHOD,
    QUERY_RECEIPT,
    QueryAnswer,
    SignedQuery,
    answer_aad,
    events_aad,
    query_aad,
    query_signing_bytes,
    receipt_aad,
)
from phala.core.envelope import Envelope, EnvelopeError, open_envelope, seal
from phala.core.keys import verify

from .contracts import ContractRunner

log = logging.getLogger("phala.pruntime")

NONCE_FILE = "query_nonces.log"
MAX_QUERY_BYTES = 64 * 1024


class QueryError(Exception):
    """A query refused; the message says why."""


class NonceStore:
    """Nonces of answered queries with their expiry, kept in an append-only file so a
    replayed query is refused after a restart too. Expired ones are forgotten."""

    def __init__(self, path: Path):
        self.path = path
        self.seen: dict[bytes, int] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                nonce, _, expiry = line.partition(" ")
                try:
                    self.seen[bytes.fromhex(nonce)] = int(expiry)
                except ValueError:
                    continue  # a torn last line after a crash

    def check_and_add(self, nonce: bytes, expiry: int, now: int) -> None:
        if nonce in self.seen:
            raise QueryError("this query was already answered (replayed nonce)")
        self.seen[nonce] = expiry
        with self.path.open("a") as log_file:
            log_file.write(f"{nonce.hex()} {expiry}\n")
        expired = [n for n, e in self.seen.items() if e < now]
        if len(expired) > max(1024, len(self.seen) // 2):
            for n in expired:
                del self.seen[n]
            text = "".join(f"{n.hex()} {e}\n" for n, e in self.seen.items())
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.path)


class QueryService:
    """Attach to a worker with its contract runner: ``QueryService(worker, runner, data_dir)``."""

    def __init__(self, worker, runner: ContractRunner, data_dir: Path):
        self.worker = worker
        self.runner = runner
        self.nonces = NonceStore(Path(data_dir) / NONCE_FILE)
        worker.roles.append(self)

    def answer(self, sealed: bytes) -> bytes:
        """The sealed answer to the sealed query ``sealed``. Raises :class:`QueryError`."""
        chain = self.worker.chain
        if chain is None or chain.dispatched is None:
            raise QueryError("the worker has not synced any block yet")
        if len(sealed) > MAX_QUERY_BYTES:
            raise QueryError(f"a query is at most {MAX_QUERY_BYTES} bytes")
        genesis = self.worker.pinned_genesis_hash
        try:
            plain = open_envelope(self.worker.identity.ecdh.secret, Envelope.from_bytes(sealed), query_aad(genesis))
            signed = decode(SignedQuery, plain)
        except (EnvelopeError, DecodeError) as exc:
            raise QueryError(f"the query does not open for this worker: {exc}") from exc
        query = signed.query
        if not verify(signed.signer, query_signing_bytes(genesis, query), signed.signature):
            raise QueryError("bad signature: the query is not signed by its signer")
        if query.worker != self.worker.identity.public_key:
            raise QueryError("the query names another worker")
        now = chain.dispatched.number
        if query.expiry < now:
            raise QueryError(f"the query expired at block {query.expiry}; the worker is at {now}")
        if query.expiry > now + MAX_QUERY_AHEAD:
            raise QueryError(f"the expiry may be at most {MAX_QUERY_AHEAD} blocks ahead of {now}")
        if query.min_block > now:
            raise QueryError(f"the worker has not reached block {query.min_block} yet (it is at {now})")
        self.nonces.check_and_add(query.nonce, query.expiry, now)
        outcome = self._run(signed)
        answer = QueryAnswer(now, chain.dispatched.hash, outcome.status, outcome.message, outcome.gas_used, outcome.value)
        return seal(query.reply_key, encode(answer), answer_aad(genesis, query)).to_bytes()

    def _run(self, signed: SignedQuery) -> p.Outcome:
        query = signed.query
        if query.kind == QUERY_RECEIPT:
            return self._receipt(signed)
        if query.kind == QUERY_EVENTS:
            return self._events(signed)
        if query.kind != QUERY_METHOD:
            return p.failure(p.REFUSED, f"unknown query kind {query.kind}")
        running = self.runner.contracts.get(query.contract)
        if running is None:
            return p.failure(p.REFUSED, "this worker does not run that contract")
        try:
            return self.runner.run_query(running, query.method, query.args, signed.signer, query.nonce)
        except ExecutorAlarm as exc:
            return p.failure(p.REFUSED, f"the contract is halted on this worker: {exc}")

    def _receipt(self, signed: SignedQuery) -> p.Outcome:
        index = _only_argument(signed)
        if index is _NO_ARGUMENT:
            return p.failure(p.REFUSED, "a receipt query takes one argument: the command index")
        receipt = self.runner.receipts.get((signed.query.contract, index)) if type(index) is int else None
        if receipt is None:
            return p.failure(p.ERROR, "no receipt for that command (unknown, or older than the receipts kept)")
        if receipt.sender != signed.signer:
            return p.failure(p.REFUSED, "only the command's sender may read its receipt")
        value = {
            "status": p.STATUS_NAMES[receipt.status],
            "gas_used": receipt.gas_used,
            "value": Raw(receipt.value) if receipt.value else None,
            "events": [Raw(e) for e in receipt.events],
            "message": receipt.message,
        }
        aad = receipt_aad(self.worker.pinned_genesis_hash, signed.query.contract, index)
        return _sealed_answer(receipt.reply_key, value, aad)

    def _events(self, signed: SignedQuery) -> p.Outcome:
        """The events the contract emitted for the signer (as sender or as a listed account)
        from the given block on, oldest first: ``[{"block", "index", "event"}]``."""
        since = _only_argument(signed)
        if type(since) is not int:
            return p.failure(p.REFUSED, "an events query takes one argument: the first block")
        key = (signed.query.contract, signed.signer)
        kept = self.runner.account_events.get(key, [])
        value = [{"block": e.block, "index": e.index, "event": Raw(e.event)} for e in kept if e.block >= since]
        aad = events_aad(self.worker.pinned_genesis_hash, signed.query.contract, signed.signer)
        return _sealed_answer(self.runner.reply_keys.get(key), value, aad)

    def info(self) -> dict:
        return {}


_NO_ARGUMENT = object()


def _only_argument(signed: SignedQuery) -> object:
    """The one argument of a receipt or events query, or ``_NO_ARGUMENT``."""
    try:
        [value] = decode_record(signed.query.args, "i")  # never a dict of the asker's keys
    except DecodeError:
        return _NO_ARGUMENT
    return value


def _sealed_answer(account_key: bytes | None, value: object, aad: bytes) -> p.Outcome:
    """An OK answer holding ``{"sealed": envelope}`` of ``value`` for the account's X25519
    key, when one is known (else the value itself, still inside the answer sealed to the
    query's reply key)."""
    if account_key is not None:
        value = {"sealed": seal(account_key, encode_plain(value), aad).to_bytes()}
    return p.Outcome(p.OK, "", 0, encode_plain(value), [], [])

