"""The runtime's side of the VM boundary: runs inside the component, never on the host.

``load(source)`` checks a contract's source with :mod:`phala.contracts.policy`, compiles it
and runs its module body with builtins that import only what the policy allows; the result
is the encoded ``[status, message, line, interface, code]`` (``code`` the marshalled code
object, which ``load_compiled`` runs in later instances without compiling again). ``call(request)`` runs one method of the
loaded contract. Requests and outcomes are plain values (:mod:`phala.contracts.values`)
carried as latin-1 strings:

* request (:func:`phala.contracts.wire.unpack_request`): kind (indexing
  :data:`phala.contracts.sdk.KINDS`), method, the encoded argument list, sender, block
  number, timestamp, contract id, seed;
* outcome (:func:`phala.contracts.wire.pack_outcome`): status, message, the encoded return
  value, encoded ``(accounts, event)`` pairs, encoded ``(to, message)`` pairs, then the
  storage the call changed: keys set with their values, keys removed. Writes travel in the
  outcome rather than one host call each because a host call costs far more than the bytes
  it moves.

Everything here runs on fuel: the host counts it, and a call that runs out, traps, or
passes the memory cap ends as the host decides. Exceptions a call raises become its outcome.
"""

import builtins
import marshal
import sys
import warnings

import wit_world
from wit_world.imports import host

from phala.contracts import policy, sdk
from phala.contracts.values import decode_plain, encode_plain
from phala.contracts.wire import pack_outcome, unpack_request

# The modules a contract may import, imported now: the snapshot taken at build time is the
# only chance (the VM has no file system).
# The codecs a contract may name in str.encode / bytes.decode: found later by name in
# sys.modules (a codec not imported here would be looked for on a file system: a trap).
CODECS = ("encodings.ascii", "encodings.latin_1", "encodings.utf_8", "encodings.utf_16", "encodings.utf_16_le",
          "encodings.utf_16_be", "encodings.utf_32", "encodings.utf_32_le", "encodings.utf_32_be", "encodings.cp1252",
          "encodings.hex_codec", "encodings.base64_codec")
for _name in (*policy.PURE_MODULES, "_pylong", *CODECS):
    __import__(_name)
del _name
for _codec in CODECS:  # registered now: the lookup by name would import
    __import__("codecs").lookup(_codec.rpartition(".")[2])
del _codec
# A warning would be shown with its source line, read from a file the VM does not have.
warnings.simplefilter("ignore")

OK, ERROR, OUT_OF_GAS, LIMIT, REFUSED = range(5)  # as phala.contracts.protocol
CONSTRUCTOR, COMMAND, QUERY, HANDLER = range(4)
SDK_NAMES = frozenset(sdk.exports())
UNAVAILABLE = ("open", "input", "print", "breakpoint", "help", "exit", "quit")
MAX_MESSAGE = 1000


class Storage:
    """The host's storage functions, with bytes in and out."""

    @staticmethod
    def get(key):
        value = host.storage_get(key.decode("latin-1"))
        return None if value is None else value.encode("latin-1")

    @staticmethod
    def set(key, value):
        host.storage_set(key.decode("latin-1"), value.decode("latin-1"))

    @staticmethod
    def remove(key):
        host.storage_remove(key.decode("latin-1"))

    @staticmethod
    def next(prefix, after):
        found = host.storage_next(prefix.decode("latin-1"), after.decode("latin-1"))
        return None if found is None else found.encode("latin-1")


def _unavailable(name):
    def refuse(*args, **kwargs):
        raise sdk.ContractError(f"{name}() is not available to contracts")

    return refuse


# Modules CPython's own C code imports on demand (through the current builtins, so through
# the contract's importer): _pylong divides and formats big ints. Imported into the snapshot.
INTERNAL_MODULES = ("_pylong",)


def _importer(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and (name == policy.SDK_MODULE or name in policy.PURE_MODULES or name in INTERNAL_MODULES):
        return _real_import(name, globals, locals, fromlist, level)
    raise ImportError(f"contracts may not import {name!r}")


_real_import = builtins.__import__


def _contract_builtins():
    table = dict(vars(builtins))
    for name in UNAVAILABLE:
        table[name] = _unavailable(name)
    table["__import__"] = _importer
    return table


class Loaded:
    cls = None
    methods = {}


def _text(exc):
    try:
        return f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE]
    except Exception:  # noqa: BLE001 - str() of the exception failed (an int too long to print, a bad __str__)
        return f"{type(exc).__name__}: <the message cannot be shown>"


def _encode(*parts):
    return encode_plain(list(parts)).decode("latin-1")


