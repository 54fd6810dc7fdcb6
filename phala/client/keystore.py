"""A local keystore of named accounts for ``phala account`` and signing.

One JSON file per account, ``<dir>/<name>.json``, holding its secret URI (the mnemonic),
its public key and when it was created. Files are created with mode 0600 in a directory
created with mode 0700, and never overwritten. The directory is ``~/.phala/keystore``
unless ``PHALA_KEYSTORE`` or an explicit path says otherwise.

The secrets are stored unencrypted: the keystore is for development and test accounts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from phala.core import ss58
from phala.core.keys import InvalidSecretUri, Keypair

__all__ = [
    "ENV_VAR",
    "Keystore",
    "KeystoreError",
    "StoredAccount",
    "default_dir",
    "resolve_account",
    "resolve_signer",
]

ENV_VAR = "PHALA_KEYSTORE"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


class KeystoreError(ValueError):
    """A keystore operation failed, or a signer/account could not be resolved."""


def default_dir() -> Path:
    """``$PHALA_KEYSTORE``, else ``~/.phala/keystore``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".phala" / "keystore"


@dataclass(frozen=True)
class StoredAccount:
    name: str
    suri: str
    public_key: bytes
    created: str

    def keypair(self) -> Keypair:
        return Keypair.from_uri(self.suri)

    def address(self, prefix: int = ss58.DEFAULT_PREFIX) -> str:
        return ss58.encode(self.public_key, prefix)


class Keystore:
    """The accounts stored in one directory."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path is not None else default_dir()

    @staticmethod
    def valid_name(name: str) -> bool:
        """Names start with a letter; then letters, digits, ``_ . -``; at most 64 characters."""
        return bool(_NAME.fullmatch(name))

    def file(self, name: str) -> Path:
        if not self.valid_name(name):
            raise KeystoreError(
                f"invalid account name {name!r}: use a letter, then letters, digits, '_', '.' or '-' "
                "(at most 64 characters)"
            )
        return self.path / f"{name}.json"

    def add(self, name: str, suri: str) -> StoredAccount:
        """Store ``suri`` under ``name``. Raises :class:`KeystoreError` if the name is taken
        or invalid, and InvalidSecretUri if ``suri`` is not a valid secret URI."""
        target = self.file(name)
        keypair = Keypair.from_uri(suri)
        account = StoredAccount(
            name, suri, keypair.public_key, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        )
        body = json.dumps(
            {
                "name": name,
                "suri": suri,
                "publicKey": "0x" + keypair.public_key.hex(),
                "created": account.created,
            },
            indent=2,
        ).encode()
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Write a private temporary file, then link it into place: the name appears only
        # complete, with mode 0600 from the start, and an existing account is never replaced.
        tmp = self.path / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError as exc:
                raise KeystoreError(f"an account named {name!r} already exists in {self.path}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return account

    def get(self, name: str) -> StoredAccount | None:
        """The account stored under ``name``, or None."""
        if not self.valid_name(name):
            return None
        target = self.path / f"{name}.json"
        try:
            raw = json.loads(target.read_text())
            suri = raw["suri"]
            public_key = bytes.fromhex(raw["publicKey"].removeprefix("0x"))
            created = str(raw.get("created", ""))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeystoreError(f"keystore file {target} is unreadable or malformed") from exc
        if not isinstance(suri, str):
            raise KeystoreError(f"keystore file {target} is malformed")
        return StoredAccount(name, suri, public_key, created)

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(
            p.stem for p in self.path.glob("*.json") if p.is_file() and self.valid_name(p.stem)
        )

    def accounts(self) -> list[StoredAccount]:
        """Every stored account, by name."""
        return [acc for acc in (self.get(n) for n in self.names()) if acc is not None]

    def free_name(self, stem: str = "account") -> str:
        """The first of ``account1``, ``account2``, … not yet taken."""
        taken = set(self.names())
        n = 1
        while f"{stem}{n}" in taken:
            n += 1
        return f"{stem}{n}"


def resolve_signer(text: str, keystore: Keystore | None = None) -> Keypair:
    """The keypair named by ``text``: a stored account's name, or a secret URI (``//Alice``,
    a mnemonic, a ``0x`` seed, each with optional derivation path and ``///password``).

    Raises :class:`KeystoreError`; the message never repeats the secret.
    """
    keystore = keystore or Keystore()
    text = text.strip()
    if Keystore.valid_name(text):
        stored = keystore.get(text)
        if stored is not None:
            try:
                return stored.keypair()
            except InvalidSecretUri as exc:
                raise KeystoreError(f"stored account {text!r} holds an invalid secret: {exc}") from exc
    try:
        return Keypair.from_uri(text)
    except InvalidSecretUri as exc:
        hint = f"no account named {text!r} in {keystore.path}, and " if Keystore.valid_name(text) else ""
        raise KeystoreError(f"cannot use the signer: {hint}not a valid secret URI ({exc})") from exc


def resolve_account(text: str, keystore: Keystore | None = None) -> bytes:
    """A 32-byte account id from an SS58 address (any prefix), ``0x`` + 64 hex digits, a
    stored account's name, or a derivation of the public dev phrase such as ``//Bob``.

    Other secret URIs are refused: naming an account must not need its secret.
    Raises :class:`KeystoreError`.
    """
    text = text.strip()
    try:
        return ss58.parse_account(text)
    except ss58.InvalidAddress as exc:
        reason = str(exc)
    keystore = keystore or Keystore()
    if Keystore.valid_name(text):
        stored = keystore.get(text)
        if stored is not None:
            return stored.public_key
    if text.startswith("/"):
        try:
            return Keypair.from_uri(text).public_key
        except InvalidSecretUri as exc:
            raise KeystoreError(f"invalid dev account {text!r}: {exc}") from exc
    raise KeystoreError(
        f"{text!r} is not an SS58 address ({reason}), a 0x public key, "
        f"the name of an account in {keystore.path}, or a dev account like //Bob"
    )
