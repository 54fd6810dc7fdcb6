"""sr25519 keys against vectors from Substrate's own tests and subkey output."""

import pytest

from phala.core import keys, ss58
from phala.core.envelope import X25519Keypair, open_envelope, seal
from phala.core.keys import DEV_PHRASE, InvalidSecretUri, Keypair, dev_keypair, verify

ALICE_HEX = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
BOB_HEX = "8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48"
# The subkey documentation's example phrase and its inspect output.
DOC_PHRASE = "caution juice atom organ advance problem want pledge someone senior holiday very"
DOC_SEED = "c8fa03532fb22ee1f7f6908b9c02b4e72483f0dbd66e4cd456b8f34c6230b849"
DOC_PUBLIC = "d6a3105d6768e956e9e5d41050ac29843f98561410d3a47f9dd5b3b227ab8746"


def test_alice_and_bob() -> None:
    alice = Keypair.from_uri("//Alice")
    assert alice.public_key.hex() == ALICE_HEX
    assert alice.ss58_address() == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    bob = Keypair.from_uri("//Bob")
    assert bob.public_key.hex() == BOB_HEX
    assert bob.ss58_address(42) == "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"


@pytest.mark.parametrize(
    ("uri", "address"),
    [
        ("//Alice//stash", "5GNJqTPyNqANBkUVMN1LPPrxXnFouWXoe2wNSmmEoLctxiZY"),
        ("//Bob//stash", "5HpG9w8EBLe5XCrbczpwq5TSXvedjrBGCwqxK1iQ7qUsSWFc"),
        ("//Charlie", "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y"),
        ("//Dave", "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"),
        ("//Eve", "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw"),
        ("//Ferdie", "5CiPPseXPECbkjWCa6MnjNokrgYjMqmKndv2rSnekmSK2DjL"),
    ],
)
def test_well_known_dev_addresses(uri: str, address: str) -> None:
    assert Keypair.from_uri(uri).ss58_address() == address


def test_explicit_dev_phrase_equals_default() -> None:
    assert Keypair.from_uri(f"{DEV_PHRASE}//Alice").public_key.hex() == ALICE_HEX


def test_soft_derivation_known_vector() -> None:
    # Substrate sr25519 test derive_soft_known_pair_should_work.
    expected = "d6c71059dbbe9ad2b0ed3f289738b800836eb425544ce694825285b958ca755e"
    assert Keypair.from_uri(f"{DEV_PHRASE}/Alice").public_key.hex() == expected
    assert Keypair.from_uri("/Alice").public_key.hex() == expected


def test_seed_vectors() -> None:
    # Substrate sr25519 tests sr_test_vector_should_work and seeded_pair_should_work.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    expected = "44a996beb1eef7bdcab976ab6d2ca26104834164ecf28fb375600576fcc6eb0f"
    assert Keypair.from_seed(seed).public_key.hex() == expected
    assert Keypair.from_uri("0x" + seed.hex()).public_key.hex() == expected
    assert Keypair.from_uri("0x" + seed.hex().upper()).public_key.hex() == expected
    assert (
        Keypair.from_seed(b"12345678901234567890123456789012").public_key.hex()
        == "741c08a06f41c596608f6774259bd9043304adfa5d3eea62760bd9be97634d63"
    )


def test_documented_subkey_phrase() -> None:
    assert keys.mini_secret_from_mnemonic(DOC_PHRASE).hex() == DOC_SEED
    pair = Keypair.from_mnemonic(DOC_PHRASE)
    assert pair.public_key.hex() == DOC_PUBLIC
    assert pair.ss58_address() == "5Gv8YYFu8H1btvmrJy9FjjAWfb99wrhV3uhPFoNEr918utyR"
    assert pair.ss58_address(0) == "15rRgsWxz4H5LTnNGcCFsszfXD8oeAFd8QRsR6MbQE2f6XFF"
    assert pair.ss58_address(2) == "HRkCrbmke2XeabJ5fxJdgXWpBRPkXWfWHY8eTeCKwDdf4k6"
    assert Keypair.from_uri(DOC_PHRASE) == pair
    assert Keypair.from_uri("0x" + DOC_SEED) == pair


def test_mnemonic_whitespace_is_normalised() -> None:
    messy = "  " + DOC_PHRASE.replace(" ", "   ", 3) + " "
    assert Keypair.from_mnemonic(messy).public_key.hex() == DOC_PUBLIC


