"""Fixtures of the end-to-end tests: node processes, killed at teardown whatever happens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import NodeProcess
from .worker_helpers import Processes


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """``start_node(seal="interval", block_time=0.2, base_path=None)`` starts a dev node and
    returns it once its RPC port is known. Every node started is SIGKILLed at teardown."""
    nodes: list[NodeProcess] = []

    def start(
        seal: str = "interval", block_time: float = 0.2, base_path: Path | None = None
    ) -> NodeProcess:
        tag = f"node{len(nodes)}"
        node = NodeProcess(base_path or tmp_path / tag / "base", seal, block_time, tag)
        nodes.append(node)
        return node.start()

    yield start
    for node in nodes:
        node.kill()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """The phala processes a test starts (``processes.add``), SIGKILLed at teardown."""
    procs = Processes(tmp_path / "logs")
    yield procs
    procs.kill_all()
