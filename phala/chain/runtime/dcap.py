"""Intel DCAP quote verification for the registry: a thin, typed wrapper around ``dcap-qvl``.

:func:`verify_dcap` checks an SGX or TDX quote against the collateral (PCK CRLs, TCB info, QE
identity, with their Intel signatures) that the registering worker submitted, at a time the
caller gives (the block timestamp: no wall clock enters the state transition). It returns the
TCB status, the advisories that apply, the measurements and the report data, or raises a
:class:`DcapError` subclass that names the failed check in plain words.

dcap-qvl reports every failure as ``ValueError`` with a message; :func:`_classify` maps the
messages of dcap-qvl 0.7.0 to the subclasses below. A message it does not know becomes a
:class:`QuoteInvalid` (the quote is refused either way; only the reason is less precise).

Verification is deterministic for given bytes and time, so every node reaches the same
verdict, provided they all run the same dcap-qvl version (it is pinned in the project).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import dcap_qvl

Tee = Literal["sgx", "tdx"]

TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081

# TCB statuses dcap-qvl returns for a verified quote (``Revoked`` is refused inside it).
UP_TO_DATE = "UpToDate"
SW_HARDENING_NEEDED = "SWHardeningNeeded"
CONFIGURATION_NEEDED = "ConfigurationNeeded"
CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
OUT_OF_DATE = "OutOfDate"
OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"

# pyo3 turns a Rust panic into ``PanicException``, a BaseException: caught and turned into a
# refusal, except for what must stop the process.
_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError)

_SGX_ATTRIBUTE_DEBUG = 0x02  # SGX ATTRIBUTES.FLAGS bit 1
_TD_ATTRIBUTE_DEBUG = 0x01  # TDX TD_ATTRIBUTES bit 0


class DcapError(Exception):
    """A DCAP quote was not verified; the message says why."""


class QuoteMalformed(DcapError):
    """The quote cannot be parsed (truncated, unknown version or layout)."""


class CollateralMalformed(DcapError):
    """The collateral is not the JSON of a ``QuoteCollateralV3`` (or not UTF-8)."""


class CollateralMismatch(DcapError):
    """The collateral is for another TEE type or platform (FMSPC) than the quote."""


class CollateralExpired(DcapError):
    """``now`` lies outside the collateral's validity window (TCB info, QE identity, CRLs or
    certificates not yet issued, or past their next update)."""


class QuoteInvalid(DcapError):
    """A signature, hash or certificate chain does not verify (quote or collateral tampered
    with, or not signed under Intel's root)."""


class TcbUnrecognized(DcapError):
    """The platform's TCB matches no level of the TCB info, or its status is ``Revoked``."""


class WrongTeeType(DcapError):
    """The quote is from another TEE than the one expected (an SGX quote where a TDX one
    belongs, or the reverse)."""


@dataclass(frozen=True)
class DcapResult:
    """What a verified quote proves.

    SGX quotes set ``mr_enclave``/``mr_signer``; TDX quotes set ``mr_td`` and ``rtmr``
    (RTMR0..3). ``debug`` is the enclave's or TD's debug attribute (a debug TEE's memory is
    readable by its host: nothing confidential may run there).
    """

    tee: Tee
    status: str
    advisory_ids: tuple[str, ...]
    report_data: bytes
    debug: bool
    mr_enclave: bytes | None = None
    mr_signer: bytes | None = None
    mr_td: bytes | None = None
    rtmr: tuple[bytes, bytes, bytes, bytes] | None = None


_EXPIRY_MARKERS = (
    "expired",
    "in the future",
    "not yet valid",
    "notvalidyet",
    "certnotvalidyet",
    "certexpired",
    "crlexpired",
)
_MISMATCH_MARKERS = (
    "unsupported qe identity id/version",
    "with non-sgx tcb info",
    "with non-tdx tcb info",
    "fmspc mismatch",
)
_MALFORMED_MARKERS = (
    "failed to decode quote",
    "failed to parse quote",
    "unsupported quote version",
    "unsupported dcap quote version",
    "must have version",
    "unsupported tee type",
    "invalid body size",
    "unsupported body type",
)
_TCB_MARKERS = ("no matching tcb level", "tcb status is invalid")
_COLLATERAL_FORMAT_MARKERS = (
    "should be valid json",
    "must be valid hex",
    "failed to parse json",
)


def _classify(message: str) -> type[DcapError]:
    low = message.lower()
    for markers, cls in (
        (_MALFORMED_MARKERS, QuoteMalformed),
        (_MISMATCH_MARKERS, CollateralMismatch),
        (_COLLATERAL_FORMAT_MARKERS, CollateralMalformed),
        (_TCB_MARKERS, TcbUnrecognized),
        (_EXPIRY_MARKERS, CollateralExpired),
    ):
        if any(m in low for m in markers):
            return cls
    return QuoteInvalid


def _reason(message: str) -> str:
    """dcap-qvl's message on one line, without its ``Verification failed:`` prefix."""
    text = " ".join(message.split())
    return text.removeprefix("Verification failed: ")


def tee_of(quote: bytes) -> Tee:
    """The TEE a quote's header names. Raises :class:`QuoteMalformed`."""
    try:
        parsed = dcap_qvl.parse_quote(quote)
    except ValueError as exc:
        raise QuoteMalformed(f"cannot parse the quote: {_reason(str(exc))}") from exc
    except _FATAL:
        raise
    except BaseException as exc:  # a panic in the Rust code (pyo3's PanicException)
        raise QuoteMalformed(f"the quote parser failed: {exc!r}") from exc
    tee_type = parsed.header.tee_type
    if tee_type == TEE_TYPE_SGX:
        return "sgx"
    if tee_type == TEE_TYPE_TDX:
        return "tdx"
    raise QuoteMalformed(f"unknown TEE type {tee_type:#x} in the quote header")


def load_collateral(collateral_json: bytes) -> dcap_qvl.QuoteCollateralV3:
    """Parse the collateral JSON. Raises :class:`CollateralMalformed`."""
    try:
        text = collateral_json.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CollateralMalformed("the collateral is not UTF-8 JSON") from exc
    try:
        return dcap_qvl.QuoteCollateralV3.from_json(text)
    except ValueError as exc:
        raise CollateralMalformed(f"the collateral is not valid: {_reason(str(exc))}") from exc
    except _FATAL:
        raise
    except BaseException as exc:
        raise CollateralMalformed(f"the collateral parser failed: {exc!r}") from exc


def validity_window(collateral_json: bytes) -> tuple[int, int]:
    """``(first, last)`` Unix seconds at which the collateral's TCB info and QE identity are
    both current (``issueDate`` … ``nextUpdate``). The CRLs and certificates may narrow it
    further; this is what a relayer needs to know to submit in time."""
    from datetime import datetime

    raw = json.loads(collateral_json)

    def seconds(text: str) -> int:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())

    parts = [json.loads(raw["tcb_info"]), json.loads(raw["qe_identity"])]
    return max(seconds(p["issueDate"]) for p in parts), min(seconds(p["nextUpdate"]) for p in parts)


