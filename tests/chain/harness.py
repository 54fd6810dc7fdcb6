"""Shared helpers for the chain tests: an in-process dev node on a temporary LMDB, extrinsic
signing, and typed reads of the finalized state.

Everything is deterministic: the chain spec has a fixed start time, so the genesis hash is a
constant (sr25519 signatures are randomized, so tests never depend on extrinsic bytes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from phala.chain.blockchain import Blockchain, genesis_block
from phala.chain.consensus import DevConsensus
from phala.chain.db import ChainDB
from phala.chain.node import Node
from phala.chain.pool import PoolError, TxPool
from phala.chain.runtime import balances, executive, mq, registry, sudo, system
from phala.chain.runtime.executive import VERSION, InvalidTransaction
from phala.chain.runtime.frame import Env, Pallet, RuntimeCall, RuntimeEvent
from phala.chain.spec import UNIT, ChainSpec
from phala.chain.state import Overlay
from phala.core.attestation import (
    SIM_ATTESTATION_URI,
    WorkerRegistrationInfo,
    report_data,
    sign_sim_quote,
)
from phala.core.codec import encode
from phala.core.keys import Keypair, dev_keypair
from phala.core.mq import Message, MessageOrigin, WorkerOrigin, sign_message
from phala.core.types import Era, Extrinsic, Header, UnsignedExtrinsic, signing_payload

START_TIME_MS = 1_700_000_000_000

ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")
CHARLIE = dev_keypair("Charlie")
DAVE = dev_keypair("Dave")
# Not in genesis: holds nothing.
NOBODY = Keypair.from_uri("//Nobody")
# Signs sim quotes on the dev chain.
SIM_KEY = Keypair.from_uri(SIM_ATTESTATION_URI)

# The bare dev spec does not endow the treasury, so a block's fees below the existential
# deposit would be burnt instead of credited; endowing it makes fee accounting observable.
BARE_SPEC = ChainSpec.dev(start_time_ms=START_TIME_MS)
SPEC = dataclasses.replace(BARE_SPEC, balances=BARE_SPEC.balances + ((balances.TREASURY, UNIT),))
GENESIS = genesis_block(SPEC)[0].hash

PARAMS = SPEC.parameters
ED = PARAMS.existential_deposit
SLOT = PARAMS.slot_duration_ms
INITIAL = 1_000_000 * UNIT  # each dev account's genesis balance


# -- building nodes ---------------------------------------------------------------------------


def make_node(
    path: Path,
    spec: ChainSpec | None = SPEC,
    keys: tuple[Keypair, ...] = (ALICE,),
    pool: TxPool | None = None,
) -> Node:
    """A manual-seal dev node on an LMDB directory (created, or reopened if it exists)."""
    chain = Blockchain(ChainDB(path), spec)
    return Node(chain, DevConsensus(list(keys), "manual"), pool)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A dev node where Alice authors, finalizes and is sudo (genesis: :data:`SPEC`)."""
    n = make_node(tmp_path / "db")
    yield n
    n.close()


# -- extrinsics -------------------------------------------------------------------------------


def sign(
    keypair: Keypair,
    call: RuntimeCall,
    nonce: int,
    tip: int = 0,
    era: Era = Era(),  # noqa: B008 - Era is frozen
    genesis: bytes | None = None,
    birth: bytes | None = None,
    spec_version: int = VERSION.spec_version,
    transaction_version: int = VERSION.transaction_version,
) -> bytes:
    """An encoded signed extrinsic. ``genesis`` defaults to :data:`GENESIS`; ``birth`` (the
    hash of the era's birth block) defaults to the genesis hash, which only immortal eras and
    eras born at block 0 use."""
    genesis = GENESIS if genesis is None else genesis
    birth = genesis if birth is None else birth
    encoded_call = encode(call, RuntimeCall)
    payload = signing_payload(
        encoded_call, era, nonce, tip, spec_version, transaction_version, genesis, birth
    )
    return Extrinsic(
        keypair.public_key, keypair.sign(payload), era, nonce, tip, encoded_call
    ).encode()


def fee_of(raw: bytes) -> int:
    return PARAMS.base_fee + PARAMS.byte_fee * len(raw)


def produce(node: Node) -> Header:
    header = node.produce_block()
    assert header is not None
    return header


def submit_and_produce(node: Node, *raws: bytes) -> Header:
    for raw in raws:
        node.submit(raw)
    return produce(node)


def body(node: Node, header: Header | None = None) -> list[bytes]:
    header = node.chain.head if header is None else header
    found = node.chain.db.body(header.hash)
    assert found is not None
    return found


# -- reading state ----------------------------------------------------------------------------


def read(chain: Blockchain, fn: Callable[[Overlay], Any]) -> Any:
    """``fn`` applied to the finalized state, through a fresh read view."""
    view = chain.db.state_view()
    try:
        return fn(Overlay(view))
    finally:
        view.close()


def account(chain: Blockchain, who: Keypair | bytes) -> system.AccountInfo:
    return read(chain, lambda st: system.Account.get(st, _id(who)))


def account_record(chain: Blockchain, who: Keypair | bytes) -> system.AccountInfo | None:
    """The stored record, or ``None`` when the account has no record at all."""
    return read(chain, lambda st: system.Account.get_opt(st, _id(who)))


def free(chain: Blockchain, who: Keypair | bytes) -> int:
    return account(chain, who).data.free


def total_issuance(chain: Blockchain) -> int:
    return read(chain, balances.TotalIssuance.get)


