"""A componentize-py build through phala.contracts.vm.reproducible gives the same bytes from
the same inputs, wherever they lie and however they were written (times, order, a stale
__pycache__), and different bytes when the app changes. Three real builds, about 8 s each."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from phala.contracts.vm.reproducible import componentize

WIT = """package phala:repro@0.1.0;

interface host {
  log: func(message: string);
}

world probe {
  import host;
  export run: func(request: string) -> string;
}
"""

APP = '''import json

import wit_world
from wit_world.imports import host

from probe_helpers import describe

MARKER = "{marker}"
TABLE = {{name: describe(name) for name in ("alpha", "beta", "gamma", "delta")}}


class WitWorld(wit_world.WitWorld):
    def run(self, request: str) -> str:
        host.log(request)
        return json.dumps({{"marker": MARKER, "request": request, "table": TABLE}})
'''

HELPERS = '''def describe(name: str) -> dict:
    return {"length": len(name), "set": sorted(set(name))}
'''

MARKER = "reproducible-probe-marker-1"


def write_inputs(base: Path, marker: str, *, reverse: bool, mtime: float | None) -> tuple[Path, Path, Path]:
    """The app, its helper directory and the WIT under base, written in one order or the
    other (directory listing order follows it on some filesystems), with the given mtime."""
    app, helpers, wit = base / "app", base / "lib" / "helpers", base / "wit"
    files = [
        (app / "probe_app.py", APP.format(marker=marker)),
        (helpers / "probe_helpers.py", HELPERS),
        (helpers / "notes.txt", "not Python, copied all the same\n"),
        (wit / "probe.wit", WIT),
    ]
    for path, text in reversed(files) if reverse else files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
    return app, helpers, wit


def build(base: Path, marker: str = MARKER, *, reverse: bool = False, mtime: float | None = None) -> bytes:
    app, helpers, wit = write_inputs(base, marker, reverse=reverse, mtime=mtime)
    output = base / "out" / "probe.wasm"
    componentize(app, wit, "probe", "probe_app", output, python_path=[helpers])
    return output.read_bytes()


@pytest.fixture(scope="module", autouse=True)
def build_cache(tmp_path_factory: pytest.TempPathFactory):
    """The shim is compiled once for this module, away from the project's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHALA_BUILD_CACHE", str(tmp_path_factory.mktemp("build-cache")))
        yield


@pytest.fixture(scope="module")
def first(build_cache: None, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    base = tmp_path_factory.mktemp("one")
    # a stale bytecode cache in the app must not reach the build
    stale = base / "app" / "__pycache__"
    stale.mkdir(parents=True)
    (stale / "probe_app.cpython-314.pyc").write_bytes(b"stale bytecode")
    return build(base, mtime=time.time())


def test_same_inputs_in_two_directories_give_identical_bytes(first: bytes, tmp_path: Path) -> None:
    second = build(tmp_path / "another" / "much" / "deeper" / "place", reverse=True, mtime=86400.0)
    assert first[:4] == b"\0asm"
    assert MARKER.encode() in first  # the app was imported into the snapshot
    assert len(second) == len(first)
    assert second == first, f"builds differ in {sum(a != b for a, b in zip(first, second, strict=True))} bytes"


def test_a_change_in_the_app_changes_the_output(first: bytes, tmp_path: Path) -> None:
    changed = build(tmp_path / "changed", marker="reproducible-probe-marker-2")
    assert b"reproducible-probe-marker-2" in changed
    assert MARKER.encode() not in changed
    assert changed != first
