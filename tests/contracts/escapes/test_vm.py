"""Escapes aimed at the VM itself. Contract code can reach everything the runtime
component holds: ``sys.modules`` (through any function's ``__globals__``), the real
``builtins``, ``os``, ``io``, ``time``, ``random``, the runtime's own module and the
generated bindings of the host functions (``wit_world.imports.host``), even
``componentize_py_runtime.call_import``, which calls a host import by its index. Each
attempt here uses them against the canaries:

* WASI: every file, clock, socket, process and randomness function of WASI was replaced by a
  trap when the component was built, so they end the call as "limit exceeded" (the VM
  stopped it), the same everywhere; what the snapshot holds (the environment, a pid, the
  ``random`` module's state) is a constant of the build, not the host's.
* Host functions called directly: they reach only the storage of the contract whose call
  is running (never its neighbour's in the same executor), charge gas by size, and refuse
  oversized keys and values with "limit exceeded".
* The runtime's own module patched, so that it answers the host with forged outcomes.
* Bytecode the compiler would never make.

Each ends exactly as stated, the same on two executors, and reaches no canary. Host
functions given text that is not bytes, forged outputs and outputs past the limit end as a
limit or an error of that call: the executor checks whatever the guest hands it.
"""

from __future__ import annotations

import pytest

from phala.contracts import protocol as p
from phala.contracts.values import encode_plain
from phala.core.gas import COMMAND_GAS

from .canaries import ATTACKER, GAS, LOAD, Escape, call, ids, run, source

REACH = '''
SYS = Contract.__getattr__.__globals__["typing"].sys  # the SDK's globals hold typing, typing holds sys
HOST = SYS.modules["wit_world.imports.host"]  # the bindings of the host functions
RT = SYS.modules["componentize_py_runtime"]
RUNTIME = SYS.modules["phala_runtime"]
'''
TRAP = "the VM stopped the call: wasm trap: wasm `unreachable` instruction executed"


def reach(name: str, status: str | int, reason: str, body: str, **kwargs) -> Escape:
    return Escape(name, status, reason, body, module=REACH, part="body", **kwargs)


WALKS = [  # the hierarchy walks RestrictedPython refused by name succeed, and reach nothing
    Escape("subclasses-to-os", p.OK, "", "w = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == "
           "'_wrap_close']\nreturn [len(w), sorted(w[0].__init__.__globals__['environ'])]", value=[1, []]),
    Escape("subclasses-to-os-listdir", p.LIMIT, TRAP, "w = [c for c in ().__class__.__base__.__subclasses__() if "
           "c.__name__ == '_wrap_close'][0]\nreturn w.__init__.__globals__['listdir']('/')"),
    reach("sys-modules-reached", p.OK, "", "return [n in SYS.modules for n in ('os', 'posix', 'io', 'time', 'random', "
          "'marshal', 'phala_runtime', 'wit_world.imports.host', 'socket', 'ctypes', 'subprocess')]",
          value=[True] * 8 + [False] * 3),
    reach("os-environ-is-the-builds", p.OK, "", "return dict(SYS.modules['os'].environ)", value={}),
    reach("os-getenv-canary", p.OK, "", "return SYS.modules['os'].getenv('PHALA_CANARY_SECRET')", value=None),
    reach("os-getcwd", p.OK, "", "return SYS.modules['os'].getcwd()", value="/"),
    reach("os-getpid", p.OK, "", "return SYS.modules['os'].getpid()", value=42),  # WASI's, not the executor's
    reach("os-has-no-processes", p.OK, "", "os = SYS.modules['os']\nreturn [hasattr(os, n) for n in "
          "('system', 'fork', 'execv', 'kill', 'spawnv')]", value=[False] * 5),
    reach("real-import-bypasses-the-contract-builtins", p.ERROR, "PlainValueError: value is a module",
          "return SYS.modules['builtins'].__import__('_socket')"),
]

