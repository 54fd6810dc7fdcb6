"""Fixed byte vectors for the formats described in ``docs/formats.md``.

Every hex literal here also appears in the document. Each test computes the bytes with the
real code and compares them with the literal, so the document and the code cannot drift
apart silently: a format change breaks this file, and the document must be updated with it.
Some vectors are also rebuilt with nothing but ``hashlib`` to show that the description is
complete enough for an independent implementation.
"""

from hashlib import blake2b

import pytest
import sr25519

from phala.chain.runtime import authorities, balances, executive, sudo, system, timestamp
from phala.core import envelope, keys, ss58, trie
from phala.core.codec import (
    COMPACT,
    COMPACT_U32,
    COMPACT_U128,
    DecodeError,
    decode,
    encode,
    i32,
    u8,
    u16,
    u32,
    u128,
)
from phala.core.storage_keys import map_key, storage_prefix
from phala.core.types import (
    ERA,
    ZERO_HASH,
    AuthoritiesChange,
    AuthoritySet,
    AuthoritySignature,
    BlockChanges,
    DigestItem,
    Era,
    Extrinsic,
    Header,
    Justification,
    Other,
    StorageChange,
    extrinsics_root,
    finality_message,
    signing_payload,
)


def h256(data: bytes) -> bytes:
    return blake2b(data, digest_size=32).digest()


def h128(data: bytes) -> bytes:
    return blake2b(data, digest_size=16).digest()


ALICE = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
BOB = bytes.fromhex("8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48")
GENESIS = bytes(range(32))  # a made-up genesis hash: 00 01 02 ... 1f
BIRTH = bytes([0xBB]) * 32  # a made-up birth block hash
FAKE_SIGNATURE = bytes([0x11]) * 64  # encodings do not check signatures

# -- codec ------------------------------------------------------------------------------------

COMPACT_VECTORS = [
    (0, "00"),
    (1, "04"),
    (42, "a8"),
    (63, "fc"),
    (64, "0101"),
    (69, "1501"),
    (16383, "fdff"),
    (16384, "02000100"),
    (2**30 - 1, "feffffff"),
    (2**30, "0300000040"),
    (2**32, "070000000001"),
    (10**12, "070010a5d4e8"),
    (2**64 - 1, "13ffffffffffffffff"),
    (2**128 - 1, "33ffffffffffffffffffffffffffffffff"),
]


@pytest.mark.parametrize(("value", "hex_"), COMPACT_VECTORS)
def test_compact(value, hex_):
    assert COMPACT.encode(value).hex() == hex_
    assert COMPACT.decode(bytes.fromhex(hex_)) == value


def test_bounded_compacts():
    # Compact<u32> (header numbers) and Compact<u128> (amounts in calls): the same bytes as
    # Compact, but a wider value is refused in both directions.
    for codec, bits in ((COMPACT_U32, 32), (COMPACT_U128, 128)):
        top = 2**bits - 1
        assert codec.encode(top) == COMPACT.encode(top)
        assert codec.decode(COMPACT.encode(top)) == top
        with pytest.raises(DecodeError):
            codec.decode(COMPACT.encode(top + 1))
    assert COMPACT_U32.decode(bytes.fromhex("feffffff")) == 2**30 - 1


@pytest.mark.parametrize(
    "hex_",
    [
        "0100",  # 0 in the two-byte mode
        "fd00",  # 63 in the two-byte mode
        "02000000",  # 0 in the four-byte mode
        "fdff0000",  # 16383 in the four-byte mode
        "03ffffff3f",  # 2**30 - 1 in the big-integer mode
        "07ffffffff00",  # five bytes whose top byte is zero
    ],
)
def test_compact_rejects_non_canonical(hex_):
    with pytest.raises(DecodeError):
        COMPACT.decode(bytes.fromhex(hex_))


PRIMITIVE_VECTORS = [
    (True, bool, "01"),
    (False, bool, "00"),
    (None, bool | None, "00"),
    (True, bool | None, "01"),
    (False, bool | None, "02"),
    (None, u32 | None, "00"),
    (5, u32 | None, "0105000000"),
    ([1, 2, 3], list[u16], "0c010002000300"),
    ("héllo", str, "1868c3a96c6c6f"),
    ((1, b"ab"), tuple[u8, bytes], "01086162"),
    ({b"b": 2, b"a": 1}, dict[bytes, u8], "08046101046202"),
    (10**12, u128, "0010a5d4e80000000000000000000000"),
    (-2, i32, "feffffff"),
]


