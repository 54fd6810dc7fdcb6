"""The worker identity sealed to the enclave, and generic sealing."""

from __future__ import annotations

import re
import stat

import pytest

from phala.core.attestation import (
    SIM_ATTESTATION_URI,
    SimQuote,
    WorkerRegistrationInfo,
    report_data,
    verify_sim_quote,
)
from phala.core.keys import Keypair, verify
from phala.pruntime.enclave import Enclave, EnclaveError, open_enclave
from phala.pruntime.enclave.files import write_new_file
from phala.pruntime.identity import (
    IDENTITY_AAD,
    IDENTITY_FILE,
    SealingError,
    WorkerIdentity,
    load_or_create,
    seal,
    unseal,
)

GENESIS = bytes([0xAB]) * 32
OPERATOR = Keypair.from_uri("//Alice").public_key


class FixedKeyEnclave(Enclave):
    """A test enclave with a given sealing key (or None) and kind."""

    kind = "fixed"

    def __init__(self, key: bytes | None, kind: str = "fixed"):
        super().__init__()
        self.key = key
        self.kind = kind  # type: ignore[misc]

    def _quote(self, report_data: bytes):
        raise NotImplementedError

    def sealing_key(self):
        return self.key


class BrokenEnclave(FixedKeyEnclave):
    def sealing_key(self):
        raise EnclaveError("/dev/attestation/keys/_sgx_mrenclave: no such file")


@pytest.fixture
def sim(tmp_path):
    return open_enclave("sim", data_dir=tmp_path)


def test_first_start_creates_and_later_starts_unseal_the_same_identity(sim, tmp_path):
    created = load_or_create(sim, tmp_path)
    path = tmp_path / IDENTITY_FILE
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary files
    loaded = load_or_create(open_enclave("sim", data_dir=tmp_path), tmp_path)
    assert loaded == created
    assert loaded.keypair.secret_key == created.keypair.secret_key
    assert loaded.ecdh.secret == created.ecdh.secret
    # the keys work
    assert verify(loaded.public_key, b"msg", loaded.keypair.sign(b"msg"))
    assert len(loaded.ecdh_public) == 32
    # secrets are not in the file in the clear
    blob = path.read_bytes()
    assert created.keypair.secret_key[:32] not in blob and created.ecdh.secret not in blob


def test_creates_the_data_directory(tmp_path):
    data_dir = tmp_path / "a" / "b"
    load_or_create(open_enclave("sim", data_dir=data_dir), data_dir)
    assert (data_dir / IDENTITY_FILE).exists()


def test_registration_info_and_attestation(sim, tmp_path):
    identity = load_or_create(sim, tmp_path)
    info = identity.registration_info(GENESIS, OPERATOR, 7)
    assert info == WorkerRegistrationInfo(
        7, identity.public_key, identity.ecdh_public, GENESIS, OPERATOR
    )
    assert identity.registration_info(GENESIS, None, 0).operator is None
    info2, quote = identity.attest(sim, GENESIS, OPERATOR, 7)
    assert info2 == info
    assert isinstance(quote, SimQuote) and quote.report_data == report_data(info)
    verify_sim_quote(quote, Keypair.from_uri(SIM_ATTESTATION_URI).public_key)


def test_registration_info_validates_its_inputs():
    identity = WorkerIdentity.generate()
    with pytest.raises(ValueError, match="genesis hash"):
        identity.registration_info(bytes(31), None, 1)
    with pytest.raises(ValueError, match="operator"):
        identity.registration_info(GENESIS, bytes(33), 1)
    with pytest.raises(ValueError, match="u32"):
        identity.registration_info(GENESIS, None, 1 << 32)


@pytest.mark.parametrize("position", [0, 6, 7, 18, 19, 60, -1])
def test_a_flipped_byte_is_a_sealing_error_and_the_file_is_kept(sim, tmp_path, position):
    load_or_create(sim, tmp_path)
    path = tmp_path / IDENTITY_FILE
    blob = bytearray(path.read_bytes())
    blob[position] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(SealingError, match=re.escape(str(path))):
        load_or_create(sim, tmp_path)
    assert path.read_bytes() == bytes(blob)


def test_truncated_file_is_a_sealing_error(sim, tmp_path):
    load_or_create(sim, tmp_path)
    path = tmp_path / IDENTITY_FILE
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(SealingError, match="truncated"):
        load_or_create(sim, tmp_path)


