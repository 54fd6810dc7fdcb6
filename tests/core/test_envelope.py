"""X25519 + AES-256-GCM envelopes and HKDF-SHA256."""

import pytest

from phala.core.envelope import (
    DEFAULT_INFO,
    Envelope,
    EnvelopeError,
    X25519Keypair,
    aead_decrypt,
    aead_encrypt,
    hkdf_sha256,
    open_envelope,
    seal,
)

FAILED = "decryption failed: wrong key, tampered ciphertext or wrong associated data"


def test_hkdf_rfc5869_test_case_1() -> None:
    okm = hkdf_sha256(
        bytes.fromhex("0b" * 22),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
        salt=bytes.fromhex("000102030405060708090a0b0c"),
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_rfc5869_test_case_3_no_salt_no_info() -> None:
    okm = hkdf_sha256(bytes.fromhex("0b" * 22), info=b"", length=42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_hkdf_length_limits() -> None:
    assert len(hkdf_sha256(b"k", b"i")) == 32
    assert len(hkdf_sha256(b"k", b"i", 255 * 32)) == 255 * 32
    for bad in (0, 255 * 32 + 1):
        with pytest.raises(ValueError, match="length"):
            hkdf_sha256(b"k", b"i", bad)


def test_x25519_rfc7748_agreement() -> None:
    # RFC 7748 section 6.1 Diffie-Hellman vector.
    alice = X25519Keypair.from_secret(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = X25519Keypair.from_secret(
        bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    assert alice.public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert bob.public.hex() == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert alice.agree(bob.public).hex() == shared
    assert bob.agree(alice.public).hex() == shared


def test_x25519_keypair_generate_and_validation() -> None:
    pair = X25519Keypair.generate()
    assert len(pair.secret) == 32 and len(pair.public) == 32
    assert X25519Keypair.from_secret(pair.secret) == pair
    assert pair.secret.hex() not in repr(pair)
    with pytest.raises(EnvelopeError, match="32 bytes"):
        X25519Keypair.from_secret(bytes(31))
    with pytest.raises(EnvelopeError, match="does not match"):
        X25519Keypair(secret=pair.secret, public=X25519Keypair.generate().public)
    with pytest.raises(EnvelopeError, match="32 bytes"):
        pair.agree(bytes(31))


@pytest.mark.parametrize(
    "low_order",
    [
        bytes(32),
        (1).to_bytes(32, "little"),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
)
def test_low_order_peer_rejected(low_order: bytes) -> None:
    with pytest.raises(EnvelopeError, match="low-order"):
        X25519Keypair.generate().agree(low_order)


def test_round_trip() -> None:
    recipient = X25519Keypair.generate()
    envelope = seal(recipient.public, b"secret payload", b"contract-42")
    assert len(envelope.ephemeral_public) == 32 and len(envelope.nonce) == 12
    assert len(envelope.ciphertext) == len(b"secret payload") + 16
    assert open_envelope(recipient.secret, envelope, b"contract-42") == b"secret payload"


def test_round_trip_empty_plaintext_and_aad() -> None:
    recipient = X25519Keypair.generate()
    envelope = seal(recipient.public, b"", b"")
    assert open_envelope(recipient.secret, Envelope.from_bytes(envelope.to_bytes()), b"") == b""


def test_wire_format() -> None:
    recipient = X25519Keypair.generate()
    envelope = seal(recipient.public, b"hello", b"aad")
    data = envelope.to_bytes()
    assert data == envelope.ephemeral_public + envelope.nonce + envelope.ciphertext
    assert Envelope.from_bytes(data) == envelope
    assert Envelope.from_bytes(bytearray(data)) == envelope


def test_from_bytes_rejects_short_input() -> None:
    with pytest.raises(EnvelopeError, match="too short"):
        Envelope.from_bytes(bytes(32 + 12 + 15))
    assert Envelope.from_bytes(bytes(32 + 12 + 16)).ciphertext == bytes(16)


def test_envelope_field_validation() -> None:
    with pytest.raises(EnvelopeError, match="ephemeral"):
        Envelope(ephemeral_public=bytes(31), nonce=bytes(12), ciphertext=bytes(16))
    with pytest.raises(EnvelopeError, match="nonce"):
        Envelope(ephemeral_public=bytes(32), nonce=bytes(11), ciphertext=bytes(16))
    with pytest.raises(EnvelopeError, match="tag"):
        Envelope(ephemeral_public=bytes(32), nonce=bytes(12), ciphertext=bytes(15))


def test_fresh_ephemeral_and_nonce_each_time() -> None:
    recipient = X25519Keypair.generate()
    first, second = seal(recipient.public, b"m", b""), seal(recipient.public, b"m", b"")
    assert first.ephemeral_public != second.ephemeral_public
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_given_ephemeral_and_nonce_are_deterministic() -> None:
    recipient = X25519Keypair.generate()
    ephemeral = X25519Keypair.from_secret(bytes(range(32)))
    nonce = bytes(range(12))
    first = seal(recipient.public, b"m", b"a", ephemeral=ephemeral, nonce=nonce)
    second = seal(recipient.public, b"m", b"a", ephemeral=ephemeral, nonce=nonce)
    assert first == second
    assert first.ephemeral_public == ephemeral.public and first.nonce == nonce
    assert open_envelope(recipient.secret, first, b"a") == b"m"
    with pytest.raises(EnvelopeError, match="nonce must be 12 bytes"):
        seal(recipient.public, b"m", b"a", nonce=bytes(8))


def test_wrong_aad_rejected() -> None:
    recipient = X25519Keypair.generate()
    envelope = seal(recipient.public, b"payload", b"contract-1")
    with pytest.raises(EnvelopeError) as info:
        open_envelope(recipient.secret, envelope, b"contract-2")
    assert str(info.value) == FAILED


def test_wrong_recipient_rejected() -> None:
    envelope = seal(X25519Keypair.generate().public, b"payload", b"")
    with pytest.raises(EnvelopeError, match=FAILED):
        open_envelope(X25519Keypair.generate().secret, envelope, b"")


def test_wrong_info_rejected() -> None:
    recipient = X25519Keypair.generate()
    envelope = seal(recipient.public, b"payload", b"", info=b"phala/other/v1")
    with pytest.raises(EnvelopeError, match=FAILED):
        open_envelope(recipient.secret, envelope, b"")
    assert open_envelope(recipient.secret, envelope, b"", info=b"phala/other/v1") == b"payload"
    assert DEFAULT_INFO == b"phala/envelope/v1"


@pytest.mark.parametrize("position", [0, 7, 32, 40, 44, 50, -1])
def test_any_flipped_bit_rejected(position: int) -> None:
    recipient = X25519Keypair.generate()
    data = bytearray(seal(recipient.public, b"sixteen byte msg", b"aad").to_bytes())
    data[position] ^= 0x01
    with pytest.raises(EnvelopeError, match=FAILED):
        open_envelope(recipient.secret, Envelope.from_bytes(bytes(data)), b"aad")


def test_truncated_ciphertext_rejected() -> None:
    recipient = X25519Keypair.generate()
    envelope = seal(recipient.public, b"payload", b"")
    shortened = Envelope(envelope.ephemeral_public, envelope.nonce, envelope.ciphertext[:-1])
    with pytest.raises(EnvelopeError, match=FAILED):
        open_envelope(recipient.secret, shortened, b"")


def test_low_order_ephemeral_and_bad_secret_give_generic_failure() -> None:
    recipient = X25519Keypair.generate()
    forged = Envelope(ephemeral_public=bytes(32), nonce=bytes(12), ciphertext=bytes(20))
    with pytest.raises(EnvelopeError, match=FAILED):
        open_envelope(recipient.secret, forged, b"")
    envelope = seal(recipient.public, b"m", b"")
    with pytest.raises(EnvelopeError, match=FAILED):
        open_envelope(recipient.secret[:31], envelope, b"")


def test_seal_rejects_low_order_recipient() -> None:
    with pytest.raises(EnvelopeError, match="low-order"):
        seal(bytes(32), b"m", b"")


def test_aead_round_trip_and_rejections() -> None:
    key, nonce = bytes(range(32)), bytes(12)
    ciphertext = aead_encrypt(key, nonce, b"plain", b"aad")
    assert len(ciphertext) == 5 + 16
    assert aead_decrypt(key, nonce, ciphertext, b"aad") == b"plain"
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    for args in (
        (key, nonce, ciphertext, b"other"),
        (bytes(32), nonce, ciphertext, b"aad"),
        (key, b"\x01" * 12, ciphertext, b"aad"),
        (key, nonce, tampered, b"aad"),
        (key, nonce, b"", b"aad"),
    ):
        with pytest.raises(EnvelopeError, match=FAILED):
            aead_decrypt(*args)


def test_aead_nist_gcm_vector() -> None:
    # NIST GCM test case 13 (AES-256, zero key, zero IV, empty plaintext): tag only.
    assert aead_encrypt(bytes(32), bytes(12), b"", b"").hex() == "530f8afbc74536b9a963b4f1c4cb738b"


def test_aead_rejects_bad_key_and_nonce() -> None:
    with pytest.raises(EnvelopeError, match="key must be 32 bytes"):
        aead_encrypt(bytes(16), bytes(12), b"", b"")
    with pytest.raises(EnvelopeError, match="nonce must be 12 bytes"):
        aead_encrypt(bytes(32), bytes(16), b"", b"")
    with pytest.raises(EnvelopeError, match="key must be 32 bytes"):
        aead_decrypt(bytes(31), bytes(12), bytes(16), b"")


def test_envelope_error_is_value_error() -> None:
    assert issubclass(EnvelopeError, ValueError)