@pytest.mark.parametrize(("value", "tp", "hex_"), PRIMITIVE_VECTORS)
def test_primitives(value, tp, hex_):
    assert encode(value, tp).hex() == hex_
    assert decode(tp, bytes.fromhex(hex_)) == value


@pytest.mark.parametrize(
    ("tp", "hex_"),
    [
        (bool, "02"),  # a bool is 0 or 1
        (bool | None, "03"),  # Option<bool> is 0, 1 or 2
        (u32 | None, "02"),  # an Option tag is 0 or 1
        (dict[bytes, u8], "08046202046101"),  # map keys out of order
        (dict[bytes, u8], "08046101046101"),  # duplicate map key
        (str, "04ff"),  # not UTF-8
        (u8, "0100"),  # trailing byte
    ],
)
def test_codec_rejects(tp, hex_):
    with pytest.raises(DecodeError):
        decode(tp, bytes.fromhex(hex_))


# -- era --------------------------------------------------------------------------------------

ERA_VECTORS = [
    (Era(), Era(0, 0), "00"),
    (Era.mortal(64, 42), Era(64, 42), "a502"),
    (Era.mortal(64, 1000), Era(64, 40), "8502"),
    (Era.mortal(100, 1000), Era(128, 104), "8606"),
    (Era.mortal(4, 3), Era(4, 3), "3100"),
    (Era.mortal(65536, 100000), Era(65536, 34464), "af86"),
]


@pytest.mark.parametrize(("era", "expected", "hex_"), ERA_VECTORS)
def test_era(era, expected, hex_):
    assert era == expected
    assert ERA.encode(era).hex() == hex_
    assert ERA.decode(bytes.fromhex(hex_)) == expected


@pytest.mark.parametrize("hex_", ["1000", "4100", "01"])
def test_era_rejects(hex_):
    # period 2 (low nibble 0); phase 4 >= period 4 (nibble 1, phase field 4); truncated
    with pytest.raises(DecodeError):
        ERA.decode(bytes.fromhex(hex_))


def test_era_birth_and_death():
    era = Era(64, 40)
    assert era.birth(1000) == 1000 and era.death(1000) == 1064
    assert era.birth(1063) == 1000
    assert era.birth(1064) == 1064  # the window has moved on


# -- runtime calls and events -----------------------------------------------------------------

TRANSFER_CALL = "0203" + BOB.hex() + "070010a5d4e8"

CALL_VECTORS = [
    (balances.transfer_keep_alive(BOB, 10**12), TRANSFER_CALL),
    (balances.transfer_allow_death(BOB, 1), "0200" + BOB.hex() + "04"),
    (sudo.sudo(balances.force_set_balance(BOB, 1)), "03000201" + BOB.hex() + "04"),
    (system.remark(b"hi"), "0000086869"),
    (balances.transfer_keep_alive(BOB, 2**128 - 1), "0203" + BOB.hex() + "33" + "ff" * 16),
    (authorities.set_authorities([ALICE]), "040004" + ALICE.hex()),
]


@pytest.mark.parametrize(("call", "hex_"), CALL_VECTORS)
def test_calls(call, hex_):
    assert encode(call).hex() == hex_
    assert executive.decode_call(bytes.fromhex(hex_)) == call


@pytest.mark.parametrize(
    "hex_",
    [
        "0203" + BOB.hex() + "37" + "00" * 16 + "01",  # 2**128
        "0200" + BOB.hex() + "43" + "ff" * 20,  # 2**160 - 1
        "03000201" + BOB.hex() + "37" + "00" * 16 + "01",  # 2**128 inside sudo
    ],
)
def test_call_amount_wider_than_u128_is_refused(hex_):
    with pytest.raises(executive.InvalidTransaction, match="u128"):
        executive.decode_call(bytes.fromhex(hex_))


