"""DCAP verification (phala.chain.runtime.dcap) with Intel's real sample quotes and collateral.

The samples live outside the repository, in ``../shared/fixtures/dcap/`` (see its README for
where they come from and each one's validity window); without them these tests skip.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import dcap_qvl
import pytest

from phala.chain.runtime import dcap

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dcap"


@dataclass(frozen=True)
class Sample:
    name: str
    tee: dcap.Tee
    first: int  # validity window from the fixtures' README (Unix seconds)
    last: int
    status: str | None  # None: refused (no matching TCB level)
    advisories: tuple[str, ...] = ()

    @property
    def mid(self) -> int:
        return (self.first + self.last) // 2

    @property
    def quote(self) -> bytes:
        return _read(self.name)

    @property
    def collateral(self) -> bytes:
        return _read(self.name + "_collateral.json")


SGX = Sample(
    "sgx_quote",
    "sgx",
    1750330571,
    1752919278,
    dcap.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    ("INTEL-SA-00289", "INTEL-SA-00615"),
)
TDX = Sample("tdx_quote", "tdx", 1750329147, 1752920163, dcap.UP_TO_DATE)
TDX15 = Sample("tdx_quote_td15ex", "tdx", 1791418186, 1794008711, dcap.UP_TO_DATE)
TDX_OUTDATED = Sample("tdx_quote_outdated", "tdx", 1771412331, 1774003335, None)
SAMPLES = (SGX, TDX, TDX15, TDX_OUTDATED)
VERIFIABLE = (SGX, TDX, TDX15)


def _read(name: str) -> bytes:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(
            f"DCAP sample fixtures not found: {path} is missing (see ../shared/fixtures/dcap)"
        )
    return path.read_bytes()


def flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def report_data_offset(sample: Sample) -> int:
    """Where the report data sits in the quote (it is the body's last 64 bytes)."""
    quote = sample.quote
    offset = quote.find(dcap_qvl.parse_quote(quote).report.report_data)
    assert offset > 0
    return offset


# -- verified samples -------------------------------------------------------------------------


@pytest.mark.parametrize("sample", VERIFIABLE, ids=lambda s: s.name)
def test_sample_verifies_with_its_status_and_measurements(sample: Sample):
    result = dcap.verify_dcap(sample.quote, sample.collateral, sample.mid, sample.tee)
    parsed = dcap_qvl.parse_quote(sample.quote).report
    assert result.tee == sample.tee
    assert result.status == sample.status
    assert result.advisory_ids == sample.advisories
    assert result.report_data == parsed.report_data and len(result.report_data) == 64
    assert result.debug is False
    if sample.tee == "sgx":
        assert (result.mr_enclave, result.mr_signer) == (parsed.mr_enclave, parsed.mr_signer)
        assert len(result.mr_enclave) == 32 and result.mr_td is None and result.rtmr is None
    else:
        assert result.mr_td == parsed.mr_td and len(result.mr_td) == 48
        assert result.rtmr == (parsed.rt_mr0, parsed.rt_mr1, parsed.rt_mr2, parsed.rt_mr3)
        assert result.mr_enclave is None


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_validity_window_matches_the_readme(sample: Sample):
    assert dcap.validity_window(sample.collateral) == (sample.first, sample.last)


@pytest.mark.parametrize("sample", VERIFIABLE, ids=lambda s: s.name)
def test_collateral_outside_its_window_is_refused(sample: Sample):
    quote, collateral = sample.quote, sample.collateral
    dcap.verify_dcap(quote, collateral, sample.first, sample.tee)  # the first second is inside
    for now in (
        sample.first - 1,
        sample.first - 86_400,
        sample.last + 1,
        sample.last + 86_400 * 365,
    ):
        with pytest.raises(dcap.CollateralExpired):
            dcap.verify_dcap(quote, collateral, now, sample.tee)


def test_outdated_tdx_sample_is_refused_for_its_tcb():
    with pytest.raises(dcap.TcbUnrecognized, match="No matching TCB level"):
        dcap.verify_dcap(TDX_OUTDATED.quote, TDX_OUTDATED.collateral, TDX_OUTDATED.mid, "tdx")


# -- tampering --------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", VERIFIABLE, ids=lambda s: s.name)
def test_one_flipped_bit_in_the_signed_quote_is_refused(sample: Sample):
    quote = sample.quote
    rd = report_data_offset(sample)
    # a bit of the report data, of the measurement area (body start) and of the header
    for offset in (rd, rd + 63, 48 + 64, 8):
        with pytest.raises(dcap.QuoteInvalid):
            dcap.verify_dcap(flip(quote, offset), sample.collateral, sample.mid, sample.tee)


def test_flipped_version_or_truncated_quote_is_malformed():
    quote = SGX.quote
    for bad in (flip(quote, 0), quote[:100], quote[:-2000], b"", b"\x00" * 16):
        with pytest.raises(dcap.QuoteMalformed):
            dcap.verify_dcap(bad, SGX.collateral, SGX.mid, "sgx")


def test_quote_of_the_other_tee_is_refused_before_verification():
    with pytest.raises(dcap.WrongTeeType, match="expected a TDX quote, got a SGX quote"):
        dcap.verify_dcap(SGX.quote, SGX.collateral, SGX.mid, "tdx")
    with pytest.raises(dcap.WrongTeeType, match="expected a SGX quote, got a TDX quote"):
        dcap.verify_dcap(TDX.quote, TDX.collateral, TDX.mid, "sgx")


def test_bad_collateral_is_refused():
    quote = SGX.quote
    for bad in (b"not json", b"{}", b"\xff\xfe", b"[]"):
        with pytest.raises(dcap.CollateralMalformed):
            dcap.verify_dcap(quote, bad, SGX.mid, "sgx")
    # Another TEE's collateral.
    with pytest.raises(dcap.CollateralMismatch):
        dcap.verify_dcap(quote, TDX.collateral, SGX.mid, "sgx")
    # TCB info edited after Intel signed it.
    raw = json.loads(SGX.collateral)
    tcb = json.loads(raw["tcb_info"])
    tcb["tcbEvaluationDataNumber"] = tcb.get("tcbEvaluationDataNumber", 0) + 1
    raw["tcb_info"] = json.dumps(tcb)
    with pytest.raises(dcap.QuoteInvalid, match="tcb_info"):
        dcap.verify_dcap(quote, json.dumps(raw).encode(), SGX.mid, "sgx")


def test_error_classification():
    cases = {
        "Verification failed: TCBInfo expired": dcap.CollateralExpired,
        "Verification failed: QE Identity issue date is in the future": dcap.CollateralExpired,
        "Failed to verify certificate chain\n\nCaused by:\n    CrlExpired { time: UnixTime(1) }": dcap.CollateralExpired,
        "Verification failed: No matching TCB level found": dcap.TcbUnrecognized,
        "Verification failed: TCB status is invalid: Revoked": dcap.TcbUnrecognized,
        "Verification failed: Failed to decode quote\n\nCaused by:\n    Unsupported quote version": dcap.QuoteMalformed,
        "Verification failed: ISV enclave report signature is invalid": dcap.QuoteInvalid,
        "Verification failed: QE report hash mismatch": dcap.QuoteInvalid,
        "Verification failed: Fmspc mismatch": dcap.CollateralMismatch,
        "something dcap-qvl may say one day": dcap.QuoteInvalid,
    }
    for message, cls in cases.items():
        assert dcap._classify(message) is cls, message


def test_verification_cost():
    """One DCAP verification (parse, collateral JSON, signatures, TCB) stays in milliseconds."""
    quote, collateral = SGX.quote, SGX.collateral
    dcap.verify_dcap(quote, collateral, SGX.mid, "sgx")
    n = 20
    start = time.perf_counter()
    for _ in range(n):
        dcap.verify_dcap(quote, collateral, SGX.mid, "sgx")
    per_call = (time.perf_counter() - start) / n
    assert per_call < 0.05, f"{per_call * 1000:.2f} ms per verification"