WASI = [
    reach("time-time", p.LIMIT, TRAP, "return SYS.modules['time'].time()"),
    reach("time-monotonic", p.LIMIT, TRAP, "return SYS.modules['time'].monotonic_ns()"),
    reach("time-perf-counter", p.LIMIT, TRAP, "return SYS.modules['time'].perf_counter_ns()"),
    reach("time-sleep", p.LIMIT, TRAP, "SYS.modules['time'].sleep(100)"),
    reach("os-listdir-root", p.LIMIT, TRAP, "return SYS.modules['os'].listdir('/')"),
    reach("os-listdir-proc", p.LIMIT, TRAP, "return SYS.modules['os'].listdir('/proc')"),
    reach("os-stat-canary-file", p.LIMIT, TRAP, "return SYS.modules['os'].stat(CANARY_FILE).st_size"),
    reach("os-open-canary-file", p.LIMIT, TRAP, "return SYS.modules['os'].open(CANARY_FILE, 0)"),
    reach("posix-open-environ", p.LIMIT, TRAP, "return SYS.modules['posix'].open('/proc/self/environ', 0)"),
    reach("io-open-canary-file", p.LIMIT, TRAP, "return SYS.modules['io'].open(CANARY_FILE).read()"),
    reach("builtins-open-canary-file", p.LIMIT, TRAP, "return SYS.modules['builtins'].open(CANARY_FILE).read()"),
    reach("write-canary-file", p.LIMIT, TRAP, "SYS.modules['io'].open(CANARY_FILE, 'w').write('pwned')"),
    reach("file-finder", p.LIMIT, TRAP,
          "return repr(SYS.modules['_frozen_importlib_external'].FileFinder('/').find_spec('os'))"),
    reach("importlib-socket", p.LIMIT, TRAP,
          "return SYS.modules['importlib'].import_module('socket').create_connection(('127.0.0.1', CANARY_PORT))"),
    reach("socket-module-from-files", p.LIMIT, TRAP,
          "return SYS.modules['builtins'].__import__('socket').create_connection(('127.0.0.1', CANARY_PORT))"),
    reach("raw-socket", p.ERROR, "OSError: [Errno 66] Protocol not supported",
          "return repr(SYS.modules['builtins'].__import__('_socket').socket(2, 1))"),
    reach("raw-getaddrinfo", p.LIMIT, TRAP,
          "return repr(SYS.modules['builtins'].__import__('_socket').getaddrinfo('127.0.0.1', CANARY_PORT))"),
    reach("os-urandom", p.LIMIT, TRAP, "return SYS.modules['os'].urandom(8)"),
    reach("random-reseeded", p.LIMIT, TRAP, "return SYS.modules['random'].Random().getrandbits(64)"),
    reach("random-snapshot-state", p.OK, "", "return SYS.modules['random'].getrandbits(64)", value=int),
    reach("stdout", p.LIMIT, TRAP, "SYS.stdout.write(CANARY_FILE)"),
    reach("stderr", p.LIMIT, TRAP, "SYS.stderr.write(CANARY_FILE)\nSYS.stderr.flush()"),
    reach("os-exit", p.LIMIT, TRAP, "SYS.modules['os']._exit(3)"),
    reach("os-abort", p.LIMIT, TRAP, "SYS.modules['os'].abort()"),
    reach("sys-exit", p.ERROR, "SystemExit: 3", "SYS.exit(3)"),
]

