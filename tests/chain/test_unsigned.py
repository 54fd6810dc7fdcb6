"""Unsigned extrinsics: their encoding, which calls may use them, and how the pool and the
block builder treat them (no fee, no account nonce, a sender key and sequence instead)."""

import pytest

from phala.chain.pool import IMMEDIATELY_DROPPED, PRIORITY_TOO_LOW, TxPool
from phala.chain.runtime import balances, executive, mq, sudo, system
from phala.chain.runtime.executive import UnsignedValidity
from phala.chain.runtime.frame import BadOrigin, RuntimeCall
from phala.core.codec import DecodeError, EncodeError, encode
from phala.core.keys import Keypair
from phala.core.mq import Message, WorkerOrigin, sign_message
from phala.core.types import Extrinsic, UnsignedExtrinsic, decode_extrinsic

from .harness import (
    ALICE,
    BOB,
    GENESIS,
    account,
    error_info,
    events,
    expect_invalid,
    expect_pool_error,
    failures,
    fee_of,
    free,
    head_env,
    make_node,
    produce,
    sign,
    submit_and_produce,
    total_issuance,
)

WORKER = Keypair.from_uri("//UnsignedTestWorker")


def unsigned(call: RuntimeCall) -> bytes:
    return UnsignedExtrinsic(encode(call, RuntimeCall)).encode()


def synced(
    key: Keypair, sequence: int, topic: bytes = b"test/topic", payload: bytes = b"x"
) -> bytes:
    message = Message(WorkerOrigin(key.public_key), topic, payload)
    return unsigned(mq.sync_offchain_message(sign_message(key, GENESIS, message, sequence)))


@pytest.fixture
def active_worker(monkeypatch):
    """WORKER counts as an active registered worker (the registry's own tests and
    tests/chain/test_mq.py cover real registrations)."""
    from phala.chain.runtime import registry

    monkeypatch.setattr(
        registry,
        "is_active_worker",
        lambda env, identity: identity == WORKER.public_key,
        raising=False,
    )


# -- encoding ---------------------------------------------------------------------------------


def test_unsigned_round_trip():
    call = encode(system.remark(b"hello"), RuntimeCall)
    xt = UnsignedExtrinsic(call)
    raw = xt.encode()
    assert raw == b"\x04" + call
    assert UnsignedExtrinsic.decode(raw) == xt
    assert decode_extrinsic(raw) == xt
    signed = sign(BOB, system.remark(b"hello"), 0)
    assert decode_extrinsic(signed) == Extrinsic.decode(signed)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"\x04", "too short"),
        (b"\x04\x00", "too short"),
        (b"\x84\x00\x00", "signed"),
        (b"\x05\x00\x00", "version"),
        (b"\x00\x00\x00", "version"),
    ],
)
def test_unsigned_decode_refusals(data, reason):
    with pytest.raises(DecodeError, match=reason):
        UnsignedExtrinsic.decode(data)


def test_unsigned_encode_refuses_short_calls():
    for call in (b"", b"\x00"):
        with pytest.raises(EncodeError):
            UnsignedExtrinsic(call).encode()


def test_each_form_refuses_the_other():
    with pytest.raises(DecodeError, match="unsigned"):
        Extrinsic.decode(b"\x04" + bytes(120))
    with pytest.raises(DecodeError, match="signed"):
        UnsignedExtrinsic.decode(sign(BOB, system.remark(b"x"), 0))
    with pytest.raises(DecodeError):
        decode_extrinsic(b"")


# -- which calls may be unsigned --------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        system.remark(b"free ride"),
        balances.transfer_allow_death(BOB.public_key, 1),
        sudo.sudo(system.remark(b"as root")),
        sudo.sudo(
            mq.sync_offchain_message(
                sign_message(
                    WORKER, GENESIS, Message(WorkerOrigin(WORKER.public_key), b"t", b""), 0
                )
            )
        ),
        mq.push_message(b"topic", b"payload"),
    ],
)
def test_calls_without_validate_unsigned_are_refused(node, call):
    err = expect_invalid(node, unsigned(call), "Call")
    assert "cannot be submitted unsigned" in err.message


def test_undecodable_unsigned(node):
    expect_invalid(node, b"\x04\xfe\x00", "Call")  # no such pallet
    expect_invalid(node, b"\x04\x00", "Decode")  # too short
    expect_invalid(node, b"\x04" + bytes(200 * 1024), "ExhaustsResources")


