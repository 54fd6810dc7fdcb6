"""SS58 encoding against addresses produced by Substrate tooling."""

import base58
import pytest

from phala.core import ss58
from phala.core.hashing import blake2_512

ALICE = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
BOB = bytes.fromhex("8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48")
ALICE_SS58 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


@pytest.mark.parametrize(
    ("key", "prefix", "address"),
    [
        (ALICE, 42, ALICE_SS58),
        (BOB, 42, "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"),
        (ALICE, 0, "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"),  # Polkadot
        (ALICE, 2, "HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F"),  # Kusama
        (BOB, 63, "7Lpe5LRa2Ntx9KGDk77xzoBPYTCAvj7QqaBx4Nz2TFqL3sLw"),
    ],
)
def test_known_addresses(key: bytes, prefix: int, address: str) -> None:
    assert ss58.encode(key, prefix) == address
    assert ss58.decode(address) == key
    assert ss58.decode_with_prefix(address) == (key, prefix)


def test_default_prefix_is_42() -> None:
    assert ss58.encode(ALICE) == ALICE_SS58


def test_two_byte_prefix_layout_matches_substrate_vector() -> None:
    # Substrate's own test address for custom prefix 200 (it carries a 33-byte ECDSA key, so it
    # is checked at the prefix and checksum level rather than through decode()).
    data = base58.b58decode("4pbsSkWcBaYoFHrKJZp5fDVUKbqSYD9dhZZGvpp3vQ5ysVs5ybV")
    assert ss58._decode_prefix(data) == (2, 200)
    assert ss58._encode_prefix(200) == data[:2]
    assert blake2_512(b"SS58PRE" + data[:-2])[:2] == data[-2:]


@pytest.mark.parametrize("prefix", [0, 1, 42, 63, 64, 65, 127, 128, 255, 256, 1000, 2032, 16383])
def test_round_trip_every_prefix_width(prefix: int) -> None:
    address = ss58.encode(BOB, prefix)
    assert ss58.decode_with_prefix(address) == (BOB, prefix)
    assert ss58.decode(address, expected_prefix=prefix) == BOB


def test_one_and_two_byte_prefix_lengths() -> None:
    assert len(base58.b58decode(ss58.encode(ALICE, 63))) == 35
    assert len(base58.b58decode(ss58.encode(ALICE, 64))) == 36


@pytest.mark.parametrize("prefix", [-1, 16384, 1 << 20])
def test_encode_rejects_out_of_range_prefix(prefix: int) -> None:
    with pytest.raises(ValueError, match="prefix"):
        ss58.encode(ALICE, prefix)


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33)])
def test_encode_rejects_wrong_key_length(key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ss58.encode(key)


@pytest.mark.parametrize("address", ["5Grwva0F5zX", "5GrwvaIl", "5Grw vaE", "", "5Grwvaé"])
def test_bad_base58_or_empty(address: str) -> None:
    with pytest.raises(ss58.InvalidAddress, match="base58|bad length"):
        ss58.decode(address)


def _address(body: bytes) -> str:
    """Base58 of body with a correct SS58 checksum, to isolate the length check."""
    return base58.b58encode(body + blake2_512(b"SS58PRE" + body)[:2]).decode()


@pytest.mark.parametrize(
    "address",
    [
        "1",  # a single zero byte
        _address(bytes([42]) + ALICE[:31]),
        _address(bytes([42]) + ALICE + b"\x00"),
        _address(ss58._encode_prefix(300) + ALICE[:31]),
    ],
)
def test_bad_length(address: str) -> None:
    with pytest.raises(ss58.InvalidAddress, match="bad length"):
        ss58.decode(address)


def test_payload_of_other_length_is_bad_length() -> None:
    address = _address(bytes([42]) + bytes(20))
    with pytest.raises(ss58.InvalidAddress, match="bad length"):
        ss58.decode(address)


def test_bad_checksum() -> None:
    data = bytearray(base58.b58decode(ALICE_SS58))
    data[-1] ^= 0x01
    with pytest.raises(ss58.InvalidAddress, match="bad checksum"):
        ss58.decode(base58.b58encode(bytes(data)).decode())


def test_flipped_payload_bit_fails_checksum() -> None:
    data = bytearray(base58.b58decode(ALICE_SS58))
    data[5] ^= 0x80
    with pytest.raises(ss58.InvalidAddress, match="bad checksum"):
        ss58.decode(base58.b58encode(bytes(data)).decode())


def test_reserved_prefix_byte() -> None:
    address = _address(bytes([0x80]) + ALICE)
    with pytest.raises(ss58.InvalidAddress, match="invalid SS58 prefix byte"):
        ss58.decode(address)


def test_wrong_prefix() -> None:
    with pytest.raises(
        ss58.InvalidAddress, match="wrong prefix: address is for network 0, expected 42"
    ):
        ss58.decode(ss58.encode(ALICE, 0), expected_prefix=42)


def test_invalid_address_is_value_error() -> None:
    assert issubclass(ss58.InvalidAddress, ValueError)


def test_parse_account_accepts_ss58_and_hex() -> None:
    assert ss58.parse_account(ALICE_SS58) == ALICE
    assert ss58.parse_account("0x" + ALICE.hex()) == ALICE
    assert ss58.parse_account("0x" + ALICE.hex().upper()) == ALICE
    assert ss58.parse_account(f"  {ALICE_SS58}\n") == ALICE
    assert ss58.parse_account(ss58.encode(ALICE, 30), prefix=30) == ALICE


def test_parse_account_prefix_applies_to_ss58_only() -> None:
    with pytest.raises(ss58.InvalidAddress, match="wrong prefix"):
        ss58.parse_account(ALICE_SS58, prefix=30)
    assert ss58.parse_account("0x" + ALICE.hex(), prefix=30) == ALICE


@pytest.mark.parametrize(
    "text",
    [
        "0x" + ALICE.hex()[:-2],
        "0x" + ALICE.hex() + "00",
        "0x" + "zz" * 32,
        "0x",
        "0x " + ALICE.hex()[1:],
    ],
)
def test_parse_account_rejects_bad_hex(text: str) -> None:
    with pytest.raises(ss58.InvalidAddress, match="64 hex digits"):
        ss58.parse_account(text)


def test_parse_account_rejects_garbage() -> None:
    with pytest.raises(ss58.InvalidAddress):
        ss58.parse_account("alice")