HOST_FUNCTIONS = [
    reach("host-own-keys-only", p.OK, "", "keys, after = [], ''\nwhile True:\n    key = HOST.storage_next('', after)\n"
          "    if key is None:\n        return keys\n    keys.append(key)\n    after = key", value=["\x00loot"]),
    reach("host-neighbour-field", p.OK, "", "return [HOST.storage_get('\\x00secret'), "
          "HOST.storage_next('\\x01notes', '')]", value=[None, None]),
    reach("host-own-field", p.OK, "", "return HOST.storage_get('\\x00loot')", value="\x00"),
    reach("host-write-own-storage", p.OK, "", "HOST.storage_set('\\x00loot', '\\x04\\x10mine')\n"
          "return self.loot", value="mine"),
    reach("host-remove-own-field", p.OK, "", "HOST.storage_remove('\\x00loot')\nreturn HOST.storage_get('\\x00loot')",
          value=None),
    reach("host-oversized-key", p.LIMIT, "the VM stopped the call: a storage key of 513 bytes; the limit is 512",
          "HOST.storage_set('k' * 513, 'v')"),
    reach("host-oversized-value", p.LIMIT,
          "the VM stopped the call: a storage value of 262145 bytes; the limit is 262144",
          "HOST.storage_set('k', 'v' * ((256 << 10) + 1))"),
    reach("host-huge-value", p.OUT_OF_GAS, "out of gas", "HOST.storage_set('k', 'v' * (40 << 20))"),  # charged by size
    reach("host-huge-key-read", p.OUT_OF_GAS, "out of gas", "return HOST.storage_get('k' * (10 << 20))"),
    reach("host-huge-prefix", p.OUT_OF_GAS, "out of gas", "return HOST.storage_next('k' * (10 << 20), '')"),
    reach("host-huge-remove", p.OUT_OF_GAS, "out of gas", "HOST.storage_remove('k' * (10 << 20))"),
    reach("host-call-storm", p.OUT_OF_GAS, "out of gas", "while True:\n    HOST.storage_get('k')"),
    reach("host-wrong-type", p.LIMIT, TRAP, "HOST.storage_set(b'k', 'v')"),
    reach("host-none-value", p.LIMIT, TRAP, "HOST.storage_set('k', None)"),
    reach("host-missing-argument", p.ERROR,
          "TypeError: storage_set() missing 1 required positional argument: 'value'", "HOST.storage_set('k')"),
    reach("host-lone-surrogate", p.LIMIT, TRAP, "HOST.storage_set('k', '\\ud800')"),
    reach("call-import-get", p.OK, "", "return RT.call_import(0, ['\\x00loot'])", value="\x00"),
    reach("call-import-out-of-range", p.LIMIT, TRAP, "return RT.call_import(99999, [])"),
    reach("call-import-no-arguments", p.LIMIT, TRAP, "return RT.call_import(0, [])"),
    reach("call-import-wrong-types", p.LIMIT, TRAP, "return RT.call_import(1, [1, 2])"),
    reach("call-import-negative", p.ERROR, "OverflowError: can't convert negative int to unsigned",
          "return RT.call_import(-1, [])"),
]

RUNTIME = [  # the runtime's module patched: it answers the host with forged outcomes
    reach("forged-encoding", p.ERROR, "the runtime answered nonsense: input too short",
          "RUNTIME.pack_outcome = lambda *parts: b'\\xff'\nreturn 1"),
    reach("forged-status", p.ERROR, "the runtime answered an unknown status",
          "old = RUNTIME.pack_outcome\nRUNTIME.pack_outcome = lambda *parts: old(9, *parts[1:])\nreturn 1"),
    reach("forged-unpaired-writes", p.ERROR, "the runtime answered writes that do not pair up",
          "old = RUNTIME.pack_outcome\nRUNTIME.pack_outcome = lambda s, m, v, e, ms, k, vs, r: old(s, m, v, e, ms, "
          "k + [b'x'], vs, r)\nreturn 1"),
    reach("forged-oversized-write", p.LIMIT, "a storage key of 600 bytes; the limit is 512",
          "old = RUNTIME.pack_outcome\nRUNTIME.pack_outcome = lambda s, m, v, e, ms, k, vs, r: old(s, m, v, e, ms, "
          "[b'k' * 600], [b'v'], r)\nreturn 1"),
    reach("forged-event-not-bytes", p.ERROR, "TypeError: can't concat list to bytes",
          "ctx.events.append(['forged'])"),
    reach("reenter-the-runtime-as-the-neighbour", p.OK, "the contract has no handler 'attack'",
          "W = SYS.modules['phala.contracts.wire']\n"
          "return RUNTIME.call(W.pack_request(3, 'attack', SYS.modules['phala.contracts.values'].encode_plain([]), None,"
          " 1, 0, NEIGHBOUR, bytes(32)).decode('latin-1'))", value=str),
    Escape("impersonate-the-neighbour", p.OK, "", "ctx.contract_id = NEIGHBOUR\nctx.sender = NEIGHBOUR\n"
           "self.loot = 'mine'", value=None),  # its own view of the call: the writes are still its own
]

