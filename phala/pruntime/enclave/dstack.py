"""``dstack``: Intel TDX under dstack, through the guest agent's API (``dstack-sdk``).

The guest agent listens on a Unix socket (``/var/run/dstack.sock`` in a dstack CVM) or, for the
dstack simulator, on an HTTP URL (``DSTACK_SIMULATOR_ENDPOINT``). ``endpoint`` picks one
explicitly; without it the SDK's own choice applies.

Quoting calls ``GetQuote`` with the 64 bytes of report data and returns
:class:`~phala.core.attestation.TdxDcap` with collateral from the configured provider (none by
default: then the chain refuses the registration, see :mod:`.collateral`). When the agent
echoes the report data, the echo must equal what was sent.

Sealing key: ``GetKey(path="phala/sealing")`` (the SDK's defaults for purpose and algorithm,
``secp256k1``, which needs no version probe), reduced to 32 bytes with
``HKDF-SHA256(key, "phala/pruntime/sealing/dstack/v1")``. dstack's KMS derives that key from
the application's identity (its app id), not from one exact image: it survives restarts and
moves to another CVM of the same app, and whoever the KMS lets run the app can derive it.
Changing the path, purpose or algorithm changes the key and orphans everything sealed before.
"""

from __future__ import annotations

import threading
from typing import Any

from phala.core.attestation import AttestationReport, TdxDcap
from phala.core.envelope import hkdf_sha256

from .base import SEALING_KEY_LENGTH, Enclave
from .collateral import CollateralProvider
from .errors import EnclaveError

__all__ = ["DEFAULT_KEY_PATH", "DstackEnclave"]

DEFAULT_KEY_PATH = "phala/sealing"
_SEALING_INFO = b"phala/pruntime/sealing/dstack/v1"
_MIN_KEY_LENGTH = 32


class DstackEnclave(Enclave):
    """The dstack backend (see the module docstring)."""

    kind = "dstack"

    def __init__(
        self,
        endpoint: str | None = None,
        timeout: float = 10.0,
        key_path: str = DEFAULT_KEY_PATH,
        collateral: CollateralProvider | None = None,
    ) -> None:
        super().__init__(collateral)
        from dstack_sdk import DstackClient
        from dstack_sdk.dstack_client import get_endpoint

        self.endpoint = get_endpoint(endpoint)
        self.key_path = key_path
        try:
            self._client = DstackClient(self.endpoint, timeout=timeout)
        except FileNotFoundError as exc:
            raise EnclaveError(
                f"dstack guest agent socket {self.endpoint} is missing: not running in a "
                "dstack CVM (or set the endpoint / DSTACK_SIMULATOR_ENDPOINT)"
            ) from exc
        self._lock = threading.Lock()
        self._sealing_key: bytes | None = None

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        import httpx
        import pydantic

        try:
            return getattr(self._client, method)(*args, **kwargs)
        except httpx.HTTPStatusError as exc:
            raise EnclaveError(
                f"dstack {what} at {self.endpoint} failed: HTTP {exc.response.status_code} "
                f"{exc.response.text[:200]!r}"
            ) from exc
        except (httpx.HTTPError, OSError) as exc:
            raise EnclaveError(f"dstack {what} at {self.endpoint} failed: {exc}") from exc
        except (pydantic.ValidationError, ValueError) as exc:
            raise EnclaveError(f"dstack {what} at {self.endpoint}: bad answer: {exc}") from exc

    def _quote(self, report_data: bytes) -> AttestationReport:
        response = self._call("GetQuote", "get_quote", report_data)
        try:
            quote = response.decode_quote()
            echoed = bytes.fromhex(response.report_data) if response.report_data else None
        except ValueError as exc:
            raise EnclaveError(f"dstack GetQuote at {self.endpoint}: bad hex: {exc}") from exc
        if not quote:
            raise EnclaveError(f"dstack GetQuote at {self.endpoint} returned an empty quote")
        if echoed is not None and echoed != report_data:
            raise EnclaveError(
                f"dstack GetQuote at {self.endpoint} quoted report data {echoed.hex()}, "
                f"not the {report_data.hex()} sent"
            )
        return TdxDcap(quote=quote, collateral=self.collateral_for(quote))

    def sealing_key(self) -> bytes:
        """HKDF of the dstack ``GetKey`` key for :attr:`key_path` (see the module docstring).

        Raises EnclaveError when the agent fails or returns a key shorter than 32 bytes.
        """
        with self._lock:
            if self._sealing_key is None:
                response = self._call("GetKey", "get_key", path=self.key_path)
                try:
                    key = response.decode_key()
                except ValueError as exc:
                    raise EnclaveError(f"dstack GetKey at {self.endpoint}: bad hex: {exc}") from exc
                if len(key) < _MIN_KEY_LENGTH:
                    raise EnclaveError(
                        f"dstack GetKey at {self.endpoint} returned a {len(key)}-byte key, "
                        f"need at least {_MIN_KEY_LENGTH}"
                    )
                self._sealing_key = hkdf_sha256(key, _SEALING_INFO, SEALING_KEY_LENGTH)
            return self._sealing_key

    def close(self) -> None:
        # The SDK's context manager counts nesting; close its pooled sync client directly.
        inner = getattr(self._client, "async_client", None)
        client = getattr(inner, "_sync_client", None)
        if client is not None:
            client.close()
            inner._sync_client = None
