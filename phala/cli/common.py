"""What every ``phala`` command shares: consoles, shared options, and turning expected
failures into one ``error: …`` line on stderr with exit code 1 (never a traceback)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from phala.chain.spec import ChainSpecError
from phala.client.chain import VerificationError
from phala.client.keystore import KeystoreError
from phala.client.rpc import DEFAULT_URL, InvalidUrl, NodeUnreachable, RpcError, RpcProtocolError
from phala.client.units import AmountError
from phala.core import ss58
from phala.core.codec import CodecError
from phala.core.keys import InvalidSecretUri

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

RpcOption = Annotated[
    str,
    typer.Option("--rpc", envvar="PHALA_RPC", help="Node RPC URL (http:// or ws://).", show_default=True),
]
KeystoreOption = Annotated[
    Path | None,
    typer.Option(
        "--keystore",
        envvar="PHALA_KEYSTORE",
        help="Keystore directory (default ~/.phala/keystore).",
        show_default=False,
    ),
]
PrefixOption = Annotated[
    int,
    typer.Option("--ss58-prefix", min=0, max=ss58.MAX_PREFIX, help="SS58 network prefix to show."),
]
DEFAULT_RPC = DEFAULT_URL


class CliError(Exception):
    """A user-facing failure: the message is printed as ``error: <message>``."""


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def describe(exc: BaseException) -> str:
    """One line for an expected failure."""
    if isinstance(exc, RpcError):
        if exc.code == 1010:
            return f"the node refused the transaction: {exc.data or exc.message}"
        if exc.code in (1013, 1014, 1016):
            return f"the node refused the transaction: {exc.message}"
        return f"the node answered with an error: {exc}"
    if isinstance(exc, VerificationError):
        return f"the node sent data that does not verify: {exc}"
    if isinstance(exc, ss58.InvalidAddress):
        return f"invalid address: {exc}"
    if isinstance(exc, InvalidSecretUri):
        return f"invalid secret URI: {exc}"
    return str(exc) or type(exc).__name__


EXPECTED: tuple[type[BaseException], ...] = (
    CliError,
    InvalidUrl,
    NodeUnreachable,
    RpcError,
    RpcProtocolError,
    VerificationError,
    KeystoreError,
    AmountError,
    ChainSpecError,
    CodecError,
    InvalidSecretUri,
    ss58.InvalidAddress,
    TimeoutError,
    PermissionError,
)


def handle_errors(fn: F) -> F:
    """Turn expected exceptions into ``error: …`` and exit code 1; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EXPECTED as exc:
            fail(describe(exc))
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def short(text: str, keep: int = 6) -> str:
    """``5GrwvaEF…HGKutQY``-style shortening of long identifiers."""
    return text if len(text) <= 2 * keep + 1 else f"{text[:keep]}…{text[-keep:]}"