def test_password() -> None:
    # Substrate test default_phrase_should_be_used: the password salts the mnemonic.
    with_password = Keypair.from_uri("//Alice///password")
    assert (
        with_password.public_key
        == Keypair.from_mnemonic(DEV_PHRASE, "password").derive("//Alice").public_key
    )
    assert with_password.public_key.hex() != ALICE_HEX
    assert (
        Keypair.from_uri(f"{DEV_PHRASE}//Alice///password").public_key == with_password.public_key
    )
    # An empty password is no password.
    assert Keypair.from_uri("//Alice///").public_key.hex() == ALICE_HEX
    assert Keypair.from_uri(f"{DOC_PHRASE}///pw") == Keypair.from_mnemonic(DOC_PHRASE, "pw")


def test_junction_text_may_hold_any_character_but_slash() -> None:
    assert Keypair.from_uri("//Alice\x00/x-y!").public_key != Keypair.from_uri("//Alice").public_key
    # Four slashes: a hard junction cannot be empty, so this is "///" then password "/x".
    assert Keypair.from_uri("//Alice////x") == Keypair.from_mnemonic(DEV_PHRASE, "/x").derive(
        "//Alice"
    )


def test_password_is_ignored_with_hex_seed_like_substrate() -> None:
    assert Keypair.from_uri(f"0x{DOC_SEED}///secret") == Keypair.from_uri(f"0x{DOC_SEED}")


def test_hard_and_soft_differ_and_chain() -> None:
    hard = Keypair.from_uri("//Alice//1")
    soft = Keypair.from_uri("//Alice/1")
    assert hard.public_key != soft.public_key
    assert Keypair.from_uri("//Alice").derive("/1").public_key == soft.public_key
    assert Keypair.from_uri("//Alice").derive("//1") == hard
    assert dev_keypair("Alice").derive("") == dev_keypair("Alice")


def test_numeric_junction_is_u64_like_rust() -> None:
    # Rust's u64 parser accepts a leading '+', so "+7" and "7" are the same junction.
    assert keys._chain_code("7") == (7).to_bytes(8, "little") + bytes(24)
    assert keys._chain_code("+7") == keys._chain_code("7")
    # Values that overflow u64 fall back to the string encoding.
    big = str(1 << 64)
    assert keys._chain_code(big) == bytes([len(big) << 2]) + big.encode() + bytes(32 - 1 - len(big))
    assert keys._chain_code(" 7") == bytes([2 << 2]) + b" 7" + bytes(29)
    assert Keypair.from_uri("//Alice//+7").public_key == Keypair.from_uri("//Alice//7").public_key


def test_string_junction_encoding() -> None:
    assert keys._chain_code("Alice") == bytes([5 << 2]) + b"Alice" + bytes(26)
    # 31 bytes of text + 1 length byte fit exactly; one more and the encoding is hashed.
    fits = "a" * 31
    assert keys._chain_code(fits) == bytes([31 << 2]) + fits.encode()
    too_long = "a" * 32
    assert keys._chain_code(too_long) == keys.blake2_256(bytes([32 << 2]) + too_long.encode())
    long_text = "x" * 70  # two-byte compact length prefix
    assert keys._chain_code(long_text) == keys.blake2_256(
        ((70 << 2) | 1).to_bytes(2, "little") + long_text.encode()
    )


def test_hard_derivation_is_deterministic_soft_nonce_is_not() -> None:
    assert Keypair.from_uri("//Alice//x") == Keypair.from_uri("//Alice//x")
    first, second = Keypair.from_uri("//Alice/x"), Keypair.from_uri("//Alice/x")
    assert first.public_key == second.public_key
    assert first.secret_key[:32] == second.secret_key[:32]


def test_sign_and_verify() -> None:
    alice, bob = dev_keypair("Alice"), dev_keypair("Bob")
    message = b"transfer 10 PHA to bob"
    signature = alice.sign(message)
    assert len(signature) == 64
    assert verify(alice.public_key, message, signature)
    assert not verify(bob.public_key, message, signature)
    assert not verify(alice.public_key, message + b"!", signature)


def test_signatures_are_randomised_but_all_verify() -> None:
    alice = dev_keypair("Alice")
    first, second = alice.sign(b"m"), alice.sign(b"m")
    assert first != second
    assert verify(alice.public_key, b"m", first) and verify(alice.public_key, b"m", second)


def test_soft_derived_key_signs() -> None:
    pair = Keypair.from_uri("//Alice/soft")
    assert verify(pair.public_key, b"hello", pair.sign(b"hello"))


@pytest.mark.parametrize("position", [0, 2, 31, 32, 62])
def test_tampered_signature_rejected(position: int) -> None:
    alice = dev_keypair("Alice")
    signature = bytearray(alice.sign(b"payload"))
    signature[position] ^= 0x01
    assert not verify(alice.public_key, b"payload", bytes(signature))


