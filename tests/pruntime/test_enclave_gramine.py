"""The Gramine (SGX) backend against fake ``/dev/attestation`` files, and collateral sources."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from phala.core.attestation import SgxDcap, report_data
from phala.core.envelope import hkdf_sha256
from phala.pruntime.enclave import EnclaveError, FileCollateral, PccsCollateral, open_enclave
from phala.pruntime.enclave.gramine import GramineEnclave
from phala.pruntime.identity import WorkerIdentity

DCAP_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dcap"
REPORT = bytes(range(100, 164))


def fake_device(root: Path, quote: bytes | None = None, key: bytes | None = None, kind="dcap"):
    """A directory laid out like Gramine's /dev/attestation. Returns (root, quote, key)."""
    quote = os.urandom(1020) if quote is None else quote
    key = os.urandom(16) if key is None else key
    (root / "keys").mkdir(parents=True)
    (root / "user_report_data").write_bytes(bytes(64))
    (root / "quote").write_bytes(quote)
    (root / "keys" / "_sgx_mrenclave").write_bytes(key)
    if kind is not None:
        (root / "attestation_type").write_text(kind)
    return root, quote, key


def test_quote_writes_the_report_data_and_returns_the_device_quote(tmp_path):
    root, quote, _ = fake_device(tmp_path / "attestation")
    enclave = open_enclave("gramine", device_root=root)
    assert isinstance(enclave, GramineEnclave) and enclave.kind == "gramine"
    report = enclave.quote(REPORT)
    assert (root / "user_report_data").read_bytes() == REPORT
    assert report == SgxDcap(quote=quote, collateral=b"")


def test_registration_quote_binds_the_registration_info(tmp_path):
    root, quote, _ = fake_device(tmp_path / "attestation")
    enclave = open_enclave("gramine", device_root=root, data_dir=tmp_path / "data")
    identity = WorkerIdentity.generate()
    info, report = identity.attest(enclave, bytes([1]) * 32, bytes([2]) * 32, 3)
    assert (root / "user_report_data").read_bytes() == report_data(info)
    assert isinstance(report, SgxDcap) and report.quote == quote


def test_sealing_key_is_the_mrenclave_key_expanded_with_hkdf(tmp_path):
    root, _, key = fake_device(tmp_path / "attestation")
    sealing = open_enclave("gramine", device_root=root).sealing_key()
    assert sealing == hkdf_sha256(key, b"phala/pruntime/sealing/gramine/v1", 32)
    assert len(sealing) == 32


def test_sealing_key_of_wrong_length_is_refused(tmp_path):
    root, _, _ = fake_device(tmp_path / "attestation", key=bytes(32))
    with pytest.raises(EnclaveError, match="_sgx_mrenclave must hold a 16-byte"):
        open_enclave("gramine", device_root=root).sealing_key()


def test_missing_sealing_key_names_the_path(tmp_path):
    root, _, _ = fake_device(tmp_path / "attestation")
    (root / "keys" / "_sgx_mrenclave").unlink()
    with pytest.raises(EnclaveError, match=re.escape(str(root / "keys" / "_sgx_mrenclave"))):
        open_enclave("gramine", device_root=root).sealing_key()


def test_missing_device_names_the_path(tmp_path):
    missing = tmp_path / "no-such-attestation"
    with pytest.raises(EnclaveError, match=re.escape(f"{missing / 'user_report_data'} is missing")):
        open_enclave("gramine", device_root=missing)
    root, _, _ = fake_device(tmp_path / "attestation")
    (root / "quote").unlink()
    with pytest.raises(EnclaveError, match=re.escape(f"{root / 'quote'} is missing")):
        open_enclave("gramine", device_root=root)


def test_empty_quote_is_refused(tmp_path):
    root, _, _ = fake_device(tmp_path / "attestation", quote=b"")
    with pytest.raises(EnclaveError, match="empty quote"):
        open_enclave("gramine", device_root=root).quote(REPORT)


