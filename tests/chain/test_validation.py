"""Extrinsic validation through ``Node.submit``: each refusal names the rule it broke and
leaves the state and the pool exactly as they were."""

import random

import pytest

from phala.chain.blockchain import genesis_block
from phala.chain.runtime import balances, system
from phala.chain.runtime.executive import MAX_EXTRINSIC_SIZE, VERSION, InvalidTransaction
from phala.chain.runtime.frame import RuntimeCall
from phala.core.codec import encode
from phala.core.hashing import blake2_256
from phala.core.types import Era, Extrinsic, signing_payload

from .harness import (
    ALICE,
    BARE_SPEC,
    BOB,
    CHARLIE,
    GENESIS,
    INITIAL,
    NOBODY,
    account,
    body,
    events_of,
    expect_invalid,
    failures,
    produce,
    sign,
    snapshot,
    submit_and_produce,
)


def remark(keypair=BOB, nonce=0, data=b"hello", **kw):
    return sign(keypair, system.remark(data), nonce, **kw)


def sign_call_bytes(keypair, call: bytes, nonce: int) -> bytes:
    """An extrinsic correctly signed over arbitrary (possibly invalid) call bytes."""
    payload = signing_payload(
        call, Era(), nonce, 0, VERSION.spec_version, VERSION.transaction_version, GENESIS, GENESIS
    )
    return Extrinsic(keypair.public_key, keypair.sign(payload), Era(), nonce, 0, call).encode()


def test_a_valid_extrinsic_is_pooled_and_included(node):
    raw = remark()
    tx_hash = node.submit(raw)
    assert tx_hash == blake2_256(raw) and tx_hash in node.pool
    assert node.pool.pending() == [raw]
    header = produce(node)
    assert body(node, header) == [raw]
    assert len(node.pool) == 0


# -- signatures -------------------------------------------------------------------------------


def test_bad_signature(node):
    raw = bytearray(remark())
    raw[40] ^= 0x01  # inside the signature
    expect_invalid(node, bytes(raw), "BadProof")


def test_signature_by_another_key(node):
    raw = bytearray(remark(BOB))
    raw[2:34] = CHARLIE.public_key  # claims to be Charlie, signed by Bob
    expect_invalid(node, bytes(raw), "BadProof")


def test_signer_that_is_not_a_curve_point(node):
    raw = bytearray(remark())
    raw[2:34] = b"\xff" * 32  # not a valid Ristretto point
    expect_invalid(node, bytes(raw), "BadProof")


def test_signature_without_the_schnorrkel_marker(node):
    raw = bytearray(remark())
    assert raw[98] & 0x80  # the marker bit of the last signature byte
    raw[98] &= 0x7F
    expect_invalid(node, bytes(raw), "BadProof")


def test_signed_for_another_genesis(node):
    expect_invalid(node, remark(genesis=bytes(32)), "BadProof")
    other_chain = genesis_block(BARE_SPEC)[0].hash
    assert other_chain != GENESIS
    expect_invalid(node, remark(genesis=other_chain), "BadProof")


def test_signed_for_another_runtime_version(node):
    expect_invalid(node, remark(spec_version=VERSION.spec_version + 1), "BadProof")
    expect_invalid(node, remark(transaction_version=VERSION.transaction_version + 1), "BadProof")


def test_no_single_bit_flip_of_a_valid_extrinsic_is_accepted(node):
    raw = remark(data=b"flip me")
    kinds = set()
    before = snapshot(node)
    for i in range(len(raw)):
        for bit in range(8):
            mutated = bytearray(raw)
            mutated[i] ^= 1 << bit
            try:
                node.submit(bytes(mutated))
            except InvalidTransaction as exc:
                kinds.add(exc.kind)
            else:
                raise AssertionError(f"bit {bit} of byte {i} flipped and still accepted")
    assert snapshot(node) == before
    assert {"BadProof", "Decode", "Call"} <= kinds


