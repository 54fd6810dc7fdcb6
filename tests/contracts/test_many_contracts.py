"""One executor runs a block that reaches as many contracts as the chain allows in one block
(gas.MAX_CONTRACTS_PER_BLOCK), each with its own open instance, and gives every one of them
the same outcome and gas as a block of its own would."""

from __future__ import annotations

from pathlib import Path

from phala.contracts import protocol as p
from phala.contracts.host import Executor
from phala.contracts.values import encode_plain
from phala.core.gas import COMMAND_GAS, MAX_CONTRACTS_PER_BLOCK

ALICE, BOB = b"\x01" * 32, b"\x02" * 32
TOKEN = (Path(__file__).resolve().parents[2] / "examples" / "token.py").read_text()


def call(contract: bytes, kind: int, method: str, args: list) -> p.Call:
    return p.Call(kind, method, encode_plain(args), p.CallContext(ALICE, 1, 6000, contract, bytes(32)), COMMAND_GAS)


def test_a_block_with_the_most_contracts_the_chain_allows():
    ids = [i.to_bytes(32, "big") for i in range(MAX_CONTRACTS_PER_BLOCK)]
    with Executor() as executor:
        for contract in ids:
            assert executor.install(contract, TOKEN).status == p.OK
            executor.run(contract, [call(contract, p.CONSTRUCTOR, "init", [1000])])
        for round_ in range(2):  # each contract's block open at once, calls interleaved
            for contract in ids:
                executor.queue(contract, call(contract, p.COMMAND, "transfer", [BOB, 1 + round_]))
        outcomes = executor.outcomes()
        writes = [executor.commit(contract) for contract in ids]
        assert {o.status for o in outcomes} == {p.OK}
        assert len({o.gas_used for o in outcomes[: len(ids)]}) == 1  # the same work, the same gas
        assert all(len(w) == 2 for w in writes)  # two balances each
        # One contract alone in a block of its own gets exactly the same.
        alone = ids[0]
        with Executor() as other:
            assert other.install(alone, TOKEN).status == p.OK
            other.run(alone, [call(alone, p.CONSTRUCTOR, "init", [1000])])
            solo, solo_writes = other.run(alone, [call(alone, p.COMMAND, "transfer", [BOB, 1]),
                                                  call(alone, p.COMMAND, "transfer", [BOB, 2])])
        assert [o.gas_used for o in solo] == [outcomes[0].gas_used, outcomes[len(ids)].gas_used]
        assert solo_writes == writes[0]
