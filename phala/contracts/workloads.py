"""The named workloads the gas schedule rests on (:mod:`phala.core.gas`).

Each is a contract command that never returns: it runs until its gas is gone. Fuel is
counted per WebAssembly instruction, and instructions differ in cost, so fuel per second
differs between workloads; the largest gas limit of a call is set from the slowest of
them, so that no call gas admits comes near the watchdog. ``phala bench contracts``
measures each one's fuel per second; ``tests/contracts/test_gas_schedule.py`` runs each at
the largest gas limit inside a quarter of the watchdog.
"""

from __future__ import annotations

SOURCE = '''
from phala.contracts.sdk import Contract, Mapping, command, constructor


class Workloads(Contract):
    entries = Mapping()

    @constructor
    def init(self, ctx):
        self.ready = True

    @command
    def plain_bytecode(self, ctx) -> int:
        x = 0
        while True:
            x += 1

    @command
    def big_ints(self, ctx) -> int:
        x = 3 ** 40000
        while True:
            x * x

    @command
    def bulk_copies(self, ctx) -> int:
        block = bytes(100 * 10**6)  # 100 MB copied again and again
        while True:
            block[1:]

    @command
    def bulk_fills(self, ctx) -> int:
        while True:
            bytes(50 * 10**6)

    @command
    def colliding_keys(self, ctx) -> int:
        p = 2**31 - 1  # int hashes are taken modulo p: every key below collides
        while True:
            d = {}
            for i in range(20000):
                d[i * p] = i

    @command
    def host_calls(self, ctx) -> int:
        i = 0
        while True:
            self.entries.get(i)
            i += 1

    @command
    def string_methods(self, ctx) -> int:
        text = "ab" * 10**6
        while True:
            text.find("abc")
            text.strip("ab")
'''

NAMES = ("plain_bytecode", "big_ints", "bulk_copies", "bulk_fills", "colliding_keys", "host_calls", "string_methods")
