"""``phala bench contracts``: confidential token transfers and queries, in one process.

An in-process network (``phala.devnet.inprocess``: a dev node, a gatekeeper and a worker of
one cluster, each with its real roles and a real executor process for the contract) deploys
``examples/token.py``. Measured:

* ``commands_per_s`` (a): 3,000 sealed ``transfer`` commands to one contract, in finalized
  blocks of 300, are made beforehand; the worker, resumed from a checkpoint taken before
  them, verifies and dispatches those blocks, opening every command and running it in the
  WebAssembly VM. Timed from the first block handed over to the last one dispatched.
* ``spread_commands_per_s`` (a'): the same over 100 token contracts, 10 commands to each
  in every block (so 100 fresh instances a block).
* ``fuel_per_s.<workload>``: the fuel each named workload of the gas schedule
  (:mod:`phala.contracts.workloads`) burns per second, run to its gas limit in an executor;
  the schedule's largest gas limit rests on the slowest (docs/contracts.md).
* ``end_to_end_commands_per_s`` (b): from the client sealing and submitting commands to the
  worker holding each receipt and the chain having refunded each fee (blocks, sync, report
  relay included), everything in one process.
* ``query_p50_ms``, ``query_p99_ms``, ``queries_per_s``: a client seals a signed
  ``balance_of`` query, the worker answers it, the client opens the answer.

Floor, in the same run: ``crypto_floor_per_s``, one X25519 agreement plus one AES-256-GCM
decryption of a command-sized envelope per second (what (a) must pay per command at least),
and ``crypto_floor_e2e_per_s``, the same plus one sr25519 verification (what (b) pays).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from phala.chain.runtime import cluster, contracts
from phala.client.contracts import (
    new_query,
    open_answer,
    seal_command,
    seal_constructor,
    seal_query,
)
from phala.contracts.values import decode_plain
from phala.core.cluster import cluster_id
from phala.core.contracts import QUERY_METHOD, contract_id
from phala.core.envelope import X25519Keypair, open_envelope, seal
from phala.core.gas import MAX_GAS_LIMIT, SLOWEST_FUEL_PER_SECOND
from phala.core.hashing import blake2_256
from phala.core.keys import dev_keypair, verify
from phala.devnet.inprocess import Network

ALICE, BOB = dev_keypair("Alice"), dev_keypair("Bob")
TOKEN = (Path(__file__).resolve().parents[1] / "examples" / "token.py").read_bytes()
GAS = 10_000_000
CID = cluster_id(0)


def crypto_floor(seconds: float = 0.5, with_signature: bool = False) -> float:
    recipient = X25519Keypair.generate()
    sealed = seal(recipient.public, b"c" * 120, b"aad")
    message, key = b"m" * 100, ALICE
    signature = key.sign(message)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            open_envelope(recipient.secret, sealed, b"aad")
            if with_signature:
                verify(key.public_key, message, signature)
        n += 50
    return n / (time.perf_counter() - start)


def deploy(net: Network, salt: bytes = b"bench") -> bytes:
    code_hash = blake2_256(TOKEN)
    if net.read_map(contracts.Code, code_hash) is None:
        net.block((ALICE, contracts.upload_code(TOKEN)))
    epoch = net.read_map(cluster.ClusterPubkeys, CID)[-1]
    contract = contract_id(ALICE.public_key, code_hash, CID, salt)
    args = seal_constructor(epoch.ecdh, net.chain.genesis_hash, contract, ALICE, "init", [10**15])
    net.block((ALICE, contracts.instantiate(code_hash, CID, salt, args, GAS)))
    net.settle()
    return contract


def sealed_transfers(net: Network, contract: bytes, count: int) -> list:
    keys = net.read_map(contracts.ContractKeys, contract)
    payloads = [seal_command(keys.ecdh, net.chain.genesis_hash, contract, ALICE, "transfer", [BOB.public_key, 1])
                for _ in range(count)]
    return [contracts.command(contract, payload, GAS) for payload in payloads]


def fuel_rates(gas: int) -> dict[str, float]:
    """Fuel per second of each named workload, each run to ``gas`` (best of three)."""
    from phala.contracts.harness import LocalContract
    from phala.contracts.workloads import NAMES, SOURCE

    rates = {}
    with LocalContract(SOURCE, sender=ALICE.public_key) as contract:
        for name in NAMES:
            best = None
            for _ in range(3):
                start = time.perf_counter()
                result = contract.command(name, sender=ALICE.public_key, gas_limit=gas)
                seconds = time.perf_counter() - start
                assert result.status == "out of gas", result
                best = seconds if best is None else min(best, seconds)
            rates[name] = gas / best
    return rates


def spread(net: Network, contracts_count: int, per_contract: int, blocks: int) -> tuple[int, float]:
    """(a'): ``blocks`` blocks, each with ``per_contract`` commands to each of
    ``contracts_count`` tokens; the worker resumed from a checkpoint before them dispatches
    them. Returns (commands, seconds)."""
    gk, wk = net.members
    tokens = [deploy(net, f"spread{i}".encode()) for i in range(contracts_count)]
    wk.checkpoint()
    for _ in range(blocks):
        calls = [call for token in tokens for call in sealed_transfers(net, token, per_contract)]
        net.block(*((ALICE, call) for call in calls))
    references = [wk.contracts.state_hash(t) for t in tokens]
    wk.contracts.close()
    wk.restart(net)
    start = time.perf_counter()
    net.sync()
    seconds = time.perf_counter() - start
    assert [wk.contracts.state_hash(t) for t in tokens] == references, "the resumed worker reached another state"
    net.settle()
    return contracts_count * per_contract * blocks, seconds


def run(quick: bool = False) -> dict:
    per_block = 300
    blocks = 2 if quick else 10
    e2e_count = 200 if quick else 1000
    queries = 200 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        net = Network(Path(tmp), [b"gk", b"wk"])
        try:
            return _run(net, per_block, blocks, e2e_count, queries, quick)
        finally:
            for m in net.members:
                m.contracts.close()


def _run(net: Network, per_block: int, blocks: int, e2e_count: int, queries: int, quick: bool) -> dict:
    net.launch(gatekeepers=1)
    gk, wk = net.members
    net.sudo(cluster.create_cluster([wk.identity]))
    contract = deploy(net)
    wk.checkpoint()

    # (a) blocks prepared beforehand, then one worker verifies, opens and runs them.
    for _ in range(blocks):
        net.block(*((ALICE, call) for call in sealed_transfers(net, contract, per_block)))
    commands = per_block * blocks
    reference = wk.contracts.state_hash(contract)
    wk.contracts.close()
    wk.restart(net)
    start = time.perf_counter()
    net.sync()
    dispatch_s = time.perf_counter() - start
    assert wk.contracts.state_hash(contract) == reference, "the resumed worker reached another state"
    assert len([r for r in wk.contracts.receipts.values() if r.status == 0]) >= commands
    net.settle()

    # (b) end to end, in process: seal, submit, blocks, sync, reports relayed and settled.
    start = time.perf_counter()
    calls = sealed_transfers(net, contract, e2e_count)
    for i in range(0, e2e_count, per_block):
        net.block(*((ALICE, call) for call in calls[i : i + per_block]))
    net.settle()
    e2e_s = time.perf_counter() - start
    last = max(i for (c, i) in wk.contracts.receipts if c == contract)
    assert net.read_map(contracts.PendingFees, (contract, last)) is None, "a fee is still pending"

    # Queries: seal, answer, open.
    ecdh = wk.worker.identity.ecdh_public
    latencies = []
    for _ in range(queries):
        t0 = time.perf_counter()
        query, reply = new_query(QUERY_METHOD, contract, "balance_of", [BOB.public_key], wk.identity,
                                 wk.worker.chain.dispatched.number)
        sealed = seal_query(ecdh, net.chain.genesis_hash, BOB, query)
        answer = open_answer(reply, net.chain.genesis_hash, query, wk.queries.answer(sealed))
        latencies.append(time.perf_counter() - t0)
    assert decode_plain(answer.value) == commands + e2e_count
    latencies.sort()

    # (a') the same, spread over many contracts.
    spread_count, spread_s = spread(net, 20 if quick else 100, 10, 1 if quick else 3)
    rates = fuel_rates(200_000_000 if quick else MAX_GAS_LIMIT)
    return {
        "commands": commands,
        "commands_per_s": commands / dispatch_s,
        "end_to_end_commands": e2e_count,
        "end_to_end_commands_per_s": e2e_count / e2e_s,
        "crypto_floor_per_s": crypto_floor(),
        "crypto_floor_e2e_per_s": crypto_floor(with_signature=True),
        "spread_commands": spread_count,
        "spread_commands_per_s": spread_count / spread_s,
        **{f"fuel_per_s_{name}": rate for name, rate in rates.items()},
        "slowest_fuel_per_s": min(rates.values()),
        "schedule_fuel_per_s": SLOWEST_FUEL_PER_SECOND,
        "queries": queries,
        "queries_per_s": queries / sum(latencies),
        "query_p50_ms": 1000 * statistics.median(latencies),
        "query_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "targets": {"commands_per_s": "0.10 of the floor", "query_p99_ms": 20,
                    "slowest_fuel_per_s": f">= {SLOWEST_FUEL_PER_SECOND:,} (the gas schedule's)"},
        "floors": {"end_to_end_commands_per_s": "crypto_floor_e2e_per_s",
                   "spread_commands_per_s": "crypto_floor_per_s",
                   **{f"fuel_per_s_{name}": "schedule_fuel_per_s" for name in rates},
                   "slowest_fuel_per_s": "schedule_fuel_per_s"},
        "quick": quick,
    }
