"""Building and signing extrinsics."""

from __future__ import annotations

import pytest

from phala.chain.runtime import balances, system
from phala.chain.runtime.executive import VERSION, RuntimeVersion
from phala.chain.runtime.frame import RuntimeCall
from phala.client.describe import call_args, call_name, decode_call
from phala.client.tx import build_extrinsic, extrinsic_hash
from phala.core.codec import decode, encode
from phala.core.hashing import blake2_256
from phala.core.keys import dev_keypair, verify
from phala.core.types import Era, Extrinsic, signing_payload

ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")
GENESIS = blake2_256(b"genesis")
BIRTH = blake2_256(b"birth")


def payload_of(xt: Extrinsic, birth: bytes, version: RuntimeVersion = VERSION) -> bytes:
    return signing_payload(
        xt.call, xt.era, xt.nonce, xt.tip, version.spec_version, version.transaction_version, GENESIS, birth
    )


def test_immortal_extrinsic_decodes_and_verifies() -> None:
    call = balances.transfer_keep_alive(BOB.public_key, 10**12)
    raw = build_extrinsic(ALICE, call, nonce=7, genesis_hash=GENESIS, tip=3)
    xt = Extrinsic.decode(raw)
    assert xt.signer == ALICE.public_key
    assert (xt.nonce, xt.tip, xt.era) == (7, 3, Era())
    assert decode(RuntimeCall, xt.call) == call
    assert xt.call == encode(call, RuntimeCall)
    assert verify(ALICE.public_key, payload_of(xt, GENESIS), xt.signature)
    # The signature commits to the chain: another genesis does not verify.
    other = signing_payload(xt.call, xt.era, 7, 3, VERSION.spec_version, VERSION.transaction_version, BIRTH, BIRTH)
    assert not verify(ALICE.public_key, other, xt.signature)


def test_mortal_extrinsic_signs_over_its_birth_block() -> None:
    era = Era.mortal(64, 1000)
    call = system.remark(b"x" * 300)  # a payload over 256 bytes is signed by its hash
    raw = build_extrinsic(BOB, call, nonce=0, genesis_hash=GENESIS, era=era, birth_hash=BIRTH)
    xt = Extrinsic.decode(raw)
    assert xt.era == era and not xt.era.immortal
    assert verify(BOB.public_key, payload_of(xt, BIRTH), xt.signature)
    assert not verify(BOB.public_key, payload_of(xt, GENESIS), xt.signature)


def test_runtime_version_is_signed() -> None:
    version = RuntimeVersion("phala", VERSION.spec_version + 1, VERSION.transaction_version)
    call = balances.transfer_allow_death(BOB.public_key, 1)
    xt = Extrinsic.decode(build_extrinsic(ALICE, call, 0, GENESIS, version=version))
    assert verify(ALICE.public_key, payload_of(xt, GENESIS, version), xt.signature)
    assert not verify(ALICE.public_key, payload_of(xt, GENESIS), xt.signature)


def test_mortal_era_needs_a_birth_hash() -> None:
    call = balances.transfer_keep_alive(BOB.public_key, 1)
    with pytest.raises(ValueError, match="birth block"):
        build_extrinsic(ALICE, call, 0, GENESIS, era=Era.mortal(64, 10))


def test_hash_and_call_description() -> None:
    call = balances.transfer_keep_alive(BOB.public_key, 5)
    raw = build_extrinsic(ALICE, call, 0, GENESIS)
    assert extrinsic_hash(raw) == blake2_256(raw)
    decoded = decode_call(Extrinsic.decode(raw).call)
    assert decoded == call
    assert call_name(decoded) == "Balances.transfer_keep_alive"
    assert call_args(decoded) == {"dest": BOB.public_key, "value": 5}
    assert call_name(system.remark(b"")) == "System.remark"
    assert decode_call(b"\xff\xff") is None
