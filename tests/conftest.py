"""Shared test configuration. Fixtures live next to the tests that use them
(``tests/chain/harness.py`` for in-process nodes, ``tests/e2e/conftest.py`` for node
processes); run ``pytest -m "not e2e"`` to skip the tests that start processes."""
