"""The error every enclave backend raises."""

from __future__ import annotations

__all__ = ["EnclaveError"]


class EnclaveError(Exception):
    """The enclave could not quote or produce its sealing key, or was misconfigured; the
    message names the device, file or endpoint involved and what went wrong."""
