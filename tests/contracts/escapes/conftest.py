"""One set of canaries and two attacker executors for the whole corpus (an escape that
brings an executor down fails its test, and the next escape gets a fresh executor)."""

from __future__ import annotations

import pytest

from .canaries import Canaries, plant, pull_up


@pytest.fixture(scope="session")
def canaries(tmp_path_factory) -> Canaries:
    planted = plant(tmp_path_factory.mktemp("canaries"))
    yield planted
    pull_up(planted)
