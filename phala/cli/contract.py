"""``phala contract check | deploy | call | query | events | list | info | reclaim | resume``:
confidential contracts through the chain and the workers of their cluster, with the client
SDK (:mod:`phala.client.contract_session`); this module reads what users type and renders.

``check`` runs the workers' own checks on a source file, locally; ``deploy`` runs them before
it uploads or pays for anything. ``list`` and ``info`` show contracts as the chain holds them
(proof-verified): status (active, pending, constructor failed, halted) with the workers'
reason, commands and pending fees; ``reclaim`` takes back fees never reported, ``resume`` is
root's (through sudo) for a contract its workers halted.

Arguments are parsed here, at the edge, into plain values. When the contract's source is at
hand (the FILE of ``deploy``; the code on chain, proof-verified, for ``call`` and ``query``)
each argument is read as its parameter's annotation says:

* ``int``: a decimal integer (``1_000`` is fine); ``bool``: ``true`` or ``false``;
  ``str``: the text as it is; ``bytes``: ``0x`` and hex digits;
* ``AccountId``: an SS58 address, ``0x`` + 64 hex digits, a keystore account's name or a dev
  account such as ``//Bob``: its 32-byte public key;
* ``list[...]``, ``dict[...]``, ``tuple[...]``: JSON, whose elements are read the same way.

An argument without an annotation is read by its look: JSON for ``[…]`` and ``{…}``, a
JSON string for ``"…"`` (to force a string), ``true``/``false``/``null``, a decimal integer,
``0x`` hex bytes, ``//Dev`` accounts and SS58 addresses as 32-byte account ids, else a string.
Floats are refused: contracts have no floats.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from phala.chain.runtime import contracts as pallet
from phala.client import chain
from phala.client.contract_session import (
    DEFAULT_GAS,
    RECEIPT_BLOCKS,
    CommandResult,
    ContractClientError,
    ContractSession,
    ContractState,
    PendingFee,
    QueryResult,
    WorkerUnavailable,
    load_code,
    random_salt,
)
from phala.client.contracts import (
    CheckResult,
    ContractInterface,
    InterfaceError,
    MethodSpec,
    check_code,
    contract_interface,
)
from phala.client.keystore import Keystore, KeystoreError, resolve_account, resolve_signer
from phala.client.rpc import run
from phala.core import ss58
from phala.core.keys import Keypair
from phala.core.types import Header

from .common import CliError, KeystoreOption, console, err_console, fail, handle_errors
from .gatekeeping import (
    DEFAULT_NODE,
    DEFAULT_SUDO,
    NodeOption,
    SudoOption,
    TimeoutOption,
    parse_cluster,
    run_root_call,
)
from .render import Formatter

app = typer.Typer(
    help="Confidential contracts: check and deploy one, send it commands, query it, read your "
    "commands' events; list contracts, show one's status and pending fees, reclaim fees never "
    "reported, resume a halted contract (root).\n\n"
    "Arguments are read as the method's annotations say (int, bool, str, bytes as 0x hex, "
    "AccountId as an SS58 address, 0x key, keystore name or //Dev account, JSON for lists and "
    "dicts); without one, by their look. Contracts take no floats.",
    no_args_is_help=True,
)

F = TypeVar("F", bound=Callable[..., Any])

_HEX32 = re.compile(r"0x[0-9a-fA-F]{64}")
_INT = re.compile(r"[+-]?\d[\d_]*")
_FLOAT = re.compile(r"[+-]?(\d[\d_]*)?\.\d*([eE][+-]?\d+)?|[+-]?\d+[eE][+-]?\d+")

ContractArgument = Annotated[
    str, typer.Argument(metavar="CONTRACT", help="The contract id: 0x + 64 hex digits.")
]
MethodArgument = Annotated[str, typer.Argument(metavar="METHOD", help="The method's name.")]
FileArgument = Annotated[
    Path, typer.Argument(metavar="FILE", help="The contract's source (a .py file).")
]
ArgsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[ARGS]...",
        help="The method's arguments, in order (see `phala contract --help` for how they are read; "
        "put -- before one that starts with -).",
    ),
]
FromOption = Annotated[
    str,
    typer.Option("--from", help="Signer: a stored account's name or a secret URI (//Alice)."),
]
AsOption = Annotated[
    str,
    typer.Option(
        "--as", help="The account the query is signed by: a stored account's name or a secret URI."
    ),
]
WorkerOption = Annotated[
    str | None,
    typer.Option(
        "--worker",
        help="The worker's pRuntime URL (default: a member of the contract's cluster with its "
        "endpoint on chain).",
    ),
]
GasOption = Annotated[
    int,
    typer.Option(
        "--gas",
        min=1,
        max=pallet.MAX_GAS_LIMIT,
        help="Gas limit; gas × 10^-6 PHA is reserved and the unused part refunded.",
    ),
]


class ArgumentError(CliError):
    pass


def client_errors(fn: F) -> F:
    """SDK failures become ``error: …`` lines (inside :func:`handle_errors`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ContractClientError as exc:
            raise CliError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


# -- reading what users type ----------------------------------------------------------------------


def parse_contract(text: str) -> bytes:
    text = text.strip()
    if not _HEX32.fullmatch(text):
        raise CliError(f"invalid contract id {text!r}: expected 0x followed by 64 hex digits")
    return bytes.fromhex(text[2:])


def parse_salt(text: str | None) -> bytes:
    """``0x`` hex, else the text's UTF-8; None: 16 random bytes."""
    if text is None:
        return random_salt()
    if text.startswith("0x"):
        try:
            salt = bytes.fromhex(text[2:])
        except ValueError:
            raise CliError(
                f"invalid --salt {text!r}: 0x must be followed by pairs of hex digits"
            ) from None
    else:
        salt = text.encode()
    if len(salt) > pallet.MAX_SALT:
        raise CliError(f"--salt is {len(salt)} bytes; at most {pallet.MAX_SALT}")
    return salt


def _hex_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        raise ValueError(f"{text!r} is not 0x followed by pairs of hex digits") from None


def _account(text: str, keystore: Keystore) -> bytes:
    try:
        return resolve_account(text, keystore)
    except KeystoreError as exc:
        raise ValueError(str(exc)) from None


def _no_floats(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError(f"{value!r} is a float; contracts take integers")
    if isinstance(value, list):
        return [_no_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _no_floats(v) for k, v in value.items()}
    return value


def _json(text: str) -> Any:
    try:
        return _no_floats(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{text!r} is not valid JSON ({exc.msg} at character {exc.pos})") from None


def _untyped_string(text: str, keystore: Keystore) -> Any:
    """A string by its look: 0x hex → bytes, //Dev or SS58 → account id, else the string."""
    if text.startswith("0x"):
        return _hex_bytes(text)
    if text.startswith("//"):
        return _account(text, keystore)
    if 40 <= len(text) <= 50:
        try:
            return ss58.parse_account(text)
        except ss58.InvalidAddress:
            pass
    return text


def _untyped_json(value: Any, keystore: Keystore) -> Any:
    if isinstance(value, str):
        return _untyped_string(value, keystore)
    if isinstance(value, list):
        return [_untyped_json(v, keystore) for v in value]
    if isinstance(value, dict):
        return {_untyped_string(k, keystore): _untyped_json(v, keystore) for k, v in value.items()}
    return value


def parse_untyped(text: str, keystore: Keystore) -> Any:
    """An argument without an annotation, read by its look (see the module's docstring)."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        return _untyped_json(_json(stripped), keystore)
    if stripped[:1] == '"':
        value = _json(stripped)
        if not isinstance(value, str):
            raise ValueError(f"{text!r} is not a JSON string")
        return value
    if stripped in ("true", "false"):
        return stripped == "true"
    if stripped == "null":
        return None
    if _INT.fullmatch(stripped):
        return int(stripped.replace("_", ""))
    if _FLOAT.fullmatch(stripped):
        raise ValueError(f"{text!r} is a float; contracts take integers")
    return _untyped_string(text, keystore)


def _annotation(text: str | None) -> ast.expr | None:
    if text is None:
        return None
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError:
        return None


def _parts(node: ast.expr) -> tuple[str | None, list[ast.expr]]:
    """``list[int]`` → (``list``, [int]); ``int`` → (``int``, [])."""
    if isinstance(node, ast.Name):
        return node.id, []
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        inner = node.slice
        return node.value.id, list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
    return None, []


def _typed_text(text: str, node: ast.expr | None, keystore: Keystore) -> Any:
    """The command-line text ``text`` read as the annotation ``node`` says."""
    name, inner = (None, []) if node is None else _parts(node)
    if name == "int":
        if not _INT.fullmatch(text.strip()):
            raise ValueError(f"expected an integer, got {text!r}")
        return int(text.strip().replace("_", ""))
    if name == "bool":
        if text.strip() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.strip() == "true"
    if name == "str":
        return text
    if name == "bytes":
        if not text.startswith("0x"):
            raise ValueError(f"expected 0x and hex digits, got {text!r}")
        return _hex_bytes(text)
    if name == "AccountId":
        return _account(text.strip(), keystore)
    if name in ("list", "dict", "tuple"):
        return _typed_json(_json(text), node, keystore)
    return parse_untyped(text, keystore)


def _typed_json(value: Any, node: ast.expr | None, keystore: Keystore) -> Any:
    """A JSON value read as the annotation ``node`` says."""
    name, inner = (None, []) if node is None else _parts(node)
    if name == "int":
        if type(value) is not int:
            raise ValueError(f"expected an integer, got {json.dumps(value)}")
        return value
    if name == "bool":
        if type(value) is not bool:
            raise ValueError(f"expected true or false, got {json.dumps(value)}")
        return value
    if name in ("str", "bytes", "AccountId"):
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {json.dumps(value)}")
        return _typed_text(value, node, keystore)
    if name in ("list", "tuple"):
        if not isinstance(value, list):
            raise ValueError(f"expected a JSON list, got {json.dumps(value)}")
        if (
            name == "tuple"
            and inner
            and not (len(inner) == 2 and isinstance(inner[1], ast.Constant))
        ):
            if len(inner) != len(value):
                raise ValueError(f"expected {len(inner)} elements, got {len(value)}")
            return tuple(_typed_json(v, n, keystore) for v, n in zip(value, inner, strict=True))
        element = inner[0] if inner else None
        items = [_typed_json(v, element, keystore) for v in value]
        return tuple(items) if name == "tuple" else items
    if name == "dict":
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {json.dumps(value)}")
        key_node, value_node = inner if len(inner) == 2 else (None, None)
        return {
            _typed_text(k, key_node, keystore): _typed_json(v, value_node, keystore)
            for k, v in value.items()
        }
    return _untyped_json(value, keystore)


def parse_args(texts: list[str], spec: MethodSpec | None, keystore: Keystore) -> list[Any]:
    """The arguments of a call, as plain values; ``spec`` (when known) gives their number
    and annotations. Raises :class:`ArgumentError` naming the argument."""
    if spec is not None and not spec.required <= len(texts) <= len(spec.params):
        wanted = (
            str(len(spec.params))
            if spec.required == len(spec.params)
            else f"{spec.required} to {len(spec.params)}"
        )
        raise ArgumentError(f"{spec.signature()} takes {wanted} argument(s), got {len(texts)}")
    out = []
    for n, text in enumerate(texts):
        param = spec.params[n] if spec is not None else None
        label = f"argument {n + 1}" + (f" ({param[0]})" if param else "")
        try:
            out.append(_typed_text(text, _annotation(param[1]) if param else None, keystore))
        except ValueError as exc:
            method = f" of {spec.name}" if spec is not None else ""
            raise ArgumentError(f"{label}{method}: {exc}") from None
    return out


def _plural(kind: str) -> str:
    return "queries" if kind == "query" else kind + "s"


def method_spec(interface: ContractInterface | None, method: str, kind: str) -> MethodSpec | None:
    """The method ``method`` of kind ``kind``; raises :class:`CliError` naming the ones there are."""
    if interface is None:
        return None
    spec = interface.methods.get(method)
    if spec is None or spec.kind != kind:
        there = ", ".join(m.name for m in interface.of_kind(kind)) or "none"
        also = f" ({method} is a {spec.kind})" if spec is not None else ""
        raise CliError(
            f"contract {interface.name} has no {kind} {method!r}{also}; its {_plural(kind)}: {there}"
        )
    return spec


def _interface_of(code: bytes) -> ContractInterface | None:
    try:
        return contract_interface(code)
    except (InterfaceError, UnicodeDecodeError) as exc:
        err_console.print(
            f"[yellow]cannot read the contract's interface ({escape(str(exc))}): "
            "arguments are read by their look[/]"
        )
        return None


# -- showing plain values -----------------------------------------------------------------------


def show_value(value: Any, fmt: Formatter | None = None) -> str:
    """A plain value in a JSON-like form: bytes as 0x hex (32-byte ones as short SS58
    addresses when ``fmt`` is given), tuples in parentheses."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        if fmt is not None and len(value) == 32:
            return fmt.address(value)
        return "0x" + value.hex()
    if isinstance(value, list):
        return "[" + ", ".join(show_value(v, fmt) for v in value) + "]"
    if isinstance(value, tuple):
        return (
            "("
            + ", ".join(show_value(v, fmt) for v in value)
            + ("," if len(value) == 1 else "")
            + ")"
        )
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{show_value(k, fmt)}: {show_value(v, fmt)}" for k, v in value.items())
            + "}"
        )
    return repr(value)


def _gas(n: int) -> str:
    return f"{n:,}"


def _at_line(answer: QueryResult) -> str:
    target = answer.worker
    return (
        f"[dim]answered by worker 0x{target.identity.hex()} at {escape(target.url)}, from its state at "
        f"block #{answer.block_number} 0x{answer.block_hash.hex()}; sealed to the worker's key from "
        f"Registry.Workers, proof verified at finalized block #{target.header.number}[/]"
    )


# -- checking code as the workers will ------------------------------------------------------------


def check_file(file: Path, code: bytes) -> CheckResult:
    """Run the workers' checks on ``code`` (read from ``file``) and print each error as
    ``FILE:LINE: message``; returns the result."""
    try:
        result = check_code(code)
    except InterfaceError as exc:  # not UTF-8: the chain would not even store it
        raise CliError(f"{file}: {exc}") from None
    for line, message in result.errors:
        console.print(f"{escape(str(file))}:{line}: {escape(message)}", soft_wrap=True)
    return result


def _refused(file: Path, result: CheckResult) -> str:
    n = len(result.errors)
    return f"{file}: {n} error{'s' if n != 1 else ''}: the workers would refuse this code"


@app.command("check")
@handle_errors
@client_errors
def check(file: FileArgument) -> None:
    """Check FILE as the workers will check it, here: its errors by line, or its methods.

    These are exactly the checks a worker runs when it loads a contract's code, run without
    a node: each error is printed as FILE:LINE: message (exit code 1); a contract that passes
    is shown with its methods. `deploy` runs the same checks before it uploads anything."""
    code = load_code(file)
    result = check_file(file, code)
    if not result.ok:
        fail(_refused(file, result))
    found = result.interface or {}
    methods = found.get("methods") or {}
    try:
        specs = contract_interface(code).methods
    except (InterfaceError, UnicodeDecodeError):
        specs = {}
    console.print(
        f"[green]ok:[/] {escape(str(file))}: contract {escape(str(found.get('name')))}, "
        f"{len(methods)} method{'s' if len(methods) != 1 else ''}",
        soft_wrap=True,
    )
    for name, kind in methods.items():
        spec = specs.get(name)
        shown = spec.signature() if spec is not None else name
        console.print(f"  {escape(str(kind)):<11} {escape(shown)}", soft_wrap=True)


# -- the commands -------------------------------------------------------------------------------


@app.command("deploy")
@handle_errors
@client_errors
def deploy(
    file: FileArgument,
    cluster: Annotated[
        str,
        typer.Option("--cluster", help="Cluster id (0x + 64 hex digits) or index (0: the first)."),
    ],
    sender: FromOption,
    args: Annotated[
        list[str] | None,
        typer.Option("--args", "--arg", help="A constructor argument (repeat, in order)."),
    ] = None,
    salt: Annotated[
        str | None,
        typer.Option(
            "--salt",
            help="Makes the contract id unique: text or 0x hex, at most 64 bytes (default: random).",
        ),
    ] = None,
    gas: GasOption = DEFAULT_GAS,
    constructor: Annotated[
        str | None,
        typer.Option(
            "--constructor", help="The constructor (default: the method marked @constructor)."
        ),
    ] = None,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Deploy FILE in a cluster, wait for its constructor's report and its keys.

    FILE is first checked as the workers will check it (see `phala contract check`): code
    they would refuse is neither uploaded nor paid for. The code is uploaded unless it is on
    chain; the constructor's arguments are sealed to the cluster's current key (read from
    chain state with a proof). The contract id is derived from the deployer, the code, the
    cluster and the salt. A constructor that fails is shown with the workers' message."""
    code = load_code(file)
    checked = check_file(file, code)
    if not checked.ok:
        fail(_refused(file, checked) + "; nothing was uploaded")
    try:
        interface = contract_interface(code)
    except (InterfaceError, UnicodeDecodeError) as exc:
        raise CliError(f"{file} is not a contract: {exc}") from None
    if constructor is None:
        found = interface.constructor()
        if found is None:
            raise CliError(f"contract {interface.name} in {file} has no @constructor method")
        constructor = found.name
    spec = method_spec(interface, constructor, "constructor")
    store = Keystore(keystore)
    values = parse_args(list(args or []), spec, store)
    cluster_id = parse_cluster(cluster)
    salt_bytes = parse_salt(salt)
    signer = resolve_signer(sender, store)

    async def go() -> None:
        async with ContractSession(rpc, timeout=timeout) as session:
            fmt = Formatter(await chain.properties(session.client))
            with console.status(f"deploying {interface.name} and waiting for its keys…"):
                deployed = await session.deploy(
                    code,
                    cluster_id,
                    values,
                    signer,
                    salt=salt_bytes,
                    gas_limit=gas,
                    constructor=constructor,
                    check=False,  # checked above, before the node was contacted
                )
        size = f"{len(code):,} bytes"
        console.print(
            f"code 0x{deployed.code_hash.hex()} ({size}) "
            + ("uploaded" if deployed.uploaded else "was on chain already"),
            soft_wrap=True,
        )
        console.print(
            f"instantiated in block #{deployed.block_number} by {fmt.address(signer.public_key, True)} "
            f"in cluster 0x{cluster_id.hex()}, salt 0x{salt_bytes.hex()}",
            soft_wrap=True,
        )
        call = f"{constructor}({', '.join(show_value(v) for v in values)})"
        report = deployed.report
        assert report is not None
        console.print(
            f"constructor {escape(call)}: {report.status_name}, gas used {_gas(report.gas_used)} of "
            f"{_gas(gas)}, refunded {fmt.amount(report.refunded)} (block #{report.block_number})",
            soft_wrap=True,
        )
        keys = deployed.keys
        if keys is not None:
            console.print(
                f"keys of epoch {keys.epoch} published: sr25519 0x{keys.pubkey.hex()}, X25519 0x{keys.ecdh.hex()}",
                soft_wrap=True,
            )
        if not report.ok:
            why = report.message or "the workers gave no reason"
            fail(
                f"the constructor failed ({report.status_name}): {why}; contract "
                f"0x{deployed.contract.hex()} is on chain but accepts no commands"
            )
        console.print(f"[green]success:[/] contract 0x{deployed.contract.hex()}", soft_wrap=True)

    run(go())


async def _code_interface(session: ContractSession, contract: bytes) -> ContractInterface | None:
    _, code = await session.contract_code(contract)
    return _interface_of(code)


@app.command("call")
@handle_errors
@client_errors
def call(
    contract: ContractArgument,
    method: MethodArgument,
    args: ArgsArgument = None,
    sender: FromOption = ...,  # type: ignore[assignment]
    gas: GasOption = DEFAULT_GAS,
    worker: WorkerOption = None,
    receipt: Annotated[
        bool,
        typer.Option(
            "--receipt/--no-receipt",
            help="Read the command's receipt (return value, events, error) from a worker.",
        ),
    ] = True,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Send CONTRACT the command METHOD(ARGS), signed by --from, and show its outcome.

    The call is sealed to the contract's key (read from chain state with a proof) and sent
    in an extrinsic; once the workers report it, its receipt (return value, events, error) is
    read from a worker with a signed query."""
    contract_id = parse_contract(contract)
    store = Keystore(keystore)
    signer = resolve_signer(sender, store)

    async def go() -> None:
        async with ContractSession(rpc, timeout=timeout) as session:
            fmt = Formatter(await chain.properties(session.client))
            spec = method_spec(await _code_interface(session, contract_id), method, "command")
            values = parse_args(list(args or []), spec, store)
            with console.status("submitting the command and waiting for its report…"):
                done = await session.call(contract_id, method, values, signer, gas)
                answer, why = (
                    await _receipt(session, done, signer, worker) if receipt else (None, "")
                )
        _show_command(done, method, values, fmt, answer, why)

    run(go())


async def _receipt(
    session: ContractSession, done: CommandResult, signer: Keypair, worker: str | None
) -> tuple[QueryResult | None, str]:
    try:
        answer = await session.receipt(
            done.contract, done.index, signer, worker, min_block=done.block_number
        )
    except WorkerUnavailable as exc:
        return None, f"the receipt is not read: {exc}"
    except ContractClientError as exc:
        return None, f"the receipt is not read: {exc}"
    return answer, ""


def _show_command(
    done: CommandResult,
    method: str,
    values: list,
    fmt: Formatter,
    answer: QueryResult | None,
    why: str,
) -> None:
    call_text = f"{method}({', '.join(show_value(v) for v in values)})"
    console.print(
        f"command #{done.index} {escape(call_text)} to contract 0x{done.contract.hex()}: "
        f"0x{done.tx_hash.hex()} in block #{done.block_number} 0x{done.block_hash.hex()}",
        soft_wrap=True,
    )
    report = done.report
    console.print(
        f"reported in block #{report.block_number}: {report.status_name}, gas used "
        f"{_gas(report.gas_used)} of {_gas(done.gas_limit)}, refunded {fmt.amount(report.refunded)}",
        soft_wrap=True,
    )
    message = report.message  # the workers' message, on chain
    if answer is not None and answer.ok and isinstance(answer.value, dict):
        value = answer.value
        message = message or str(value.get("message") or "")
        if report.ok:
            console.print(f"returned {escape(show_value(value.get('value')))}", soft_wrap=True)
        events = value.get("events") or []
        for event in events:
            console.print(f"  event {escape(show_value(event, fmt))}", soft_wrap=True)
    elif answer is not None:
        err_console.print(
            f"[yellow]the receipt is not readable: {escape(answer.message or answer.status_name)}[/]"
        )
    elif why:
        err_console.print(f"[yellow]{escape(why)}[/]")
    if not report.ok:
        fail(f"the command failed ({report.status_name})" + (f": {message}" if message else ""))
    console.print("[green]success[/]")


@app.command("query")
@handle_errors
@client_errors
def query(
    contract: ContractArgument,
    method: MethodArgument,
    args: ArgsArgument = None,
    signer_text: AsOption = ...,  # type: ignore[assignment]
    worker: WorkerOption = None,
    min_block: Annotated[
        int,
        typer.Option("--min-block", min=0, help="Wait for a worker that has reached this block."),
    ] = 0,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Ask a worker of CONTRACT's cluster the query METHOD(ARGS), signed by --as.

    The query is sealed to the worker's key as registered on chain (read with a proof, never
    from the worker); the answer names the block whose state it was computed at."""
    contract_id = parse_contract(contract)
    store = Keystore(keystore)
    signer = resolve_signer(signer_text, store)

    async def go() -> None:
        async with ContractSession(rpc, timeout=timeout) as session:
            spec = method_spec(await _code_interface(session, contract_id), method, "query")
            values = parse_args(list(args or []), spec, store)
            answer = await session.query(
                contract_id, method, values, signer, worker, min_block=min_block
            )
        if not answer.ok:
            console.print(_at_line(answer), soft_wrap=True)
            fail(f"the query failed ({answer.status_name}): {answer.message}")
        console.print(escape(show_value(answer.value)), soft_wrap=True)
        console.print(_at_line(answer), soft_wrap=True)

    run(go())


@app.command("events")
@handle_errors
@client_errors
def events(
    contract: ContractArgument,
    signer_text: AsOption,
    worker: WorkerOption = None,
    commands: Annotated[
        bool,
        typer.Option(
            "--commands",
            help="Instead, list the account's own commands with their receipts: status, gas "
            "used, return value, events or error.",
        ),
    ] = False,
    blocks: Annotated[
        int,
        typer.Option(
            "--blocks",
            min=1,
            max=100_000,
            help=f"Look this many finalized blocks back (workers keep events and receipts "
            f"{RECEIPT_BLOCKS}).",
        ),
    ] = RECEIPT_BLOCKS,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Show the events CONTRACT emitted for --as, or (--commands) the account's own commands.

    Events are for the account when it sent the command that emitted them, or when the
    contract named it (the token's transfer names its receiver); they are read with a signed
    events query, whose answer only the account can open. With --commands, the account's
    commands are found from Contracts.CommandSubmitted events on chain (proof-verified) and
    each is shown with its receipt (status, gas used, return value, events or error), which
    only its sender can read. Workers keep both for 600 blocks."""
    contract_id = parse_contract(contract)
    signer = resolve_signer(signer_text, Keystore(keystore))

    async def go() -> None:
        async with ContractSession(rpc, timeout=timeout) as session:
            fmt = Formatter(await chain.properties(session.client))
            who = fmt.address(signer.public_key, True)
            if commands:
                sent = await session.sent_commands(contract_id, signer, worker, blocks)
                _show_sent(sent, who, contract_id, blocks, fmt)
                return
            head = await chain.get_header(session.client)
            since = 0 if head is None else max(0, head.number - blocks + 1)
            found, answer = await session.events(contract_id, signer, worker, from_block=since)
        if not found:
            console.print(
                f"no events for {who} from contract 0x{contract_id.hex()} since block #{since}",
                soft_wrap=True,
            )
        else:
            table = Table(
                "block", "command", "event",
                title=f"events for {who} from contract 0x{contract_id.hex()}",
                title_justify="left",
            )  # fmt: skip
            for event in found:
                table.add_row(
                    str(event.block_number), f"#{event.index}", escape(show_value(event.event, fmt))
                )
            console.print(table)
        console.print(_at_line(answer), soft_wrap=True)

    run(go())


def _show_sent(sent: list, who: str, contract_id: bytes, blocks: int, fmt: Formatter) -> None:
    if not sent:
        console.print(
            f"no commands from {who} to contract 0x{contract_id.hex()} in the last {blocks} blocks",
            soft_wrap=True,
        )
        return
    table = Table(
        "#", "block", "status", "gas used", "returned", "events or error",
        title=f"commands from {who} to contract 0x{contract_id.hex()}, from their receipts",
        title_justify="left",
    )  # fmt: skip
    for item in sent:
        if item.receipt is None:
            table.add_row(
                str(item.index),
                str(item.block_number),
                "[yellow]?[/]",
                "",
                "",
                escape(item.message),
            )
            continue
        r = item.receipt
        status = str(r.get("status"))
        ok = status == "ok"
        detail = "\n".join(escape(show_value(e, fmt)) for e in r.get("events") or [])
        if not ok and r.get("message"):
            detail = escape(str(r["message"]))
        table.add_row(
            str(item.index),
            str(item.block_number),
            status if ok else f"[red]{escape(status)}[/]",
            _gas(int(r.get("gas_used") or 0)),
            escape(show_value(r.get("value"), fmt)) if ok else "",
            detail,
        )
    console.print(table)


# -- the chain's view: status, pending fees, reclaiming them, resuming ------------------------------

_STATUS_STYLE = {"active": "green", "pending": "yellow", "constructor failed": "red", "halted": "red"}


def _status(state: ContractState, reason: bool) -> str:
    style = _STATUS_STYLE.get(state.status, "")
    text = f"[{style}]{state.status}[/]" if style else state.status
    if reason and state.reason:
        text += f": {escape(state.reason)}"
    return text


def _cluster(state: ContractState) -> str:
    index = "" if state.cluster_index is None else f" (#{state.cluster_index})"
    return f"cluster 0x{state.info.cluster.hex()}{index}"


def _at_block(header: Header) -> str:
    return (
        f"[dim]at finalized block #{header.number} 0x{header.hash.hex()}; proof verified "
        f"against state root 0x{header.state_root.hex()}[/]"
    )


def _show_listed(state: ContractState, fmt: Formatter) -> None:
    place = "" if state.index is None else f" (#{state.index})"
    console.print(f"contract 0x{state.contract.hex()}{place}: {_status(state, False)}", soft_wrap=True)
    console.print(f"  code 0x{state.info.code_hash.hex()}, {_cluster(state)}", soft_wrap=True)
    console.print(
        f"  deployed by {fmt.address(state.info.deployer, True)} in block "
        f"#{state.info.instantiated_at}; {state.command_count} command(s), "
        f"{state.pending_count} pending fee(s)",
        soft_wrap=True,
    )


@app.command("list")
@handle_errors
@client_errors
def list_contracts(
    rpc: NodeOption = DEFAULT_NODE, timeout: TimeoutOption = 60.0
) -> None:
    """List every contract on chain: id, code, cluster, deployer, status, commands.

    In the order they were instantiated, each with its status (active, pending: the
    constructor not reported yet, constructor failed, halted), its number of commands and of
    fees still pending. Read at the finalized head with proofs (`info` shows one in full)."""

    async def go() -> None:
        async with ContractSession(rpc, timeout=timeout) as session:
            fmt = Formatter(await chain.properties(session.client))
            header, found = await session.contracts()
        if not found:
            console.print(
                "no contracts yet (deploy one with `phala contract deploy FILE --cluster 0 "
                "--from ACCOUNT`)"
            )
        for state in found:
            _show_listed(state, fmt)
        console.print(_at_block(header), soft_wrap=True)

    run(go())


def _fee_line(fee: PendingFee, state: ContractState, fmt: Formatter) -> str:
    if fee.reclaimable_at(state.header.number + 1):
        when = "[green]reclaimable now[/]"
    else:
        when = f"reclaimable from block #{fee.reclaimable_from} (or at once if the contract is halted)"
    return (
        f"    #{fee.index}: {fmt.amount(fee.reserved)} reserved from "
        f"{fmt.address(fee.payer, True)} in block #{fee.submitted}, {when}"
    )


@app.command("info")
@handle_errors
@client_errors
def info(
    contract: ContractArgument,
    rpc: NodeOption = DEFAULT_NODE,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Show CONTRACT as the chain holds it: status and why, commands, pending fees.

    Its code, cluster, deployer and keys; its status with the workers' reason (why its
    constructor failed, why they halted it); and every fee still awaiting its command's
    report, with the block from which its payer may take it back (at once when the contract
    is halted). Proof-verified at the finalized head."""
    contract_id = parse_contract(contract)

    async def go() -> None:
        async with ContractSession(rpc, timeout=timeout) as session:
            fmt = Formatter(await chain.properties(session.client))
            state, fees = await session.pending_fees(contract_id)
        name = f"0x{contract_id.hex()}"
        console.print(f"contract {name}", soft_wrap=True)
        console.print(f"  status: {_status(state, True)}", soft_wrap=True)
        console.print(f"  code 0x{state.info.code_hash.hex()}", soft_wrap=True)
        console.print(f"  {_cluster(state)}", soft_wrap=True)
        console.print(
            f"  deployed by {fmt.address(state.info.deployer, True)} in block "
            f"#{state.info.instantiated_at}",
            soft_wrap=True,
        )
        keys = state.keys
        if keys is None:
            console.print("  keys: not published")
        else:
            console.print(
                f"  keys of epoch {keys.epoch}: sr25519 0x{keys.pubkey.hex()}, X25519 0x{keys.ecdh.hex()}",
                soft_wrap=True,
            )
        console.print(f"  {state.command_count} command(s) (#0 is the constructor)")
        console.print(f"  {len(fees)} pending fee(s)" + (":" if fees else ""))
        for fee in fees:
            console.print(_fee_line(fee, state, fmt), soft_wrap=True)
        if state.halted:
            if fees:
                console.print(
                    f"  their payers can take them back now: `phala contract reclaim {name} "
                    "--from ACCOUNT`",
                    soft_wrap=True,
                )
            console.print(
                f"  root can resume it once its workers can run it: `phala contract resume {name}`",
                soft_wrap=True,
            )
        console.print(_at_block(state.header), soft_wrap=True)

    run(go())


@app.command("reclaim")
@handle_errors
@client_errors
def reclaim(
    contract: ContractArgument,
    sender: FromOption,
    index: Annotated[
        int | None,
        typer.Option(
            "--index",
            min=0,
            help="Only the fee of this command (default: every one of --from's reclaimable fees).",
        ),
    ] = None,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Take back the fees --from paid for CONTRACT's commands that were never reported.

    A fee comes back whole once its command has waited 600 blocks for its report, or at once
    when the contract is halted (`phala contract info` shows each pending fee and from when
    it is reclaimable). By default every reclaimable fee of --from's is taken back, one
    Contracts.reclaim_fee each."""
    contract_id = parse_contract(contract)
    signer = resolve_signer(sender, Keystore(keystore))

    async def go() -> None:
        async with ContractSession(rpc, timeout=timeout) as session:
            fmt = Formatter(await chain.properties(session.client))
            with console.status("reclaiming and waiting for a finalized block…"):
                done = await session.reclaim(contract_id, signer, index)
        back = 0
        for item in done:
            if item.ok:
                back += item.amount
                console.print(
                    f"command #{item.index}: {fmt.amount(item.amount)} back (block #{item.block_number})",
                    soft_wrap=True,
                )
            else:
                err_console.print(f"[yellow]command #{item.index}: {escape(item.error or '')}[/]")
        failed = [item for item in done if not item.ok]
        if failed:
            fail(f"{len(failed)} of {len(done)} reclaim(s) failed: {failed[0].error}")
        console.print(
            f"[green]success:[/] {fmt.amount(back)} back to {fmt.address(signer.public_key, True)}",
            soft_wrap=True,
        )

    run(go())


@app.command("resume")
@handle_errors
def resume(
    contract: ContractArgument,
    sudo: SudoOption = DEFAULT_SUDO,
    rpc: NodeOption = DEFAULT_NODE,
    keystore: KeystoreOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Resume CONTRACT, which its workers halted (a root call, sent through sudo).

    Do it once the cause is gone (the workers upgraded, say): the contract accepts commands
    again and its workers are told to run it. Fees reclaimed meanwhile stay reclaimed."""
    contract_id = parse_contract(contract)
    signer = resolve_signer(sudo, Keystore(keystore))

    async def go() -> None:
        await run_root_call(rpc, signer, pallet.resume_contract(contract_id), timeout)
        console.print(
            f"[green]success:[/] contract 0x{contract_id.hex()} is active again; its workers "
            "were told to resume it",
            soft_wrap=True,
        )

    run(go())
