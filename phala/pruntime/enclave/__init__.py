"""Enclave backends: attestation quotes and sealing keys behind one interface.

Open one with :func:`open_enclave` (``sim``, ``gramine``, ``tsm`` or ``dstack``); see
:mod:`.base` for the interface and each backend's module for what it binds its quotes and its
sealing key to. Sealing data with the key is :func:`phala.pruntime.identity.seal`.
"""

from .base import (
    DEFAULT_KIND,
    KINDS,
    REPORT_DATA_LENGTH,
    SEALING_KEY_LENGTH,
    Enclave,
    open_enclave,
)
from .collateral import (
    CollateralProvider,
    FileCollateral,
    NoCollateral,
    PccsCollateral,
    make_collateral_provider,
)
from .errors import EnclaveError

__all__ = [
    "DEFAULT_KIND",
    "KINDS",
    "REPORT_DATA_LENGTH",
    "SEALING_KEY_LENGTH",
    "CollateralProvider",
    "Enclave",
    "EnclaveError",
    "FileCollateral",
    "NoCollateral",
    "PccsCollateral",
    "make_collateral_provider",
    "open_enclave",
]