ALL = WALKS + WASI + HOST_FUNCTIONS + RUNTIME


@pytest.mark.parametrize("escape", ALL, ids=ids(ALL))
def test_escape(canaries, escape):
    outcome = run(canaries, escape)
    if escape.name == "impersonate-the-neighbour":
        assert outcome.writes == ((b"\x00loot", encode_plain("mine")),)  # in the attacker's storage


NOT_LATIN_1 = {  # the host functions carry bytes as latin-1 text: these strings are not
    "storage-get": "HOST.storage_get('\\u1234')",
    "storage-set-key": "HOST.storage_set('\\u0100', 'v')",
    "storage-set-value": "HOST.storage_set('k', '\\u0100')",
    "storage-remove": "HOST.storage_remove('\\u20ac')",
    "storage-next-prefix": "HOST.storage_next('\\u20ac', '')",
    "storage-next-after": "HOST.storage_next('', '\\u20ac')",
}


@pytest.mark.parametrize("name", sorted(NOT_LATIN_1))
def test_host_functions_refuse_text_that_is_not_bytes(canaries, name):
    """Whatever the fix, the call ends (deterministically, the same on both executors) and
    the executor lives."""
    outcome = canaries.attempt(source(NOT_LATIN_1[name], module=REACH, canaries=canaries))
    assert outcome.status in (p.ERROR, p.LIMIT), outcome
    canaries.check([outcome])


FORGED = {  # outputs the guest hands the host without the SDK (ctx.events is a plain list)
    "event-not-a-pair": "ctx.events.append(b'garbage')\nreturn 1",
    "event-for-17-accounts": "ctx.events.append(RUNTIME.encode_plain(([b'a' * 32] * 17, 1)))\nreturn 1",
    "event-non-canonical": "ctx.events.append(bytes([7, 8, 6, 0, 3, 4, 0]))\nreturn 1",
    "message-not-a-pair": "ctx.messages.append(b'garbage')\nreturn 1",
    "message-to-nobody": "ctx.messages.append(RUNTIME.encode_plain((b'short', 1)))\nreturn 1",
    "value-non-canonical": "ctx._take_output = lambda data, what: b'\\xff'\nreturn 1",
}


@pytest.mark.parametrize("name", sorted(FORGED))
def test_forged_outputs_are_refused_by_the_executor(canaries, name):
    outcome = canaries.attempt(source(FORGED[name], module=REACH, canaries=canaries))
    assert outcome.status != p.OK, outcome


OVERSIZED = {  # outputs past the SDK's 1 MiB limit, and past a 16 MiB frame
    "return-value": "ctx.output_left = 1 << 40\nreturn b'x' * (17 << 20)",
    "events": "ctx.events.append(b'x' * (17 << 20))",
    "messages": "ctx.messages.append(b'x' * (17 << 20))",
}


@pytest.mark.parametrize("name", sorted(OVERSIZED))
def test_outputs_past_the_limit_are_a_limit_of_the_call(canaries, name):
    outcome = canaries.attempt(source(OVERSIZED[name], module=REACH, canaries=canaries), COMMAND_GAS * 10)
    assert outcome.status == p.LIMIT, outcome


