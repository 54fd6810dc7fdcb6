"""Byte-reproducible componentize-py builds: the same app, WIT and componentize-py version
give the same .wasm, whichever directory it is built in and whenever.

componentize-py snapshots the guest's memory after the app has been imported, so the output
holds whatever the build saw: random numbers, clocks, file times, inode numbers and the order
of directory listings (componentize-py issue #247). ``componentize`` copies the inputs into
a fresh directory with normalised times and modes, and runs componentize-py in a fixed
environment under ``detshim.c``, an LD_PRELOAD library that makes all of those constant (its
header says how). See docs/runtime-build.md."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

SHIM_SOURCE = Path(__file__).with_name("detshim.c")
CFLAGS = ("-O2", "-shared", "-fPIC", "-Wall")
LIBS = ("-ldl",)
BUILD_TIMEOUT = 600  # seconds; a build takes about 8
NO_SITE_PACKAGES_WARNING = "warning: site-packages directory not found under"


class BuildError(RuntimeError):
    """The shim or the component could not be built."""


def componentize(
    app_dir: Path,
    wit_dir: Path,
    world: str,
    app_module: str,
    output: Path,
    *,
    python_path: list[Path] = (),
) -> None:
    """Build the component for ``world`` (from the WIT in ``wit_dir``) whose app is module
    ``app_module`` in ``app_dir``, with ``python_path`` searched after it; write it to
    ``output`` atomically. Raises BuildError, with componentize-py's stderr, on failure."""
    _check_platform()
    app_dir, wit_dir, output = Path(app_dir), Path(wit_dir), Path(output)
    tool = Path(sys.executable).parent / "componentize-py"
    if not tool.is_file():
        raise BuildError(f"componentize-py is not installed next to {sys.executable}")
    for what, path in [("app_dir", app_dir), *(("python_path", Path(p)) for p in python_path)]:
        if not path.is_dir():
            raise BuildError(f"{what} {path} is not a directory")
    if not wit_dir.exists():
        raise BuildError(f"wit_dir {wit_dir} does not exist")
    shim = shim_library()

    with tempfile.TemporaryDirectory(prefix="phala-build-") as tmp:
        root = Path(tmp).resolve()
        # Every input under a fixed name: only relative names reach the build. The app is
        # path 0 (the guest's /0), the python_path directories follow in order.
        search = ["app", *(f"path{i}" for i in range(len(python_path)))]
        for name, source in zip(search, [app_dir, *map(Path, python_path)], strict=True):
            _copy_normalised(source, root / name)
        _copy_normalised(wit_dir, root / "wit")
        for name in ("tmp", "home", "no-venv"):
            (root / name).mkdir()
        _set_times(root)

        command = [sys.executable, "-I", "-B", str(tool), "-d", "wit", "-w", world,
                   "componentize", "--stub-wasi"]
        for name in search:
            command += ["-p", name]
        command += [app_module, "-o", "out.wasm"]
        try:
            done = subprocess.run(
                command, cwd=root, env=_environment(root, shim), stdin=subprocess.DEVNULL,
                capture_output=True, text=True, errors="replace", timeout=BUILD_TIMEOUT,
                umask=0o022,
            )
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"componentize-py did not finish within {BUILD_TIMEOUT} s") from exc
        built = root / "out.wasm"
        if done.returncode != 0 or not built.is_file():
            raise BuildError(_failure(done))
        _replace_atomically(built, output)


def shim_library() -> Path:
    """The compiled shim, built once per shim source (and compiler command) into the cache."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise BuildError("no C compiler found (cc, gcc or $CC) to build the determinism shim")
    source = SHIM_SOURCE.read_bytes()
    key = hashlib.sha256(
        source + "\0".join([cc, *CFLAGS, *LIBS]).encode()
    ).hexdigest()[:16]
    cache = _cache_dir()
    library = cache / f"detshim-{key}.so"
    if library.is_file():
        return library
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".detshim-{key}.{os.getpid()}.so"
    done = subprocess.run(
        [cc, *CFLAGS, "-o", str(partial), str(SHIM_SOURCE), *LIBS],
        capture_output=True, text=True, errors="replace",
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BuildError(f"compiling {SHIM_SOURCE.name} with {cc} failed:\n{done.stderr.strip()}")
    os.replace(partial, library)  # another process compiling the same source wins or loses alike
    return library


def _cache_dir() -> Path:
    """$PHALA_BUILD_CACHE, else .phala-build in the repository (ignored by git through a
    .gitignore of its own), else a per-user cache folder."""
    configured = os.environ.get("PHALA_BUILD_CACHE")
    if configured:
        return Path(configured)
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file() and os.access(repo, os.W_OK):
        cache = repo / ".phala-build"
        cache.mkdir(exist_ok=True)
        ignore = cache / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
        return cache
    return Path.home() / ".cache" / "phala-build"


def _check_platform() -> None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise BuildError(
            f"reproducible builds need Linux on x86_64 (the shim is written for it), "
            f"not {sys.platform} on {platform.machine()}"
        )


def _environment(root: Path, shim: Path) -> dict[str, str]:
    """All the build sees of the environment (the host Python runs with -I -B: no PYTHON*
    variables, no user site, no bytecode written). VIRTUAL_ENV names an empty directory:
    without it componentize-py would add the host's site-packages (from $VIRTUAL_ENV, pipenv
    or the python3 on PATH) to the app's search path; with no lib/ in it, it adds nothing
    (and warns)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "LANG": "C",
        "LC_ALL": "C",
        "TZ": "UTC",
        "VIRTUAL_ENV": str(root / "no-venv"),
        "LD_PRELOAD": str(shim),
        "DETSHIM_ROOT": str(root),
    }


def _copy_normalised(source: Path, dest: Path) -> None:
    """Copy a file or a tree (following symlinks, leaving out __pycache__) with modes 0644 and
    0755; times are set by _set_times once everything is in place."""
    if source.is_file():
        dest.mkdir()
        _copy_file(source, dest / source.name)
        return
    dest.mkdir()
    for entry in sorted(source.iterdir(), key=lambda p: p.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            _copy_normalised(entry, dest / entry.name)
        elif entry.is_file():
            _copy_file(entry, dest / entry.name)
        else:
            raise BuildError(f"{entry} is neither a file nor a directory")


def _copy_file(source: Path, dest: Path) -> None:
    shutil.copyfile(source, dest)
    os.chmod(dest, 0o644)


def _set_times(root: Path) -> None:
    """Every time in the build directory set to 0, directories after their contents."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (0, 0), follow_symlinks=False)
        os.chmod(dirpath, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        os.utime(dirpath, (0, 0), follow_symlinks=False)


def _replace_atomically(built: Path, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(built, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(partial, 0o644)
        os.replace(partial, output)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _failure(done: subprocess.CompletedProcess[str]) -> str:
    stderr = "\n".join(_without_venv_warning(done.stderr.splitlines())).strip()
    if done.returncode < 0:
        how = f"was killed by signal {-done.returncode}"
        if -done.returncode == 31:  # SIGSYS: something ran a program, or blocked SIGSYS
            how += " (SIGSYS from the determinism shim's seccomp filter)"
    else:
        how = f"exited with status {done.returncode}"
    return f"componentize-py {how}:\n{stderr or done.stdout.strip() or '(no output)'}"


def _without_venv_warning(lines: Iterable[str]) -> list[str]:
    return [line for line in lines if not line.startswith(NO_SITE_PACKAGES_WARNING)]
