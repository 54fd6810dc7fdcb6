"""Build the contract runtime component and know who it is.

The runtime is one WebAssembly component: CPython 3.14 (bundled by ``componentize-py``,
pinned in ``pyproject.toml``) with the SDK (:mod:`phala.contracts.sdk`, ``values``,
``policy``) and the guest entry points (:mod:`phala.contracts.vm.guest.phala_runtime`)
imported into its snapshot. Every worker builds it from the same pinned inputs and must get
the same bytes (:mod:`phala.contracts.vm.reproducible`), because fuel, hashes and where the
VM's stack runs out all depend on them.

:func:`runtime_identity` is ``blake2_256`` of those bytes together with the wasmtime
version and the machine architecture (compiled code, hence the stack depth at which a
trap happens, depends on both). The chain spec records the identity its workers must
run; a worker whose identity differs refuses to run contracts and says why.

Built files live in :func:`cache_dir` (``$PHALA_BUILD_CACHE``, else ``.phala-build`` at the
project's root): the component, and its compiled form for this wasmtime and machine, made
once and loaded with ``deserialize`` ever after.

Run ``python -m phala.contracts.vm.build`` to build it (``make`` does).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
WIT_DIR = PACKAGE / "wit"
WORLD = "runtime"
APP_MODULE = "phala_runtime"
# The files of the phala package the guest imports (everything else stays on the host).
GUEST_MODULES = ("contracts/sdk.py", "contracts/values.py", "contracts/policy.py", "contracts/wire.py", "core/compact.py")
COMPONENT_NAME = "phala-runtime.wasm"


def cache_dir() -> Path:
    configured = os.environ.get("PHALA_BUILD_CACHE")
    path = Path(configured) if configured else PACKAGE.parents[2] / ".phala-build"
    path.mkdir(parents=True, exist_ok=True)
    return path


def wasmtime_version() -> str:
    return metadata.version("wasmtime")


def componentize_version() -> str:
    return metadata.version("componentize-py")


def architecture() -> str:
    return platform.machine()


def inputs_digest() -> str:
    """A digest of everything the component is built from: the guest sources, the WIT and
    the componentize-py version. It names the cached component, so an edit rebuilds it."""
    h = hashlib.blake2b(digest_size=16)
    h.update(componentize_version().encode())
    for path in _input_files():
        h.update(str(path.relative_to(PACKAGE.parents[1])).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def _input_files() -> list[Path]:
    phala = PACKAGE.parents[1]
    files = [phala / m for m in GUEST_MODULES]
    files += sorted((PACKAGE / "guest").glob("*.py"))
    files += sorted(WIT_DIR.glob("*.wit"))
    return files


def assemble_app(into: Path) -> None:
    """The guest's Python path: the entry module at the top, and a ``phala`` package that
    holds only :data:`GUEST_MODULES` (with empty package files)."""
    phala = PACKAGE.parents[1]
    for name in (APP_MODULE,):
        shutil.copyfile(PACKAGE / "guest" / f"{name}.py", into / f"{name}.py")
    for relative in GUEST_MODULES:
        target = into / "phala" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(phala / relative, target)
    for package in (into / "phala", into / "phala" / "contracts", into / "phala" / "core"):
        (package / "__init__.py").write_text("")


def build_component(output: Path) -> None:
    """Build the component into ``output`` (reproducibly: same inputs, same bytes)."""
    from .reproducible import componentize

    with tempfile.TemporaryDirectory(prefix="phala-runtime-app-") as tmp:
        app = Path(tmp) / "app"
        app.mkdir()
        assemble_app(app)
        componentize(app, WIT_DIR, WORLD, APP_MODULE, output)


def component_path() -> Path:
    """The built component for the current inputs, built first if missing (under a lock,
    so processes started together build it once)."""
    path = cache_dir() / f"phala-runtime-{inputs_digest()}.wasm"
    if path.exists():
        return path
    with open(cache_dir() / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            build_component(path)
    return path


def runtime_identity(component: Path | None = None) -> str:
    """``0x`` + blake2_256 of the component's bytes, the wasmtime version, the machine
    architecture and the engine's configuration (:data:`.engine.ENGINE_TAG`)."""
    from .engine import ENGINE_TAG  # (engine imports this module)

    data = (component or component_path()).read_bytes()
    h = hashlib.blake2b(digest_size=32)
    h.update(hashlib.blake2b(data, digest_size=32).digest())
    h.update(f"/wasmtime {wasmtime_version()}/{architecture()}/{ENGINE_TAG}".encode())
    return "0x" + h.hexdigest()


def local_contract_runtime() -> bytes:
    """This machine's runtime identity as 32 bytes (what a dev chain spec pins)."""
    return bytes.fromhex(runtime_identity()[2:])


def main() -> None:
    path = component_path()
    from .engine import compiled_path

    compiled_path(path)
    print(f"runtime {runtime_identity(path)}: {path}")


if __name__ == "__main__":
    main()
