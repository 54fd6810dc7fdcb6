"""The ``phala`` command line, without a node: bad input gives one clear error line and a
non-zero exit code, never a traceback; client commands work against the fake node."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phala.chain.spec import ChainSpec
from phala.cli.common import CliError
from phala.cli.main import app, parse_start_time, seal_mode
from phala.core import ss58
from phala.core.keys import dev_keypair

from .fake_node import ALICE, BOB, ThreadedFakeNode

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):  # noqa: ANN201
    result = runner.invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, AssertionError | TypeError | AttributeError | NameError)
    return result


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def assert_error(result, *fragments: str, code: int = 1) -> None:  # noqa: ANN001
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# -- chain-spec -------------------------------------------------------------------------------


def test_chain_spec_dev_parses() -> None:
    result = invoke("chain-spec", "--dev", "--start-time", "2026-01-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    spec = ChainSpec.from_json(result.stdout)
    assert spec.id == "phala_dev" and spec.start_time_ms == 1_767_225_600_000
    assert spec.authorities == (dev_keypair("Alice").public_key,)
    result = invoke("chain-spec", "--dev", "--start-time", "1700000000000")
    assert ChainSpec.from_json(result.stdout).start_time_ms == 1_700_000_000_000
    assert ChainSpec.from_json(invoke("chain-spec", "--dev").stdout).ss58_format == 30


def test_chain_spec_bad_input() -> None:
    assert_error(invoke("chain-spec"), "pass --dev")
    assert_error(invoke("chain-spec", "--dev", "--start-time", "yesterday"), "invalid --start-time")


def test_parse_start_time() -> None:
    assert parse_start_time("2026-01-01T01:00:00+01:00") == 1_767_225_600_000
    assert parse_start_time("2026-01-01") == 1_767_225_600_000
    with pytest.raises(CliError):
        parse_start_time("1969-12-31T00:00:00Z")


# -- node (input checks only: the node itself is tested end to end elsewhere) ------------------


def test_node_bad_input() -> None:
    assert_error(invoke("node", "--dev", "--instant-seal", "--manual-seal"), "choose one")
    assert_error(invoke("node", "--dev", "--manual-seal", "--block-time", "2"), "--block-time")
    assert_error(invoke("node", "--dev", "--tmp", "--base-path", "x"), "--tmp")
    assert_error(invoke("node"), "nothing to run")
    assert_error(invoke("node", "--chain", "/nonexistent/spec.json"), "cannot read chain spec")
    assert invoke("node", "--dev", "--rpc-port", "70000").exit_code == 2


def test_node_bad_chain_spec(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text('{"name": "x"}')
    assert_error(invoke("node", "--chain", str(spec), "--tmp"), "properties is missing")


def test_seal_mode() -> None:
    assert seal_mode(None, False, False) == ("interval", 1.0)
    assert seal_mode(0.5, False, False) == ("interval", 0.5)
    assert seal_mode(None, True, False)[0] == "instant"
    assert seal_mode(None, False, True)[0] == "manual"


# -- accounts ---------------------------------------------------------------------------------


def test_account_new_list_inspect(tmp_path: Path) -> None:
    ks = str(tmp_path / "ks")
    result = invoke("account", "new", "--name", "carol", "--keystore", ks)
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "ks" / "carol.json").read_text())
    assert stat.S_IMODE((tmp_path / "ks" / "carol.json").stat().st_mode) == 0o600
    assert stored["suri"] in " ".join(result.stdout.split())  # the mnemonic is shown once
    address = ss58.encode(bytes.fromhex(stored["publicKey"][2:]), 30)
    assert address in result.stdout
    assert_error(invoke("account", "new", "--name", "carol", "--keystore", ks), "already exists")
    assert_error(invoke("account", "new", "--name", "no/slash", "--keystore", ks), "invalid account name")
    assert invoke("account", "new", "--keystore", ks).exit_code == 0  # account1

    listed = invoke("account", "list", "--keystore", ks)
    assert listed.exit_code == 0 and "carol" in listed.stdout and "account1" in listed.stdout

    inspected = invoke("account", "inspect", "carol", "--keystore", ks)
    assert address in inspected.stdout and stored["suri"] not in inspected.stdout
    assert ss58.encode(bytes.fromhex(stored["publicKey"][2:]), 42) in inspected.stdout


def test_account_inspect_forms(tmp_path: Path) -> None:
    alice = dev_keypair("Alice")
    for text in ("//Alice", alice.ss58_address(42), alice.ss58_address(30)):
        result = invoke("account", "inspect", text, "--keystore", str(tmp_path))
        assert result.exit_code == 0, result.output
        assert alice.ss58_address(30) in result.stdout
        assert alice.ss58_address(42) in result.stdout
        assert alice.public_key.hex() in result.stdout
    result = invoke("account", "inspect", "0x" + alice.public_key.hex(), "--public", "--keystore", str(tmp_path))
    assert alice.ss58_address(30) in result.stdout
    result = invoke("account", "inspect", "//Alice", "--ss58-prefix", "0", "--keystore", str(tmp_path))
    assert alice.ss58_address(0) in result.stdout


def test_account_bad_input(tmp_path: Path) -> None:
    assert_error(invoke("account", "inspect", "definitely not valid", "--keystore", str(tmp_path)), "invalid")
    assert invoke("account", "inspect", "//Alice", "--ss58-prefix", "99999").exit_code == 2
    empty = invoke("account", "list", "--keystore", str(tmp_path / "none"))
    assert empty.exit_code == 0 and "no accounts" in empty.stdout


# -- client commands: bad input is refused before any node is contacted ----------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--amount", "lots"], "invalid amount"),
        (["--amount", "1.5"], "needs the token symbol"),
        (["--amount", "-3PHA"], "invalid amount"),
        (["--tip", "x"], "invalid amount"),
        (["--to", "nobody-here"], "is not an SS58 address"),
        (["--to", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ"], "bad checksum"),
        (["--from", "not a valid secret"], "cannot use the signer"),
        (["--from", "carol"], "no account named 'carol'"),
    ],
)
def test_transfer_bad_input(tmp_path: Path, args: list[str], fragment: str) -> None:
    base = {"--from": "//Alice", "--to": BOB.ss58_address(30), "--amount": "1PHA"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    extra = [x for i in range(0, len(args), 2) if args[i] not in base for x in args[i : i + 2]]
    argv = ["transfer", *[x for kv in base.items() for x in kv], *extra]
    result = invoke(*argv, "--keystore", str(tmp_path), "--rpc", dead_url())
    assert_error(result, fragment)


def test_transfer_missing_option_is_a_usage_error() -> None:
    result = invoke("transfer", "--from", "//Alice", "--amount", "1PHA")
    assert result.exit_code == 2 and "--to" in result.output


def test_unreachable_node_is_one_line() -> None:
    url = dead_url()
    assert_error(invoke("balance", "//Alice", "--rpc", url), f"cannot reach the node at {url}")
    assert_error(invoke("blocks", "--rpc", url), "cannot reach the node")
    assert_error(
        invoke("transfer", "--from", "//Alice", "--to", "//Bob", "--amount", "1PHA", "--rpc", url),
        "cannot reach the node",
    )
    assert_error(invoke("balance", "//Alice", "--rpc", "localhost:9944"), "RPC URL")


def test_bench_name_is_checked() -> None:
    assert invoke("bench", "nonsense").exit_code == 2


# -- client commands against the fake node ----------------------------------------------------


def test_balance_transfer_and_blocks_against_a_fake_node(tmp_path: Path) -> None:
    with ThreadedFakeNode() as fake:
        result = invoke("balance", ALICE.ss58_address(30), "--rpc", fake.url)
        assert result.exit_code == 0, result.output
        assert "1,000,000" in result.stdout and "proof verified" in result.stdout

        result = invoke(
            "transfer", "--from", "//Alice", "--to", "//Bob", "--amount", "1.5PHA", "--tip", "1",
            "--rpc", fake.url, "--keystore", str(tmp_path), "--timeout", "10",
        )
        assert result.exit_code == 0, result.output
        assert "finalized in block #1" in result.stdout and "success" in result.stdout

        fake.node.fail_next_block = True
        result = invoke(
            "transfer", "--from", "//Alice", "--to", "//Bob", "--amount", "1PHA",
            "--rpc", fake.url, "--keystore", str(tmp_path), "--timeout", "10",
        )
        assert_error(result, "Balances.InsufficientBalance")

        result = invoke("transfer", "--from", "//Alice", "--to", "//Bob", "--amount", "1PHA", "--no-wait",
                        "--rpc", fake.url, "--keystore", str(tmp_path))
        assert result.exit_code == 0 and "submitted 0x" in result.stdout

        result = invoke("blocks", "--count", "3", "--rpc", fake.url, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "Balances.transfer_keep_alive" in result.stdout
