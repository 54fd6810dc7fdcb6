"""The worker's identity, and sealing data to the enclave.

**Identity.** At first start the pRuntime generates, inside the enclave, an sr25519 identity
keypair (signs the worker's messages; its public key is the worker's id on chain) and an X25519
keypair (secrets are encrypted to it). :func:`load_or_create` seals both to
``<data_dir>/identity.sealed`` and unseals them at later starts. The quote that registers the
worker binds both public keys through its report data
(:meth:`WorkerIdentity.registration_info`, :func:`phala.core.attestation.report_data`).

When the enclave has no sealing key (``tsm``), nothing can be kept: a fresh identity is
generated at every start and no file is written; the worker must register again and be
provisioned again after each restart. When the sealed file exists but cannot be unsealed
(modified, truncated, or sealed by another enclave: other code, machine or kind),
:func:`load_or_create` raises :class:`SealingError` and never silently replaces it, since the
registered identity would be lost; to start over deliberately, delete the file.

**Sealing** (:func:`seal` / :func:`unseal`, also used for checkpoints). Blob layout::

    magic b"PHSEAL" (6) || format version 0x01 (1) || nonce (12) || AES-256-GCM ciphertext+tag

* key: ``HKDF-SHA256(enclave.sealing_key(), "phala/pruntime/seal/v1")``, 32 bytes;
* nonce: 12 random bytes per blob. With random nonces one key may seal at most about 2^32
  blobs (NIST SP 800-38D); a worker seals its identity once and a checkpoint every few
  minutes, many orders of magnitude below that;
* associated data: ``"phala/sealed/v1" || u8 len(kind) || kind || caller's aad``. The enclave
  kind is bound, so a blob sealed by one backend never opens under another even if their keys
  were equal; the caller's aad names what the blob is (the identity uses
  ``"phala/worker-identity/v1"``), so one kind of blob cannot be passed off as another.

Sealing gives confidentiality and integrity against the host, not freshness: the host can
always hand back an *older* blob sealed with the same key. Callers that care (checkpoints) must
put a sequence or block number inside the blob and check it against the chain.

Identity plaintext (128 bytes): ``sr25519 public (32) || sr25519 secret (64) || X25519 secret
(32)``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from phala.core.attestation import AttestationReport, WorkerRegistrationInfo, report_data
from phala.core.envelope import (
    NONCE_LENGTH,
    EnvelopeError,
    X25519Keypair,
    aead_decrypt,
    aead_encrypt,
    hkdf_sha256,
)
from phala.core.keys import Keypair

from .enclave.base import SEALING_KEY_LENGTH, Enclave
from .enclave.errors import EnclaveError
from .enclave.files import write_new_file

__all__ = [
    "IDENTITY_AAD",
    "IDENTITY_FILE",
    "SEAL_MAGIC",
    "SealingError",
    "WorkerIdentity",
    "load_or_create",
    "seal",
    "unseal",
]

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.sealed"
IDENTITY_AAD = b"phala/worker-identity/v1"
SEAL_MAGIC = b"PHSEAL"
_SEAL_VERSION = 1
_HEADER = SEAL_MAGIC + bytes([_SEAL_VERSION])
_SEAL_KEY_INFO = b"phala/pruntime/seal/v1"
_SEAL_AAD_TAG = b"phala/sealed/v1"
_TAG_LENGTH = 16
_IDENTITY_LENGTH = 32 + 64 + 32


class SealingError(Exception):
    """Data cannot be sealed or unsealed; the message says why (and names the file, if any)."""


# ---------------------------------------------------------------------------------------------
# sealing


def _seal_key(enclave: Enclave) -> bytes:
    try:
        key = enclave.sealing_key()
    except EnclaveError as exc:
        raise SealingError(
            f"the {enclave.kind} enclave cannot give its sealing key: {exc}"
        ) from exc
    if key is None:
        raise SealingError(
            f"the {enclave.kind} enclave has no sealing key: nothing it seals could be unsealed "
            "after a restart"
        )
    if len(key) != SEALING_KEY_LENGTH:
        raise SealingError(
            f"the {enclave.kind} enclave's sealing key must be {SEALING_KEY_LENGTH} bytes, "
            f"got {len(key)}"
        )
    return hkdf_sha256(key, _SEAL_KEY_INFO, 32)


def _seal_aad(kind: str, aad: bytes) -> bytes:
    kind_bytes = kind.encode("utf-8")
    if len(kind_bytes) > 255:
        raise SealingError("enclave kind name too long")
    return _SEAL_AAD_TAG + bytes([len(kind_bytes)]) + kind_bytes + bytes(aad)


def seal(enclave: Enclave, data: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate ``data`` with ``enclave``'s sealing key (layout in the module
    docstring). ``aad`` is authenticated, not stored: :func:`unseal` needs the same value.

    Raises SealingError when the enclave has no sealing key or cannot give it.
    """
    key = _seal_key(enclave)
    nonce = os.urandom(NONCE_LENGTH)
    ciphertext = aead_encrypt(key, nonce, bytes(data), _seal_aad(enclave.kind, aad))
    return _HEADER + nonce + ciphertext


