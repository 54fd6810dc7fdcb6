"""Tests of the chain data types (:mod:`phala.core.types`).

``scalecodec`` is the oracle for byte layouts: its built-in ``Era`` type, and struct and enum
definitions mirroring Header, Justification and the signed part of a v4 extrinsic
(``MultiAddress`` and ``MultiSignature`` as in Substrate). Era semantics are also checked
against the rules and unit tests of Substrate's ``sp_runtime::generic::Era``.

Known difference: an immortal era's ``death`` is ``2**64`` here, ``u64::MAX`` in Substrate and
scalecodec. Both mean that no block number below ``u64::MAX`` ends the era.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes

from phala.core.codec import DecodeError, EncodeError, codec_of, decode, encode
from phala.core.types import (
    ERA,
    FINALITY_CONTEXT,
    MIN_EXTRINSIC_SIZE,
    AuthoritiesChange,
    AuthoritySet,
    AuthoritySignature,
    Block,
    BlockChanges,
    Era,
    Extrinsic,
    FinalityVote,
    Header,
    Justification,
    Other,
    SignedBlock,
    StorageChange,
    extrinsics_root,
    finality_message,
    signing_payload,
)


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def compact(v: int) -> bytes:
    """Compact encoding written out from the SCALE specification."""
    if v < 1 << 6:
        return bytes([v << 2])
    if v < 1 << 14:
        return ((v << 2) | 1).to_bytes(2, "little")
    if v < 1 << 30:
        return ((v << 2) | 2).to_bytes(4, "little")
    n = max(4, (v.bit_length() + 7) // 8)
    return bytes([((n - 4) << 2) | 3]) + v.to_bytes(n, "little")


# ---------------------------------------------------------------------------------------------
# scalecodec oracle

SC = RuntimeConfigurationObject()
SC.update_type_registry(
    {
        "types": {
            "TestMultiAddress": {
                "type": "enum",
                "type_mapping": [
                    ["Id", "[u8; 32]"],
                    ["Index", "Compact<u32>"],
                    ["Raw", "Bytes"],
                    ["Address32", "[u8; 32]"],
                    ["Address20", "[u8; 20]"],
                ],
            },
            "TestMultiSignature": {
                "type": "enum",
                "type_mapping": [
                    ["Ed25519", "[u8; 64]"],
                    ["Sr25519", "[u8; 64]"],
                    ["Ecdsa", "[u8; 65]"],
                ],
            },
            "TestSignedPrefix": {
                "type": "struct",
                "type_mapping": [
                    ["version", "u8"],
                    ["address", "TestMultiAddress"],
                    ["signature", "TestMultiSignature"],
                    ["era", "Era"],
                    ["nonce", "Compact<u32>"],
                    ["tip", "Compact<u128>"],
                ],
            },
            "TestAuthoritiesChange": {
                "type": "struct",
                "type_mapping": [["set_id", "u64"], ["authorities", "Vec<[u8; 32]>"]],
            },
            "TestDigestItem": {
                "type": "enum",
                "type_mapping": [
                    ["Other", "Bytes"],
                    ["AuthoritiesChange", "TestAuthoritiesChange"],
                ],
            },
            "TestHeader": {
                "type": "struct",
                "type_mapping": [
                    ["parent_hash", "[u8; 32]"],
                    ["number", "Compact<u32>"],
                    ["state_root", "[u8; 32]"],
                    ["extrinsics_root", "[u8; 32]"],
                    ["timestamp", "u64"],
                    ["author", "[u8; 32]"],
                    ["digest", "Vec<TestDigestItem>"],
                ],
            },
            "TestAuthoritySignature": {
                "type": "struct",
                "type_mapping": [["authority", "[u8; 32]"], ["signature", "[u8; 64]"]],
            },
            "TestJustification": {
                "type": "struct",
                "type_mapping": [
                    ["set_id", "u64"],
                    ["number", "u32"],
                    ["block_hash", "[u8; 32]"],
                    ["signatures", "Vec<TestAuthoritySignature>"],
                ],
            },
            "TestFinalityVote": {
                "type": "struct",
                "type_mapping": [
                    ["genesis_hash", "[u8; 32]"],
                    ["set_id", "u64"],
                    ["number", "u32"],
                    ["block_hash", "[u8; 32]"],
                ],
            },
            "TestStorageChange": {
                "type": "struct",
                "type_mapping": [["key", "Bytes"], ["value", "Option<Bytes>"]],
            },
            "TestBlockChanges": {
                "type": "struct",
                "type_mapping": [
                    ["number", "u32"],
                    ["block_hash", "[u8; 32]"],
                    ["changes", "Vec<TestStorageChange>"],
                ],
            },
        }
    }
)


def sc_encode(type_string: str, value: object) -> bytes:
    return bytes(SC.create_scale_object(type_string).encode(value).data)


def sc_decode(type_string: str, data: bytes) -> object:
    return SC.create_scale_object(type_string, data=ScaleBytes(bytearray(data))).decode()


def sc_era(era: Era) -> object:
    return "00" if era.immortal else (era.period, era.phase)


def sc_header(h: Header) -> dict:
    digest = []
    for item in h.digest:
        if isinstance(item, Other):
            digest.append({"Other": item.data})
        else:
            digest.append(
                {
                    "AuthoritiesChange": {
                        "set_id": item.set_id,
                        "authorities": list(item.authorities),
                    }
                }
            )
    return {
        "parent_hash": h.parent_hash,
        "number": h.number,
        "state_root": h.state_root,
        "extrinsics_root": h.extrinsics_root,
        "timestamp": h.timestamp,
        "author": h.author,
        "digest": digest,
    }


# ---------------------------------------------------------------------------------------------
# Strategies

H32 = st.binary(min_size=32, max_size=32)
H64 = st.binary(min_size=64, max_size=64)
U32S = st.integers(0, 2**32 - 1)
U64S = st.integers(0, 2**64 - 1)
U128S = st.integers(0, 2**128 - 1)

mortal_eras = st.builds(Era.mortal, st.integers(0, 2**17), U64S)
eras = st.just(Era()) | mortal_eras

extrinsics = st.builds(
    Extrinsic,
    signer=H32,
    signature=H64,
    era=eras,
    nonce=U32S | st.sampled_from([0, 63, 64, 2**14, 2**30, 2**32 - 1]),
    tip=U128S | st.sampled_from([0, 2**128 - 1]),
    call=st.binary(min_size=2, max_size=300),
)

digest_items = st.one_of(
    st.builds(Other, st.binary(max_size=40)),
    st.builds(AuthoritiesChange, U64S, st.lists(H32, max_size=4)),
)

headers = st.builds(
    Header,
    parent_hash=H32,
    number=U32S,
    state_root=H32,
    extrinsics_root=H32,
    timestamp=U64S,
    author=H32,
    digest=st.lists(digest_items, max_size=4),
)

justifications = st.builds(
    Justification,
    set_id=U64S,
    number=U32S,
    block_hash=H32,
    signatures=st.lists(st.builds(AuthoritySignature, H32, H64), max_size=4),
)

ORACLE = settings(max_examples=150, deadline=None)


# ---------------------------------------------------------------------------------------------
# Era: Substrate's rules and unit tests


def test_substrate_era_initialization():
    # sp_runtime::generic::era tests: era_initialization_works, quantized_clamped_...
    assert Era.mortal(64, 42) == Era(64, 42)
    assert Era.mortal(32768, 20000) == Era(32768, 20000)
    assert Era.mortal(200, 513) == Era(256, 1)
    assert Era.mortal(2, 1) == Era(4, 1)
    assert Era.mortal(4, 5) == Era(4, 1)
    assert Era.mortal(1000000, 1000001) == Era(65536, 1000001 % 65536 // 4 * 4)
    # Period 0 and 1 round up to the minimum of 4; huge periods clamp to 65536.
    assert Era.mortal(0, 7) == Era(4, 3)
    assert Era.mortal(1, 7) == Era(4, 3)
    assert Era.mortal(2**64, 100000) == Era(65536, 34464)  # quantized by 16


def test_substrate_era_encodings():
    # mortal_codec_works and long_period_mortal_codec_works
    e = Era.mortal(64, 42)
    expected = bytes([5 + 42 % 16 * 16, 42 // 16])
    assert ERA.encode(e) == expected
    assert ERA.decode(expected) == e
    e = Era.mortal(32768, 20000)
    expected = bytes([14 + 2500 % 16 * 16, 2500 // 16])
    assert ERA.encode(e) == expected
    assert ERA.decode(expected) == e
    # immortal_works
    assert ERA.encode(Era()) == b"\x00"
    assert ERA.decode(b"\x00") == Era()
    assert Era().immortal and not e.immortal


def test_substrate_era_birth_death():
    # mortal_birth_death_works
    e = Era.mortal(4, 6)
    for i in range(6, 10):
        assert e.birth(i) == 6
        assert e.death(i) == 10
    assert e.birth(10) != 6
    assert e.birth(5) != 6
    # current_less_than_phase: no error; the birth lies ahead of `current`.
    assert Era.mortal(4, 3).birth(1) == 3


def test_immortal_birth_and_death():
    for current in (0, 1, 2**32, 2**64 - 1):
        assert Era().birth(current) == 0
        assert Era().death(current) > 2**64 - 2  # u64::MAX in Substrate, 2**64 here
        assert current < Era().death(current)


@given(st.integers(0, 2**20), U64S, U64S)
def test_era_mortal_rules(period, created, current):
    era = Era.mortal(period, created)
    p, q = era.period, max(era.period >> 12, 1)
    assert p & (p - 1) == 0 and 4 <= p <= 65536
    assert p >= min(max(period, 4), 65536)
    assert p < 2 * max(period, 4) or p == 4
    assert era.phase % q == 0 and 0 <= era.phase < p
    assert era.phase == created % p // q * q
    # The window of the block it was created at starts at most q - 1 blocks earlier.
    born = era.birth(created)
    assert created - q < born <= created
    assert era.death(created) == born + p
    # From any later block: the window containing it, aligned on the phase.
    if current >= era.phase:
        b = era.birth(current)
        assert b <= current < era.death(current) == b + p
        assert b % p == era.phase
    else:
        assert era.birth(current) == era.phase > current
    # Every block of a window sees the same birth; the block after it sees the next one.
    assert era.birth(born + p - 1) == born
    assert era.birth(born + p) == born + p


# ---------------------------------------------------------------------------------------------
# Era: scalecodec oracle


@ORACLE
@given(st.integers(0, 2**20), U64S)
def test_era_mortal_matches_scalecodec(period, current):
    obj = SC.create_scale_object("Era")
    theirs = bytes(obj.encode({"period": period, "current": current}).data)
    era = Era.mortal(period, current)
    assert (era.period, era.phase) == (obj.period, obj.phase)
    assert ERA.encode(era) == theirs
    assert ERA.decode(theirs) == era


def all_valid_eras():
    for k in range(2, 17):
        period = 1 << k
        quantize = max(period >> 12, 1)
        for phase in range(0, period, quantize):
            yield Era(period, phase)


def test_every_mortal_era_encodes_as_scalecodec():
    seen = set()
    for era in all_valid_eras():
        ours = ERA.encode(era)
        assert ours == sc_encode("Era", (era.period, era.phase)), era
        assert ERA.decode(ours) == era
        seen.add(ours)
    assert len(seen) == sum(1 for _ in all_valid_eras())  # one encoding per era


def test_every_two_byte_input_decodes_as_scalecodec():
    accepted = 0
    for v in range(65536):
        data = v.to_bytes(2, "little")
        if data[0] == 0:
            # Immortal is one byte; what follows is not part of the era.
            assert ERA.decode_prefix(data, 0) == (Era(), 1)
            with pytest.raises(DecodeError):
                ERA.decode(data)
            continue
        try:
            theirs = sc_decode("Era", data)
        except Exception:  # noqa: BLE001 - scalecodec raises ValueError and its own kinds
            theirs = None
        if theirs is None:
            with pytest.raises(DecodeError):
                ERA.decode(data)
        else:
            era = ERA.decode(data)
            assert (era.period, era.phase) == tuple(theirs)
            assert ERA.encode(era) == data
            accepted += 1
    assert accepted == sum(1 for _ in all_valid_eras())


@ORACLE
@given(mortal_eras, U64S)
def test_era_birth_death_match_scalecodec(era, current):
    obj = SC.create_scale_object("Era")
    obj.encode((era.period, era.phase))
    assert era.birth(current) == obj.birth(current)
    assert era.death(current) == obj.death(current)


@pytest.mark.parametrize("hexed", ["", "05", "10", "1000", "f000", "4100", "8200"])
def test_invalid_era_bytes_refused(hexed):
    # truncated; period 2 (low nibble 0); phase >= period
    with pytest.raises(DecodeError):
        ERA.decode(bytes.fromhex(hexed))


@pytest.mark.parametrize(
    "era",
    [
        Era(3, 0),
        Era(2, 0),
        Era(6, 0),
        Era(131072, 0),
        Era(4, 4),
        Era(4, -1),
        Era(8192, 1),
        Era(65536, 15),
    ],
    ids=repr,
)
def test_invalid_era_encoding_refused(era):
    with pytest.raises(EncodeError):
        ERA.encode(era)


def test_era_through_the_codec_entry_points():
    eras_ = [Era(), Era.mortal(64, 1000), Era.mortal(65536, 123456789)]
    data = encode(eras_, list[Era])
    assert data == b"\x0c" + b"".join(ERA.encode(e) for e in eras_)
    assert decode(list[Era], data) == eras_
    assert encode(Era.mortal(64, 42)) == ERA.encode(Era.mortal(64, 42))
    assert codec_of(Era) is ERA


# ---------------------------------------------------------------------------------------------
# Header


GOLDEN_HEADER = Header(
    parent_hash=bytes(range(32)),
    number=1_234_567,
    state_root=b"\x11" * 32,
    extrinsics_root=b"\x12" * 32,
    timestamp=1_700_000_000_000,
    author=b"\x22" * 32,
    digest=[Other(b"hello"), AuthoritiesChange(7, [b"\x33" * 32, b"\x44" * 32])],
)
GOLDEN_HEADER_HASH = "40f4715f0b4dcfc9c99d2ea4a0d8485fe536381b5cce713534c74fc0f15d4ff1"


def test_header_layout_and_hash():
    h = GOLDEN_HEADER
    expected = (
        bytes(range(32))
        + compact(1_234_567)
        + b"\x11" * 32
        + b"\x12" * 32
        + (1_700_000_000_000).to_bytes(8, "little")
        + b"\x22" * 32
        + compact(2)
        + b"\x00"
        + compact(5)
        + b"hello"
        + b"\x01"
        + (7).to_bytes(8, "little")
        + compact(2)
        + b"\x33" * 32
        + b"\x44" * 32
    )
    assert h.encode() == expected == encode(h)
    assert decode(Header, expected) == h
    assert h.hash == blake2_256(expected)
    assert h.hash.hex() == GOLDEN_HEADER_HASH
    assert sc_encode("TestHeader", sc_header(h)) == expected


@ORACLE
@given(headers)
def test_header_matches_scalecodec(h):
    data = h.encode()
    assert data == sc_encode("TestHeader", sc_header(h))
    assert decode(Header, data) == h
    assert h.hash == blake2_256(data)


@settings(max_examples=40, deadline=None)
@given(headers)
def test_header_truncations_refused(h):
    data = h.encode()
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(Header, data[:cut])
    with pytest.raises(DecodeError):
        decode(Header, data + b"\x00")


def test_header_hash_depends_on_every_field():
    base = GOLDEN_HEADER
    variants = [
        Header(b"\x01" * 32, *_fields(base)[1:]),
        Header(base.parent_hash, base.number + 1, *_fields(base)[2:]),
        Header(*_fields(base)[:2], b"\x01" * 32, *_fields(base)[3:]),
        Header(*_fields(base)[:3], b"\x01" * 32, *_fields(base)[4:]),
        Header(*_fields(base)[:4], base.timestamp + 1, *_fields(base)[5:]),
        Header(*_fields(base)[:5], b"\x01" * 32, base.digest),
        Header(*_fields(base)[:6], []),
        Header(*_fields(base)[:6], list(reversed(base.digest))),
    ]
    hashes = {v.hash for v in variants} | {base.hash}
    assert len(hashes) == len(variants) + 1


def _fields(h: Header) -> list:
    return [
        h.parent_hash,
        h.number,
        h.state_root,
        h.extrinsics_root,
        h.timestamp,
        h.author,
        h.digest,
    ]


def test_header_number_is_compact_u32():
    h = Header(bytes(32), 2**32 - 1, bytes(32), bytes(32), 0, bytes(32))
    data = h.encode()
    assert data[32:37] == compact(2**32 - 1) == b"\x03\xff\xff\xff\xff"
    assert decode(Header, data) == h
    wider = data[:32] + compact(2**32) + data[37:]
    with pytest.raises(DecodeError):
        decode(Header, wider)
    with pytest.raises(EncodeError):
        Header(bytes(32), 2**32, bytes(32), bytes(32), 0, bytes(32)).encode()


def test_header_authorities_change():
    assert GOLDEN_HEADER.authorities_change() == AuthoritiesChange(7, [b"\x33" * 32, b"\x44" * 32])
    plain = Header(bytes(32), 1, bytes(32), bytes(32), 0, bytes(32), [Other(b"")])
    assert plain.authorities_change() is None
    assert Header(bytes(32), 1, bytes(32), bytes(32), 0, bytes(32)).digest == []


def test_unknown_digest_item_refused():
    data = bytearray(GOLDEN_HEADER.encode())
    offset = 32 + len(compact(1_234_567)) + 32 + 32 + 8 + 32 + 1
    assert data[offset] == 0  # the first digest item's index
    data[offset] = 2
    with pytest.raises(DecodeError):
        decode(Header, bytes(data))


# ---------------------------------------------------------------------------------------------
# Justification, finality votes, blocks, storage changes


@ORACLE
@given(justifications)
def test_justification_matches_scalecodec(j):
    data = encode(j)
    theirs = sc_encode(
        "TestJustification",
        {
            "set_id": j.set_id,
            "number": j.number,
            "block_hash": j.block_hash,
            "signatures": [
                {"authority": s.authority, "signature": s.signature} for s in j.signatures
            ],
        },
    )
    assert data == theirs
    assert decode(Justification, data) == j


def test_justification_truncations_refused():
    j = Justification(3, 99, b"\x07" * 32, [AuthoritySignature(b"\x01" * 32, b"\x02" * 64)])
    data = encode(j)
    assert len(data) == 8 + 4 + 32 + 1 + 96
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(Justification, data[:cut])


@given(H32, U64S, U32S, H32)
def test_finality_message(genesis, set_id, number, block_hash):
    msg = finality_message(genesis, set_id, number, block_hash)
    vote = genesis + set_id.to_bytes(8, "little") + number.to_bytes(4, "little") + block_hash
    assert msg == FINALITY_CONTEXT + vote
    assert vote == sc_encode(
        "TestFinalityVote",
        {"genesis_hash": genesis, "set_id": set_id, "number": number, "block_hash": block_hash},
    )
    assert decode(FinalityVote, vote) == FinalityVote(genesis, set_id, number, block_hash)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers, st.lists(st.binary(max_size=50), max_size=4), st.none() | justifications)
def test_signed_block_round_trip(h, xts, j):
    block = SignedBlock(Block(h, xts), j)
    data = encode(block)
    expected = h.encode() + compact(len(xts)) + b"".join(compact(len(x)) + x for x in xts)
    expected += b"\x00" if j is None else b"\x01" + encode(j)
    assert data == expected
    assert decode(SignedBlock, data) == block


@ORACLE
@given(
    U32S,
    H32,
    st.lists(st.builds(StorageChange, st.binary(max_size=20), st.none() | st.binary(max_size=20))),
)
def test_block_changes_match_scalecodec(number, block_hash, changes):
    bc = BlockChanges(number, block_hash, changes)
    theirs = sc_encode(
        "TestBlockChanges",
        {
            "number": number,
            "block_hash": block_hash,
            "changes": [{"key": c.key, "value": c.value} for c in changes],
        },
    )
    assert encode(bc) == theirs
    assert decode(BlockChanges, theirs) == bc


@pytest.mark.parametrize("n", range(0, 40))
def test_authority_threshold_is_more_than_two_thirds(n):
    t = AuthoritySet(0, [bytes(32)] * n).threshold()
    assert 3 * t > 2 * n
    assert 3 * (t - 1) <= 2 * n


# ---------------------------------------------------------------------------------------------
# Extrinsics


def manual_extrinsic(xt: Extrinsic) -> bytes:
    return (
        b"\x84\x00"
        + xt.signer
        + b"\x01"
        + xt.signature
        + ERA.encode(xt.era)
        + compact(xt.nonce)
        + compact(xt.tip)
        + xt.call
    )


def call_offset(xt: Extrinsic) -> int:
    return len(manual_extrinsic(xt)) - len(xt.call)


SAMPLE_XT = Extrinsic(
    signer=bytes(range(32)),
    signature=bytes(range(64, 128)),
    era=Era.mortal(64, 1000),
    nonce=5,
    tip=2**70,
    call=b"\x00\x07" + b"remark",
)


@ORACLE
@given(extrinsics)
def test_extrinsic_layout_matches_scalecodec(xt):
    data = xt.encode()
    assert data == manual_extrinsic(xt)
    prefix = sc_encode(
        "TestSignedPrefix",
        {
            "version": 0x84,
            "address": {"Id": xt.signer},
            "signature": {"Sr25519": xt.signature},
            "era": sc_era(xt.era),
            "nonce": xt.nonce,
            "tip": xt.tip,
        },
    )
    assert data == prefix + xt.call


@settings(max_examples=300, deadline=None)
@given(extrinsics)
def test_extrinsic_round_trip(xt):
    assert Extrinsic.decode(xt.encode()) == xt


def test_shortest_extrinsic():
    # Version, address kind, signer, signature kind, signature, the shortest era, nonce and
    # tip, and a two-byte call (pallet index, call index).
    assert MIN_EXTRINSIC_SIZE == 1 + 1 + 32 + 1 + 64 + 1 + 1 + 1 + 2 == 104
    xt = Extrinsic(bytes(32), bytes(64), Era(), 0, 0, b"\x01\x02")
    data = xt.encode()
    assert len(data) == MIN_EXTRINSIC_SIZE
    assert Extrinsic.decode(data) == xt
    with pytest.raises(DecodeError):
        Extrinsic.decode(data[:103])
    # Encoding refuses exactly what decoding refuses: 103 bytes in all.
    with pytest.raises(EncodeError):
        Extrinsic(bytes(32), bytes(64), Era(), 0, 0, b"\x01").encode()
    # A one-byte call is an extrinsic when the rest is longer (here a two-byte tip).
    longer = Extrinsic(bytes(32), bytes(64), Era(), 0, 64, b"\x01")
    assert len(longer.encode()) == MIN_EXTRINSIC_SIZE
    assert Extrinsic.decode(longer.encode()) == longer


@pytest.mark.parametrize("version", [v for v in range(256) if v != 0x84])
def test_extrinsic_version_byte_refused(version):
    data = bytearray(SAMPLE_XT.encode())
    data[0] = version
    with pytest.raises(DecodeError, match="unsigned" if version == 0x04 else "version"):
        Extrinsic.decode(bytes(data))


@pytest.mark.parametrize("kind", [1, 2, 3, 4, 5, 0xFF])
def test_other_address_kinds_refused(kind):
    # MultiAddress::Index, Raw, Address32, Address20 and undefined kinds
    data = bytearray(SAMPLE_XT.encode())
    data[1] = kind
    with pytest.raises(DecodeError, match="MultiAddress"):
        Extrinsic.decode(bytes(data))


@pytest.mark.parametrize("kind", [0, 2, 3, 0xFF])
def test_other_signature_kinds_refused(kind):
    # MultiSignature::Ed25519, Ecdsa and undefined kinds
    data = bytearray(SAMPLE_XT.encode())
    data[34] = kind
    with pytest.raises(DecodeError, match="sr25519"):
        Extrinsic.decode(bytes(data))


def test_unsigned_extrinsic_refused():
    unsigned = b"\x04" + b"\x00\x07" + b"remark" + bytes(100)
    with pytest.raises(DecodeError, match="unsigned"):
        Extrinsic.decode(unsigned)


@settings(max_examples=60, deadline=None)
@given(extrinsics)
def test_extrinsic_truncations(xt):
    data = xt.encode()
    start = call_offset(xt)
    for cut in range(len(data)):
        if cut <= start or cut < MIN_EXTRINSIC_SIZE:
            with pytest.raises(DecodeError):
                Extrinsic.decode(data[:cut])
        else:
            # The call runs to the end: a shorter call is still an extrinsic.
            assert Extrinsic.decode(data[:cut]).call == xt.call[: cut - start]


def test_sample_extrinsic_truncations():
    data = SAMPLE_XT.encode()
    start = call_offset(SAMPLE_XT)
    assert start == 99 + 2 + 1 + len(compact(2**70))
    for cut in range(start + 1):
        with pytest.raises(DecodeError):
            Extrinsic.decode(data[:cut])


def with_extra(era: bytes, nonce: bytes, tip: bytes, call: bytes = b"\x00\x07") -> bytes:
    return b"\x84\x00" + bytes(32) + b"\x01" + bytes(64) + era + nonce + tip + call


@pytest.mark.parametrize(
    "data",
    [
        with_extra(b"\x00", compact(2**32), b"\x00"),  # nonce over u32
        with_extra(b"\x00", b"\x00", compact(2**128)),  # tip over u128
        with_extra(b"\x00", b"\x05\x00", b"\x00"),  # nonce 1 in two bytes
        with_extra(b"\x00", b"\x00", b"\x03" + (5).to_bytes(4, "little")),  # tip 5 in big mode
        with_extra(b"\x10\x00", b"\x00", b"\x00"),  # era with period 2
        with_extra(b"\x41\x00", b"\x00", b"\x00"),  # era phase 4 of period 4
        with_extra(b"\x05\x00", compact(2**30), b"\x00", call=b""),  # no call
    ],
)
def test_invalid_signed_extra_refused(data):
    with pytest.raises(DecodeError):
        Extrinsic.decode(data)


@settings(max_examples=500, deadline=None)
@given(xt=extrinsics, data=st.data())
def test_mutated_extrinsics_decode_only_if_canonical(xt, data):
    raw = bytearray(xt.encode())
    limit = min(len(raw), call_offset(xt) + 1)
    pos = data.draw(st.integers(0, limit - 1))
    kind = data.draw(st.sampled_from(["set", "insert", "delete"]))
    if kind == "set":
        raw[pos] = data.draw(st.integers(0, 255))
    elif kind == "insert":
        raw.insert(pos, data.draw(st.integers(0, 255)))
    else:
        del raw[pos]
    try:
        decoded = Extrinsic.decode(bytes(raw))
    except DecodeError:
        return
    assert decoded.encode() == bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_extrinsic_decode(raw):
    try:
        xt = Extrinsic.decode(b"\x84\x00" + raw)
    except DecodeError:
        return
    assert xt.encode() == b"\x84\x00" + raw


@pytest.mark.parametrize(
    "changes",
    [
        {"signer": bytes(31)},
        {"signer": bytes(33)},
        {"signature": bytes(63)},
        {"signature": bytes(65)},
        {"nonce": -1},
        {"nonce": 2**32},
        {"tip": -1},
        {"tip": 2**128},
        {"call": b""},
        {"era": Era(8192, 1)},
        {"era": Era(3, 0)},
        {"era": Era(4, 4)},
    ],
    ids=repr,
)
def test_extrinsic_encode_refuses(changes):
    fields = dict(
        signer=SAMPLE_XT.signer,
        signature=SAMPLE_XT.signature,
        era=SAMPLE_XT.era,
        nonce=SAMPLE_XT.nonce,
        tip=SAMPLE_XT.tip,
        call=SAMPLE_XT.call,
    )
    fields.update(changes)
    with pytest.raises(EncodeError):
        Extrinsic(**fields).encode()


# ---------------------------------------------------------------------------------------------
# Signing payload


def raw_payload(call, era, nonce, tip, spec, tx, genesis, birth) -> bytes:
    return (
        call
        + ERA.encode(era)
        + compact(nonce)
        + compact(tip)
        + spec.to_bytes(4, "little")
        + tx.to_bytes(4, "little")
        + genesis
        + birth
    )


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=2, max_size=400),
    eras,
    U32S,
    U128S,
    U32S,
    U32S,
    H32,
    H32,
)
def test_signing_payload(call, era, nonce, tip, spec, tx, genesis, birth):
    raw = raw_payload(call, era, nonce, tip, spec, tx, genesis, birth)
    payload = signing_payload(call, era, nonce, tip, spec, tx, genesis, birth)
    if len(raw) > 256:
        assert payload == blake2_256(raw)
    else:
        assert payload == raw


def test_signing_payload_hash_threshold_is_256_bytes():
    args = (Era(), 0, 0, 1, 1, b"\x01" * 32, b"\x02" * 32)
    fixed = 1 + 1 + 1 + 4 + 4 + 32 + 32
    at = signing_payload(b"\x07" * (256 - fixed), *args)
    assert len(at) == 256 and at.startswith(b"\x07")
    over = signing_payload(b"\x07" * (257 - fixed), *args)
    assert over == blake2_256(b"\x07" * (257 - fixed) + at[256 - fixed :])


def test_signing_payload_commits_to_everything():
    base = (b"\x00\x01", Era.mortal(64, 100), 1, 2, 3, 4, b"\x05" * 32, b"\x06" * 32)
    changed = [
        (b"\x00\x02", *base[1:]),
        (base[0], Era.mortal(128, 100), *base[2:]),
        (base[0], Era(), *base[2:]),
        (*base[:2], 2, *base[3:]),
        (*base[:3], 3, *base[4:]),
        (*base[:4], 4, *base[5:]),
        (*base[:5], 5, *base[6:]),
        (*base[:6], b"\x07" * 32, base[7]),
        (*base[:7], b"\x07" * 32),
    ]
    payloads = {signing_payload(*base)} | {signing_payload(*c) for c in changed}
    assert len(payloads) == len(changed) + 1


# ---------------------------------------------------------------------------------------------
# Extrinsics root


def leaf(x: bytes) -> bytes:
    return blake2_256(b"\x00" + x)


def node(left: bytes, right: bytes) -> bytes:
    return blake2_256(b"\x01" + left + right)


def root(count: int, top: bytes) -> bytes:
    return blake2_256(b"\x02" + count.to_bytes(4, "little") + top)


def test_extrinsics_root_small_cases():
    a, b, c, d, e = b"a", b"b", b"c", b"d", b"e"
    assert extrinsics_root([]) == root(0, bytes(32))
    assert extrinsics_root([a]) == root(1, leaf(a))
    assert extrinsics_root([a, b]) == root(2, node(leaf(a), leaf(b)))
    # An odd node at the end of a level moves up unchanged.
    assert extrinsics_root([a, b, c]) == root(3, node(node(leaf(a), leaf(b)), leaf(c)))
    ab_cd = node(node(leaf(a), leaf(b)), node(leaf(c), leaf(d)))
    assert extrinsics_root([a, b, c, d]) == root(4, ab_cd)
    assert extrinsics_root([a, b, c, d, e]) == root(5, node(ab_cd, leaf(e)))


def reference_root(items: list[bytes]) -> bytes:
    """The same tree built top-down: the left subtree holds the largest power of two below
    the count, as an odd node moving up unchanged leaves it."""

    def top(xs: list[bytes]) -> bytes:
        if len(xs) == 1:
            return leaf(xs[0])
        split = 1
        while split * 2 < len(xs):
            split *= 2
        return node(top(xs[:split]), top(xs[split:]))

    return root(len(items), top(items) if items else bytes(32))


@given(st.lists(st.binary(max_size=8), max_size=40))
def test_extrinsics_root_matches_reference(items):
    assert extrinsics_root(items) == reference_root(items)


@given(st.lists(st.binary(max_size=8), min_size=2, max_size=12, unique=True), st.data())
def test_extrinsics_root_commits_to_order_and_content(items, data):
    i = data.draw(st.integers(0, len(items) - 1))
    j = data.draw(st.integers(0, len(items) - 1).filter(lambda k: k != i))
    swapped = list(items)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    assert extrinsics_root(swapped) != extrinsics_root(items)
    changed = list(items)
    changed[i] = changed[i] + b"!"
    assert extrinsics_root(changed) != extrinsics_root(items)
    assert extrinsics_root(items[:-1]) != extrinsics_root(items)


def test_extrinsics_root_has_no_second_preimages_by_shape():
    a, b, c = b"a", b"b", b"c"
    # A repeated last extrinsic (the shape of Bitcoin's CVE-2012-2459).
    assert extrinsics_root([a, b, c]) != extrinsics_root([a, b, c, c])
    assert extrinsics_root([a, b, c, c]) != extrinsics_root([a, b, c, c, c, c])
    # An "extrinsic" made of two child hashes is not the inner node over them.
    assert extrinsics_root([leaf(a) + leaf(b)]) != extrinsics_root([a, b])
    assert extrinsics_root([b"\x01" + leaf(a) + leaf(b)]) != extrinsics_root([a, b])
    # The empty body differs from a body of one empty extrinsic.
    assert extrinsics_root([]) != extrinsics_root([b""])


@given(st.lists(st.lists(st.sampled_from([b"", b"a", b"b"]), max_size=7), min_size=2, max_size=2))
def test_distinct_bodies_have_distinct_roots(bodies):
    first, second = bodies
    if first != second:
        assert extrinsics_root(first) != extrinsics_root(second)
