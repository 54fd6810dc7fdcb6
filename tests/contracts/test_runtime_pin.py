"""The chain pins the contract runtime its workers must run: a worker whose runtime differs
runs no contract, reports nothing and says why; root can pin another (an upgrade)."""

from __future__ import annotations

from pathlib import Path

from phala.chain.runtime import cluster, contracts
from phala.chain.spec import ChainSpec
from phala.contracts.vm.build import local_contract_runtime
from phala.devnet.inprocess import Network

from .test_cluster_contracts import ALICE, BOB, command, deploy


def _network(tmp_path: Path) -> Network:
    net = Network(tmp_path, [b"gk1", b"wk1", b"wk2", b"out"])
    net.launch(gatekeepers=1)
    gk, wk1, wk2, out = net.members
    net.sudo(cluster.create_cluster([wk1.identity, wk2.identity]))
    return net


def test_a_spec_pins_the_runtime_and_round_trips():
    spec = ChainSpec.dev(contract_runtime=local_contract_runtime())
    assert ChainSpec.from_json(spec.to_json()).contract_runtime == local_contract_runtime()
    assert spec.runtime_genesis()["Contracts"] == {"runtime": local_contract_runtime()}


def test_workers_with_another_runtime_run_no_contracts(tmp_path: Path):
    net = _network(tmp_path)
    gk, wk1, wk2, out = net.members
    try:
        contract = deploy(net)
        command(net, contract, ALICE, "transfer", [BOB.public_key, 5])
        assert (contract, 1) in wk1.contracts.receipts
        # Root pins a runtime nobody runs: the workers refuse, say why, and report nothing.
        net.sudo(contracts.set_runtime_identity(b"\x07" * 32))
        assert net.read(contracts.RuntimeIdentity) == b"\x07" * 32
        command(net, contract, ALICE, "transfer", [BOB.public_key, 5])
        for worker in (wk1, wk2):
            assert (contract, 2) not in worker.contracts.receipts
            refusal = worker.contracts.runtime_refusal()
            assert refusal is not None and "0x" + "07" * 32 in refusal
            assert worker.worker.info()["sandbox"]["refused"] == refusal
        assert net.read_map(contracts.PendingFees, (contract, 2)) is not None  # nobody reported
        # Pinning the runtime they do run lets them carry on with the next command.
        net.sudo(contracts.set_runtime_identity(local_contract_runtime()))
        command(net, contract, ALICE, "transfer", [BOB.public_key, 5])
        assert wk1.contracts.receipts[(contract, 3)].status == 0
        assert wk1.contracts.runtime_refusal() is None
    finally:
        for m in net.members:
            m.contracts.close()