def unseal(enclave: Enclave, blob: bytes, aad: bytes) -> bytes:
    """The data :func:`seal` sealed into ``blob`` with the same enclave and ``aad``.

    Raises SealingError when ``blob`` is not a sealed blob of a known format version, or when
    it does not authenticate: sealed by another enclave (other code, machine or kind), with
    another ``aad``, or modified.
    """
    blob = bytes(blob)
    if not blob.startswith(SEAL_MAGIC):
        raise SealingError("not a sealed blob (bad magic)")
    if len(blob) < len(_HEADER):
        raise SealingError("sealed blob truncated")
    version = blob[len(SEAL_MAGIC)]
    if version != _SEAL_VERSION:
        raise SealingError(f"sealed blob has unknown format version {version}")
    if len(blob) < len(_HEADER) + NONCE_LENGTH + _TAG_LENGTH:
        raise SealingError("sealed blob truncated")
    key = _seal_key(enclave)
    nonce = blob[len(_HEADER) : len(_HEADER) + NONCE_LENGTH]
    ciphertext = blob[len(_HEADER) + NONCE_LENGTH :]
    try:
        return aead_decrypt(key, nonce, ciphertext, _seal_aad(enclave.kind, aad))
    except EnvelopeError:
        raise SealingError(
            f"cannot unseal with the {enclave.kind} enclave's key: the blob was sealed by "
            "another enclave (other code, machine or kind) or for another purpose, or it "
            "was modified"
        ) from None


# ---------------------------------------------------------------------------------------------
# identity


@dataclass(frozen=True)
class WorkerIdentity:
    """The worker's sr25519 identity keypair and X25519 ECDH keypair (secrets not in repr)."""

    keypair: Keypair
    ecdh: X25519Keypair

    @classmethod
    def generate(cls) -> WorkerIdentity:
        """A new identity from the operating system's CSPRNG."""
        return cls(Keypair.from_seed(os.urandom(32)), X25519Keypair.generate())

    @property
    def public_key(self) -> bytes:
        """The sr25519 public key: the worker's id on chain."""
        return self.keypair.public_key

    @property
    def ecdh_public(self) -> bytes:
        """The X25519 public key that secrets for this worker are encrypted to."""
        return self.ecdh.public

    def registration_info(
        self, genesis_hash: bytes, operator: bytes | None, version: int
    ) -> WorkerRegistrationInfo:
        """What this worker registers on the chain with genesis ``genesis_hash``, operated by
        account ``operator`` (32 bytes, or None), running pRuntime ``version``.

        Raises ValueError when ``genesis_hash`` or ``operator`` is not 32 bytes or ``version``
        does not fit a u32.
        """
        if len(genesis_hash) != 32:
            raise ValueError(f"genesis hash must be 32 bytes, got {len(genesis_hash)}")
        if operator is not None and len(operator) != 32:
            raise ValueError(f"operator account must be 32 bytes, got {len(operator)}")
        if not 0 <= version < 1 << 32:
            raise ValueError(f"version must fit a u32, got {version}")
        return WorkerRegistrationInfo(
            version=version,
            identity=self.keypair.public_key,
            ecdh=self.ecdh.public,
            genesis_hash=bytes(genesis_hash),
            operator=bytes(operator) if operator is not None else None,
        )

    def attest(
        self, enclave: Enclave, genesis_hash: bytes, operator: bytes | None, version: int
    ) -> tuple[WorkerRegistrationInfo, AttestationReport]:
        """The registration info and a quote from ``enclave`` binding it (report data
        ``blake2_256(encode(info))`` padded to 64 bytes). Raises EnclaveError when quoting
        fails."""
        info = self.registration_info(genesis_hash, operator, version)
        return info, enclave.quote(report_data(info))

    def to_bytes(self) -> bytes:
        """The secret plaintext that is sealed (layout in the module docstring)."""
        return self.keypair.public_key + self.keypair.secret_key + self.ecdh.secret

    @classmethod
    def from_bytes(cls, data: bytes) -> WorkerIdentity:
        """The inverse of :meth:`to_bytes`. Raises ValueError for a malformed encoding."""
        if len(data) != _IDENTITY_LENGTH:
            raise ValueError(f"identity must be {_IDENTITY_LENGTH} bytes, got {len(data)}")
        keypair = Keypair(public_key=bytes(data[:32]), secret_key=bytes(data[32:96]))
        return cls(keypair, X25519Keypair.from_secret(bytes(data[96:])))


def load_or_create(enclave: Enclave, data_dir: str | Path) -> WorkerIdentity:
    """The worker identity sealed in ``<data_dir>/identity.sealed``, created and sealed there at
    first start; a fresh, unsaved identity at every call when ``enclave`` has no sealing key.

    Raises SealingError when the file exists but cannot be read or unsealed (the message names
    the file; it is left untouched), or when the enclave cannot give its sealing key.
    """
    data_dir = Path(data_dir)
    path = data_dir / IDENTITY_FILE
    try:
        has_key = enclave.sealing_key() is not None
    except EnclaveError as exc:
        raise SealingError(
            f"the {enclave.kind} enclave cannot give its sealing key: {exc}"
        ) from exc
    if not has_key:
        log.warning(
            "the %s enclave has no sealing key: generated a fresh worker identity that will "
            "not survive a restart (the worker must register and be provisioned again)",
            enclave.kind,
        )
        if path.exists():
            log.warning("ignoring %s: this enclave cannot unseal it", path)
        return WorkerIdentity.generate()

    if not path.exists():
        identity = WorkerIdentity.generate()
        blob = seal(enclave, identity.to_bytes(), IDENTITY_AAD)
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            created = write_new_file(path, blob, mode=0o600)
        except OSError as exc:
            raise SealingError(f"cannot write {path}: {exc.strerror or exc}") from exc
        if created:
            log.info("created worker identity %s in %s", identity.public_key.hex(), path)
            return identity
        # another process created it first: use that one

    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise SealingError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        plaintext = unseal(enclave, blob, IDENTITY_AAD)
    except SealingError as exc:
        raise SealingError(f"{path}: {exc}") from None
    try:
        return WorkerIdentity.from_bytes(plaintext)
    except (ValueError, EnvelopeError) as exc:
        raise SealingError(f"{path}: unsealed identity is malformed: {exc}") from exc
