"""What contract code runs against: the hooks the policy inserted, and the builtins it gets.

Everything here runs inside the executor process. :func:`make_globals` builds a contract
module's globals for one :class:`~phala.contracts.gas.Meter`: the guarded builtins (a fixed,
deterministic list; C-level work charged by size before it runs, or refused), and the hooks
of :mod:`phala.contracts.policy` (``_gas_``, ``_enter_``, ``_binop_``, ``_getattr_``, …).

Attribute access is a whitelist: methods of the plain types that are listed in
:data:`METHODS`, the state and methods of the contract class, and what SDK objects declare
in ``public``. Anything else (frames, code objects, ``gi_frame``, ``f_globals``, ``mro``…)
raises :class:`SandboxViolation`, which contract code cannot catch.
"""

from __future__ import annotations

import builtins as _builtins
import operator
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from .gas import (
    CALL,
    LOOP,
    MAX_CALL_DEPTH,
    LimitExceeded,
    Meter,
    check_alloc,
    check_int_bits,
    units,
)


class SandboxViolation(BaseException):
    """Contract code tried something the sandbox forbids (the message says what). Not an
    ``Exception``: contract code cannot catch it."""


PLAIN_SCALARS = (type(None), bool, int, str, bytes)
SIZED = (str, bytes, list, tuple, dict, set, frozenset, range)
MAX_NESTING = 64  # as for plain values: deeper structures cannot be formatted or compared


def _int_words(v: int) -> int:
    return v.bit_length() >> 6


def shallow(obj: Any) -> int:
    """Size of ``obj`` for charging: length, or 64-bit words of an int."""
    tp = type(obj)
    if tp is int or tp is bool:
        return _int_words(obj)
    if tp in SIZED:
        return len(obj)
    return 0


class ContractBase:
    """Base of the contract class (the SDK's ``Contract``); see :func:`contract_metaclass`."""


_CONTRACT_CLASSES: set[type] = set()


def is_contract_object(obj: Any) -> bool:
    return type(obj) in _CONTRACT_CLASSES


