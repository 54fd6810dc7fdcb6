"""``phala bench contracts``: confidential token transfers and queries, in one process.

An in-process network (``phala.devnet.inprocess``: a dev node, a gatekeeper and a worker of
one cluster, each with its real roles and a real executor process for the contract) deploys
``examples/token.py``. Measured:

* ``commands_per_s`` (a): blocks full of sealed ``transfer`` commands are made and finalized
  beforehand; the worker, resumed from a checkpoint taken before them, verifies and
  dispatches those blocks, opening and running every command in its executor. Timed from
  the first block handed over to the last one dispatched.
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


def deploy(net: Network) -> bytes:
    code_hash = blake2_256(TOKEN)
    net.block((ALICE, contracts.upload_code(TOKEN)))
    epoch = net.read_map(cluster.ClusterPubkeys, CID)[-1]
    contract = contract_id(ALICE.public_key, code_hash, CID, b"bench")
    args = seal_constructor(epoch.ecdh, net.chain.genesis_hash, contract, ALICE, "init", [10**15])
    net.block((ALICE, contracts.instantiate(code_hash, CID, b"bench", args, GAS)))
    net.settle()
    return contract


def sealed_transfers(net: Network, contract: bytes, count: int) -> list:
    keys = net.read_map(contracts.ContractKeys, contract)
    payloads = [seal_command(keys.ecdh, net.chain.genesis_hash, contract, ALICE, "transfer", [BOB.public_key, 1])
                for _ in range(count)]
    return [contracts.command(contract, payload, GAS) for payload in payloads]


def run(quick: bool = False) -> dict:
    per_block = 200 if quick else 500
    blocks = 2 if quick else 6
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
    return {
        "commands": commands,
        "commands_per_s": commands / dispatch_s,
        "end_to_end_commands": e2e_count,
        "end_to_end_commands_per_s": e2e_count / e2e_s,
        "crypto_floor_per_s": crypto_floor(),
        "crypto_floor_e2e_per_s": crypto_floor(with_signature=True),
        "queries": queries,
        "queries_per_s": queries / sum(latencies),
        "query_p50_ms": 1000 * statistics.median(latencies),
        "query_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "targets": {"commands_per_s": 2000, "query_p99_ms": 20},
        "floors": {"end_to_end_commands_per_s": "crypto_floor_e2e_per_s"},
        "quick": quick,
    }
