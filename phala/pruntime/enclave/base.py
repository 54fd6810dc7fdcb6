"""The interface every enclave backend implements, and the factory that opens one by kind.

A backend does two things for the pRuntime:

* **quote** 64 bytes of report data: return an :class:`~phala.core.attestation.AttestationReport`
  whose signed body carries exactly those bytes (the worker puts
  ``blake2_256(encode(registration info))`` there, see :func:`phala.core.attestation.report_data`);
* **seal**: hand out a 32-byte key that only this enclave (this code on this machine, depending
  on the backend) can obtain again after a restart, or ``None`` when the backend has none.

Every method blocks (device files, a Unix socket, possibly a PCCS round trip): async callers
run them in a thread (``asyncio.to_thread``).

Kinds (see each module for what its sealing key is bound to):

==========  ==========================================  =================================
kind        quote                                       sealing key
==========  ==========================================  =================================
``sim``     :class:`SimQuote` (dev chains only)         HKDF of a secret file: protects nothing
``gramine`` :class:`SgxDcap` via ``/dev/attestation``   MRENCLAVE-bound SGX sealing key
``tsm``     :class:`TdxDcap` via configfs-tsm           none: re-register after each restart
``dstack``  :class:`TdxDcap` via the dstack guest agent  dstack ``GetKey`` (app-bound)
==========  ==========================================  =================================
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from phala.core.attestation import AttestationReport

from .collateral import CollateralProvider, NoCollateral, make_collateral_provider
from .errors import EnclaveError

__all__ = [
    "DEFAULT_KIND",
    "KINDS",
    "REPORT_DATA_LENGTH",
    "SEALING_KEY_LENGTH",
    "Enclave",
    "EnclaveError",
    "open_enclave",
]

REPORT_DATA_LENGTH = 64
SEALING_KEY_LENGTH = 32
DEFAULT_KIND = "sim"

# kind -> "module:Class", imported on first use so that opening a ``sim`` enclave never loads
# the dstack SDK (httpx, pydantic) and so on.
_BACKENDS: dict[str, str] = {
    "sim": "phala.pruntime.enclave.sim:SimEnclave",
    "gramine": "phala.pruntime.enclave.gramine:GramineEnclave",
    "tsm": "phala.pruntime.enclave.tsm:TsmEnclave",
    "dstack": "phala.pruntime.enclave.dstack:DstackEnclave",
}
KINDS: tuple[str, ...] = tuple(_BACKENDS)


class Enclave(ABC):
    """One TEE backend. Subclasses set :attr:`kind` and implement :meth:`_quote`."""

    kind: ClassVar[str]

    def __init__(self, collateral: CollateralProvider | None = None) -> None:
        self._collateral: CollateralProvider = collateral or NoCollateral()

    def quote(self, report_data: bytes) -> AttestationReport:
        """An attestation report carrying exactly ``report_data`` (64 bytes).

        Raises EnclaveError when ``report_data`` is not 64 bytes (nothing is sent to the
        device then) or when the backend fails; the message names the device or endpoint.
        """
        if not isinstance(report_data, bytes | bytearray | memoryview):
            raise EnclaveError(f"report data must be bytes, got {type(report_data).__name__}")
        report_data = bytes(report_data)
        if len(report_data) != REPORT_DATA_LENGTH:
            raise EnclaveError(
                f"report data must be exactly {REPORT_DATA_LENGTH} bytes, got {len(report_data)}"
            )
        return self._quote(report_data)

    @abstractmethod
    def _quote(self, report_data: bytes) -> AttestationReport:
        """Backend-specific quoting of validated 64-byte report data."""

    @abstractmethod
    def sealing_key(self) -> bytes | None:
        """The 32-byte sealing key, or None when this backend has none (then nothing sealed
        survives a restart). Raises EnclaveError when the backend has one but cannot
        produce it."""

    def collateral_for(self, quote: bytes) -> bytes:
        """The collateral (``QuoteCollateralV3`` JSON bytes) that verifies ``quote``, from the
        configured provider; empty bytes when none is configured, in which case the chain's
        registry refuses the registration (it needs collateral to verify a DCAP quote)."""
        return self._collateral(quote)

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections; the enclave must not be used afterwards."""

    def __enter__(self) -> Enclave:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self.kind!r}>"


def _backend_class(kind: str) -> type[Enclave]:
    try:
        target = _BACKENDS[kind]
    except KeyError:
        raise EnclaveError(
            f"unknown enclave kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def open_enclave(kind: str = DEFAULT_KIND, **options: Any) -> Enclave:
    """Open the enclave backend ``kind`` with its options.

    Options by kind (all optional; ``data_dir``, the worker's data directory, is accepted for
    every kind and used only by ``sim``):

    * ``sim``: ``data_dir`` (where ``sim-sealing.secret`` lives; needed for
      :meth:`Enclave.sealing_key`), ``attestation_key_uri`` (default
      :data:`~phala.core.attestation.SIM_ATTESTATION_URI`), ``measurement`` (32 bytes, default
      :data:`~phala.core.attestation.SIM_MEASUREMENT`);
    * ``gramine``: ``device_root`` (default ``/dev/attestation``) and the collateral options;
    * ``tsm``: ``root`` (default ``/sys/kernel/config/tsm/report``) and the collateral options;
    * ``dstack``: ``endpoint`` (Unix socket path or ``http://`` URL; default: the SDK's choice,
      ``DSTACK_SIMULATOR_ENDPOINT`` or ``/var/run/dstack.sock``), ``timeout`` (seconds),
      ``key_path`` (default ``phala/sealing``) and the collateral options.

    Collateral options (DCAP backends): ``collateral_file`` (a ``QuoteCollateralV3`` JSON file,
    read at every quote so that it can be refreshed in place), ``pccs_url`` (fetched with
    ``dcap_qvl.get_collateral`` at every quote), or ``collateral`` (any callable
    ``quote -> bytes``). At most one; with none, the collateral is empty and the chain refuses
    the registration.

    Raises EnclaveError for an unknown kind or option, or when the device or endpoint is
    missing (the message names its path).
    """
    cls = _backend_class(kind)
    if cls.kind != "sim":
        options.pop("data_dir", None)  # accepted from every caller, only sim keeps files
        collateral_options = {
            name: options.pop(name)
            for name in ("collateral_file", "pccs_url", "collateral")
            if name in options
        }
        options["collateral"] = make_collateral_provider(**collateral_options)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise EnclaveError(f"bad options for enclave kind {kind!r}: {exc}") from None
    return cls(**options)
