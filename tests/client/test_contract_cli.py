"""``phala contract …``: arguments read at the edge into plain values (by the method's
annotations when the source is at hand, else by their look), with one clear error line for
bad input before any node is contacted; ``check`` and ``deploy`` refusing, with line numbers,
code the workers would refuse (nothing uploaded, nothing paid); and against a real in-process
node without workers, the refusals the SDK reads from chain state (no such cluster, its keys
unpublished, no such contract). Status, pending fees, reclaim and resume are in
``test_contract_status_cli.py``; the whole flow with workers in ``tests/e2e``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from phala.chain.runtime import cluster as cluster_pallet
from phala.chain.runtime import contracts as contracts_pallet
from phala.cli.common import CliError
from phala.cli.contract import (
    ArgumentError,
    method_spec,
    parse_args,
    parse_contract,
    parse_salt,
    parse_untyped,
    show_value,
)
from phala.client.contract_session import ContractClientError, ContractSession
from phala.client.contracts import InterfaceError, contract_interface
from phala.client.keystore import Keystore
from phala.core.cluster import cluster_id
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair, dev_keypair

from .test_cli import assert_error, dead_url, invoke
from .test_gatekeeper_cli import (  # noqa: F401 - the node fixture
    WORKERS,
    ThreadedNode,
    node,
    publish_master_pubkey,
    register_workers,
)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = ROOT / "examples" / "token.py"
VOTING = ROOT / "examples" / "voting.py"
ALICE, BOB = dev_keypair("Alice"), dev_keypair("Bob")
HEX = "0x" + "ab" * 32
INTERFACE = contract_interface(TOKEN.read_bytes())
# A contract the workers refuse: it imports os (line 2).
IMPORTS_OS = """from phala.contracts.sdk import Contract, constructor
import os


class Sneaky(Contract):
    @constructor
    def init(self, ctx):
        self.cwd = os.getcwd()
