"""``phala bench chain``: transfer throughput of one node, measured beside its crypto floor.

(a) ``transfers_per_s``: signed transfers validated (pool), included and executed,
    finalized (justified) and written to LMDB, in-process on one core.
(b) ``rpc_transfers_per_s``: transfers submitted over WebSocket JSON-RPC by a separate load
    process with many requests in flight, counted when a finalized block includes them.

Floor: ``sr25519_verify_per_s``, signature verifications per second on one core in the same
run: every transfer costs at least one. ``ratio`` = (a) / floor.
Both runs use a genesis with at least 100,000 funded accounts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sr25519

from phala.chain.blockchain import Blockchain
from phala.chain.consensus import DevConsensus
from phala.chain.db import ChainDB
from phala.chain.node import Node
from phala.chain.runtime import balances
from phala.chain.runtime.executive import VERSION
from phala.chain.runtime.frame import RuntimeCall
from phala.chain.spec import UNIT, ChainSpec, bench_keypair
from phala.core.codec import encode
from phala.core.keys import Keypair, dev_keypair
from phala.core.types import Era, Extrinsic, signing_payload

ACCOUNTS = 100_000


def sr25519_verify_per_s(seconds: float = 1.0) -> float:
    kp = dev_keypair("Alice")
    msg = b"x" * 120
    sig = kp.sign(msg)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            sr25519.verify(sig, msg, kp.public_key)
        n += 500
    return n / (time.perf_counter() - start)


def signed_transfer(kp: Keypair, dest: bytes, nonce: int, genesis: bytes) -> bytes:
    call = encode(balances.transfer_allow_death(dest, UNIT), RuntimeCall)
    era = Era()
    payload = signing_payload(call, era, nonce, 0, VERSION.spec_version, VERSION.transaction_version, genesis, genesis)
    return Extrinsic(kp.public_key, kp.sign(payload), era, nonce, 0, call).encode()


def bench_spec(accounts: int) -> ChainSpec:
    spec = ChainSpec.dev(extra_accounts=accounts)
    # A fixed start time: the same genesis (and hash) in every run.
    return dataclasses.replace(spec, start_time_ms=1_767_225_600_000)


def in_process(spec: ChainSpec, senders: list[Keypair], per_block: int, blocks: int) -> dict:
    """(a): pool validation + block execution + finalization + LMDB commit, one core."""
    with tempfile.TemporaryDirectory() as tmp:
        chain = Blockchain(ChainDB(tmp), spec)
        node = Node(chain, DevConsensus([dev_keypair("Alice")], "manual"))
        genesis = chain.genesis_hash
        n = per_block * blocks
        txs = [
            signed_transfer(senders[i % len(senders)], senders[(i * 7 + 3) % len(senders)].public_key,
                            i // len(senders), genesis)
            for i in range(n)
        ]
        start = time.perf_counter()
        included = 0
        for b in range(blocks):
            for raw in txs[b * per_block : (b + 1) * per_block]:
                node.submit(raw)
            node.produce_block()
            included += len(chain.db.body(chain.head.hash) or [])
        elapsed = time.perf_counter() - start
        node.close()
    return {"transfers": included, "seconds": elapsed, "transfers_per_s": included / elapsed}


def over_rpc(spec_path: Path, transfers: int, connections: int, window: int, block_time: float) -> dict:
    """(b): a node process and a separate load process talking WebSocket JSON-RPC."""
    with tempfile.TemporaryDirectory() as tmp:
        node, url = start_phala(["node", "--chain", str(spec_path), "--base-path", tmp, "--rpc-port", "0",
                                 "--block-time", str(block_time)], "RPC listening on ")
        try:
            out = subprocess.run(
                [sys.executable, "-m", "bench.load", url, str(transfers), str(connections), str(window)],
                capture_output=True, text=True, timeout=900, check=True,
            )
            return json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            node.kill()
            node.wait()


def start_phala(args: list[str], marker: str, timeout: float = 300) -> tuple[subprocess.Popen, str]:
    """Start ``python -m phala ARGS`` and wait for the line that begins with ``marker`` and
    ends with the URL it serves (a large genesis takes a while); returns process and URL."""
    proc = subprocess.Popen([sys.executable, "-m", "phala", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line and proc.poll() is not None:
            raise RuntimeError(f"phala {args[0]} exited before it was ready")
        if line.startswith(marker):
            return proc, line.split()[-1]
    proc.kill()
    raise RuntimeError(f"phala {args[0]} did not start in time")


def run(quick: bool = False) -> dict:
    accounts = 20_000 if quick else ACCOUNTS
    spec = bench_spec(accounts)
    senders = [bench_keypair(i) for i in range(min(accounts, 20_000))]
    floor = sr25519_verify_per_s()
    a = in_process(spec, senders, per_block=2000 if quick else 4000, blocks=2 if quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "bench-spec.json"
        spec_path.write_text(spec.to_json())
        b = over_rpc(spec_path, transfers=3000 if quick else 20_000, connections=4, window=256, block_time=1.0)
    return {
        "transfers_per_s": round(a["transfers_per_s"], 1),
        "rpc_transfers_per_s": round(b["rpc_transfers_per_s"], 1),
        "sr25519_verify_per_s": round(floor, 1),
        "ratio": round(a["transfers_per_s"] / floor, 4),
        "rpc_ratio": round(b["rpc_transfers_per_s"] / floor, 4),
        "genesis_accounts": accounts + 6,
        "in_process": a,
        "rpc": b,
        "targets": {"transfers_per_s": 3000, "rpc_transfers_per_s": 1000},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "quick": quick,
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
