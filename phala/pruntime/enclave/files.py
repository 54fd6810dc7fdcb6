"""Small file helpers shared by the enclave backends, the sealed identity, checkpoints and
the gatekeeper's sealed master key."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import EnclaveError

__all__ = ["read_device_file", "replace_file", "write_new_file"]


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