EVENT_VECTORS = [
    (
        [system.EventRecord(0, balances.Transfer(ALICE, BOB, 10**12))],
        "04" + "0100000000" + "0202" + ALICE.hex() + BOB.hex() + "0010a5d4e80000000000000000000000",
    ),
    ([system.EventRecord(None, system.ExtrinsicSuccess())], "04" + "00" + "0000"),
    (
        [system.EventRecord(1, system.ExtrinsicFailed(system.DispatchErrorInfo(2, 0)))],
        "04" + "0101000000" + "0001" + "0200",
    ),
    ([system.EventRecord(None, sudo.Sudid(None))], "04" + "00" + "0300" + "00"),
    ([system.EventRecord(None, sudo.Sudid(system.DispatchErrorInfo(0, 255)))], "04000300" + "0100ff"),
    (
        [system.EventRecord(0, system.ExtrinsicFailed(system.DispatchErrorInfo(0, 254)))],
        "04" + "0100000000" + "0001" + "00fe",
    ),
]


@pytest.mark.parametrize(("records", "hex_"), EVENT_VECTORS)
def test_event_records(records, hex_):
    assert system.Events.codec.encode(records).hex() == hex_
    assert system.Events.codec.decode(bytes.fromhex(hex_)) == records


def test_unexpected_error_code():
    assert (system.Unexpected.pallet_index, system.Unexpected.code) == (0, 254)


def test_account_info():
    info = system.AccountInfo(1, 0, 1, system.AccountData(10**12, 0, 0))
    hex_ = "01000000" "00000000" "01000000" "0010a5d4e8000000" + "00" * 40
    assert encode(info).hex() == hex_
    assert decode(system.AccountInfo, bytes.fromhex(hex_)) == info


# -- storage keys -----------------------------------------------------------------------------

STORAGE_KEY_VECTORS = [
    (system.Account.key(ALICE),
     "789f1c09383940a7773420432ffd084a" "4580725829b1723eb8335117a68c8c6b"
     "de1e86a9a8c739864cf3cc5ec2bea59f" + ALICE.hex()),
    (system.Number.key,
     "789f1c09383940a7773420432ffd084a" "54248c3630cfd80f06233160ba63c182"),
    (system.BlockHash.key(7),
     "789f1c09383940a7773420432ffd084a" "0116b5ba1a7ccdb07b501fe232b5a102"
     "99850724010e3222888eeb8478c9ffd3" "07000000"),
    (system.Events.key,
     "789f1c09383940a7773420432ffd084a" "7767e29082d7fa0e8d744e796f6c3399"),
    (balances.TotalIssuance.key,
     "91daf3adf468d093fa1cd747bf98a977" "4ea1828db6bbb2a39f0dcc62552408fd"),
    (sudo.Key.key,
     "c8829b3ceb10391f71ca8e7f286d7795" "44e87d3cb79f1b1506bf6c06e71c7c52"),
    (authorities.CurrentSet.key,
     "85b91f33e3825c0fe75ba66a6a490549" "83195f8597e4eedd371ecc19a3833200"),
    # The prefixes of the remaining items (docs/formats.md, section 5.2).
    (system.Account.prefix,
     "789f1c09383940a7773420432ffd084a" "4580725829b1723eb8335117a68c8c6b"),
    (system.ParentHash.key,
     "789f1c09383940a7773420432ffd084a" "3879779f0b80c1f808515aebe49ae9f5"),
    (system.BlockHash.prefix,
     "789f1c09383940a7773420432ffd084a" "0116b5ba1a7ccdb07b501fe232b5a102"),
    (system.RandomnessSeed.key,
     "789f1c09383940a7773420432ffd084a" "745158f86d89041f6c831c066597fd72"),
    (timestamp.Now.key,
     "f0163d36f9171674da30759a1b1ec486" "2d9fc15c9c217eeaf54fc9a6d903b266"),
    (timestamp.Parameters.key,
     "f0163d36f9171674da30759a1b1ec486" "f1c6bf1e89f5f966dfc04727d20a4844"),
    (balances.Parameters.key,
     "91daf3adf468d093fa1cd747bf98a977" "f1c6bf1e89f5f966dfc04727d20a4844"),
    (balances.Locks.prefix,
     "91daf3adf468d093fa1cd747bf98a977" "9df59a59a6066bbf757a585660922089"),
    (authorities.PendingChange.key,
     "85b91f33e3825c0fe75ba66a6a490549" "f04ee8f95d067541c92d51b90b6051e4"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "hex_"), STORAGE_KEY_VECTORS)
