"""Small file helpers shared by the enclave backends, the sealed identity, checkpoints and
the sealed key stores (the gatekeeper's master keys, a worker's cluster keys)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phala.core.codec import decode, encode

from .errors import EnclaveError

__all__ = ["SealedFile", "read_device_file", "replace_file", "write_new_file"]


def write_new_file(path: str | Path, data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` holding ``data`` with permissions ``mode``, atomically and only if it
    does not exist yet.

    The data is written and fsynced to a temporary file beside ``path``, which is then
    hard-linked to ``path``: the link either appears complete or not at all (a crash never
    leaves a short file), and it fails if another process created ``path`` first. Returns True
    when this call created the file, False when ``path`` already existed (it is left alone).
    Raises OSError for any other failure.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_device_file(path: Path) -> bytes:
    """The whole content of a device or configfs file; EnclaveError names the path."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise EnclaveError(f"cannot read {path}: {exc.strerror or exc}") from exc


def replace_file(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path``, replacing it atomically: a crash leaves the old file or
    the new one, never a torn one (temporary file, fsync, rename, fsync of the folder)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class SealedFile:
    """One value of type ``tp`` kept in ``path``, encoded and sealed to the enclave with the
    associated data ``aad`` (``seal(data, aad)`` / ``unseal(blob, aad)``), and replaced
    atomically when it changes."""

    def __init__(
        self,
        path: Path,
        tp: Any,
        seal: Callable[[bytes, bytes], bytes],
        unseal: Callable[[bytes, bytes], bytes],
        aad: bytes,
    ):
        self.path, self.tp, self.aad = Path(path), tp, aad
        self._seal, self._unseal = seal, unseal

    def load(self) -> Any:
        """The stored value, or None when there is no file yet. Raises whatever the unseal
        function or the codec raises for a file that does not open or decode."""
        if not self.path.exists():
            return None
        return decode(self.tp, self._unseal(self.path.read_bytes(), self.aad))

    def store(self, value: Any) -> None:
        replace_file(self.path, self._seal(encode(value, self.tp), self.aad))
