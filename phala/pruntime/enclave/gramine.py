"""``gramine``: Intel SGX under Gramine, through its ``/dev/attestation`` pseudo-files.

Quoting writes the 64 bytes of report data to ``<root>/user_report_data`` and reads the DCAP
quote over them from ``<root>/quote``; the two steps are one critical section per process (a
lock), since Gramine keeps one report-data slot per enclave. The manifest must enable remote
attestation with DCAP (``sgx.remote_attestation = "dcap"``); when ``<root>/attestation_type``
exists and says anything else, opening fails. The quote is returned as
:class:`~phala.core.attestation.SgxDcap` with collateral from the configured provider (none by
default: then the chain refuses the registration, see :mod:`.collateral`).

Sealing key: Gramine exposes the SGX sealing key derived with the MRENCLAVE policy as the
16 raw bytes of ``<root>/keys/_sgx_mrenclave`` (EGETKEY: bound to this exact enclave
measurement, this CPU and its security version). It is expanded to 32 bytes with
``HKDF-SHA256(key, "phala/pruntime/sealing/gramine/v1")``; the entropy stays 128 bits. A
different build of the pRuntime (another MRENCLAVE) or another machine cannot unseal: after an
upgrade or a move the worker starts with a fresh identity and registers again. The raw key is
never used directly, so it stays free for Gramine's own encrypted-files mounts.
"""

from __future__ import annotations

import threading
from pathlib import Path

from phala.core.attestation import AttestationReport, SgxDcap
from phala.core.envelope import hkdf_sha256

from .base import SEALING_KEY_LENGTH, Enclave
from .collateral import CollateralProvider
from .errors import EnclaveError
from .files import read_device_file

__all__ = ["DEFAULT_DEVICE_ROOT", "GramineEnclave"]

DEFAULT_DEVICE_ROOT = "/dev/attestation"
_MRENCLAVE_KEY = "keys/_sgx_mrenclave"
_SGX_KEY_LENGTH = 16
_SEALING_INFO = b"phala/pruntime/sealing/gramine/v1"


class GramineEnclave(Enclave):
    """The Gramine SGX backend (see the module docstring)."""

    kind = "gramine"

    def __init__(
        self,
        device_root: str | Path = DEFAULT_DEVICE_ROOT,
        collateral: CollateralProvider | None = None,
    ) -> None:
        super().__init__(collateral)
        self.device_root = Path(device_root)
        self._report_data_path = self.device_root / "user_report_data"
        self._quote_path = self.device_root / "quote"
        self._lock = threading.Lock()
        self._sealing_key: bytes | None = None
        for path in (self._report_data_path, self._quote_path):
            if not path.exists():
                raise EnclaveError(
                    f"Gramine attestation device {path} is missing: not running under "
                    "gramine-sgx with remote attestation enabled in the manifest"
                )
        attestation_type = self.device_root / "attestation_type"
        if attestation_type.exists():
            kind = read_device_file(attestation_type).decode("ascii", "replace").strip()
            if kind != "dcap":
                raise EnclaveError(
                    f"{attestation_type} says {kind!r}: the pRuntime needs DCAP attestation "
                    '(sgx.remote_attestation = "dcap" in the manifest)'
                )

    def _quote(self, report_data: bytes) -> AttestationReport:
        with self._lock:
            try:
                with open(self._report_data_path, "wb") as f:
                    f.write(report_data)
            except OSError as exc:
                raise EnclaveError(
                    f"cannot write report data to {self._report_data_path}: {exc.strerror or exc}"
                ) from exc
            quote = read_device_file(self._quote_path)
        if not quote:
            raise EnclaveError(f"{self._quote_path} returned an empty quote")
        return SgxDcap(quote=quote, collateral=self.collateral_for(quote))

    def sealing_key(self) -> bytes:
        """The MRENCLAVE-bound sealing key expanded to 32 bytes (see the module docstring).

        Raises EnclaveError when the key file is missing or not 16 bytes.
        """
        with self._lock:
            if self._sealing_key is None:
                path = self.device_root / _MRENCLAVE_KEY
                raw = read_device_file(path)
                if len(raw) != _SGX_KEY_LENGTH:
                    raise EnclaveError(
                        f"{path} must hold a {_SGX_KEY_LENGTH}-byte SGX sealing key, "
                        f"got {len(raw)} bytes"
                    )
                self._sealing_key = hkdf_sha256(raw, _SEALING_INFO, SEALING_KEY_LENGTH)
            return self._sealing_key