def test_storage_keys(key, hex_):
    assert key.hex() == hex_


def test_storage_key_rule_independently():
    prefix = h128(b"System") + h128(b"Account")
    assert storage_prefix("System", "Account") == prefix
    assert map_key("System", "Account", ALICE) == prefix + h128(ALICE) + ALICE
    assert system.Account.key(ALICE) == prefix + h128(ALICE) + ALICE
    assert system.Account.decode_key(system.Account.key(ALICE)) == ALICE


# -- extrinsics and the signing payload -------------------------------------------------------

SIGNED_TRANSFER = (
    "84"  # signed bit | version 4
    "00" + ALICE.hex()  # MultiAddress::Id, signer
    + "01" + "11" * 64  # MultiSignature::Sr25519, signature
    + "8502"  # era: period 64, phase 40
    + "14"  # nonce 5
    + "00"  # tip 0
    + TRANSFER_CALL
)

TRANSFER_PAYLOAD = (
    TRANSFER_CALL
    + "8502" + "14" + "00"  # era, nonce, tip
    + "01000000" + "01000000"  # spec_version, transaction_version
    + GENESIS.hex() + BIRTH.hex()
)  # fmt: skip


def test_signed_extrinsic():
    call = encode(balances.transfer_keep_alive(BOB, 10**12))
    xt = Extrinsic(ALICE, FAKE_SIGNATURE, Era.mortal(64, 1000), 5, 0, call)
    raw = xt.encode()
    assert len(raw) == 143
    assert raw.hex() == SIGNED_TRANSFER
    assert Extrinsic.decode(bytes.fromhex(SIGNED_TRANSFER)) == xt


def test_immortal_remark_extrinsic():
    xt = Extrinsic(ALICE, FAKE_SIGNATURE, Era(), 0, 0, encode(system.remark(b"hi")))
    assert xt.encode().hex() == "8400" + ALICE.hex() + "01" + "11" * 64 + "00" "00" "00" "0000086869"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda raw: b"\x04" + raw[1:], "unsigned"),
        (lambda raw: raw[:1] + b"\x01" + raw[2:], "MultiAddress"),
        (lambda raw: raw[:34] + b"\x00" + raw[35:], "sr25519"),
        (lambda raw: raw[:101] + b"\x01\x00" + raw[102:], "non-canonical"),
    ],
)
def test_extrinsic_rejects(change, reason):
    with pytest.raises(DecodeError, match=reason):
        Extrinsic.decode(change(bytes.fromhex(SIGNED_TRANSFER)))


def test_signing_payload():
    call = encode(balances.transfer_keep_alive(BOB, 10**12))
    payload = signing_payload(call, Era.mortal(64, 1000), 5, 0, 1, 1, GENESIS, BIRTH)
    assert len(payload) == 116
    assert payload.hex() == TRANSFER_PAYLOAD
    assert (executive.VERSION.spec_version, executive.VERSION.transaction_version) == (1, 1)


def test_long_signing_payload_is_hashed():
    call = encode(system.remark(bytes(200)))
    payload = signing_payload(call, Era(), 0, 0, 1, 1, GENESIS, GENESIS)
    raw = call + b"\x00\x00\x00" + bytes.fromhex("0100000001000000") + GENESIS + GENESIS
    assert len(raw) == 279
    assert payload == h256(raw)
    assert payload.hex() == "d702088c4bfcd0c593f8fce4673bc3f9cbcde360665029b93325bf0b471bcea3"
    # At exactly 256 bytes the payload is signed as is; one byte more and it is hashed.
    call = encode(system.remark(bytes(177)))
    assert len(signing_payload(call, Era(), 0, 0, 1, 1, GENESIS, GENESIS)) == 256
    call = encode(system.remark(bytes(178)))
    assert len(signing_payload(call, Era(), 0, 0, 1, 1, GENESIS, GENESIS)) == 32