def load(source):
    try:
        policy.check_source(source, SDK_NAMES)
    except policy.PolicyError as exc:
        return _encode(REFUSED, f"policy: line {exc.line}: {exc.reason}", exc.line, b"", b"")
    try:
        code = compile(source, policy.FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = exc.lineno or 1
        return _encode(REFUSED, f"policy: line {line}: syntax error: {exc.msg}", line, b"", b"")
    except (RecursionError, MemoryError) as exc:
        return _encode(REFUSED, f"policy: line 1: the source cannot be compiled: {type(exc).__name__}", 1, b"", b"")
    return _run_module(code, marshal.dumps(code))


def load_compiled(code):
    return _run_module(marshal.loads(code.encode("latin-1")), b"")


def _run_module(code, compiled):
    scope = {"__name__": "contract", "__builtins__": _contract_builtins()}
    try:
        exec(code, scope)
    except BaseException as exc:  # noqa: BLE001 - the module body is contract code
        line = _line_of(exc)
        return _encode(REFUSED, f"the module body failed: line {line}: {_text(exc)}", line, b"", b"")
    classes = [v for v in scope.values()
               if isinstance(v, type) and issubclass(v, sdk.Contract) and v is not sdk.Contract
               and v.__module__ == "contract"]
    if len(classes) != 1:
        return _encode(REFUSED, "policy: a contract module defines exactly one Contract class", 1, b"", b"")
    cls = classes[0]
    methods = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            kind = getattr(value, "phala_kind", None)
            if kind in sdk.KINDS and not name.startswith("_"):
                methods[name] = (kind, value)
    constructors = [name for name, (kind, _) in methods.items() if kind == "constructor"]
    if len(constructors) > 1:
        return _encode(REFUSED, "policy: a contract has at most one @constructor", 1, b"", b"")
    Loaded.cls, Loaded.methods = cls, methods
    interface = {"name": cls.__name__, "methods": {name: kind for name, (kind, _) in methods.items()}}
    return _encode(OK, "", 0, encode_plain(interface), compiled)


def _line_of(exc):
    tb = exc.__traceback__
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == policy.FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _failed(status, message):
    return pack_outcome(status, message, b"", [], [], [], [], []).decode("latin-1")


def call(request):
    try:
        kind, method, args, sender, block, timestamp, contract, seed = unpack_request(request.encode("latin-1"))
    except (ValueError, UnicodeError) as exc:
        return _failed(ERROR, f"bad request: {exc}")
    if Loaded.cls is None:
        return _failed(REFUSED, "no contract is loaded")
    entry = Loaded.methods.get(method)
    if entry is None or kind >= len(sdk.KINDS) or entry[0] != sdk.KINDS[kind]:
        return _failed(ERROR, f"the contract has no {sdk.KINDS[kind] if kind < len(sdk.KINDS) else kind} {method!r}")
    func = entry[1]
    read_only = kind == QUERY
    ctx = sdk.Context(sender, block, timestamp, contract, seed, read_only)
    state = sdk._begin(Storage, read_only)
    try:
        values = decode_plain(args)
        if type(values) is not list:
            raise sdk.ContractError("arguments must be a list")
        _check_arguments(func, values)
        result = func(object.__new__(Loaded.cls), ctx, *values)
        sdk.check_argument(result, func.__annotations__.get("return"), "the result")
        value = ctx._take_output(encode_plain(result), "the return value")
        keys, values, removed = ([], [], []) if read_only else state.changes()
        return pack_outcome(OK, "", value, ctx.events, ctx.messages, keys, values, removed).decode("latin-1")
    except (RecursionError, MemoryError, sdk.LimitExceeded) as exc:
        return _failed(LIMIT, _text(exc))
    except BaseException as exc:  # noqa: BLE001 - any failure of contract code is its outcome (SystemExit too)
        return _failed(ERROR, _text(exc))
    finally:
        sdk._end()


_SIGNATURES = {}  # function -> (argument names, their annotations): read once per instance


def _check_arguments(func, values):
    signature = _SIGNATURES.get(func)
    if signature is None:
        code = func.__code__
        names = code.co_varnames[2:code.co_argcount]
        annotations = func.__annotations__
        signature = _SIGNATURES[func] = (names, [annotations.get(name) for name in names])
    names, kinds = signature
    if len(values) != len(names):
        raise sdk.ContractError(f"{func.__name__} takes {len(names)} argument(s), got {len(values)}")
    for name, kind, value in zip(names, kinds, values, strict=True):
        sdk.check_argument(value, kind, f"argument {name!r}")


class WitWorld(wit_world.WitWorld):
    def load(self, source: str) -> str:
        return load(source)

    def load_compiled(self, code: str) -> str:
        return load_compiled(code)

    def call(self, request: str) -> str:
        return call(request)


sys.setrecursionlimit(400)  # Python frames hit this well before the VM's stack runs out