def all_accounts(chain: Blockchain) -> dict[bytes, system.AccountInfo]:
    return read(chain, lambda st: dict(system.Account.items(st)))


def events(chain: Blockchain) -> list[system.EventRecord]:
    """The events of the finalized head block."""
    return read(chain, system.Events.get)


def events_of(chain: Blockchain, kind: type[RuntimeEvent]) -> list[Any]:
    return [r.event for r in events(chain) if isinstance(r.event, kind)]


def failures(chain: Blockchain) -> list[tuple[int | None, system.DispatchErrorInfo]]:
    """``(phase, error)`` of every ExtrinsicFailed in the head block."""
    return [
        (r.phase, r.event.error)
        for r in events(chain)
        if isinstance(r.event, system.ExtrinsicFailed)
    ]


def error_info(error: type) -> system.DispatchErrorInfo:
    return system.DispatchErrorInfo(error.pallet_index, error.code)


def assert_issuance_consistent(chain: Blockchain) -> None:
    """TotalIssuance is exactly the sum of every account's free and reserved balance."""
    held = sum(info.data.free + info.data.reserved for info in all_accounts(chain).values())
    assert total_issuance(chain) == held


def _id(who: Keypair | bytes) -> bytes:
    return who.public_key if isinstance(who, Keypair) else who


# -- refusals leave no trace ------------------------------------------------------------------


def snapshot(node: Node) -> tuple:
    """Everything a refused submission must leave alone: head, trie root, stored state, pool."""
    chain = node.chain
    return (
        chain.head.hash,
        chain.tree.root(),
        list(chain.db.state_items()),
        node.pool.pending(),
        sorted(node.pool.senders()),
        dict(node.pool.account_nonce),
        node.pool.bytes,
    )


def expect_invalid(node: Node, raw: bytes, kind: str) -> InvalidTransaction:
    before = snapshot(node)
    with pytest.raises(InvalidTransaction) as info:
        node.submit(raw)
    assert info.value.kind == kind, info.value.message
    assert snapshot(node) == before
    return info.value


def expect_pool_error(node: Node, raw: bytes, code: int) -> PoolError:
    before = snapshot(node)
    with pytest.raises(PoolError) as info:
        node.submit(raw)
    assert info.value.code == code, info.value.message
    assert snapshot(node) == before
    return info.value


# -- running runtime code inside a real block -------------------------------------------------


@contextmanager
def block_hook(monkeypatch: pytest.MonkeyPatch, fn: Callable[[Env], None]) -> Iterator[None]:
    """While active, every block runs ``fn(env)`` after the pallets' ``on_initialize``: a
    way to drive helper interfaces (locks, reserves) that no call exposes yet."""
    with monkeypatch.context() as m:
        hook = Pallet(name="TestHook", index=250, on_initialize=fn)
        m.setattr(executive, "PALLETS", (*executive.PALLETS, hook))
        yield


def run_in_block(monkeypatch: pytest.MonkeyPatch, node: Node, fn: Callable[[Env], None]) -> Header:
    with block_hook(monkeypatch, fn):
        return produce(node)


@contextmanager
def head_env(chain: Blockchain, author: Keypair = ALICE) -> Iterator[Env]:
    """An environment for the next block over the finalized state; its writes are dropped."""
    view = chain.db.state_view()
    try:
        yield Env(Overlay(view), chain.next_context(author.public_key))
    finally:
        view.close()


# -- root calls, workers and their messages ---------------------------------------------------


def root(node: Node, call: RuntimeCall, error: type | None = None) -> None:
    """Dispatch ``call`` as root through Alice's sudo in a new block; ``error`` is the inner
    error expected (``None``: it succeeds)."""
    submit_and_produce(node, sign(ALICE, sudo.sudo(call), node.account_next_index(ALICE.public_key)))
    assert failures(node.chain) == []
    expected = None if error is None else error_info(error)
    assert events_of(node.chain, sudo.Sudid) == [sudo.Sudid(expected)]


def register_sim_worker(node: Node, worker: Keypair, ecdh: bytes) -> None:
    """Register ``worker`` (ECDH key ``ecdh``) with a sim quote, relayed by Charlie."""
    info = WorkerRegistrationInfo(1, worker.public_key, ecdh, GENESIS, None)
    call = registry.register_worker(info, sign_sim_quote(SIM_KEY, report_data(info)))
    submit_and_produce(node, sign(CHARLIE, call, node.account_next_index(CHARLIE.public_key)))
    assert failures(node.chain) == []


def synced(
    key: Keypair, topic: bytes, payload: bytes, sequence: int, sender: MessageOrigin | None = None
) -> bytes:
    """An unsigned ``sync_offchain_message`` signed by ``key``; the sender defaults to
    ``key``'s worker origin."""
    origin = WorkerOrigin(key.public_key) if sender is None else sender
    signed = sign_message(key, GENESIS, Message(origin, topic, payload), sequence)
    return UnsignedExtrinsic(
        encode(mq.sync_offchain_message(signed), executive.RuntimeCall)
    ).encode()


def outbound(node: Node) -> list[Message]:
    """The head block's messages for pRuntimes."""
    return read(node.chain, mq.OutboundMessages.get)


def message_failures(node: Node) -> list[tuple[MessageOrigin, system.DispatchErrorInfo]]:
    """``(sender, error)`` of every off-chain message the head block accepted and its
    handler refused."""
    return [(e.sender, e.error) for e in events_of(node.chain, mq.OffchainMessageFailed)]