def test_another_enclaves_key_cannot_unseal(tmp_path):
    load_or_create(open_enclave("sim", data_dir=tmp_path / "a"), tmp_path / "a")
    other = open_enclave("sim", data_dir=tmp_path / "b")  # its own sealing secret
    with pytest.raises(SealingError, match="sealed by another enclave"):
        load_or_create(other, tmp_path / "a")


def test_the_enclave_kind_is_bound(tmp_path):
    key = bytes(range(32))
    load_or_create(FixedKeyEnclave(key, "fixed"), tmp_path)
    assert load_or_create(FixedKeyEnclave(key, "fixed"), tmp_path)
    with pytest.raises(SealingError, match="cannot unseal with the other enclave"):
        load_or_create(FixedKeyEnclave(key, "other"), tmp_path)


def test_enclave_without_sealing_key_gets_a_fresh_identity_each_start(tmp_path):
    enclave = FixedKeyEnclave(None)
    first, second = load_or_create(enclave, tmp_path), load_or_create(enclave, tmp_path)
    assert first.public_key != second.public_key
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SealingError, match="has no sealing key"):
        seal(enclave, b"data", b"aad")


def test_enclave_that_cannot_give_its_key_is_a_sealing_error(tmp_path):
    with pytest.raises(SealingError, match="cannot give its sealing key.*_sgx_mrenclave"):
        load_or_create(BrokenEnclave(b""), tmp_path)
    with pytest.raises(SealingError, match="cannot give its sealing key"):
        seal(BrokenEnclave(b""), b"x", b"")


def test_seal_and_unseal(sim):
    blob = seal(sim, b"checkpoint bytes", b"phala/checkpoint/v1")
    assert blob.startswith(b"PHSEAL\x01") and len(blob) == 7 + 12 + len(b"checkpoint bytes") + 16
    assert unseal(sim, blob, b"phala/checkpoint/v1") == b"checkpoint bytes"
    assert seal(sim, b"checkpoint bytes", b"phala/checkpoint/v1") != blob  # random nonce
    assert unseal(sim, seal(sim, b"", b""), b"") == b""


def test_unseal_refuses_other_aad_other_format_and_garbage(sim):
    blob = seal(sim, b"data", b"purpose-a")
    with pytest.raises(SealingError, match="for another purpose"):
        unseal(sim, blob, b"purpose-b")
    with pytest.raises(SealingError, match="cannot unseal"):
        unseal(sim, blob, IDENTITY_AAD)
    with pytest.raises(SealingError, match="bad magic"):
        unseal(sim, b"garbage" * 10, b"purpose-a")
    with pytest.raises(SealingError, match="unknown format version 2"):
        unseal(sim, b"PHSEAL\x02" + blob[7:], b"purpose-a")
    with pytest.raises(SealingError, match="truncated"):
        unseal(sim, blob[:30], b"purpose-a")
    with pytest.raises(SealingError, match="truncated"):
        unseal(sim, b"PHSEAL", b"purpose-a")


def test_identity_encoding_round_trip_and_repr_hides_secrets():
    identity = WorkerIdentity.generate()
    assert WorkerIdentity.from_bytes(identity.to_bytes()) == identity
    with pytest.raises(ValueError):
        WorkerIdentity.from_bytes(identity.to_bytes()[:-1])
    encoded = bytearray(identity.to_bytes())
    encoded[0] ^= 1  # public key no longer matches the secret key
    with pytest.raises(ValueError):
        WorkerIdentity.from_bytes(bytes(encoded))
    text = repr(identity)
    assert identity.keypair.secret_key.hex() not in text
    assert repr(identity.ecdh.secret) not in text and str(identity.keypair.secret_key) not in text


def test_malformed_plaintext_under_a_valid_seal_is_a_sealing_error(sim, tmp_path):
    (tmp_path / IDENTITY_FILE).write_bytes(seal(sim, b"too short", IDENTITY_AAD))
    with pytest.raises(SealingError, match="malformed"):
        load_or_create(sim, tmp_path)


def test_write_new_file_never_replaces(tmp_path):
    path = tmp_path / "f"
    assert write_new_file(path, b"first") is True
    assert write_new_file(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_an_existing_identity_written_by_a_racing_process_is_used(sim, tmp_path, monkeypatch):
    """If another process creates the file between our check and our write, its identity wins."""
    winner = WorkerIdentity.generate()
    import phala.pruntime.identity as identity_module

    real = identity_module.write_new_file

    def racing_write(path, data, mode=0o600):
        real(path, seal(sim, winner.to_bytes(), IDENTITY_AAD), mode)
        return real(path, data, mode)

    monkeypatch.setattr(identity_module, "write_new_file", racing_write)
    assert load_or_create(sim, tmp_path) == winner
