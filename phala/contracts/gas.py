"""The gas schedule: gas is wasmtime fuel, one unit per WebAssembly instruction executed by
the contract runtime (the interpreter's own C code included), plus what host functions
charge by size (:mod:`phala.contracts.vm.engine`). The figures these limits rest on are
measured by ``phala bench contracts`` and stated in docs/contracts.md.

The largest gas limit of one call is the slowest fuel rate measured over the named
workloads, times the watchdog, divided by four: so no call that gas admits can reach the
watchdog, even on a loaded machine (``tests/contracts/test_gas_schedule.py``).
"""

from __future__ import annotations

WATCHDOG_SECONDS = 10.0  # the last line: a call past it halts the contract on that worker
SLOWEST_FUEL_PER_SECOND = 400_000_000  # the slowest named workload, measured (docs/contracts.md)
MAX_GAS_LIMIT = int(SLOWEST_FUEL_PER_SECOND * WATCHDOG_SECONDS / 4)  # 1e9
COMMAND_GAS = 100_000_000  # the default gas limit of a command (a token transfer uses ~1M)
QUERY_GAS = 100_000_000  # every query's limit (queries carry no fee)
HANDLER_GAS = 50_000_000  # deposits and messages from other contracts carry no fee of their own
