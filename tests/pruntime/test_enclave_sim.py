"""The sim enclave, the interface every backend shares, and the factory."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from phala.core.attestation import (
    SIM_ATTESTATION_URI,
    SIM_MEASUREMENT,
    AttestationError,
    SimQuote,
    verify_sim_quote,
)
from phala.core.keys import Keypair
from phala.pruntime.enclave import KINDS, Enclave, EnclaveError, open_enclave
from phala.pruntime.enclave.sim import SEALING_SECRET_FILE, SimEnclave

REPORT = bytes(range(64))


def test_default_kind_is_sim_and_quotes_verify_with_the_sim_attestation_key():
    enclave = open_enclave()
    assert isinstance(enclave, SimEnclave) and enclave.kind == "sim"
    quote = enclave.quote(REPORT)
    assert isinstance(quote, SimQuote)
    assert quote.report_data == REPORT
    assert quote.measurement == SIM_MEASUREMENT
    trusted = Keypair.from_uri(SIM_ATTESTATION_URI).public_key
    assert enclave.attestation_public_key == trusted
    verify_sim_quote(quote, trusted)
    assert enclave.collateral_for(b"anything") == b""


def test_configured_attestation_key_and_measurement():
    measurement = bytes([7]) * 32
    enclave = open_enclave("sim", attestation_key_uri="//OtherAttester", measurement=measurement)
    quote = enclave.quote(REPORT)
    other = Keypair.from_uri("//OtherAttester").public_key
    verify_sim_quote(quote, other)
    assert quote.measurement == measurement
    with pytest.raises(AttestationError):
        verify_sim_quote(quote, Keypair.from_uri(SIM_ATTESTATION_URI).public_key)


@pytest.mark.parametrize("bad", [b"", bytes(63), bytes(65), bytes(128)])
def test_report_data_other_than_64_bytes_is_refused(bad):
    with pytest.raises(EnclaveError, match=f"exactly 64 bytes, got {len(bad)}"):
        open_enclave("sim").quote(bad)


def test_report_data_must_be_bytes():
    with pytest.raises(EnclaveError, match="must be bytes"):
        open_enclave("sim").quote("x" * 64)  # type: ignore[arg-type]


def test_sealing_key_is_stable_per_data_dir_and_differs_between_dirs(tmp_path):
    a = open_enclave("sim", data_dir=tmp_path / "a")
    key = a.sealing_key()
    assert isinstance(key, bytes) and len(key) == 32
    assert open_enclave("sim", data_dir=tmp_path / "a").sealing_key() == key
    assert open_enclave("sim", data_dir=tmp_path / "b").sealing_key() != key
    secret = tmp_path / "a" / SEALING_SECRET_FILE
    assert len(secret.read_bytes()) == 32
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    # no temporary files left beside it
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [SEALING_SECRET_FILE]


def test_sealing_key_needs_a_data_dir():
    with pytest.raises(EnclaveError, match="data_dir"):
        open_enclave("sim").sealing_key()


def test_corrupt_sealing_secret_is_refused(tmp_path):
    (tmp_path / SEALING_SECRET_FILE).write_bytes(b"short")
    with pytest.raises(EnclaveError, match=SEALING_SECRET_FILE):
        open_enclave("sim", data_dir=tmp_path).sealing_key()


def test_unknown_kind_and_unknown_option_are_refused():
    with pytest.raises(EnclaveError, match="unknown enclave kind 'sgx'"):
        open_enclave("sgx")
    with pytest.raises(EnclaveError, match="bad options for enclave kind 'sim'"):
        open_enclave("sim", device_root="/dev/attestation")
    with pytest.raises(EnclaveError, match="bad options"):
        open_enclave("sim", collateral_file="x.json")


def test_every_kind_is_an_enclave():
    import importlib

    from phala.pruntime.enclave.base import _BACKENDS

    assert set(KINDS) == {"sim", "gramine", "tsm", "dstack"}
    for kind, target in _BACKENDS.items():
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, Enclave) and cls.kind == kind


def test_invalid_attestation_key_uri():
    with pytest.raises(EnclaveError, match="attestation key URI"):
        open_enclave("sim", attestation_key_uri="   ")


def test_worker_side_never_imports_the_chain():
    code = (
        "import sys\n"
        "import phala.pruntime.identity, phala.pruntime.enclave\n"
        "from phala.pruntime.enclave import sim, gramine, tsm, dstack, collateral\n"
        "bad = sorted(m for m in sys.modules if m == 'phala.chain' or m.startswith('phala.chain.'))\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
