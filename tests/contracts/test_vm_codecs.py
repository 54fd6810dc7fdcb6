"""The codecs the runtime carries work by any of their names; any other is found nowhere
(the VM has no file system to import one from) and ends the call the same way every time."""

from __future__ import annotations

import pytest

from phala.contracts.harness import LocalContract

SOURCE = '''
from phala.contracts.sdk import Contract, command, constructor


class Codecs(Contract):
    @constructor
    def init(self, ctx):
        pass

    @command
    def round_trip(self, ctx, name: str) -> bytes:
        data = "héllo, wörld".encode(name)
        assert data.decode(name) == "héllo, wörld"
        return data
'''
ALICE = b"\x01" * 32


@pytest.fixture(scope="module")
def contract():
    with LocalContract(SOURCE, sender=ALICE) as c:
        yield c


@pytest.mark.parametrize("name", ["utf-8", "UTF8", "utf-16", "utf_16_le", "UTF-16BE", "utf-32", "utf-32-le",
                                  "utf-32-be", "latin-1", "iso-8859-1", "cp1252"])
def test_the_runtimes_codecs_work_by_any_name(contract, name):
    result = contract.command("round_trip", name, sender=ALICE)
    assert result.ok and result.value == "héllo, wörld".encode(name), result


def test_a_codec_the_runtime_lacks_ends_the_call_deterministically():
    """The same call in the same block on two executors: the same trap, the same gas."""
    results = []
    for _ in range(2):
        with LocalContract(SOURCE, sender=ALICE) as fresh:
            results.append(fresh.command("round_trip", "idna", sender=ALICE))
    assert results[0] == results[1] and results[0].status == "limit exceeded", results[0]
