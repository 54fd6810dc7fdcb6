"""Gas is counted instructions, not time: the same blocks on an executor whose machine is
busy (two processes spinning on its two cores) give exactly what they give on a quiet one."""

from __future__ import annotations

import subprocess
import sys

from .test_vm_state import COMMON, Node


def _run_common(node: Node) -> list:
    return [(node.block(number, calls), node.query("peek", number)) for number, calls in COMMON]


def test_the_same_blocks_under_cpu_load_give_the_same_everything():
    quiet = Node()
    try:
        expected = _run_common(quiet)
    finally:
        quiet.executor.close()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = Node()
        try:
            assert _run_common(loaded) == expected
            assert loaded.storage == quiet.storage
        finally:
            loaded.executor.close()
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
