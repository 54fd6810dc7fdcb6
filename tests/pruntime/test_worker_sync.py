"""A malicious relayer against the worker: every forged, reordered or altered input is
refused with a clear error and leaves the worker's state hash unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from phala.chain.blockchain import Blockchain
from phala.chain.consensus import DevConsensus
from phala.chain.db import ChainDB
from phala.chain.node import Node
from phala.chain.runtime import authorities, balances, sudo
from phala.chain.spec import ChainSpec
from phala.client.tx import build_extrinsic
from phala.core.attestation import SimQuote, sign_sim_quote
from phala.core.codec import encode
from phala.core.envelope import X25519Keypair, aead_decrypt, aead_encrypt
from phala.core.finality import sign_vote
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair, dev_keypair
from phala.core.light_client import AUTHORITY_SET_KEY
from phala.core.trie import prove
from phala.core.types import BlockChanges, Justification, StorageChange
from phala.pruntime.checkpoint import CheckpointError, CheckpointStore, restore
from phala.pruntime.identity import WorkerIdentity
from phala.pruntime.runtime import Worker, WorkerError

ALICE, BOB, EVE = dev_keypair("Alice"), dev_keypair("Bob"), dev_keypair("Eve")
SPEC = ChainSpec.dev(start_time_ms=1_700_000_000_000)


def FakeIdentity(seed: bytes) -> WorkerIdentity:  # noqa: N802 - reads as the class it builds
    """A worker identity from a seed: deterministic keys, no sealing (the enclave tests
    cover that)."""
    return WorkerIdentity(Keypair.from_seed(blake2_256(seed)), X25519Keypair.from_secret(blake2_256(seed + b"ecdh")))


class FakeEnclave:
    kind = "sim"

    def __init__(self, secret: bytes = b"k" * 32):
        self.secret = secret

    def quote(self, report_data: bytes) -> SimQuote:
        return sign_sim_quote(Keypair.from_uri("//PhalaSimAttestation"), report_data)

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = blake2_256(data)[:12]
        return nonce + aead_encrypt(self.secret, nonce, data, aad)

    def unseal(self, blob: bytes, aad: bytes) -> bytes:
        return aead_decrypt(self.secret, blob[:12], blob[12:], aad)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A chain of 12 blocks with transfers and an authority change to [Bob] at block 6."""
    node = Node(
        Blockchain(ChainDB(tmp_path_factory.mktemp("chain")), SPEC),
        DevConsensus([ALICE, BOB], "manual"),
    )
    for i in range(5):
        node.submit(
            build_extrinsic(
                ALICE,
                balances.transfer_keep_alive(EVE.public_key, 10**13),
                i,
                node.chain.genesis_hash,
            )
        )
        node.produce_block()
    node.submit(
        build_extrinsic(
            ALICE,
            sudo.sudo(authorities.set_authorities([BOB.public_key])),
            5,
            node.chain.genesis_hash,
        )
    )
    node.produce_block()
    for _ in range(6):
        node.produce_block()
    yield node.chain
    node.close()


def headers_of(chain, first, last):
    db = chain.db
    return [db.header(db.hash_of(n)) for n in range(first, last + 1)]


def justification_of(chain, number):
    return chain.db.justification(chain.db.hash_of(number))


def changes_of(chain, number) -> BlockChanges:
    return BlockChanges(number, chain.db.hash_of(number), chain.db.changes(number))


def new_worker(chain, seed=b"worker-1") -> Worker:
    worker = Worker(FakeIdentity(seed), FakeEnclave(), chain.genesis_hash)
    genesis = chain.db.header(chain.genesis_hash)
    proof = prove(genesis.state_root, [AUTHORITY_SET_KEY], chain.db.node)
    worker.init_runtime(genesis, proof, ALICE.public_key)
    return worker


def synced_worker(chain, upto: int) -> Worker:
    worker = new_worker(chain)
    worker.dispatch_blocks([changes_of(chain, 0)])
    worker.sync_header(headers_of(chain, 1, 6), justification_of(chain, 6))
    worker.sync_header(headers_of(chain, 7, upto), justification_of(chain, upto))
    worker.dispatch_blocks([changes_of(chain, n) for n in range(1, upto + 1)])
    return worker


def refused(worker: Worker, fn, *args, reason: str) -> None:
    before = worker.state_hash()
    with pytest.raises(WorkerError) as info:
        fn(*args)
    assert reason in str(info.value), str(info.value)
    assert worker.state_hash() == before


