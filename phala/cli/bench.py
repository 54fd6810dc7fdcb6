"""``phala bench chain|trie|sync|contracts``: run a harness from the ``bench`` package, show its figures
beside their floors, and write the result to ``bench/results/<name>.json``."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.table import Table

from .common import CliError, console

# The floor each harness measures in the same run: what one unit of work costs at least.
FLOORS = {
    "chain": "sr25519_verify_per_s",
    "trie": "blake2_256_per_s",
    "sync": "header_hash_per_s",
    "contracts": "crypto_floor_per_s",
}


def load_harness(name: str) -> ModuleType:
    """``bench.<name>``; the bench package lives at the repository root, not in the wheel."""
    module = f"bench.{name}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", module):
            raise
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", module):
            raise
        raise CliError(f"cannot import {module}: run `phala bench` from the repository root") from exc


def results_path(harness: ModuleType, name: str) -> Path:
    return Path(harness.__file__ or ".").resolve().parent / "results" / f"{name}.json"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def figures_table(name: str, result: dict) -> Table:
    """Rates (``*_per_s``) beside their floor and target; other scalar figures below (with
    their target, if any). A harness names the floor of each rate in ``result["floors"]``
    when it is not the harness's usual one (FLOORS)."""
    default = FLOORS.get(name)
    own = result.get("floors") if isinstance(result.get("floors"), dict) else {}
    floor_keys = {default, *own.values()} - {None}
    targets = result.get("targets") if isinstance(result.get("targets"), dict) else {}
    table = Table(title=f"bench {name}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("floor", justify="right")
    table.add_column("value / floor", justify="right")
    table.add_column("target", justify="right")
    rates = [k for k, v in result.items() if k.endswith("_per_s") and k not in floor_keys and _number(v)]
    for key in rates:
        value = result[key]
        floor_key = own.get(key, default)
        floor = result.get(floor_key) if floor_key else None
        ratio = value / floor if _number(floor) and floor else None
        table.add_row(
            key,
            _fmt(value),
            f"{_fmt(floor)} ({floor_key})" if _number(floor) else "",
            "" if ratio is None else f"{ratio:.4f}",
            _fmt(targets[key]) if key in targets else "",
        )
    for key, value in result.items():
        if key in rates or key in floor_keys or not _number(value) or key == "ratio" or key.endswith("_ratio"):
            continue
        table.add_row(key, _fmt(value), "", "", _fmt(targets[key]) if key in targets else "")
    return table


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def run_bench(name: str, quick: bool) -> dict:
    harness = load_harness(name)
    with console.status(f"running bench {name}{' (quick)' if quick else ''}…"):
        result = harness.run(quick=quick)
    if not isinstance(result, dict):
        raise CliError(f"bench.{name}.run returned {type(result).__name__}, not a dict")
    console.print(figures_table(name, result))
    path = results_path(harness, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    console.print(f"wrote {path}")
    return result