"""


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    store = Keystore(tmp_path / "ks")
    store.add("carol", "//Carol")
    return store


# -- the interface, read from the source --------------------------------------------------------


def test_interface_of_the_examples() -> None:
    assert INTERFACE.name == "Token"
    assert INTERFACE.constructor().signature() == "init(supply: int)"
    assert INTERFACE.methods["transfer"].signature() == "transfer(to: AccountId, amount: int)"
    assert [m.name for m in INTERFACE.of_kind("query")] == [
        "balance_of",
        "allowance",
        "total_supply",
    ]
    assert INTERFACE.methods["deposit"].kind == "handler"
    voting = contract_interface(VOTING.read_bytes())
    assert voting.constructor().signature() == (
        "init(question: str, options: list[str], deadline_block: int)"
    )


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("def broken(:\n", "does not parse"),
        ("x = 1\n", "exactly one class deriving from Contract"),
        (
            "from phala.contracts.sdk import Contract\nclass A(Contract): pass\nclass B(Contract): pass\n",
            "exactly one class",
        ),
    ],
)
def test_not_a_contract(source: str, fragment: str) -> None:
    with pytest.raises(InterfaceError, match=fragment):
        contract_interface(source)


# -- arguments ------------------------------------------------------------------------------------


def test_arguments_by_annotation(keystore: Keystore) -> None:
    transfer = INTERFACE.methods["transfer"]
    carol = Keypair.from_uri("//Carol").public_key
    for account in (
        "//Bob",
        BOB.ss58_address(30),
        BOB.ss58_address(42),
        "0x" + BOB.public_key.hex(),
    ):
        assert parse_args([account, "1_000"], transfer, keystore) == [BOB.public_key, 1000]
    assert parse_args(["carol", "5"], transfer, keystore) == [carol, 5]  # a keystore name
    voting = contract_interface(VOTING.read_bytes()).constructor()
    # str stays str even when it looks like a number; list[str] from JSON.
    assert parse_args(["42", '["a", "0x01"]', "300"], voting, keystore) == [
        "42",
        ["a", "0x01"],
        300,
    ]


@pytest.mark.parametrize(
    ("texts", "fragment"),
    [
        (["//Bob"], "transfer(to: AccountId, amount: int) takes 2 argument(s), got 1"),
        (["//Bob", "1", "2"], "takes 2 argument(s), got 3"),
        (["//Bob", "ten"], "argument 2 (amount) of transfer: expected an integer, got 'ten'"),
        (["//Bob", "1.5"], "expected an integer"),
        (["nobody", "1"], "argument 1 (to) of transfer:"),
        (["0x1234", "1"], "argument 1 (to)"),
    ],
)
def test_bad_arguments_are_named(keystore: Keystore, texts: list[str], fragment: str) -> None:
    with pytest.raises(ArgumentError) as err:
        parse_args(texts, INTERFACE.methods["transfer"], keystore)
    assert fragment in str(err.value)


def test_arguments_by_their_look(keystore: Keystore) -> None:
    def look(text: str):  # noqa: ANN202
        return parse_untyped(text, keystore)

    assert look("12") == 12 and look("-3") == -3 and look("1_000") == 1000
    assert look("true") is True and look("false") is False and look("null") is None
    assert look("0x00ff") == b"\x00\xff"
    assert look("//Bob") == BOB.public_key
    assert look(BOB.ss58_address(30)) == BOB.public_key
    assert look("hello") == "hello" and look('"12"') == "12"
    assert look('[1, "0x02", {"k": [true, null]}]') == [1, b"\x02", {"k": [True, None]}]
    assert look(f'{{"{ALICE.ss58_address(30)}": 5}}') == {ALICE.public_key: 5}
    for bad, fragment in [
        ("1.5", "float"),
        ("1e3", "float"),
        ("[1.5]", "float"),
        ("0xabc", "pairs of hex digits"),
        ("[1,", "not valid JSON"),
        ('"unterminated', "not valid JSON"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            look(bad)
    # Without an interface, the untyped reading names the argument too.
    with pytest.raises(ArgumentError, match="argument 2: .*float"):
        parse_args(["1", "2.5"], None, keystore)


def test_typed_containers(keystore: Keystore) -> None:
    source = (
        "from phala.contracts.sdk import AccountId, Contract, command\n"
        "class C(Contract):\n"
        "    @command\n"
        "    def m(self, ctx, a: list[AccountId], b: dict[AccountId, int], c: tuple[int, str],\n"
        "          d: bytes, e: bool, f=0):\n"
        "        pass\n"
    )
    spec = contract_interface(source).methods["m"]
    assert spec.required == 5
    got = parse_args(['["//Bob"]', '{"//Alice": 3}', '[1, "x"]', "0x01", "true"], spec, keystore)
    assert got == [[BOB.public_key], {ALICE.public_key: 3}, (1, "x"), b"\x01", True]
    for texts, fragment in [
        (['["//Bob"]', '{"//Alice": "3"}', '[1, "x"]', "0x01", "true"], "expected an integer"),
        (['"//Bob"', "{}", '[1, "x"]', "0x01", "true"], "expected a JSON list"),
        (["[]", "{}", "[1]", "0x01", "true"], "expected 2 elements"),
        (["[]", "{}", '[1, "x"]', "01", "true"], "expected 0x and hex digits"),
        (["[]", "{}", '[1, "x"]', "0x01", "yes"], "expected true or false"),
    ]:
        with pytest.raises(ArgumentError, match=fragment):
            parse_args(texts, spec, keystore)


def test_methods_of_the_right_kind() -> None:
    assert method_spec(INTERFACE, "balance_of", "query").name == "balance_of"
    with pytest.raises(CliError, match="has no command 'balance_of' \\(balance_of is a query\\)"):
        method_spec(INTERFACE, "balance_of", "command")
    with pytest.raises(CliError, match="its queries: balance_of, allowance, total_supply"):
        method_spec(INTERFACE, "nope", "query")


def test_ids_salts_and_values() -> None:
    assert parse_contract(HEX.upper().replace("0X", "0x")) == bytes.fromhex("ab" * 32)
    for bad in ("", "0x12", "ab" * 32, "0x" + "zz" * 32):
        with pytest.raises(CliError, match="invalid contract id"):
            parse_contract(bad)
    assert parse_salt("0x0102") == b"\x01\x02" and parse_salt("dev") == b"dev"
    assert len(parse_salt(None)) == 16 and parse_salt(None) != parse_salt(None)
    with pytest.raises(CliError, match="at most 64"):
        parse_salt("x" * 65)
    with pytest.raises(CliError, match="pairs of hex digits"):
        parse_salt("0xz")
    value = {"to": BOB.public_key, "ok": True, "n": [1, None, (2,)], "s": 'a"b', "b": b"\x01"}
    shown = show_value(value)
    assert shown == (
        f'{{"to": 0x{BOB.public_key.hex()}, "ok": true, "n": [1, null, (2,)], "s": "a\\"b", '
        '"b": 0x01}'
    )


# -- the commands, refused before any node is contacted -----------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["call", "0x12", "transfer", "--from", "//Alice"], "invalid contract id '0x12'"),
        (["query", "nothex", "total_supply", "--as", "//Alice"], "invalid contract id"),
        (["events", "0x1", "--as", "//Alice"], "invalid contract id"),
        (["call", HEX, "m", "--from", "not a valid secret"], "cannot use the signer"),
        (["deploy", "missing.py", "--cluster", "0", "--from", "//Alice"], "cannot read missing.py"),
        (
            ["deploy", str(TOKEN), "--cluster", "0", "--from", "//Alice"],
            "init(supply: int) takes 1",
        ),
        (
            ["deploy", str(TOKEN), "--cluster", "0", "--from", "//Alice", "--args", "lots"],
            "argument 1 (supply) of init: expected an integer, got 'lots'",
        ),
        (
            ["deploy", str(TOKEN), "--cluster", "x", "--from", "//Alice", "--args", "1"],
            "invalid cluster 'x'",
        ),
        (
            [
                "deploy",
                str(TOKEN),
                "--cluster",
                "0",
                "--from",
                "//Alice",
                "--args",
                "1",
                "--salt",
                "s" * 65,
            ],
            "at most 64",
        ),
        (
            [
                "deploy",
                str(TOKEN),
                "--cluster",
                "0",
                "--from",
                "//Alice",
                "--constructor",
                "transfer",
            ],
            "has no constructor 'transfer' (transfer is a command)",
        ),
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = invoke("contract", *args, "--rpc", dead_url(), "--keystore", str(tmp_path))
    assert_error(result, fragment)


def test_deploy_refuses_a_file_that_is_no_contract(tmp_path: Path) -> None:
    plain = tmp_path / "plain.py"
    plain.write_text("x = 1\n")
    result = invoke(
        "contract", "deploy", str(plain), "--cluster", "0", "--from", "//Alice", "--rpc", dead_url()
    )
    assert_error(result, f"{plain}: ", "the workers would refuse this code", "nothing was uploaded")
    assert f"{plain}:" in result.stdout.split("error:")[0]  # the checker's own lines first


# -- check: the workers' checks, here ------------------------------------------------------------


def test_check_shows_the_interface_of_a_contract_the_workers_accept() -> None:
    result = invoke("contract", "check", str(TOKEN))
    assert result.exit_code == 0, result.output
    assert f"ok: {TOKEN}: contract Token" in result.stdout
    lines = result.stdout.splitlines()
    assert any(line.split() == ["command", "transfer(to:", "AccountId,", "amount:", "int)"] for line in lines)
    assert any(line.split()[:2] == ["constructor", "init(supply:"] for line in lines)


def test_check_names_the_line_of_each_error(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(IMPORTS_OS)
    result = invoke("contract", "check", str(sneaky))
    assert_error(result, f"{sneaky}: 1 error: the workers would refuse this code")
    [line] = [x for x in result.output.splitlines() if x.startswith(f"{sneaky}:")]
    assert line.startswith(f"{sneaky}:2: ") and "os" in line
    # Not UTF-8: refused with the line, as the chain would refuse to store it.
    binary = tmp_path / "binary.py"
    binary.write_bytes(b"x = 1\ny = '\xff'\n")
    assert_error(invoke("contract", "check", str(binary)), f"{binary}: line 2: the source is not valid UTF-8")
    assert_error(invoke("contract", "check", str(tmp_path / "missing.py")), "cannot read")
    assert invoke("contract", "check").exit_code == 2


def test_deploy_refuses_code_the_workers_would_refuse_before_uploading_or_paying(
    node: ThreadedNode,  # noqa: F811
    tmp_path: Path,
) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(IMPORTS_OS)
    head = node.node.chain.head.number
    result = invoke(
        "contract", "deploy", str(sneaky), "--cluster", "0", "--from", "//Alice",
        "--rpc", node.url, "--keystore", str(tmp_path / "ks"),
    )  # fmt: skip
    assert_error(result, "1 error: the workers would refuse this code; nothing was uploaded")
    assert f"{sneaky}:2: " in result.output
    # Nothing reached the chain: no block, no code, no fee.
    assert node.node.chain.head.number == head
    assert node.node.pool.pending() == []
    key = contracts_pallet.Code.key(blake2_256(IMPORTS_OS.encode()))
    assert node.node.chain.db.read_at(node.node.chain.head.state_root, key) is None


def test_usage_errors() -> None:
    assert invoke("contract", "call", HEX, "transfer").exit_code == 2  # no --from
    assert invoke("contract", "query", HEX, "total_supply").exit_code == 2  # no --as
    assert (
        invoke("contract", "deploy", str(TOKEN), "--from", "//Alice").exit_code == 2
    )  # no --cluster
    assert invoke("contract", "call", HEX, "m", "--from", "//Alice", "--gas", "0").exit_code == 2


def test_unreachable_node(tmp_path: Path) -> None:
    url = dead_url()
    ks = ["--keystore", str(tmp_path)]
    assert_error(
        invoke("contract", "query", HEX, "total_supply", "--as", "//Alice", "--rpc", url, *ks),
        f"cannot reach the node at {url}",
    )
    assert_error(
        invoke("contract", "deploy", str(TOKEN), "--cluster", "0", "--from", "//Alice",
               "--args", "5", "--rpc", url, *ks),
        "cannot reach the node",
    )  # fmt: skip


# -- against a real node without workers ---------------------------------------------------------


def test_refusals_read_from_chain_state(node: ThreadedNode, tmp_path: Path) -> None:  # noqa: F811
    url, ks = node.url, ["--keystore", str(tmp_path / "ks")]
    deploy = ["contract", "deploy", str(TOKEN), "--from", "//Alice", "--args", "1000", "--rpc", url]
    assert_error(
        invoke(*deploy, "--cluster", "0", *ks), f"no cluster has id 0x{cluster_id(0).hex()}"
    )
    for args in (
        ["call", HEX, "transfer", "//Bob", "1", "--from", "//Alice"],
        ["query", HEX, "total_supply", "--as", "//Alice"],
        ["events", HEX, "--as", "//Alice"],
        ["events", HEX, "--as", "//Alice", "--commands"],
    ):
        assert_error(invoke("contract", *args, "--rpc", url, *ks), f"no contract has id {HEX}")

    # A cluster whose keys the gatekeepers have not published yet.
    register_workers(node)
    assert (
        invoke(
            "gatekeeper", "register", "0x" + WORKERS[0].public_key.hex(), "--rpc", url, *ks
        ).exit_code
        == 0
    )
    publish_master_pubkey(node, WORKERS[0], Keypair.from_uri("//cli/master"))
    member = "0x" + WORKERS[1].public_key.hex()
    assert invoke("cluster", "create", "--worker", member, "--rpc", url, *ks).exit_code == 0
    assert node.read(cluster_pallet.ClusterCount) == 1
    assert_error(invoke(*deploy, "--cluster", "0", *ks), "is in epoch 0, whose public keys")
    asyncio.run(_sdk_refusals(url))


async def _sdk_refusals(url: str) -> None:
    async with ContractSession(url, timeout=2) as session:
        with pytest.raises(ContractClientError, match="whose public keys"):
            await session.deploy(TOKEN, cluster_id(0), [1], ALICE)
        with pytest.raises(ContractClientError, match="no contract has id"):
            await session.find_worker(bytes.fromhex(HEX[2:]))
        members = await session.cluster_endpoints(cluster_id(0))
        assert [(w, r.endpoint) for w, r in members] == [(WORKERS[1].public_key, None)]
        assert await session.code(bytes(32)) is None
