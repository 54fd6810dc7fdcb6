"""The Contracts pallet, per block: the gas and the number of contracts one cluster may be
asked to run in a block, reports that come by the block, and the contract runtime root pins."""

from __future__ import annotations

from phala.chain.runtime import contracts
from phala.chain.runtime.contracts import GAS_PRICE, MAX_GAS_LIMIT
from phala.chain.runtime.frame import BadOrigin
from phala.core.codec import encode
from phala.core.contracts import (
    MAX_REPORTS,
    REPORT_TOPIC,
    REPORTS_TOPIC,
    CommandOutcome,
    CommandReports,
)
from phala.core.gas import BLOCK_GAS_PER_CLUSTER
from phala.core.keys import dev_keypair

# The master key the cluster epoch keys of these tests derive from (the chain never sees it).
from .contracts_support import (
    C0,
    C1,
    GAS,
    SEALED,
    count,
    deliver,
    instantiate,
    ok,
    pending,
    refused,
    report,
    reserved,
)
from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    assert_issuance_consistent,
    error_info,
    events_of,
    failures,
    head_env,
    message_failures,
    root,
    sign,
    submit_and_produce,
)


def test_root_pins_the_contract_runtime(chain):
    with head_env(chain.chain) as env:
        assert contracts.RuntimeIdentity.get(env.state) is None  # the test spec pins none
    root(chain, contracts.set_runtime_identity(b"\x05" * 32))
    with head_env(chain.chain) as env:
        assert contracts.RuntimeIdentity.get(env.state) == b"\x05" * 32
    assert events_of(chain.chain, contracts.RuntimeIdentitySet) == [contracts.RuntimeIdentitySet(b"\x05" * 32)]
    refused(chain, BOB, contracts.set_runtime_identity(bytes(32)), BadOrigin)


def test_a_blocks_commands_to_one_cluster_share_a_gas_cap(chain):
    """Commands of one block to the contracts of one cluster reserve at most
    BLOCK_GAS_PER_CLUSTER together; the one that would pass it fails and changes nothing;
    another cluster, and the next block, have their own."""
    in_c0, in_c1 = instantiate(chain, BOB), instantiate(chain, BOB, C1, b"other")
    per = BLOCK_GAS_PER_CLUSTER // MAX_GAS_LIMIT
    who = [ALICE, BOB, CHARLIE, dev_keypair("Dave"), dev_keypair("Eve")][: per + 1]
    ferdie = dev_keypair("Ferdie")
    raws = [sign(k, contracts.command(in_c0, SEALED, MAX_GAS_LIMIT), chain.account_next_index(k.public_key))
            for k in who]
    raws.append(sign(ferdie, contracts.command(in_c1, SEALED, MAX_GAS_LIMIT), chain.account_next_index(ferdie.public_key)))
    before = count(chain, in_c0)
    submit_and_produce(chain, *raws)
    assert [error for _, error in failures(chain.chain)] == [error_info(contracts.BlockGasExhausted)]
    assert count(chain, in_c0) == before + per  # the last one took no number
    assert count(chain, in_c1) == 2  # the constructor, and the other cluster's own cap
    assert reserved(chain, who[-1]) == 0
    # The next block starts again.
    ok(chain, who[-1], contracts.command(in_c0, SEALED, MAX_GAS_LIMIT))


def test_a_block_reaches_at_most_max_contracts_per_block_of_a_cluster(chain, monkeypatch):
    """A worker keeps one VM instance open per contract with calls in the block: the chain
    lets at most MAX_CONTRACTS_PER_BLOCK of a cluster's contracts have calls in one block
    (commands, deposits, instantiations, messages); more calls to the same ones are fine."""
    monkeypatch.setattr(contracts.gas, "MAX_CONTRACTS_PER_BLOCK", 2)
    a, b, c = (instantiate(chain, BOB, C0, salt) for salt in (b"a", b"b", b"c"))
    raws = [
        sign(ALICE, contracts.command(a, SEALED, GAS), chain.account_next_index(ALICE.public_key)),
        sign(BOB, contracts.command(b, SEALED, GAS), chain.account_next_index(BOB.public_key)),
        sign(CHARLIE, contracts.command(a, SEALED, GAS), chain.account_next_index(CHARLIE.public_key)),
        sign(dev_keypair("Dave"), contracts.command(c, SEALED, GAS), chain.account_next_index(dev_keypair("Dave").public_key)),
    ]
    submit_and_produce(chain, *raws)
    assert [error for _, error in failures(chain.chain)] == [error_info(contracts.BlockContractsExhausted)]
    assert (count(chain, a), count(chain, b), count(chain, c)) == (3, 2, 1)
    ok(chain, ALICE, contracts.command(c, SEALED, GAS))  # a new block, a new count


def test_one_message_reports_a_blocks_commands_and_skips_what_no_fee_awaits(chain, seq):
    """``^phala/contracts/reports`` settles each of a block's commands as its own report
    would, in order; one the chain refuses (its fee reclaimed already, or a gas above its
    limit) changes nothing and is named in ``ReportSkipped``; the others still settle."""
    contract = instantiate(chain)
    deliver(chain, seq, C0, REPORT_TOPIC, report(contract, 0, 10))
    for who, gas in ((CHARLIE, GAS), (BOB, 2 * GAS), (CHARLIE, 3 * GAS)):
        ok(chain, who, contracts.command(contract, SEALED, gas))  # 1, 2, 3
    batch = CommandReports(contract, [
        CommandOutcome(1, 0, GAS // 2),
        CommandOutcome(2, 1, 3 * GAS, "too much"),  # more than its limit: skipped
        CommandOutcome(3, 2, 3 * GAS, "out of gas"),
        CommandOutcome(3, 0, 1),  # reported already: skipped
    ])
    deliver(chain, seq, C0, REPORTS_TOPIC, encode(batch))
    assert message_failures(chain) == []
    reported = events_of(chain.chain, contracts.CommandReported)
    assert [(e.index, e.status, e.gas_used) for e in reported] == [(1, 0, GAS // 2), (3, 2, 3 * GAS)]
    skipped = events_of(chain.chain, contracts.ReportSkipped)
    assert [(e.index, e.error) for e in skipped] == [(2, contracts.GasExceedsLimit.code), (3, contracts.UnknownCommand.code)]
    assert pending(chain, contract, 2) is not None and pending(chain, contract, 1) is None
    assert reserved(chain, CHARLIE) == 0 and reserved(chain, BOB) == 2 * GAS * GAS_PRICE
    assert_issuance_consistent(chain.chain)
    # From another cluster, or too many: refused whole, nothing changes.
    handler_refused_before = pending(chain, contract, 2)
    deliver(chain, seq, C1, REPORTS_TOPIC, encode(CommandReports(contract, [CommandOutcome(2, 0, 1)])))
    assert [error for _, error in message_failures(chain)] == [error_info(contracts.WrongCluster)]
    too_many = CommandReports(contract, [CommandOutcome(2, 0, 1)] * (MAX_REPORTS + 1))
    deliver(chain, seq, C0, REPORTS_TOPIC, encode(too_many))
    assert [error for _, error in message_failures(chain)] == [error_info(contracts.InvalidContractMessage)]
    assert pending(chain, contract, 2) == handler_refused_before