def test_non_dcap_attestation_is_refused(tmp_path):
    root, _, _ = fake_device(tmp_path / "attestation", kind="none")
    with pytest.raises(EnclaveError, match="'none'.*DCAP"):
        open_enclave("gramine", device_root=root)


def test_attestation_type_file_is_optional(tmp_path):
    root, quote, _ = fake_device(tmp_path / "attestation", kind=None)
    assert open_enclave("gramine", device_root=root).quote(REPORT).quote == quote


@pytest.mark.parametrize("length", [0, 32, 63, 65])
def test_wrong_report_data_length_is_refused_before_touching_the_device(tmp_path, length):
    root, _, _ = fake_device(tmp_path / "attestation")
    with pytest.raises(EnclaveError, match=f"got {length}"):
        open_enclave("gramine", device_root=root).quote(bytes([9]) * length)
    assert (root / "user_report_data").read_bytes() == bytes(64)


def test_collateral_file_is_returned_unchanged(tmp_path):
    collateral_file = DCAP_FIXTURES / "sgx_quote_collateral.json"
    if not collateral_file.exists():
        pytest.skip(f"DCAP fixtures missing: {DCAP_FIXTURES}")
    root, quote, _ = fake_device(tmp_path / "attestation")
    enclave = open_enclave("gramine", device_root=root, collateral_file=collateral_file)
    report = enclave.quote(REPORT)
    assert report == SgxDcap(quote=quote, collateral=collateral_file.read_bytes())


def test_bad_or_missing_collateral_file_names_it(tmp_path):
    root, _, _ = fake_device(tmp_path / "attestation")
    bad = tmp_path / "collateral.json"
    bad.write_text("{}")
    with pytest.raises(EnclaveError, match=re.escape(f"{bad} is not QuoteCollateralV3 JSON")):
        open_enclave("gramine", device_root=root, collateral_file=bad).quote(REPORT)
    missing = tmp_path / "missing.json"
    with pytest.raises(EnclaveError, match=re.escape(f"cannot read collateral file {missing}")):
        FileCollateral(missing)(b"quote")


def test_collateral_callable_and_conflicting_sources(tmp_path):
    root, quote, _ = fake_device(tmp_path / "attestation")
    seen = []
    enclave = open_enclave(
        "gramine", device_root=root, collateral=lambda q: seen.append(q) or b"{collateral}"
    )
    assert enclave.quote(REPORT).collateral == b"{collateral}"
    assert seen == [quote]
    with pytest.raises(EnclaveError, match="at most one collateral source"):
        open_enclave("gramine", device_root=root, collateral_file="a", pccs_url="http://x")


class _FakeCollateral:
    def to_json(self) -> str:
        return '{"fake": true}'


def test_pccs_collateral_fetches_per_quote_even_inside_an_event_loop(monkeypatch):
    import dcap_qvl

    calls = []

    async def fake_get_collateral(url, quote):
        calls.append((url, quote))
        return _FakeCollateral()

    monkeypatch.setattr(dcap_qvl, "get_collateral", fake_get_collateral)
    provider = PccsCollateral("https://pccs.invalid/")
    assert provider(b"q1") == b'{"fake": true}'

    async def inside_loop():
        return provider(b"q2")

    assert asyncio.run(inside_loop()) == b'{"fake": true}'
    assert calls == [("https://pccs.invalid/", b"q1"), ("https://pccs.invalid/", b"q2")]


def test_pccs_failure_is_an_enclave_error(monkeypatch):
    import dcap_qvl

    async def failing(url, quote):
        raise RuntimeError("connection refused")

    monkeypatch.setattr(dcap_qvl, "get_collateral", failing)
    with pytest.raises(EnclaveError, match="cannot fetch collateral from PCCS"):
        PccsCollateral("http://127.0.0.1:9/")(b"q")
    with pytest.raises(EnclaveError, match="http:// or https://"):
        PccsCollateral("ftp://x")