def test_verify_never_raises_on_malformed_input() -> None:
    alice = dev_keypair("Alice")
    signature = alice.sign(b"m")
    cleared_marker = signature[:63] + bytes([signature[63] & 0x7F])
    assert not verify(alice.public_key, b"m", cleared_marker)
    assert not verify(alice.public_key, b"m", signature[:63])
    assert not verify(alice.public_key, b"m", signature + b"\x00")
    assert not verify(alice.public_key, b"m", b"")
    assert not verify(alice.public_key[:31], b"m", signature)
    assert not verify(b"\xff" * 32, b"m", signature)
    assert not verify(None, b"m", signature)  # type: ignore[arg-type]
    assert not verify(alice.public_key, "m", signature)  # type: ignore[arg-type]


def test_generate() -> None:
    phrase, pair = Keypair.generate()
    assert len(phrase.split()) == 12
    assert Keypair.from_mnemonic(phrase) == pair
    assert Keypair.from_uri(phrase) == pair
    other_phrase, other = Keypair.generate()
    assert other_phrase != phrase and other.public_key != pair.public_key


def test_dev_keypair() -> None:
    assert keys.DEV_ACCOUNTS == ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")
    assert dev_keypair("Alice").public_key.hex() == ALICE_HEX
    assert dev_keypair("bob").public_key.hex() == BOB_HEX
    with pytest.raises(ValueError, match="unknown dev account"):
        dev_keypair("Mallory")


def test_secret_is_not_in_repr() -> None:
    alice = dev_keypair("Alice")
    assert alice.secret_key.hex() not in repr(alice)
    assert ALICE_HEX in repr(alice) or "public_key" in repr(alice)


def test_keypair_validates_its_parts() -> None:
    alice, bob = dev_keypair("Alice"), dev_keypair("Bob")
    with pytest.raises(ValueError, match="does not match"):
        Keypair(public_key=bob.public_key, secret_key=alice.secret_key)
    with pytest.raises(ValueError, match="32 bytes"):
        Keypair(public_key=alice.public_key[:31], secret_key=alice.secret_key)
    with pytest.raises(ValueError, match="64 bytes"):
        Keypair(public_key=alice.public_key, secret_key=alice.secret_key[:32])


def test_ss58_round_trip() -> None:
    alice = dev_keypair("Alice")
    assert ss58.decode(alice.ss58_address(30), expected_prefix=30) == alice.public_key


def test_x25519_secret() -> None:
    alice = dev_keypair("Alice")
    secret = alice.x25519_secret()
    assert len(secret) == 32
    assert secret == dev_keypair("Alice").x25519_secret()
    assert secret != dev_keypair("Bob").x25519_secret()
    # Stable across soft derivation even though the secret nonce half is random.
    assert (
        Keypair.from_uri("//Alice/s").x25519_secret()
        == Keypair.from_uri("//Alice/s").x25519_secret()
    )
    recipient = X25519Keypair.from_secret(secret)
    envelope = seal(recipient.public, b"for alice", b"ctx")
    assert open_envelope(alice.x25519_secret(), envelope, b"ctx") == b"for alice"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("//", "secret URI"),
        ("//Alice//", "secret URI"),
        ("Alice", "invalid mnemonic"),
        ("bottom drive obey//Alice", "invalid mnemonic"),
        (DEV_PHRASE.replace("walk", "wall"), "invalid mnemonic"),  # checksum
        (DEV_PHRASE.replace("walk", "zzzz"), "invalid mnemonic"),  # not a word
        (DEV_PHRASE.upper(), "invalid mnemonic"),
        ("0x1234", "64 hex digits"),
        ("0x" + "ab" * 33, "64 hex digits"),
        ("0x" + "zz" * 32, "64 hex digits"),
        ("0x" + "ab" * 31 + " ab", "64 hex digits"),
        ("/Alice/", "secret URI"),
        ("bad-char phrase", "secret URI"),
    ],
)
def test_bad_uris(uri: str, reason: str) -> None:
    with pytest.raises(InvalidSecretUri, match=reason):
        Keypair.from_uri(uri)


def test_bad_seed_and_mnemonic() -> None:
    with pytest.raises(InvalidSecretUri, match="32 bytes"):
        Keypair.from_seed(bytes(31))
    with pytest.raises(InvalidSecretUri, match="invalid mnemonic"):
        Keypair.from_mnemonic("abandon " * 11 + "abandon")
    with pytest.raises(InvalidSecretUri, match="derivation path"):
        dev_keypair("Alice").derive("Alice")
    assert issubclass(InvalidSecretUri, ValueError)