WILD_BYTECODE = {  # what these read depends on the heap's layout, so only determinism is pinned
    "load-const-out-of-range": "LOAD_CONST', 200",
    "load-fast-out-of-range": "LOAD_FAST', 250",
    "jump-out-of-the-code": "JUMP_FORWARD', 255",
}


@pytest.mark.parametrize("name", sorted(WILD_BYTECODE))
def test_wild_bytecode_stays_in_the_vm(canaries, name):
    """Bytecode the compiler never makes reads memory it should not: inside the instance's
    linear memory, deterministically, so it runs or fails the same way on both executors
    (``attempt`` compares them) and reaches no canary."""
    op, arg = WILD_BYTECODE[name].split("', ")
    body = (f"dis = SYS.modules['dis']\nf = lambda: 0\nf.__code__ = f.__code__.replace(co_consts=(), "
            f"co_code=bytes([dis.opmap['{op}'], {arg}, dis.opmap['RETURN_VALUE'], 0]))\nreturn repr(f())")
    outcome = canaries.attempt(source(body, module=REACH, canaries=canaries))
    assert outcome.status in (p.OK, p.ERROR, p.LIMIT), outcome
    garbage = canaries.attempt(source("return SYS.modules['marshal'].loads(b'\\xe3' + bytes(200))", module=REACH,
                                      canaries=canaries))
    assert (garbage.status, garbage.message) == (p.ERROR, "ValueError: bad marshal data (unknown type code)")


def test_the_module_body_cannot_write_storage_at_install(canaries):
    """The module body runs at install over empty, read-only storage: a write refuses the
    code."""
    escape = Escape("module-body-writes", LOAD, "the module body stopped the VM: a query cannot change storage",
                    module=REACH + "HOST.storage_set('\\x00loot', '\\x00')\n")
    run(canaries, escape)


def test_a_query_cannot_write_storage_however_it_tries(canaries):
    """A query's instance refuses the host's storage writes, and its outcome may carry none."""
    klass = ("@query\ndef direct(self, ctx):\n    HOST.storage_set('\\x00loot', '\\x04\\x04x')\n"
             "@query\ndef forged(self, ctx):\n    old = RUNTIME.pack_outcome\n"
             "    RUNTIME.pack_outcome = lambda s, m, v, e, ms, k, vs, r: old(s, m, v, e, ms, [b'\\x00loot'], [b'\\x00'], r)\n"
             "@query\ndef flag(self, ctx):\n    ctx._read_only = False\n    self.loot = 'x'\n    ctx.emit('x')\n"
             "    return self.loot\n"
             "@query\ndef peek(self, ctx):\n    return self.loot\n")
    src = source(module=REACH, klass=klass, canaries=canaries)
    answers = []
    for host in canaries.attackers:
        ex = host.executor
        ex.remove(ATTACKER)
        assert ex.install(ATTACKER, src).status == p.OK
        assert ex.run(ATTACKER, [call(p.CONSTRUCTOR, "init", [], ATTACKER)])[0][0].status == p.OK
        answers.append([ex.query(ATTACKER, call(p.QUERY, name, [], ATTACKER, GAS, 2))
                        for name in ("direct", "forged", "flag", "peek")])
    assert answers[0] == answers[1]
    direct, forged, flag, peek = answers[0]
    assert (direct.status, direct.message) == (p.LIMIT, "the VM stopped the call: a query cannot write storage")
    assert (forged.status, forged.message) == (p.ERROR, "the runtime answered writes that do not pair up")
    # a query that clears its read-only flag gets past the SDK, not past the executor
    assert (flag.status, flag.message) == (p.ERROR, "a query cannot emit events or send messages")
    assert (peek.status, peek.value) == (p.OK, encode_plain(None))  # still the constructor's None
    canaries.check([])
