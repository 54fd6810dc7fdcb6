"""``tsm``: Intel TDX (or AMD SEV-SNP) through the Linux configfs-tsm report interface.

Each quote uses a fresh report entry, so concurrent quotes never share one:

1. ``mkdir <root>/<unique name>``: the kernel populates the entry with its attributes;
2. read ``provider`` (``tdx_guest`` gives :class:`~phala.core.attestation.TdxDcap`,
   ``sev_guest`` gives :class:`~phala.core.attestation.SevSnp`, which the registry refuses
   until a verifier exists; anything else is refused here);
3. write the 64 bytes of report data to ``inblob``;
4. read the quote from ``outblob``;
5. read ``generation`` (when the kernel has it): it counts the writes to the entry's
   attributes, so after our single write it must be 1. Any other value means another process
   wrote to our entry between our write and our read, and the quote may cover its report
   data rather than ours: the quote is refused;
6. ``rmdir`` the entry (always, also after a failure).

No sealing key: configfs-tsm offers none (a TDX guest has no EGETKEY equivalent), so
:meth:`TsmEnclave.sealing_key` returns None. Nothing a ``tsm`` worker seals survives a
restart: it generates a new identity at every start, must register again and be provisioned
again (cluster keys, contract state from the chain) before it serves. Use ``dstack`` to keep
an identity across restarts of a TDX worker.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path

from phala.core.attestation import AttestationReport, SevSnp, TdxDcap

from .base import Enclave
from .collateral import CollateralProvider
from .errors import EnclaveError
from .files import read_device_file

__all__ = ["DEFAULT_ROOT", "TsmEnclave"]

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/sys/kernel/config/tsm/report"
_PROVIDERS = {"tdx_guest": "tdx", "sev_guest": "sev"}
_counter = itertools.count()
_counter_lock = threading.Lock()


class TsmEnclave(Enclave):
    """The configfs-tsm backend (see the module docstring)."""

    kind = "tsm"

    def __init__(
        self, root: str | Path = DEFAULT_ROOT, collateral: CollateralProvider | None = None
    ) -> None:
        super().__init__(collateral)
        self.root = Path(root)
        if not self.root.is_dir():
            raise EnclaveError(
                f"configfs-tsm report directory {self.root} is missing: the kernel needs "
                "CONFIG_TSM_REPORTS and a TEE guest driver, and configfs must be mounted "
                "at /sys/kernel/config"
            )

    def sealing_key(self) -> None:
        """Always None: configfs-tsm has no sealing key (see the module docstring)."""
        return None

    def _quote(self, report_data: bytes) -> AttestationReport:
        with _counter_lock:
            serial = next(_counter)
        entry = self.root / f"phala-{os.getpid()}-{serial}-{os.urandom(4).hex()}"
        try:
            self._create_entry(entry)
        except OSError as exc:
            raise EnclaveError(
                f"cannot create configfs-tsm report entry {entry}: {exc.strerror or exc}"
            ) from exc
        try:
            provider = self._provider(entry)
            _write(entry / "inblob", report_data)
            quote = read_device_file(entry / "outblob")
            generation_path = entry / "generation"
            if generation_path.exists():
                text = read_device_file(generation_path).decode("ascii", "replace").strip()
                if text != "1":
                    raise EnclaveError(
                        f"configfs-tsm generation mismatch in {entry}: expected 1 after our "
                        f"write of inblob, got {text!r}; another process wrote to the entry, "
                        "so the quote is refused"
                    )
        finally:
            try:
                self._remove_entry(entry)
            except OSError as exc:
                log.warning("cannot remove configfs-tsm report entry %s: %s", entry, exc)
        if not quote:
            raise EnclaveError(f"{entry / 'outblob'} returned an empty quote")
        if provider == "sev":
            return SevSnp(report=quote)
        return TdxDcap(quote=quote, collateral=self.collateral_for(quote))

    @staticmethod
    def _provider(entry: Path) -> str:
        path = entry / "provider"
        if not path.exists():
            return "tdx"  # kernels before the provider attribute only had TDX
        name = read_device_file(path).decode("ascii", "replace").strip()
        try:
            return _PROVIDERS[name]
        except KeyError:
            raise EnclaveError(
                f"{path} names provider {name!r}; supported: {', '.join(_PROVIDERS)}"
            ) from None

    # The two operations below are what configfs does differently from a plain directory
    # (the kernel populates and tears down an entry's attributes); tests replace them to
    # emulate configfs on a temporary directory.

    def _create_entry(self, entry: Path) -> None:
        os.mkdir(entry, 0o700)

    def _remove_entry(self, entry: Path) -> None:
        os.rmdir(entry)



def _write(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise EnclaveError(f"cannot write {path}: {exc.strerror or exc}") from exc