class Guards:
    """The hooks and builtins of one contract module, charging one meter."""

    def __init__(self, meter: Meter):
        self.meter = meter

    # -- walking values (bounded, charged as it goes) ------------------------------------------

    def deep(self, obj: Any, what: str) -> int:
        """Charge for visiting every element of ``obj`` (for formatting, comparing, hashing)
        and check it holds only plain values; returns its weight (elements plus their sizes:
        a bound on the work of comparing it with anything)."""
        charge = self.meter.charge
        stack = [(obj, 0)]
        weight = 0
        while stack:
            item, depth = stack.pop()
            tp = type(item)
            if tp in PLAIN_SCALARS:
                size = shallow(item)
                weight += 1 + size
                charge(units(size))
                continue
            if depth >= MAX_NESTING:
                raise LimitExceeded(f"{what} of a value nested more than {MAX_NESTING} levels deep")
            if tp is list or tp is tuple or tp is set or tp is frozenset or tp is dict:
                size = len(item) * (2 if tp is dict else 1)
                weight += 1 + size
                charge(units(len(item)))
                # checked before the stack grows (a list of 16M items made 16M tuples here and
                # ran out of memory before the check)
                if len(stack) + size > 1 << 20:
                    raise LimitExceeded(f"{what} of a value with more than {1 << 20} elements")
                if tp is dict:
                    stack.extend((child, depth + 1) for child in item.keys())
                    stack.extend((child, depth + 1) for child in item.values())
                else:
                    stack.extend((child, depth + 1) for child in item)
            elif tp is range:
                weight += 1
                charge(1)
            else:
                raise SandboxViolation(f"{what} of a {tp.__name__}: only plain values can be {what}ed")
        return weight

    def key(self, key: Any) -> Any:
        """Check that ``key`` may go in a set or be a dict key, and charge for hashing it,
        before any C code hashes it: only plain scalars and tuples of them, nested at most
        MAX_NESTING deep. (The hash of anything else is its address, so a set's order would
        differ between workers; hashing a tuple walks all of it, unmetered, and a deeply
        nested one overflows the C stack and kills the executor.)"""
        charge = self.meter.charge
        stack = [(key, 0)]
        while stack:
            item, depth = stack.pop()
            tp = type(item)
            if tp in PLAIN_SCALARS:
                charge(units(shallow(item)))
            elif tp is tuple:
                if depth >= MAX_NESTING:
                    raise LimitExceeded(f"a set or dict key nested more than {MAX_NESTING} levels deep")
                charge(units(len(item)))
                stack.extend((child, depth + 1) for child in item)
            else:
                raise SandboxViolation(f"a set or dict key must be a plain value, not a {tp.__name__}")
        return key

    def keys(self, iterable: Any) -> list:
        """``{*items}`` in a set display: the items, each checked by :meth:`key`."""
        items = list(self.getiter(iterable))
        self.deep_keys(items)
        return items

    def mapping(self, obj: Any) -> Any:
        """``{**d}`` in a dict display: copying ``d`` is charged by its size."""
        if type(obj) is not dict:
            raise SandboxViolation(f"'**' in a dict display takes a dict, not a {type(obj).__name__}")
        self.meter.charge(units(len(obj)))
        return obj

    def caught(self) -> None:
        """First statement of every ``except`` block: running out of memory or Python's
        recursion limit are limits of the executor, not errors a contract may catch with
        ``except Exception`` and carry on from (where memory runs out is not the same on
        every worker)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, MemoryError | RecursionError):
            raise exc

    def ordering(self, items: Any, key: Any, what: str, rounds: int) -> Any:
        """Charge for the comparisons of sorting ``items`` (``rounds``: about log n of them per
        item) or picking the least or greatest (one round), done in C: each costs up to the
        weight of the values compared. Without ``key`` the items' weights are charged now;
        with one, the returned key charges each key as it is made, before it is compared."""
        charge = self.meter.charge
        if key is not None:
            def charged_key(item: Any) -> Any:
                made = key(item)
                charge(units(self.deep(made, what) * rounds))
                return made
            return charged_key
        kinds = set(map(type, items))  # the common cases at C speed
        if kinds <= {int, bool}:
            weight = len(items) + (sum(map(int.bit_length, items)) >> 6)
        elif kinds == {str} or kinds == {bytes}:
            weight = len(items) + sum(map(len, items))
        else:
            weight = sum(self.deep(item, what) for item in items)
        charge(units(weight * rounds))
        return None

    # -- metering hooks ------------------------------------------------------------------------

    def gas(self, amount: int) -> None:
        self.meter.charge(amount)

    def enter(self) -> None:
        self.meter.charge(CALL)
        meter = self.meter
        meter.depth += 1
        if meter.depth > MAX_CALL_DEPTH:
            raise LimitExceeded(f"calls nested more than {MAX_CALL_DEPTH} deep")

    def leave(self) -> None:
        self.meter.depth -= 1

    def charged(self, value: Any) -> Any:
        self.meter.charge(CALL)
        return value

    def getiter(self, obj: Any) -> Iterator:
        self.meter.charge(LOOP)
        if type(obj) in (set, frozenset):
            self.deep_keys(obj)
        return self._metered(iter(obj))

    def _metered(self, it: Iterator) -> Iterator:
        charge = self.meter.charge
        for item in it:
            charge(LOOP)
            yield item

    def deep_keys(self, items: Iterable) -> None:
        for item in items:
            self.key(item)

    # -- operators -----------------------------------------------------------------------------

    def binop(self, op: str, a: Any, b: Any) -> Any:
        charge = self.meter.charge
        ta, tb = type(a), type(b)
        if op == "*":
            if ta in (str, bytes, list, tuple) and tb in (int, bool):
                size = len(a) * max(b, 0)
                check_alloc(size, "repetition")
                charge(units(size))
            elif tb in (str, bytes, list, tuple) and ta in (int, bool):
                return self.binop(op, b, a)
            elif ta in (int, bool) and tb in (int, bool):
                bits = a.bit_length() + b.bit_length()
                check_int_bits(bits, "multiplication")
                charge(units((_int_words(a) + 1) * (_int_words(b) + 1)))
            return a * b
        if op == "**":
            if ta in (int, bool) and tb in (int, bool):
                if b < 0:
                    raise SandboxViolation("a negative exponent makes a float")
                bits = max(a.bit_length(), 1) * b if a not in (0, 1, -1) else 1
                check_int_bits(bits, "exponentiation")
                charge(units((bits >> 6) * max(b.bit_length(), 1)))
            return a**b
        if op == "<<":
            if ta in (int, bool) and tb in (int, bool):
                check_int_bits(a.bit_length() + max(b, 0), "shift")
                charge(units(_int_words(a) + (max(b, 0) >> 6)))
            return a << b
        if op == "%" and ta in (str, bytes):
            raise SandboxViolation("'%' formatting is not allowed: use f-strings")
        if (op == "//" or op == "%") and ta in (int, bool) and tb in (int, bool):
            # Long division is quadratic like multiplication: charged by size alone, a loop of
            # 65536-bit divisions did a millisecond of work per few units of gas.
            charge(units((_int_words(a) + 1) * (_int_words(b) + 1)))
            return _BINOPS[op](a, b)
        if op in ("|", "&", "^", "-") and (ta in _DICT_VIEWS or tb in _DICT_VIEWS):
            # d.keys() | iterable hashes whatever the iterable holds and makes a set of it,
            # past the checks every other way of making a set goes through.
            raise SandboxViolation("set operations on dict views are not allowed: use set(d)")
        if op == "+":
            if ta in (str, bytes, list, tuple) and tb is ta:
                size = len(a) + len(b)
                check_alloc(size, "concatenation")
                charge(units(size))
                return a + b
        if ta in (int, bool) and tb in (int, bool):
            if op == "+" or op == "-":
                check_int_bits(max(a.bit_length(), b.bit_length()) + 1, "addition")
            charge(units(max(_int_words(a), _int_words(b))))
        else:
            charge(units(shallow(a) + shallow(b)))
        return _BINOPS[op](a, b)

    def inplacevar(self, op: str, a: Any, b: Any) -> Any:
        return self.binop(op[:-1], a, b)

    def compare(self, op: str, a: Any, b: Any) -> Any:
        ta, tb = type(a), type(b)
        if tb is range and op in ("in", "not in") and ta not in (int, bool):
            # range's 'in' scans every element, unmetered in C, for anything but an int (None in
            # range(10**12) ran past the watchdog); nothing else a contract makes equals an int.
            self.meter.charge(1)
            return op == "not in"
        if ta in PLAIN_SCALARS and tb in PLAIN_SCALARS:
            self.meter.charge(units(max(shallow(a), shallow(b))))
        elif op in ("is", "is not"):
            self.meter.charge(1)
        elif op in ("in", "not in") and tb in (dict, set, frozenset):
            self.deep(a, "compar")
        else:
            self.deep(a, "compar")
            self.deep(b, "compar")
        return _COMPARES[op](a, b)

    def format(self, value: Any, conversion: str) -> str:
        self.deep(value, "format")
        text = repr(value) if conversion == "r" else str(value)
        self.meter.charge(units(len(text)))
        return text

    # -- attribute and item access -------------------------------------------------------------

    def getattr(self, obj: Any, name: str, default: Any = None) -> Any:
        if type(name) is not str or name.startswith("_"):
            raise SandboxViolation(f"attribute {name!r} is not accessible")
        self.meter.charge(1)
        tp = type(obj)
        allowed = METHODS.get(tp)
        if allowed is not None:
            if name not in allowed:
                raise SandboxViolation(f"{tp.__name__}.{name} is not available to contracts")
            return _ChargedMethod(self, obj, name, allowed[name])
        if tp in _CONTRACT_CLASSES:
            if name in obj.__dict__:
                return obj.__dict__[name]
            for cls in tp.__mro__:
                if cls in _CONTRACT_CLASSES and name in cls.__dict__:
                    return getattr(obj, name)
            raise SandboxViolation(f"{tp.__name__} has no attribute {name!r}")
        public = getattr(tp, "public", None)
        if isinstance(public, frozenset) and name in public:
            return getattr(obj, name)
        if isinstance(obj, Exception) and name == "args":
            return obj.args
        raise SandboxViolation(f"attribute {name!r} of a {tp.__name__} is not accessible")

    def getitem(self, obj: Any, key: Any) -> Any:
        if type(key) is slice:
            length = len(obj) if type(obj) in SIZED else 0
            start, stop, step = key.indices(length)
            self.meter.charge(units(len(range(start, stop, step))))
        else:
            self.meter.charge(1)
            if type(obj) is dict:
                self.key(key)  # hashed by the lookup
        return obj[key]

    def write(self, obj: Any) -> Any:
        tp = type(obj)
        if tp is list:
            return _ListWrite(obj, self)
        if tp is dict:
            return _KeyCheckedWrite(obj, self)
        if tp in _CONTRACT_CLASSES:
            return obj
        raise SandboxViolation(f"a {tp.__name__} cannot be modified by contract code")

    def apply(self, func: Callable, *args: Any, **kwargs: Any) -> Any:
        self.meter.charge(units(len(args) + len(kwargs)))
        return func(*args, **kwargs)

    def metaclass(self, name: str, bases: tuple, namespace: dict) -> type:
        for base in bases:
            if base is not ContractBase and not issubclass(base, ContractBase):
                raise SandboxViolation(f"class {name} may derive only from the SDK's Contract")
        if not bases:
            raise SandboxViolation(f"class {name} must derive from the SDK's Contract")
        cls = type(name, bases, namespace)
        _CONTRACT_CLASSES.add(cls)
        return cls


class _KeyCheckedWrite:
    """``d[k] = v`` on a dict: the key must be plain (so iteration order and hashing never
    depend on object addresses), checked and charged by :meth:`Guards.key`."""

    __slots__ = ("target", "guards")

    def __init__(self, target: dict, guards: Guards):
        self.target, self.guards = target, guards

    def __setitem__(self, key: Any, value: Any) -> None:
        self.target[self.guards.key(key)] = value

    def __delitem__(self, key: Any) -> None:
        del self.target[self.guards.key(key)]


class _ListWrite:
    """``l[i] = v``, ``l[a:b] = items`` and ``del l[...]`` on a list. A slice assignment
    consumes any iterable and both it and a deletion move the tail of the list, in C: they are
    charged by size (``l[:] = zip(range(10**7))`` or ``del l[0]`` in a loop were nearly free)."""

    __slots__ = ("target", "guards")

    def __init__(self, target: list, guards: Guards):
        self.target, self.guards = target, guards

    def __setitem__(self, key: Any, value: Any) -> None:
        if type(key) is slice:
            if type(value) not in SIZED:
                value = list(self.guards.getiter(value))
            self.guards.meter.charge(units(len(self.target) + len(value)))
        self.target[key] = value

    def __delitem__(self, key: Any) -> None:
        self.guards.meter.charge(units(len(self.target)))
        del self.target[key]


_DICT_VIEWS = (type({}.keys()), type({}.items()))


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "//": operator.floordiv, "%": operator.mod,
    ">>": operator.rshift, "|": operator.or_, "^": operator.xor, "&": operator.and_,
}
_COMPARES: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
    ">=": operator.ge, "is": operator.is_, "is not": operator.is_not,
    "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
}


# -- methods of the plain types: name -> cost(obj, args) in elements ---------------------------


def _len(obj: Any, *args: Any, **kwargs: Any) -> int:
    return shallow(obj) + sum(shallow(a) for a in args)


def _replace(s: Any, old: Any = b"", new: Any = b"", count: int = -1, *rest: Any) -> int:
    n = len(s)
    made = (n + 1) * len(new) + n if not old else (n // max(len(old), 1)) * len(new) + n
    check_alloc(made, "replace")
    return made


def _width(s: Any, width: Any = 0, *rest: Any) -> int:
    size = max(len(s), width if type(width) is int else 0)
    check_alloc(size, "padding")
    return size


def _to_bytes(n: int, length: Any = 1, *rest: Any, **kwargs: Any) -> int:
    size = length if type(length) is int else 0
    check_alloc(size, "to_bytes")
    return size


CODECS = frozenset({"utf-8", "utf8", "ascii", "latin-1", "latin1"})
CODEC_ERRORS = frozenset({"strict", "ignore", "replace"})


def check_codec(encoding: Any, errors: Any = "strict") -> None:
    """Only codecs built into the interpreter: looking any other up imports its module, reading
    files (refused under seccomp with a message naming a path that differs between machines)."""
    name = encoding.lower().replace("_", "-") if type(encoding) is str else None
    if name not in CODECS:
        shown = encoding[:40] if type(encoding) is str else type(encoding).__name__
        raise SandboxViolation(f"the codec {shown!r} is not available to contracts (only {', '.join(sorted(CODECS))})")
    if type(errors) is not str or errors not in CODEC_ERRORS:
        raise SandboxViolation(f"codec errors must be one of {', '.join(sorted(CODEC_ERRORS))}")


def _codec(s: Any, encoding: Any = "utf-8", errors: Any = "strict", **kwargs: Any) -> int:
    check_codec(kwargs.get("encoding", encoding), kwargs.get("errors", errors))
    return len(s)


def _sort(lst: list, *args: Any, **kwargs: Any) -> int:
    n = len(lst)
    return n * max(n.bit_length(), 1)


def _join(sep: Any, parts: Any) -> int:
    parts = list(parts) if type(parts) not in (list, tuple) else parts
    size = sum(shallow(p) for p in parts) + len(sep) * len(parts)
    check_alloc(size, "join")
    return size


_STR_METHODS = {
    name: _len
    for name in (
        "upper", "lower", "strip", "lstrip", "rstrip", "split", "rsplit", "startswith",
        "endswith", "find", "rfind", "index", "rindex", "count", "isdigit", "isalpha", "isalnum",
        "isspace", "islower", "isupper", "splitlines", "partition", "rpartition", "title",
        "capitalize", "removeprefix", "removesuffix", "casefold", "swapcase",
    )
}
_BYTES_METHODS = {
    name: _len
    for name in (
        "hex", "startswith", "endswith", "find", "rfind", "index", "count", "split",
        "strip", "lstrip", "rstrip", "removeprefix", "removesuffix",
    )
}
METHODS: dict[type, dict[str, Callable[..., int]]] = {
    str: {**_STR_METHODS, "replace": _replace, "join": _join, "center": _width, "ljust": _width,
          "rjust": _width, "zfill": _width, "encode": _codec},
    bytes: {**_BYTES_METHODS, "replace": _replace, "join": _join, "decode": _codec},
    list: {**{n: _len for n in ("append", "extend", "insert", "pop", "remove", "index", "count",
                                 "reverse", "copy", "clear")}, "sort": _sort},
    dict: {n: _len for n in ("get", "keys", "values", "items", "pop", "setdefault", "update", "copy", "clear")},
    set: {n: _len for n in ("add", "remove", "discard", "union", "intersection", "difference",
                             "issubset", "issuperset", "copy", "clear", "update")},
    tuple: {n: _len for n in ("index", "count")},
    int: {"bit_length": _len, "to_bytes": _to_bytes},
    bool: {"bit_length": _len},
}


class _ChargedMethod:
    """A method of a plain value, charged by the size it works on when called."""

    __slots__ = ("guards", "obj", "name", "cost")

    def __init__(self, guards: Guards, obj: Any, name: str, cost: Callable[..., int]):
        self.guards, self.obj, self.name, self.cost = guards, obj, name, cost

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        guards, obj, name = self.guards, self.obj, self.name
        if name == "join" and args:
            args = (list(guards.getiter(args[0])), *args[1:])
        tp = type(obj)
        if name in _CONSUMERS:
            # an iterator argument (zip, map, enumerate…) would be consumed in C, unmetered
            args = tuple(a if type(a) in SIZED else list(guards.getiter(a)) for a in args)
        if tp is set and name in _CONSUMERS:
            guards.deep_keys([k for a in args for k in a])  # hashed, and some become members
        elif (tp is set and name in ("add", "remove", "discard") or tp is dict and name in ("get", "pop", "setdefault")) and args:
            guards.key(args[0])  # hashed by the lookup
        elif tp in (list, tuple) and name in ("count", "index", "remove") and args:
            # compared with every element, in C: each comparison costs up to its weight
            guards.meter.charge(units(len(obj) * guards.deep(args[0], "compar")))
        elif tp is list and name == "sort":
            kwargs["key"] = guards.ordering(obj, kwargs.get("key"), "sort", max(len(obj).bit_length(), 1))
        elif tp is dict and name == "update":
            guards.deep_keys([k for a in args for k in (a.keys() if type(a) is dict else ())])
            if args and type(args[0]) is not dict or kwargs:
                raise SandboxViolation("dict.update takes one dict")
        if name == "sort" and kwargs.get("key") is not None:
            guards.meter.charge(units(len(obj)))
        guards.meter.charge(units(self.cost(obj, *args, **kwargs)))
        return getattr(obj, name)(*args, **kwargs)


_CONSUMERS = frozenset({"extend", "update", "union", "intersection", "difference", "issubset", "issuperset"})


# -- builtins --------------------------------------------------------------------------------


class Builtin:
    """A guarded builtin. ``real`` is the type it stands for (for ``isinstance`` and for
    annotations such as ``list[int]``), if any."""

    __slots__ = ("name", "func", "real")

    def __init__(self, name: str, func: Callable, real: type | None = None):
        self.name, self.func, self.real = name, func, real

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __getitem__(self, params: Any) -> Any:
        if self.real is None:
            raise SandboxViolation(f"{self.name}[...] is not a type")
        alias = self.real[params]
        return _Annotation(alias.__origin__, alias.__args__)

    def __repr__(self) -> str:
        return f"<builtin {self.name}>"


class _Annotation(types.GenericAlias):
    """``list[int]`` and the like, for annotations. A plain ``list[int]`` can be called, and
    would make a list with the real, unguarded ``list`` (``list[int](range(10**7))`` cost no
    gas; ``set[int](...)`` skipped the key checks)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise SandboxViolation(f"{self!r} is an annotation: call {self.__origin__.__name__}(...) to make one")


