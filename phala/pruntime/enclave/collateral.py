"""Where a DCAP backend gets the collateral that verifies its quotes.

The chain's registry verifies an SGX or TDX quote offline with ``dcap_qvl`` against the
collateral (PCK CRLs, TCB info, QE identity and their certificate chains) that the worker submits
with its registration; the block timestamp is "now". The collateral is the JSON form of
``dcap_qvl.QuoteCollateralV3`` (``to_json()`` / ``from_json()``), carried as bytes.

Providers are callables ``quote -> bytes``:

* :class:`NoCollateral`: empty bytes. The registration then fails on chain: a DCAP quote cannot
  be verified without collateral. This is the default so that nothing is fetched behind the
  operator's back; configure one of the others for a real worker.
* :class:`FileCollateral`: a JSON file, read and checked at every quote, so an operator (or a
  cron job) can refresh it in place before it expires (collateral is valid about 30 days).
* :class:`PccsCollateral`: fetched from a PCCS at every quote with ``dcap_qvl.get_collateral``.

Collateral is public data: a host that tampers with it only makes its own registration fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path

from .errors import EnclaveError

__all__ = [
    "CollateralProvider",
    "FileCollateral",
    "NoCollateral",
    "PccsCollateral",
    "make_collateral_provider",
]

CollateralProvider = Callable[[bytes], bytes]


def _check_collateral_json(data: bytes, source: str) -> None:
    import dcap_qvl

    try:
        dcap_qvl.QuoteCollateralV3.from_json(data.decode("utf-8"))
    except Exception as exc:  # UnicodeDecodeError, ValueError, or whatever the parser raises
        raise EnclaveError(
            f"collateral from {source} is not QuoteCollateralV3 JSON: {exc}"
        ) from exc


class NoCollateral:
    """No collateral: empty bytes (the chain then refuses a DCAP registration)."""

    def __call__(self, quote: bytes) -> bytes:
        return b""

    def __repr__(self) -> str:
        return "NoCollateral()"


class FileCollateral:
    """Collateral JSON read from ``path`` at every call, checked to parse, returned unchanged."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __call__(self, quote: bytes) -> bytes:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise EnclaveError(
                f"cannot read collateral file {self.path}: {exc.strerror or exc}"
            ) from exc
        _check_collateral_json(data, str(self.path))
        return data

    def __repr__(self) -> str:
        return f"FileCollateral({str(self.path)!r})"


class PccsCollateral:
    """Collateral fetched from the PCCS at ``url`` for each quote (network access)."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise EnclaveError(f"PCCS URL must start with http:// or https://, got {url!r}")
        self.url = url

    def __call__(self, quote: bytes) -> bytes:
        import dcap_qvl

        async def fetch() -> str:
            collateral = await dcap_qvl.get_collateral(self.url, bytes(quote))
            return collateral.to_json()

        # asyncio.run refuses to nest inside a running loop (the pRuntime's HTTP server), so
        # the fetch always runs on a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            try:
                text = pool.submit(asyncio.run, fetch()).result()
            except (ValueError, RuntimeError, OSError) as exc:
                raise EnclaveError(f"cannot fetch collateral from PCCS {self.url}: {exc}") from exc
        return text.encode("utf-8")

    def __repr__(self) -> str:
        return f"PccsCollateral({self.url!r})"


def make_collateral_provider(
    collateral_file: str | Path | None = None,
    pccs_url: str | None = None,
    collateral: CollateralProvider | None = None,
) -> CollateralProvider:
    """The provider the options name (at most one of them), :class:`NoCollateral` if none."""
    given = [
        name
        for name, value in (
            ("collateral_file", collateral_file),
            ("pccs_url", pccs_url),
            ("collateral", collateral),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise EnclaveError(f"give at most one collateral source, got {', '.join(given)}")
    if collateral_file is not None:
        return FileCollateral(collateral_file)
    if pccs_url is not None:
        return PccsCollateral(pccs_url)
    if collateral is not None:
        if not callable(collateral):
            raise EnclaveError("collateral must be a callable quote -> bytes")
        return collateral
    return NoCollateral()