def test_honest_relayer_syncs_the_whole_chain(chain):
    worker = synced_worker(chain, 12)
    assert worker.chain.dispatched == chain.head
    assert worker.chain.tree.root() == chain.head.state_root
    assert worker.chain.light.authority_set.authorities == [BOB.public_key]
    twin = synced_worker(chain, 12)
    assert twin.state_hash() == worker.state_hash()


def test_wrong_authority_set_proof_at_genesis(chain):
    worker = Worker(FakeIdentity(b"w"), FakeEnclave(), chain.genesis_hash)
    genesis = chain.db.header(chain.genesis_hash)
    other = prove(genesis.state_root, [b"some other key"], chain.db.node)
    with pytest.raises(WorkerError, match="authority set"):
        worker.init_runtime(genesis, other, None)
    assert worker.chain is None


def test_genesis_is_pinned_by_the_operator_not_the_relayer(chain):
    worker = Worker(FakeIdentity(b"w"), FakeEnclave(), blake2_256(b"another chain"))
    genesis = chain.db.header(chain.genesis_hash)
    proof = prove(genesis.state_root, [AUTHORITY_SET_KEY], chain.db.node)
    with pytest.raises(WorkerError, match="pinned genesis"):
        worker.init_runtime(genesis, proof, None)


def test_header_whose_parent_does_not_match(chain):
    worker = new_worker(chain)
    refused(
        worker,
        worker.sync_header,
        headers_of(chain, 2, 6),
        justification_of(chain, 6),
        reason="does not extend",
    )


def test_headers_without_valid_justification(chain):
    worker = new_worker(chain)
    headers = headers_of(chain, 1, 6)
    good = justification_of(chain, 6)
    forged_sig = dataclasses.replace(
        good, signatures=[dataclasses.replace(good.signatures[0], signature=bytes(64))]
    )
    refused(worker, worker.sync_header, headers, forged_sig, reason="not finalized")
    by_eve = Justification(
        good.set_id,
        good.number,
        good.block_hash,
        [sign_vote(EVE, chain.genesis_hash, 0, 6, good.block_hash)],
    )
    refused(worker, worker.sync_header, headers, by_eve, reason="outside the authority set")
    other_set = Justification(
        1,
        good.number,
        good.block_hash,
        [sign_vote(ALICE, chain.genesis_hash, 1, 6, good.block_hash)],
    )
    refused(worker, worker.sync_header, headers, other_set, reason="authority set 1")
    other_block = justification_of(chain, 5)
    refused(worker, worker.sync_header, headers, other_block, reason="another block")
    empty = dataclasses.replace(good, signatures=[])
    refused(worker, worker.sync_header, headers, empty, reason="needed")


def test_old_set_after_the_change_is_refused(chain):
    worker = new_worker(chain)
    worker.sync_header(headers_of(chain, 1, 6), justification_of(chain, 6))
    h8 = headers_of(chain, 7, 8)
    by_alice = Justification(
        0, 8, h8[-1].hash, [sign_vote(ALICE, chain.genesis_hash, 0, 8, h8[-1].hash)]
    )
    refused(worker, worker.sync_header, h8, by_alice, reason="authority set 0")


def test_change_header_must_end_its_batch(chain):
    worker = new_worker(chain)
    refused(
        worker,
        worker.sync_header,
        headers_of(chain, 1, 8),
        justification_of(chain, 8),
        reason="must end its batch",
    )


def test_blocks_out_of_order_repeated_or_not_finalized(chain):
    worker = new_worker(chain)
    worker.dispatch_blocks([changes_of(chain, 0)])
    worker.sync_header(headers_of(chain, 1, 6), justification_of(chain, 6))
    refused(worker, worker.dispatch_blocks, [changes_of(chain, 2)], reason="expected block #1")
    worker.dispatch_blocks([changes_of(chain, 1)])
    refused(worker, worker.dispatch_blocks, [changes_of(chain, 1)], reason="expected block #2")
    refused(worker, worker.dispatch_blocks, [changes_of(chain, 0)], reason="expected block #2")
    for n in range(2, 7):
        worker.dispatch_blocks([changes_of(chain, n)])
    refused(worker, worker.dispatch_blocks, [changes_of(chain, 7)], reason="not finalized")


def _tampered(block: BlockChanges, how: str) -> BlockChanges:
    changes = list(block.changes)
    if how == "altered":
        c = changes[0]
        changes[0] = StorageChange(c.key, (c.value or b"") + b"!")
    elif how == "added":
        changes.append(StorageChange(b"\xff" * 40, b"planted"))
    elif how == "missing":
        changes.pop()
    elif how == "wrong hash":
        return dataclasses.replace(block, block_hash=blake2_256(b"x"))
    return dataclasses.replace(block, changes=changes)