def test_real_signature_verifies_over_the_payload():
    alice = keys.dev_keypair("Alice")
    call = bytes.fromhex(TRANSFER_CALL)
    era = Era.mortal(64, 1000)
    payload = signing_payload(call, era, 5, 0, 1, 1, GENESIS, BIRTH)
    raw = Extrinsic(alice.public_key, alice.sign(payload), era, 5, 0, call).encode()
    xt = Extrinsic.decode(raw)
    assert sr25519.verify(xt.signature, bytes.fromhex(TRANSFER_PAYLOAD), xt.signer)


# -- header, digest, extrinsics root ------------------------------------------------------------

EMPTY_EXTRINSICS_ROOT = "7e64f424081efa4a9760833aa4f62ab60efeb2949a4d78daa376972dee8261c3"

HEADER = (
    "01" * 32  # parent_hash
    + "04"  # number 1 (Compact<u32>)
    + "02" * 32  # state_root
    + EMPTY_EXTRINSICS_ROOT
    + "00a8da769b010000"  # timestamp 1767225600000 ms (u64)
    + ALICE.hex()  # author
    + "00"  # digest: empty vector
)
HEADER_HASH = "d9c0370784ce4a2db03e418583d6c41f338f903d62c132c5060f4cf801a3c1a9"


def small_header(digest=()):
    return Header(
        parent_hash=bytes([1]) * 32,
        number=1,
        state_root=bytes([2]) * 32,
        extrinsics_root=extrinsics_root([]),
        timestamp=1767225600000,
        author=ALICE,
        digest=list(digest),
    )


def test_header():
    header = small_header()
    assert header.encode().hex() == HEADER
    assert len(bytes.fromhex(HEADER)) == 138
    assert header.hash.hex() == HEADER_HASH
    assert h256(bytes.fromhex(HEADER)).hex() == HEADER_HASH
    assert decode(Header, bytes.fromhex(HEADER)) == header


def test_header_number_wider_than_u32_is_refused():
    def with_number(number):  # HEADER with its one-byte number replaced
        raw = bytes.fromhex(HEADER)
        return raw[:32] + COMPACT.encode(number) + raw[33:]

    assert decode(Header, with_number(2**32 - 1)).number == 2**32 - 1
    for number in (2**32, 2**64 - 1):
        with pytest.raises(DecodeError, match="u32"):
            decode(Header, with_number(number))


def test_digest_items():
    assert encode(Other(b"\x01\x02"), DigestItem).hex() == "00080102"
    change = AuthoritiesChange(1, [ALICE])
    assert encode(change, DigestItem).hex() == "01" "0100000000000000" "04" + ALICE.hex()
    header = small_header([AuthoritiesChange(1, [BOB])])
    assert header.encode().hex() == HEADER[:-2] + "04" "01" "0100000000000000" "04" + BOB.hex()


def test_extrinsics_root():
    assert extrinsics_root([]).hex() == EMPTY_EXTRINSICS_ROOT
    assert h256(b"\x02" + (0).to_bytes(4, "little") + bytes(32)).hex() == EMPTY_EXTRINSICS_ROOT
    assert ZERO_HASH == bytes(32)
    la, lb, lc = (h256(b"\x00" + x) for x in (b"a", b"b", b"c"))
    assert la.hex() == "7234082e1dd0b5ec0acd71875d61c9f374af30c100bc4de7aa4eb3f15bbed686"
    one = "f7aa4ea380d9926038742b6eba500f33e5e7fa3ec58f8a28fec5afce5d98a081"
    assert extrinsics_root([b"a"]).hex() == one
    assert h256(b"\x02" + (1).to_bytes(4, "little") + la).hex() == one
    # Three leaves: the odd leaf c moves up unchanged and is paired one level higher.
    three = "4e1f56c03d1c8cefbde9aca94bbaea491eb71b9cf197aaa953e637394dad5880"
    assert extrinsics_root([b"a", b"b", b"c"]).hex() == three
    top = h256(b"\x01" + h256(b"\x01" + la + lb) + lc)
    assert h256(b"\x02" + (3).to_bytes(4, "little") + top).hex() == three


