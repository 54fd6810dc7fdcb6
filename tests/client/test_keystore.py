"""The local keystore: private files, names, and resolving signers and accounts."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from phala.client.keystore import (
    Keystore,
    KeystoreError,
    default_dir,
    resolve_account,
    resolve_signer,
)
from phala.core import ss58
from phala.core.keys import DEV_PHRASE, Keypair, dev_keypair

ALICE = dev_keypair("Alice")


def test_add_writes_a_private_file(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "ks")
    phrase, keypair = Keypair.generate()
    account = store.add("carol", phrase)
    path = tmp_path / "ks" / "carol.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ks").stat().st_mode) == 0o700
    raw = json.loads(path.read_text())
    assert raw["suri"] == phrase
    assert raw["publicKey"] == "0x" + keypair.public_key.hex()
    assert account.public_key == keypair.public_key
    assert [p.name for p in (tmp_path / "ks").iterdir()] == ["carol.json"]  # no temporary left


def test_add_never_overwrites(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.add("carol", "//Carol")
    with pytest.raises(KeystoreError, match="already exists"):
        store.add("carol", "//Dave")
    assert store.get("carol").suri == "//Carol"


@pytest.mark.parametrize("name", ["", "1abc", "a/b", "../x", "a b", "x" * 65, ".hidden"])
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeystoreError, match="invalid account name"):
        Keystore(tmp_path).add(name, "//Alice")


def test_invalid_secret_is_not_stored(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Keystore(tmp_path).add("x", "not a mnemonic at all")
    assert Keystore(tmp_path).names() == []


def test_list_and_free_name(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    assert store.accounts() == [] and store.free_name() == "account1"
    store.add("account1", "//A")
    store.add("bob", "//Bob")
    assert [a.name for a in store.accounts()] == ["account1", "bob"]
    assert store.free_name() == "account2"
    assert store.get("nobody") is None


def test_resolve_signer_by_name_and_by_uri(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    phrase, keypair = Keypair.generate()
    store.add("carol", phrase)
    assert resolve_signer("carol", store).public_key == keypair.public_key
    assert resolve_signer("//Alice", store).public_key == ALICE.public_key
    assert resolve_signer(f"{DEV_PHRASE}//Alice", store).public_key == ALICE.public_key
    assert resolve_signer(phrase, store).public_key == keypair.public_key
    assert resolve_signer(f"{phrase}//stash", store).public_key == keypair.derive("//stash").public_key
    seed = "0x" + "11" * 32
    assert resolve_signer(seed, store).public_key == Keypair.from_seed(bytes([0x11] * 32)).public_key
    # A stored name wins over nothing else; an unknown name is a clear error.
    with pytest.raises(KeystoreError, match="no account named 'dave'"):
        resolve_signer("dave", store)


def test_resolve_signer_never_echoes_a_phrase(tmp_path: Path) -> None:
    secret = "bottom drive obey lake curtain smoke basket hold race lonely fit"  # 11 words
    with pytest.raises(KeystoreError) as err:
        resolve_signer(secret, Keystore(tmp_path))
    assert secret not in str(err.value)


def test_resolve_account(tmp_path: Path) -> None:
    store = Keystore(tmp_path)
    store.add("carol", "//Carol")
    carol = Keypair.from_uri("//Carol").public_key
    assert resolve_account("carol", store) == carol
    assert resolve_account(ss58.encode(carol, 30), store) == carol
    assert resolve_account(ss58.encode(carol), store) == carol
    assert resolve_account("0x" + carol.hex(), store) == carol
    assert resolve_account("//Alice", store) == ALICE.public_key
    with pytest.raises(KeystoreError, match="not an SS58 address"):
        resolve_account("nobody", store)


def test_default_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHALA_KEYSTORE", str(tmp_path / "elsewhere"))
    assert default_dir() == tmp_path / "elsewhere"
    assert Keystore().path == tmp_path / "elsewhere"
    monkeypatch.delenv("PHALA_KEYSTORE")
    assert default_dir() == Path.home() / ".phala" / "keystore"
