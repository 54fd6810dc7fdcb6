"""``sim``: a software-only enclave for development and tests. It protects nothing.

Quotes are :class:`~phala.core.attestation.SimQuote`\\ s signed by the simulated attestation key
(``Keypair.from_uri(SIM_ATTESTATION_URI)`` unless configured otherwise). Its secret is public
knowledge, so anybody can forge a sim quote: only a dev chain whose genesis names that key
accepts them.

The sealing key is ``HKDF-SHA256(secret, "phala/pruntime/sealing/sim/v1")`` where ``secret`` is
32 random bytes kept in ``<data_dir>/sim-sealing.secret`` (created 0600 at first use). The
host reads that file as easily as the worker does, so "sealed" data of a sim worker is
readable by whoever runs it: sealing here only exercises the same code paths as a real TEE
(and keeps sealed files of two data directories apart). Deleting the secret file makes
everything sealed with it unreadable.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from phala.core.attestation import (
    SIM_ATTESTATION_URI,
    SIM_MEASUREMENT,
    AttestationReport,
    sign_sim_quote,
)
from phala.core.envelope import hkdf_sha256
from phala.core.keys import InvalidSecretUri, Keypair

from .base import SEALING_KEY_LENGTH, Enclave
from .errors import EnclaveError
from .files import write_new_file

__all__ = ["SEALING_SECRET_FILE", "SimEnclave"]

SEALING_SECRET_FILE = "sim-sealing.secret"
_SECRET_LENGTH = 32
_SEALING_INFO = b"phala/pruntime/sealing/sim/v1"


class SimEnclave(Enclave):
    """The software-only backend (see the module docstring)."""

    kind = "sim"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        attestation_key_uri: str = SIM_ATTESTATION_URI,
        measurement: bytes = SIM_MEASUREMENT,
    ) -> None:
        super().__init__()
        try:
            self._attestation_key = Keypair.from_uri(attestation_key_uri)
        except InvalidSecretUri as exc:
            raise EnclaveError(f"invalid sim attestation key URI: {exc}") from exc
        if len(measurement) != 32:
            raise EnclaveError(f"sim measurement must be 32 bytes, got {len(measurement)}")
        self.measurement = bytes(measurement)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._sealing_key: bytes | None = None
        self._lock = threading.Lock()

    @property
    def attestation_public_key(self) -> bytes:
        """The public key that signs this enclave's quotes (a dev chain must name it)."""
        return self._attestation_key.public_key

    def _quote(self, report_data: bytes) -> AttestationReport:
        return sign_sim_quote(self._attestation_key, report_data, self.measurement)

    def sealing_key(self) -> bytes:
        """HKDF of ``<data_dir>/sim-sealing.secret``, creating the file at first use.

        Raises EnclaveError when the enclave was opened without ``data_dir`` or the secret file
        cannot be created or read or has the wrong length.
        """
        with self._lock:
            if self._sealing_key is None:
                self._sealing_key = hkdf_sha256(
                    self._load_secret(), _SEALING_INFO, SEALING_KEY_LENGTH
                )
            return self._sealing_key

    def _load_secret(self) -> bytes:
        if self.data_dir is None:
            raise EnclaveError(
                "the sim enclave has no sealing key without a data directory: "
                "open it with data_dir=<the worker's data directory>"
            )
        path = self.data_dir / SEALING_SECRET_FILE
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_new_file(path, os.urandom(_SECRET_LENGTH), mode=0o600)
            secret = path.read_bytes()
        except OSError as exc:
            raise EnclaveError(
                f"cannot create or read the sim sealing secret {path}: {exc.strerror or exc}"
            ) from exc
        if len(secret) != _SECRET_LENGTH:
            raise EnclaveError(
                f"sim sealing secret {path} must hold {_SECRET_LENGTH} bytes, got {len(secret)}"
            )
        return secret
