"""The configfs-tsm backend against a temporary directory that behaves like configfs.

configfs populates a report entry when it is created (``mkdir``) and drops its attributes
when it is removed (``rmdir``); a plain directory does neither, so the fake replaces those two
steps of the backend. Every read and write of an attribute is real file I/O on the fake.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from phala.core.attestation import SevSnp, TdxDcap, report_data
from phala.pruntime.enclave import EnclaveError, open_enclave
from phala.pruntime.enclave.tsm import TsmEnclave
from phala.pruntime.identity import WorkerIdentity, load_or_create

REPORT = bytes(range(1, 65))


class FakeConfigfs:
    """Populates each new entry with ``provider``, ``generation``, ``inblob`` and ``outblob``;
    records what was written to ``inblob`` when the entry is removed."""

    def __init__(self, quote: bytes, provider="tdx_guest\n", generation: str | None = "1\n"):
        self.quote = quote
        self.provider = provider
        self.generation = generation
        self.created: list[Path] = []
        self.inblobs: list[bytes] = []

    def create(self, entry: Path) -> None:
        os.mkdir(entry)
        self.created.append(entry)
        if self.provider is not None:
            (entry / "provider").write_text(self.provider)
        if self.generation is not None:
            (entry / "generation").write_text(self.generation)
        (entry / "inblob").write_bytes(b"")
        (entry / "outblob").write_bytes(self.quote)

    def remove(self, entry: Path) -> None:
        self.inblobs.append((entry / "inblob").read_bytes())
        shutil.rmtree(entry)


@pytest.fixture
def configfs(tmp_path, monkeypatch):
    root = tmp_path / "tsm" / "report"
    root.mkdir(parents=True)
    fake = FakeConfigfs(os.urandom(5006))
    monkeypatch.setattr(TsmEnclave, "_create_entry", lambda self, entry: fake.create(entry))
    monkeypatch.setattr(TsmEnclave, "_remove_entry", lambda self, entry: fake.remove(entry))
    return root, fake


def test_quote_writes_inblob_returns_outblob_and_removes_the_entry(configfs):
    root, fake = configfs
    enclave = open_enclave("tsm", root=root)
    assert enclave.kind == "tsm"
    report = enclave.quote(REPORT)
    assert report == TdxDcap(quote=fake.quote, collateral=b"")
    assert fake.inblobs == [REPORT]
    assert len(fake.created) == 1 and fake.created[0].parent == root
    assert list(root.iterdir()) == []


def test_each_quote_uses_a_fresh_entry(configfs):
    root, fake = configfs
    enclave = open_enclave("tsm", root=root)
    enclave.quote(REPORT)
    enclave.quote(bytes(64))
    assert len(set(fake.created)) == 2
    assert fake.inblobs == [REPORT, bytes(64)]


def test_registration_quote_binds_the_registration_info(configfs, tmp_path):
    root, fake = configfs
    enclave = open_enclave("tsm", root=root, data_dir=tmp_path / "data")
    identity = load_or_create(enclave, tmp_path / "data")
    info, report = identity.attest(enclave, bytes(32), None, 1)
    assert fake.inblobs == [report_data(info)]
    assert isinstance(report, TdxDcap) and report.quote == fake.quote


def test_no_sealing_key_so_a_fresh_identity_every_start(configfs, tmp_path):
    root, _ = configfs
    enclave = open_enclave("tsm", root=root)
    assert enclave.sealing_key() is None
    first = load_or_create(enclave, tmp_path / "data")
    second = load_or_create(enclave, tmp_path / "data")
    assert isinstance(first, WorkerIdentity)
    assert first.public_key != second.public_key
    assert not (tmp_path / "data" / "identity.sealed").exists()


def test_generation_mismatch_is_refused_and_the_entry_removed(configfs):
    root, fake = configfs
    fake.generation = "2\n"
    with pytest.raises(EnclaveError, match="generation mismatch.*expected 1.*'2'"):
        open_enclave("tsm", root=root).quote(REPORT)
    assert list(root.iterdir()) == []


def test_generation_attribute_is_optional(configfs):
    root, fake = configfs
    fake.generation = None
    assert open_enclave("tsm", root=root).quote(REPORT).quote == fake.quote


def test_empty_outblob_is_refused(configfs):
    root, fake = configfs
    fake.quote = b""
    with pytest.raises(EnclaveError, match="outblob returned an empty quote"):
        open_enclave("tsm", root=root).quote(REPORT)
    assert list(root.iterdir()) == []


def test_sev_provider_gives_a_sev_snp_report(configfs):
    root, fake = configfs
    fake.provider = "sev_guest\n"
    assert open_enclave("tsm", root=root).quote(REPORT) == SevSnp(report=fake.quote)


def test_unknown_provider_is_refused(configfs):
    root, fake = configfs
    fake.provider = "arm_cca_guest\n"
    with pytest.raises(EnclaveError, match="provider 'arm_cca_guest'"):
        open_enclave("tsm", root=root).quote(REPORT)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("length", [0, 1, 63, 65])
def test_wrong_report_data_length_is_refused_before_creating_an_entry(configfs, length):
    root, fake = configfs
    with pytest.raises(EnclaveError, match=f"got {length}"):
        open_enclave("tsm", root=root).quote(bytes(length))
    assert fake.created == []


def test_missing_configfs_names_the_path(tmp_path):
    missing = tmp_path / "sys" / "kernel" / "config" / "tsm" / "report"
    with pytest.raises(EnclaveError, match=re.escape(f"{missing} is missing")):
        open_enclave("tsm", root=missing)


def test_entry_that_cannot_be_created_names_it(tmp_path):
    root = tmp_path / "report"
    root.mkdir()
    enclave = open_enclave("tsm", root=root)
    root.rmdir()  # configfs unmounted after start
    with pytest.raises(
        EnclaveError, match=re.escape(f"cannot create configfs-tsm report entry {root}/phala-")
    ):
        enclave.quote(REPORT)


def test_collateral_is_fetched_for_the_quote(configfs):
    root, fake = configfs
    seen = []
    enclave = open_enclave("tsm", root=root, collateral=lambda q: seen.append(q) or b"{c}")
    assert enclave.quote(REPORT) == TdxDcap(quote=fake.quote, collateral=b"{c}")
    assert seen == [fake.quote]