def make_builtins(g: Guards) -> dict[str, Any]:
    """The fixed, deterministic builtins a contract sees, charging ``g``'s meter (whichever
    meter ``g`` holds at the time of the call)."""

    def charge(amount: int) -> None:
        g.meter.charge(amount)

    def sized(obj: Any, what: str) -> list | tuple | dict | set | frozenset | str | bytes | range:
        """Charge for materialising ``obj``: its size up front when known, else per item."""
        tp = type(obj)
        if tp in SIZED:
            check_alloc(len(obj), what)
            charge(units(len(obj)))
            return obj
        items = []
        for item in g.getiter(obj):
            items.append(item)
            if len(items) > (1 << 24):
                raise LimitExceeded(f"{what} of more than {1 << 24} items")
        return items

    def list_(iterable: Any = ()) -> list:
        return list(sized(iterable, "list"))

    def tuple_(iterable: Any = ()) -> tuple:
        return tuple(sized(iterable, "tuple"))

    def set_(iterable: Any = ()) -> set:
        items = sized(iterable, "set")
        g.deep_keys(items)
        return set(items)

    def dict_(iterable: Any = (), **kwargs: Any) -> dict:
        pairs = sized(iterable.items() if type(iterable) is dict else iterable, "dict")
        result = {}
        for key, value in pairs:
            g.deep_keys((key,))
            result[key] = value
        result.update(kwargs)
        return result

    def range_(*args: int) -> range:
        charge(1)
        if any(type(a) not in (int, bool) for a in args):
            raise TypeError("range takes integers")
        return range(*args)

    def len_(obj: Any) -> int:
        charge(1)
        return len(obj)

    def sum_(iterable: Any, start: int = 0) -> int:
        items = sized(iterable, "sum")
        total = start
        for item in items:
            total = g.binop("+", total, item)
        return total

    def minmax(real: Callable) -> Callable:
        def pick(*args: Any, **kwargs: Any) -> Any:
            items = sized(args[0], real.__name__) if len(args) == 1 else args
            charge(units(len(items)))
            kwargs["key"] = g.ordering(items, kwargs.get("key"), "compar", 1)
            return real(items, **kwargs)
        return pick

    def sorted_(iterable: Any, key: Any = None, reverse: bool = False) -> list:
        if type(iterable) in SIZED:  # charge the whole sort before making anything
            n = len(iterable)
            check_alloc(n, "sorted")
            charge(units(n * max(n.bit_length(), 1)))
        items = list(sized(iterable, "sorted"))
        key = g.ordering(items, key, "sort", max(len(items).bit_length(), 1))
        return sorted(items, key=key, reverse=reverse)

    def bytes_(source: Any = b"", encoding: Any = None) -> bytes:
        if type(source) in (int, bool):
            check_alloc(source, "bytes")
            charge(units(source))
            return bytes(source)
        if type(source) is str:
            check_codec("utf-8" if encoding is None else encoding)
            charge(units(len(source)))
            return source.encode("utf-8" if encoding is None else encoding)
        items = sized(source, "bytes")
        return bytes(items)

    def str_(value: Any = "") -> str:
        return g.format(value, "s")

    def repr_(value: Any) -> str:
        return g.format(value, "r")

    def int_(value: Any = 0, base: int = 10) -> int:
        if type(value) in (str, bytes):
            charge(units(len(value)))
            made = int(value, base)
            # in a base that is a power of two the digits have no length limit: int('f' * 10**6, 16)
            check_int_bits(made.bit_length(), "int")
            return made
        if type(value) in (int, bool):
            charge(1)
            return int(value)
        raise TypeError(f"int() of a {type(value).__name__}")

    def isinstance_(obj: Any, kinds: Any) -> bool:
        charge(1)
        kinds = kinds if type(kinds) is tuple else (kinds,)
        real = []
        for kind in kinds:
            if type(kind) is Builtin and kind.real is not None:
                real.append(kind.real)
            elif type(kind) is type and (kind in _CONTRACT_CLASSES or kind in EXCEPTIONS.values()):
                # (type(kind) first: hashing a deeply nested tuple would overflow the C stack)
                real.append(kind)
            else:
                raise SandboxViolation("isinstance takes builtin types or contract classes")
        return isinstance(obj, tuple(real))

    def lazy(real: Callable) -> Callable:
        def make(*args: Any, **kwargs: Any) -> Any:
            charge(units(len(args)))
            return real(*args, **kwargs)
        return make

    def abs_(x: int) -> int:
        charge(units(shallow(x)))
        return abs(x)

    def divmod_(a: int, b: int) -> tuple:
        return (g.binop("//", a, b), g.binop("%", a, b))

    def chr_(i: int) -> str:
        charge(1)
        return chr(i)

    def ord_(c: str) -> int:
        charge(1)
        return ord(c)

    def bool_(x: Any = False) -> bool:
        charge(units(shallow(x)))
        return bool(x)

    def anyall(real: Callable) -> Callable:
        def check(iterable: Any) -> bool:
            return real(g.getiter(iterable))
        return check

    def hexbin(real: Callable) -> Callable:
        def convert(x: int) -> str:
            charge(units(shallow(x) * 16))
            return real(x)
        return convert

    table: dict[str, Any] = {
        "list": Builtin("list", list_, list),
        "tuple": Builtin("tuple", tuple_, tuple),
        "set": Builtin("set", set_, set),
        "dict": Builtin("dict", dict_, dict),
        "int": Builtin("int", int_, int),
        "str": Builtin("str", str_, str),
        "bytes": Builtin("bytes", bytes_, bytes),
        "bool": Builtin("bool", bool_, bool),
        "range": Builtin("range", range_),
        "len": Builtin("len", len_),
        "sum": Builtin("sum", sum_),
        "min": Builtin("min", minmax(min)),
        "max": Builtin("max", minmax(max)),
        "sorted": Builtin("sorted", sorted_),
        "repr": Builtin("repr", repr_),
        "isinstance": Builtin("isinstance", isinstance_),
        "enumerate": Builtin("enumerate", lazy(enumerate)),
        "zip": Builtin("zip", lazy(zip)),
        "reversed": Builtin("reversed", lazy(reversed)),
        "map": Builtin("map", lazy(map)),
        "filter": Builtin("filter", lazy(filter)),
        "abs": Builtin("abs", abs_),
        "divmod": Builtin("divmod", divmod_),
        "chr": Builtin("chr", chr_),
        "ord": Builtin("ord", ord_),
        "any": Builtin("any", anyall(any)),
        "all": Builtin("all", anyall(all)),
        "hex": Builtin("hex", hexbin(hex)),
        "bin": Builtin("bin", hexbin(bin)),
        "None": None,
        "True": True,
        "False": False,
    }
    table.update(EXCEPTIONS)
    return table


