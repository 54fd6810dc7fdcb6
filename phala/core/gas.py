"""The gas schedule, shared by the chain (fees, limits) and the workers (metering).

Gas is wasmtime fuel: one unit per WebAssembly instruction the contract runtime executes
(the interpreter's own C code included), plus what host functions charge by the bytes they
move (:mod:`phala.contracts.vm.engine`). The figures these limits rest on are measured by
``phala bench contracts`` and stated in docs/contracts.md.

The largest gas limit of one call is the slowest fuel rate measured over the named
workloads, times the watchdog, divided by four, so no call that gas admits comes near the
watchdog, even on a loaded machine (``tests/contracts/test_gas_schedule.py`` measures it).
"""

from __future__ import annotations

WATCHDOG_SECONDS = 10.0  # the last line: a call past it halts the contract on that worker
SLOWEST_FUEL_PER_SECOND = 400_000_000  # the slowest named workload, measured (docs/contracts.md)
MAX_GAS_LIMIT = int(SLOWEST_FUEL_PER_SECOND * WATCHDOG_SECONDS / 4)  # of one call: 1e9
COMMAND_GAS = 100_000_000  # the default gas limit of a command (a token transfer uses about 1M)
QUERY_GAS = 100_000_000  # every query's limit (queries carry no fee)
HANDLER_GAS = 50_000_000  # deposits and messages from other contracts carry no fee of their own
# Balance units per unit of gas: 10**-9 PHA (PHA has 12 decimals); a token transfer costs
# about 0.001 PHA, the largest gas limit reserves 1 PHA.
GAS_PRICE = 1_000
# The gas limits of one block's commands to the contracts of one cluster, together: what
# the cluster's workers must be able to run before the next block.
BLOCK_GAS_PER_CLUSTER = 4 * MAX_GAS_LIMIT
# How many contracts of one cluster may have calls in one block: a worker keeps one VM
# instance open for each (each reserves the capped linear memory, 256 MiB).
MAX_CONTRACTS_PER_BLOCK = 128
