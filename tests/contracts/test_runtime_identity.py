"""The contract runtime is one pinned component: built twice, in two directories, it is the
same bytes, and its identity names those bytes with the wasmtime version and architecture."""

from __future__ import annotations

from pathlib import Path

from phala.contracts.vm import build


def test_the_runtime_builds_to_the_same_bytes_twice(tmp_path: Path) -> None:
    first, second = tmp_path / "one" / "runtime.wasm", tmp_path / "two" / "deeper" / "runtime.wasm"
    for output in (first, second):
        output.parent.mkdir(parents=True)
        build.build_component(output)
    assert first.read_bytes() == second.read_bytes()
    # ... and the same as the one this machine runs (built by make from the same inputs).
    assert build.runtime_identity(first) == build.runtime_identity(build.component_path())


def test_the_identity_covers_the_component_and_the_engine(tmp_path: Path) -> None:
    component = build.component_path()
    identity = build.runtime_identity(component)
    assert identity.startswith("0x") and len(identity) == 66
    changed = tmp_path / "changed.wasm"
    data = bytearray(component.read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    assert build.runtime_identity(changed) != identity