EXCEPTIONS: dict[str, type] = {
    e.__name__: e
    for e in (
        Exception, ArithmeticError, AssertionError, IndexError, KeyError, LookupError,
        OverflowError, TypeError, ValueError, ZeroDivisionError,
    )
}


def make_globals(g: Guards, sdk: dict[str, Any]) -> dict[str, Any]:
    """The globals a contract module runs with: guarded builtins, the policy's hooks, and
    nothing else (``__builtins__`` holds only the guarded builtins)."""
    builtins = make_builtins(g)
    builtins["__import__"] = _sdk_importer(sdk)
    builtins["__build_class__"] = _builtins.__build_class__  # runs the class body; __metaclass__ checks bases
    return {
        "__builtins__": builtins,
        "__name__": "contract",
        "__metaclass__": g.metaclass,
        "_gas_": g.gas,
        "_enter_": g.enter,
        "_leave_": g.leave,
        "_charged_": g.charged,
        "_binop_": g.binop,
        "_compare_": g.compare,
        "_format_": g.format,
        "_inplacevar_": g.inplacevar,
        "_getattr_": g.getattr,
        "_getitem_": g.getitem,
        "_getiter_": g.getiter,
        "_key_": g.key,
        "_keys_": g.keys,
        "_mapping_": g.mapping,
        "_caught_": g.caught,
        "_write_": g.write,
        "_apply_": g.apply,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    }


def _sdk_importer(sdk: dict[str, Any]) -> Callable:
    """``from phala.contracts.sdk import X``: the policy allows only that form; this hands
    out only the names the SDK exports to contracts."""

    class _Module:
        def __init__(self) -> None:
            self.__dict__.update(sdk)

    module = _Module()

    def importer(name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if name != "phala.contracts.sdk" or level:
            raise SandboxViolation(f"import of {name!r} is not allowed")
        for item in fromlist or ():
            if item not in sdk:
                raise SandboxViolation(f"the SDK has no {item!r}")
        return module

    return importer