def test_unsigned_only_call_refuses_other_origins(node, active_worker):
    """sync_offchain_message dispatched by a signed extrinsic or through sudo fails with
    BadOrigin: an account (even root) cannot pose as an off-chain sender."""
    signed = mq.sync_offchain_message(
        sign_message(WORKER, GENESIS, Message(WorkerOrigin(WORKER.public_key), b"t", b""), 0)
    )
    submit_and_produce(node, sign(BOB, signed, 0), sign(ALICE, sudo.sudo(signed), 0))
    assert failures(node.chain)[0] == (0, error_info(BadOrigin))
    sudid = [r.event for r in events(node.chain) if isinstance(r.event, sudo.Sudid)]
    assert sudid[0].error == error_info(BadOrigin)
    with head_env(node.chain) as env:
        assert mq.next_sequence(env, WorkerOrigin(WORKER.public_key)) == 0


# -- no fee, no nonce -------------------------------------------------------------------------


def test_unsigned_pays_nothing_and_bumps_no_nonce(node, active_worker):
    chain = node.chain
    produce(node)  # settle the first block's bookkeeping
    issuance, treasury = total_issuance(chain), free(chain, balances.TREASURY)
    alice = account(chain, ALICE)
    submit_and_produce(node, synced(WORKER, 0))
    assert failures(chain) == []
    assert total_issuance(chain) == issuance
    assert free(chain, balances.TREASURY) == treasury
    assert account(chain, ALICE) == alice  # the author gets no tip either
    assert not [r for r in events(node.chain) if isinstance(r.event, balances.TransactionFeePaid)]
    with head_env(chain) as env:
        assert mq.next_sequence(env, WorkerOrigin(WORKER.public_key)) == 1


def test_signed_path_unchanged(node):
    raw = sign(BOB, system.remark(b"paid"), 0)
    before = free(node.chain, BOB)
    submit_and_produce(node, raw)
    assert free(node.chain, BOB) == before - fee_of(raw)
    assert account(node.chain, BOB).nonce == 1


# -- the pool on (sender key, nonce) pairs ----------------------------------------------------


def test_checked_extrinsic_names_the_sender_key(node, active_worker):
    with head_env(node.chain) as env:
        checked = executive.check_extrinsic(env, synced(WORKER, 3))
        assert not checked.signed
        assert checked.sender == mq.sender_key(WorkerOrigin(WORKER.public_key))
        assert (checked.nonce, checked.expected, checked.fee, checked.tip) == (3, 0, 0, 0)
        assert checked.death == env.block.number + mq.UNSIGNED_LONGEVITY
        assert executive.expected_nonce(env, checked.sender) == 0
        signed = executive.check_extrinsic(env, sign(BOB, system.remark(b"x"), 0))
        assert signed.signed and signed.sender == BOB.public_key
        assert executive.expected_nonce(env, BOB.public_key) == 0
        with pytest.raises(KeyError):
            executive.expected_nonce(env, b"no such sender")


def test_unsigned_same_sequence_cannot_replace(node, active_worker):
    """Two messages with one sequence: the second is refused (no tip to outbid with)."""
    node.submit(synced(WORKER, 0, payload=b"first"))
    expect_pool_error(node, synced(WORKER, 0, payload=b"second"), PRIORITY_TOO_LOW)


def test_unsigned_future_limit(tmp_path, active_worker):
    node = make_node(tmp_path / "db", pool=TxPool(max_future_per_sender=2))
    try:
        node.submit(synced(WORKER, 5))
        node.submit(synced(WORKER, 6))
        expect_pool_error(node, synced(WORKER, 7), IMMEDIATELY_DROPPED)
        node.submit(synced(WORKER, 0))  # ready ones do not count
    finally:
        node.close()


def test_a_failing_unsigned_call_leaves_the_pool(node, monkeypatch, active_worker):
    """An unsigned call whose dispatch fails does not advance its sequence; it must not be
    offered again block after block."""

    def broken(self, env):
        raise mq.BadSequence("broken for the test")

    monkeypatch.setattr(mq.sync_offchain_message, "dispatch_unsigned", broken)
    node.submit(synced(WORKER, 0))
    produce(node)
    assert failures(node.chain) == [(0, error_info(mq.BadSequence))]
    assert len(node.pool) == 0


def test_validity_type():
    v = UnsignedValidity(b"phala/mq:x", 1, 0, 8)
    assert (v.sender, v.nonce, v.expected, v.longevity) == (b"phala/mq:x", 1, 0, 8)


def test_unregistered_sender_key_is_a_runtime_bug(node, monkeypatch):
    monkeypatch.setattr(
        mq.sync_offchain_message,
        "validate_unsigned",
        lambda self, env: UnsignedValidity(bytes(32), 0, 0, 8),
    )
    with pytest.raises(RuntimeError, match="sender key"):
        node.submit(synced(WORKER, 0))