def verify_dcap(quote: bytes, collateral_json: bytes, now_s: int, expected_tee: Tee) -> DcapResult:
    """Verify ``quote`` with ``collateral_json`` at Unix time ``now_s``.

    Checks, in order: the quote parses and is from ``expected_tee``; the collateral parses;
    then dcap-qvl checks the collateral's signatures and validity at ``now_s``, the PCK
    certificate chain up to Intel's root and its revocation, the quoting enclave's report and
    identity, the quote's signature over header and body, and finds the TCB level.
    Raises a :class:`DcapError` subclass naming the check that failed.
    """
    tee = tee_of(quote)
    if tee != expected_tee:
        raise WrongTeeType(f"expected a {expected_tee.upper()} quote, got a {tee.upper()} quote")
    collateral = load_collateral(collateral_json)
    try:
        verified = dcap_qvl.verify(quote, collateral, now_s)
    except ValueError as exc:
        message = str(exc)
        raise _classify(message)(f"DCAP verification failed: {_reason(message)}") from exc
    except _FATAL:
        raise
    except BaseException as exc:  # a panic in the Rust code must not stop the block
        raise QuoteInvalid(f"the DCAP verifier failed: {exc!r}") from exc
    report = dcap_qvl.parse_quote(quote).report
    status = verified.status
    advisories = tuple(verified.advisory_ids)
    if tee == "sgx":
        return DcapResult(
            tee=tee,
            status=status,
            advisory_ids=advisories,
            report_data=bytes(report.report_data),
            debug=bool(report.attributes[0] & _SGX_ATTRIBUTE_DEBUG),
            mr_enclave=bytes(report.mr_enclave),
            mr_signer=bytes(report.mr_signer),
        )
    return DcapResult(
        tee=tee,
        status=status,
        advisory_ids=advisories,
        report_data=bytes(report.report_data),
        debug=bool(report.td_attributes[0] & _TD_ATTRIBUTE_DEBUG),
        mr_td=bytes(report.mr_td),
        rtmr=(
            bytes(report.rt_mr0),
            bytes(report.rt_mr1),
            bytes(report.rt_mr2),
            bytes(report.rt_mr3),
        ),
    )
