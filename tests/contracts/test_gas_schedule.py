"""The gas schedule holds: every named workload, at the largest gas limit a call may have,
ends by running out of gas inside a quarter of the watchdog (no alarm), with the same gas
on two executors."""

from __future__ import annotations

import pytest

from phala.contracts.harness import LocalContract
from phala.contracts.workloads import NAMES, SOURCE
from phala.core.gas import MAX_GAS_LIMIT, SLOWEST_FUEL_PER_SECOND, WATCHDOG_SECONDS

ALICE = b"\x01" * 32


def test_the_largest_gas_limit_follows_from_the_slowest_workload():
    assert MAX_GAS_LIMIT == int(SLOWEST_FUEL_PER_SECOND * WATCHDOG_SECONDS / 4)


@pytest.fixture(scope="module")
def workloads():
    with LocalContract(SOURCE, sender=ALICE) as one, LocalContract(SOURCE, sender=ALICE) as two:
        for executor in (one.executor, two.executor):
            executor.timeout = WATCHDOG_SECONDS / 4  # an alarm here fails the test
        yield one, two


@pytest.mark.parametrize("name", NAMES)
def test_each_workload_at_the_largest_gas_limit_ends_inside_a_quarter_of_the_watchdog(workloads, name):
    one, two = workloads
    results = [contract.command(name, sender=ALICE, gas_limit=MAX_GAS_LIMIT) for contract in (one, two)]
    assert results[0] == results[1]
    assert results[0].status == "out of gas" and results[0].gas_used == MAX_GAS_LIMIT, results[0]