@pytest.mark.parametrize("how", ["altered", "added", "missing", "wrong hash"])
def test_tampered_storage_changes(chain, how):
    worker = new_worker(chain)
    worker.dispatch_blocks([changes_of(chain, 0)])
    worker.sync_header(headers_of(chain, 1, 6), justification_of(chain, 6))
    refused(
        worker, worker.dispatch_blocks, [_tampered(changes_of(chain, 1), how)], reason="block #1"
    )
    worker.dispatch_blocks([changes_of(chain, 1)])  # the honest block still goes in


def test_checkpoint_resume_reaches_the_same_state_hash(chain, tmp_path: Path):
    enclave = FakeEnclave()
    worker = synced_worker(chain, 9)
    store = CheckpointStore(tmp_path, enclave.seal, enclave.unseal)
    path = store.save(worker)
    fresh = Worker(worker.identity, enclave, chain.genesis_hash)
    restore(fresh, store.load(path, worker.identity.public_key, chain.genesis_hash))
    assert fresh.state_hash() == worker.state_hash()
    # A resumed worker can still hand its relayer a registration (with a fresh quote).
    assert fresh.registration is None
    assert fresh.current_registration().info == worker.registration.info
    fresh.sync_header(headers_of(chain, 10, 12), justification_of(chain, 12))
    fresh.dispatch_blocks([changes_of(chain, n) for n in range(10, 13)])
    assert fresh.state_hash() == synced_worker(chain, 12).state_hash()


def test_tampered_or_foreign_checkpoints_are_refused(chain, tmp_path: Path):
    enclave = FakeEnclave()
    worker = synced_worker(chain, 9)
    store = CheckpointStore(tmp_path, enclave.seal, enclave.unseal)
    path = store.save(worker)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="does not open"):
        store.load(path, worker.identity.public_key, chain.genesis_hash)
    # Another worker's checkpoint, sealed with the same machine key: bound to its identity.
    other = synced_worker(chain, 9)
    other.identity = FakeIdentity(b"worker-2")
    other_path = CheckpointStore(tmp_path / "other", enclave.seal, enclave.unseal).save(other)
    with pytest.raises(CheckpointError, match="does not open"):
        store.load(other_path, worker.identity.public_key, chain.genesis_hash)
    # And a checkpoint sealed by another enclave key.
    foreign = CheckpointStore(
        tmp_path / "foreign", FakeEnclave(b"z" * 32).seal, FakeEnclave(b"z" * 32).unseal
    )
    foreign_path = foreign.save(worker)
    with pytest.raises(CheckpointError, match="does not open"):
        store.load(foreign_path, worker.identity.public_key, chain.genesis_hash)
    fresh = Worker(worker.identity, enclave, chain.genesis_hash)
    assert store.load_newest(fresh) is None  # the only file here is the tampered one


def test_every_answer_names_its_block(chain):
    worker = synced_worker(chain, 12)
    info = worker.info()
    assert info["blockNumber"] == 12
    assert info["blockHash"] == "0x" + chain.head.hash.hex()
    assert encode(chain.head)  # the head is the block the answer was computed at


def test_forged_or_replayed_mq_message_is_refused(chain):
    """Messages reach the worker only through verified state: a relayer that slips a forged
    ``worker_registered`` into a block's changes, or replays a block, is refused."""
    from phala.chain.runtime import mq
    from phala.core.attestation import WORKER_REGISTERED_TOPIC, WorkerRegistered
    from phala.core.mq import Message, PalletOrigin

    worker = new_worker(chain)
    worker.dispatch_blocks([changes_of(chain, 0)])
    worker.sync_header(headers_of(chain, 1, 6), justification_of(chain, 6))
    info = worker.registration.info
    forged = Message(
        PalletOrigin(b"Registry"),
        WORKER_REGISTERED_TOPIC,
        encode(WorkerRegistered(info.identity, info, 0, 5, 1)),
    )
    block = changes_of(chain, 1)
    planted = dataclasses.replace(
        block,
        changes=sorted(
            [
                *block.changes,
                StorageChange(mq.OutboundMessages.key, encode([forged], list[Message])),
            ],
            key=lambda c: c.key,
        ),
    )
    refused(worker, worker.dispatch_blocks, [planted], reason="state root")
    assert not worker.registered and worker.egress_messages() == []
    worker.dispatch_blocks([block])
    refused(worker, worker.dispatch_blocks, [block], reason="expected block #2")