# -- nonces -----------------------------------------------------------------------------------


def test_stale_nonce(node):
    submit_and_produce(node, remark(nonce=0), remark(nonce=1))
    assert account(node.chain, BOB).nonce == 2
    expect_invalid(node, remark(nonce=0), "Stale")
    expect_invalid(node, remark(nonce=1, data=b"again"), "Stale")


def test_future_nonce_waits_for_the_gap(node):
    chain = node.chain
    third, second = remark(nonce=2, data=b"c"), remark(nonce=1, data=b"b")
    node.submit(third)
    node.submit(second)
    assert len(node.pool) == 2
    assert node.account_next_index(BOB.public_key) == 0  # the gap is at 0
    header = produce(node)
    assert body(node, header) == [] and len(node.pool) == 2
    assert account(chain, BOB).nonce == 0

    first = remark(nonce=0, data=b"a")
    node.submit(first)
    assert node.account_next_index(BOB.public_key) == 3
    header = produce(node)
    assert body(node, header) == [first, second, third]
    assert events_of(chain, system.Remarked) == [
        system.Remarked(BOB.public_key, blake2_256(d)) for d in (b"a", b"b", b"c")
    ]
    assert account(chain, BOB).nonce == 3 and len(node.pool) == 0


# -- mortality --------------------------------------------------------------------------------


def test_mortal_era_valid_within_its_window(node):
    head = produce(node)
    era = Era.mortal(64, head.number)
    produce(node)
    produce(node)
    raw = remark(era=era, birth=head.hash)
    header = submit_and_produce(node, raw)
    assert body(node, header) == [raw]


def test_mortal_era_expires(node):
    chain = node.chain
    born = produce(node)  # block 1
    era = Era.mortal(4, born.number)
    assert (era.period, era.birth(born.number + 1), era.death(born.number + 1)) == (4, 1, 5)
    raw = remark(era=era, birth=born.hash)
    while chain.head.number < 4:
        produce(node)
    # Block 5 starts the next window: its birth block is 5 itself, not known yet.
    expect_invalid(node, raw, "AncientBirthBlock")
    produce(node)
    # From block 6 the window's birth block is 5, whose hash the signature does not cover.
    expect_invalid(node, raw, "BadProof")


def test_expired_transactions_leave_the_pool(node):
    born = produce(node)  # block 1
    era = Era.mortal(4, born.number)  # valid for blocks 2, 3 and 4
    node.submit(remark(nonce=1, era=era, birth=born.hash))  # future: waits for nonce 0
    produce(node)  # 2
    produce(node)  # 3
    assert len(node.pool) == 1
    produce(node)  # 4: the next block (5) is past its era
    assert len(node.pool) == 0


def test_era_born_after_the_current_block(node):
    produce(node)
    era = Era.mortal(64, node.chain.head.number + 10)
    expect_invalid(node, remark(era=era, birth=node.chain.head.hash), "AncientBirthBlock")


def test_era_whose_birth_block_was_pruned(node, monkeypatch):
    monkeypatch.setattr(system, "BLOCK_HASH_COUNT", 3)
    produce(node)
    born = produce(node)  # block 2
    era = Era.mortal(16, born.number)
    while node.chain.head.number < 4:
        produce(node)
    # Still remembered at block 5: accepted and included.
    raw = remark(nonce=0, era=era, birth=born.hash)
    assert body(node, submit_and_produce(node, raw)) == [raw]
    produce(node)  # block 6 forgets block 2
    assert node.chain.head.number == 6
    expect_invalid(node, remark(nonce=1, era=era, birth=born.hash), "AncientBirthBlock")


# -- payment ----------------------------------------------------------------------------------


def test_cannot_pay_the_fee(node):
    expect_invalid(node, remark(NOBODY), "Payment")
    expect_invalid(node, remark(BOB, tip=INITIAL), "Payment")  # the tip counts too


# -- size and decoding ------------------------------------------------------------------------