def test_extrinsics_root_has_no_duplication_ambiguity():
    # The old construction duplicated the odd last hash, so these two bodies shared a root.
    four = "36790e6b8ceaa753f67d5413050d09d3e709735e43010d74c6b510b0ba6c7388"
    assert extrinsics_root([b"a", b"b", b"c", b"c"]).hex() == four
    assert extrinsics_root([b"a", b"b", b"c"]) != extrinsics_root([b"a", b"b", b"c", b"c"])
    la, lb, lc = (h256(b"\x00" + x) for x in (b"a", b"b", b"c"))
    top = h256(b"\x01" + h256(b"\x01" + la + lb) + h256(b"\x01" + lc + lc))
    assert h256(b"\x02" + (4).to_bytes(4, "little") + top).hex() == four
    # A leaf cannot pass for an inner node, and one empty extrinsic is not an empty body.
    assert extrinsics_root([b"\x01" + la + lb]) != extrinsics_root([b"a", b"b"])
    assert extrinsics_root([b""]) != extrinsics_root([])


# -- finality -----------------------------------------------------------------------------------

FINALITY_MESSAGE = (
    b"phala/finality/v1".hex()
    + GENESIS.hex()
    + "0000000000000000"  # set_id (u64)
    + "01000000"  # number (u32)
    + HEADER_HASH
)

JUSTIFICATION = (
    "0000000000000000" "01000000" + HEADER_HASH + "04" + ALICE.hex() + "22" * 64
)


def test_finality_message():
    message = finality_message(GENESIS, 0, 1, bytes.fromhex(HEADER_HASH))
    assert message.hex() == FINALITY_MESSAGE
    assert len(message) == 93


def test_justification_and_authority_set():
    just = Justification(0, 1, bytes.fromhex(HEADER_HASH), [AuthoritySignature(ALICE, b"\x22" * 64)])
    assert encode(just).hex() == JUSTIFICATION
    assert decode(Justification, bytes.fromhex(JUSTIFICATION)) == just
    assert encode(AuthoritySet(0, [ALICE])).hex() == "0000000000000000" "04" + ALICE.hex()


def test_block_changes():
    changes = BlockChanges(
        1, bytes.fromhex(HEADER_HASH), [StorageChange(b"\x01", b"\xff"), StorageChange(b"\x02", None)]
    )
    hex_ = "01000000" + HEADER_HASH + "08" + "0401" "01" "04ff" + "0402" "00"
    assert encode(changes).hex() == hex_
    assert decode(BlockChanges, bytes.fromhex(hex_)) == changes


# -- state tree -------------------------------------------------------------------------------

EMPTY_HASHES = [
    "bf2aede4148c9b58f2597ed31af9d63f1a0f187d82191609887683f4286da3f7",  # root level (EMPTY_ROOT)
    "56c32a5fc6046cce72aafa96bff12738fcafb368eaf823675325bfe133fc2e7c",
    "30a5461ac65ccd0de7dc24df383885a6ca5608e1f8abb7c6e4e844882e281840",
    "9e0ffe1d8b52cf4dec62acb5790cd4f21dc661b51f14a49cbf4b32d1a17a1757",
    "bb30a42c1e62f0afda5f0a4e8a562f7a13a24cea00ee81917b86b89e801314aa",  # empty bucket
]
ONE_KEY_ROOT = "4d5e135899c5400047c7081438dadb34006e3f5c35553fa9363bd615e35398db"


def test_empty_subtree_constants():
    assert [x.hex() for x in trie.EMPTY_HASHES] == EMPTY_HASHES
    assert trie.EMPTY_ROOT.hex() == EMPTY_HASHES[0]
    assert trie.StateTree().root().hex() == EMPTY_HASHES[0]
    # Independently: the empty bucket is the tag alone; an empty inner node repeats its
    # empty child hash 16 times after its tag.
    level = h256(b"\x02")
    assert level.hex() == EMPTY_HASHES[4]
    for depth in (3, 2, 1, 0):
        level = h256(b"\x01" + level * 16)
        assert level.hex() == EMPTY_HASHES[depth]


def test_one_key_tree_by_hand():
    key, value = b"\x01", b"\xff"
    kh = h256(key)
    assert kh.hex() == "ee155ace9c40292074cb6aff8c9ccdd273c81648ff1149ef36bcea6ebb8a3e25"
    assert int.from_bytes(kh[:2], "big") == 0xEE15  # bucket 60949, nibbles e, e, 1, 5
    vh = h256(b"\x00" + value)
    assert vh.hex() == "9610cfdd41b3fef6842aa0616c9d17f5f7fb0dccc1763cf17b9bd0f73563522f"
    node = h256(b"\x02" + kh + vh)  # the bucket blob
    empties = [bytes.fromhex(x) for x in EMPTY_HASHES]
    for depth, nibble in zip((3, 2, 1, 0), (0x5, 0x1, 0xE, 0xE), strict=True):
        children = [empties[depth + 1]] * 16
        children[nibble] = node
        node = h256(b"\x01" + b"".join(children))
    assert node.hex() == ONE_KEY_ROOT
    assert trie.StateTree.from_items([(key, value)]).root().hex() == ONE_KEY_ROOT


