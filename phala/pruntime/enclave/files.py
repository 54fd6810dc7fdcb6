"""Small file helpers shared by the sim backend and the sealed identity."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["write_new_file"]


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
