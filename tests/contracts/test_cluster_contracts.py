"""Contracts through the chain, in process: a gatekeeper, two workers of one cluster and an
outsider. Code is uploaded and instantiated with sealed constructor arguments; commands from
two accounts are sealed to the contract's key; both workers reach byte-identical state; the
outsider sees only ciphertext; a command copied into another account's extrinsic does not
open and changes nothing; fees are refunded down to the gas used."""

from __future__ import annotations

from pathlib import Path

import pytest

from phala.chain.runtime import cluster, contracts, system
from phala.client.contracts import seal_command, seal_constructor
from phala.contracts import protocol as p
from phala.contracts.values import decode_plain
from phala.core.cluster import cluster_id
from phala.core.contracts import COMMAND_TOPIC, ContractCommand, contract_id
from phala.core.hashing import blake2_256
from phala.core.keys import dev_keypair

from ..gatekeeper.network import Network

ALICE, BOB = dev_keypair("Alice"), dev_keypair("Bob")
CID = cluster_id(0)
TOKEN = (Path(__file__).resolve().parents[2] / "examples" / "token.py").read_bytes()
GAS = 1_000_000


@pytest.fixture
def net(tmp_path: Path):
    net = Network(tmp_path, [b"gk1", b"wk1", b"wk2", b"out"])
    net.launch(gatekeepers=1)
    gk, wk1, wk2, out = net.members
    net.sudo(cluster.create_cluster([wk1.identity, wk2.identity]))
    yield net
    for m in net.members:
        m.contracts.close()


def deploy(net: Network) -> bytes:
    code_hash = blake2_256(TOKEN)
    net.block((ALICE, contracts.upload_code(TOKEN)))
    epoch_keys = net.read_map(cluster.ClusterPubkeys, CID)[-1]
    contract = contract_id(ALICE.public_key, code_hash, CID, b"salt")
    args = seal_constructor(epoch_keys.ecdh, net.chain.genesis_hash, contract, ALICE, "init", [1_000])
    net.block((ALICE, contracts.instantiate(code_hash, CID, b"salt", args, GAS)))
    net.settle()
    return contract


def command(net: Network, contract: bytes, sender, method: str, args: list) -> None:
    keys = net.read_map(contracts.ContractKeys, contract)
    payload = seal_command(keys.ecdh, net.chain.genesis_hash, contract, sender, method, args)
    net.block((sender, contracts.command(contract, payload, GAS)))
    net.settle()


def receipt(member, contract: bytes, index: int):
    return member.contracts.receipts[(contract, index)]


def test_deploy_and_commands_from_two_accounts(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    assert net.read_map(contracts.ContractKeys, contract) is not None
    command(net, contract, ALICE, "transfer", [BOB.public_key, 100])
    command(net, contract, BOB, "transfer", [ALICE.public_key, 30])
    for index in (1, 2):
        assert receipt(wk1, contract, index).status == p.OK
        assert receipt(wk1, contract, index) == receipt(wk2, contract, index)
    assert wk1.contracts.state_hash(contract) == wk2.contracts.state_hash(contract)
    state = decode_plain(wk1.contracts.contracts[contract].state)
    assert state["balances"] == {ALICE.public_key: 930, BOB.public_key: 70}
    # Neither the gatekeeper nor the outsider runs it or learns anything.
    assert contract not in out.contracts.contracts and contract not in gk.contracts.contracts


def test_a_command_copied_into_another_extrinsic_does_not_open(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    command(net, contract, ALICE, "transfer", [BOB.public_key, 100])
    [sealed] = [m for m in net.sent(COMMAND_TOPIC, ContractCommand) if m.index == 1]
    before = wk1.contracts.state_hash(contract)
    # Bob copies Alice's sealed transfer into his own extrinsic.
    net.block((BOB, contracts.command(contract, sealed.payload, GAS)))
    net.settle()
    copied = receipt(wk1, contract, 2)
    assert copied.status == p.ERROR and "does not open" in copied.message
    assert wk1.contracts.state_hash(contract) == before == wk2.contracts.state_hash(contract)


def test_fees_are_refunded_down_to_the_gas_used(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    command(net, contract, ALICE, "transfer", [BOB.public_key, 100])
    reported = [e for e in net.events if isinstance(e, contracts.CommandReported)]
    assert [(e.index, e.status) for e in reported] == [(0, p.OK), (1, p.OK)]
    used = receipt(wk1, contract, 1).gas_used
    assert 0 < used < GAS
    assert reported[1].gas_used == used
    assert reported[1].refunded == (GAS - used) * contracts.GAS_PRICE
    # Nothing stays reserved once both are reported.
    assert net.read_map(system.Account, ALICE.public_key).data.reserved == 0


def test_removing_a_worker_moves_the_contract_to_the_new_epoch(net: Network):
    gk, wk1, wk2, out = net.members
    contract = deploy(net)
    old_keys = net.read_map(contracts.ContractKeys, contract)
    net.sudo(cluster.remove_worker(CID, wk2.identity))
    new_keys = net.read_map(contracts.ContractKeys, contract)
    assert (old_keys.epoch, new_keys.epoch) == (0, 1) and new_keys.ecdh != old_keys.ecdh
    command(net, contract, ALICE, "transfer", [BOB.public_key, 5])
    assert receipt(wk1, contract, 1).status == p.OK
    # The removed worker stopped running it and never saw the command in the clear.
    assert contract not in wk2.contracts.contracts
    assert (contract, 1) not in wk2.contracts.receipts
    reported = [e for e in net.events if isinstance(e, contracts.CommandReported) and e.index == 1]
    assert [e.status for e in reported] == [p.OK]  # signed with the new epoch's key