def test_proofs_of_presence_and_absence():
    tree = trie.StateTree.from_items([(b"\x01", b"\xff")])
    root, blobs = tree.commit()
    store = trie.MemoryNodeStore()
    store.put_many(blobs)
    proof = trie.prove(root, [b"\x01"], store.get)
    assert [(trie.node_kind(b), len(b)) for b in proof] == [
        ("inner", 513), ("inner", 513), ("inner", 513), ("inner", 513), ("bucket", 65), ("value", 2)
    ]  # fmt: skip
    assert proof[-1] == b"\x00\xff"
    assert trie.verify_proof(root, proof, [b"\x01"]) == {b"\x01": b"\xff"}
    # blake2_256(b"\x02") starts with 0xbb: the root's child 0xb is an empty subtree, so the
    # root blob alone proves the key absent.
    absent = trie.prove(root, [b"\x02"], store.get)
    assert len(absent) == 1 and absent[0][0] == trie.TAG_INNER
    assert trie.verify_proof(root, absent, [b"\x02"]) == {b"\x02": None}
    # The empty tree needs no blobs at all.
    assert trie.verify_proof(trie.EMPTY_ROOT, [], [b"\x01"]) == {b"\x01": None}


# -- keys, addresses, envelopes ----------------------------------------------------------------


def test_dev_keys_and_ss58():
    assert keys.dev_keypair("Alice").public_key == ALICE
    assert keys.dev_keypair("Bob").public_key == BOB
    assert ss58.encode(ALICE) == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    assert ss58.encode(ALICE, 30) == "45R2pfjQUW2s9PQRHU48HQKLKHVMaDja7N3wpBtmF28UYDs2"
    assert ss58._encode_prefix(2000).hex() == "7407"
    assert ss58.decode_with_prefix("45R2pfjQUW2s9PQRHU48HQKLKHVMaDja7N3wpBtmF28UYDs2") == (ALICE, 30)
    body = bytes([42]) + ALICE
    checksum = blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2]
    assert ss58.base58.b58encode(body + checksum).decode() == ss58.encode(ALICE)


def test_junction_chain_code():
    assert keys._chain_code("Alice").hex() == "14416c696365" + "00" * 26
    assert keys._chain_code("1") == (1).to_bytes(8, "little") + bytes(24)


ENVELOPE = (
    "a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209"  # ephemeral public
    "000000000000000000000000"  # nonce
    "8034b7839e"  # AES-256-GCM ciphertext of b"hello"
    "34d0c8417a4fb1c559aa27aa5bb989c6"  # GCM tag
)


def test_envelope():
    ephemeral = envelope.X25519Keypair.from_secret(b"\x01" * 32)
    recipient = envelope.X25519Keypair.from_secret(b"\x02" * 32)
    assert recipient.public.hex() == "ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59"
    sealed = envelope.seal(recipient.public, b"hello", b"aad", ephemeral=ephemeral, nonce=bytes(12))
    assert sealed.to_bytes().hex() == ENVELOPE
    # Independently: HKDF-SHA256 (zero salt) with info = context || ephemeral || recipient.
    shared = ephemeral.agree(recipient.public)
    key = envelope.hkdf_sha256(shared, b"phala/envelope/v1" + ephemeral.public + recipient.public)
    assert key.hex() == "3ca7503675fdd334898b0516faf48e53ad3fa57a5c13465c29012f3f609fcf72"
    assert envelope.aead_encrypt(key, bytes(12), b"hello", b"aad").hex() == ENVELOPE[88:]
    opened = envelope.open_envelope(b"\x02" * 32, envelope.Envelope.from_bytes(bytes.fromhex(ENVELOPE)), b"aad")
    assert opened == b"hello"