def test_size_limit(node):
    probe = remark(data=b"x" * 100_000)
    exact = remark(data=b"x" * (100_000 + MAX_EXTRINSIC_SIZE - len(probe)))
    assert len(exact) == MAX_EXTRINSIC_SIZE
    over = remark(data=b"x" * (100_001 + MAX_EXTRINSIC_SIZE - len(probe)))
    assert len(over) == MAX_EXTRINSIC_SIZE + 1
    expect_invalid(node, over, "ExhaustsResources")
    header = submit_and_produce(node, exact)
    assert body(node, header) == [exact] and failures(node.chain) == []


def test_64k_remark_is_included(node):
    data = bytes(range(256)) * 256
    assert len(data) == 64 * 1024
    raw = remark(data=data)
    header = submit_and_produce(node, raw)
    assert body(node, header) == [raw]
    assert events_of(node.chain, system.Remarked) == [
        system.Remarked(BOB.public_key, blake2_256(data))
    ]


def test_truncated_extrinsics(node):
    raw = remark(data=b"abc")
    call = b"\x00\x00\x0cabc"  # System, remark, compact length 3, the data
    call_offset = len(raw) - len(call)
    assert raw[call_offset:] == call
    for n in range(call_offset + 1):
        expect_invalid(node, raw[:n], "Decode")
    # One byte of call may be refused as too short to be an extrinsic; more is a bad call.
    with pytest.raises(InvalidTransaction) as info:
        node.submit(raw[: call_offset + 1])
    assert info.value.kind in ("Decode", "Call")
    for n in range(call_offset + 2, len(raw)):
        expect_invalid(node, raw[:n], "Call")


def test_garbage_is_refused(node):
    rng = random.Random(20240601)
    before = snapshot(node)
    for _ in range(300):
        garbage = rng.randbytes(rng.randrange(0, 400))
        if garbage[:1] == b"\x84":
            garbage = b"\x00" + garbage[1:]
        try:
            node.submit(garbage)
        except InvalidTransaction as exc:
            assert exc.kind == "Decode", exc.message
        else:
            raise AssertionError("garbage accepted")
    # Well-framed garbage: right version, address and signature kinds, random content.
    for _ in range(300):
        framed = b"\x84\x00" + rng.randbytes(32) + b"\x01" + rng.randbytes(rng.randrange(64, 300))
        try:
            node.submit(framed)
        except InvalidTransaction:
            pass
        else:
            raise AssertionError("framed garbage accepted")
    assert snapshot(node) == before


def test_unsigned_and_unsupported_formats(node):
    raw = bytearray(remark())
    for offset, value in [(0, 0x85), (1, 0x01), (34, 0x00)]:
        mutated = bytearray(raw)
        mutated[offset] = value
        expect_invalid(node, bytes(mutated), "Decode")
    # 0x04 makes it an unsigned extrinsic whose call is the rest, which is no valid call.
    expect_invalid(node, b"\x04" + bytes(raw[1:]), "Call")


def test_undecodable_calls(node):
    good = encode(system.remark(b"ok"), RuntimeCall)
    assert good == b"\x00\x00\x08ok"
    assert node.submit(sign_call_bytes(BOB, good, 0))  # the helper signs correctly
    for call in [
        b"\xfe\x00",  # no such pallet
        b"\x00\x7f",  # no such call in System
        b"\x01\x00",  # Timestamp has no calls
        b"\x00\x00\x08ok!",  # trailing byte
        b"\x00\x00\x10ok",  # length says 4, 2 bytes follow
        b"\x02\x00" + bytes(31),  # transfer: account id cut short
    ]:
        expect_invalid(node, sign_call_bytes(BOB, call, 1), "Call")


def test_unknown_sender_nonce_zero_cannot_pay(node):
    expect_invalid(
        node, sign(NOBODY, balances.transfer_allow_death(ALICE.public_key, 1), 0), "Payment"
    )
