"""``phala bench``: figures beside floors, JSON written next to the harness (a fake here, so
the test writes nothing into the repository)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phala.cli import bench as bench_cli
from phala.cli.main import app


def fake_harness(tmp_path: Path, result: object) -> types.ModuleType:
    module = types.ModuleType("bench.fake")
    module.__file__ = str(tmp_path / "bench" / "fake.py")
    calls: list[bool] = []

    def run(quick: bool = False) -> object:
        calls.append(quick)
        return result

    module.run = run  # type: ignore[attr-defined]
    module.calls = calls  # type: ignore[attr-defined]
    return module


def test_bench_prints_figures_and_writes_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = {
        "transfers_per_s": 3100.5,
        "rpc_transfers_per_s": 1200.0,
        "sr25519_verify_per_s": 20000.0,
        "ratio": 0.155,
        "genesis_accounts": 100006,
        "targets": {"transfers_per_s": 3000, "rpc_transfers_per_s": 1000},
        "quick": True,
    }
    harness = fake_harness(tmp_path, result)
    monkeypatch.setattr(bench_cli, "load_harness", lambda name: harness)
    out = CliRunner().invoke(app, ["bench", "chain", "--quick"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert harness.calls == [True]
    row = next(line for line in out.stdout.splitlines() if "rpc_transfers_per_s" in line)
    assert "1,200.0" in row and "20,000.0" in row and "0.0600" in row and "1,000" in row
    written = tmp_path / "bench" / "results" / "chain.json"
    assert json.loads(written.read_text()) == result


def test_bench_refuses_a_result_that_is_not_a_dict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_cli, "load_harness", lambda name: fake_harness(tmp_path, [1, 2]))
    out = CliRunner().invoke(app, ["bench", "trie"])
    assert out.exit_code == 1 and "error: bench.trie.run returned list" in out.output


def test_floors_table_for_trie() -> None:
    table = bench_cli.figures_table("trie", {"trie_updates_per_s": 2e5, "blake2_256_per_s": 1e6, "ratio": 0.2})
    assert table.row_count == 1


def test_a_rate_is_shown_beside_the_floor_its_harness_names() -> None:
    result = {
        "commands_per_s": 2_000.0, "crypto_floor_per_s": 16_000.0,
        "end_to_end_commands_per_s": 800.0, "crypto_floor_e2e_per_s": 8_000.0,
        "query_p99_ms": 1.0, "targets": {"commands_per_s": 2000, "query_p99_ms": 20},
        "floors": {"end_to_end_commands_per_s": "crypto_floor_e2e_per_s"},
    }
    table = bench_cli.figures_table("contracts", result)
    figures = list(table.columns[0].cells)
    assert figures == ["commands_per_s", "end_to_end_commands_per_s", "query_p99_ms"]
    floors, ratios, targets = (list(table.columns[i].cells) for i in (2, 3, 4))
    assert floors[:2] == ["16,000.0 (crypto_floor_per_s)", "8,000.0 (crypto_floor_e2e_per_s)"]
    assert ratios[:2] == ["0.1250", "0.1000"]
    assert targets == ["2,000", "", "20"]
