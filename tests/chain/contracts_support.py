"""What the Contracts pallet's tests share: a chain with a gatekeeper and two clusters whose
keys are published, the code uploaded, and helpers to call, report, halt and read."""

from __future__ import annotations

import pytest

from phala.chain.node import Node
from phala.chain.runtime import cluster, contracts, mq
from phala.chain.runtime.frame import RuntimeCall
from phala.core.cluster import CLUSTER_PUBKEY_TOPIC, ClusterPubkey, cluster_id
from phala.core.codec import decode, encode
from phala.core.contracts import (
    HALTED_TOPIC,
    CommandReport,
    ContractHalted,
    ContractPubkey,
    contract_id,
)
from phala.core.derivation import KeyNode, cluster_epoch_key, contract_key
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair
from phala.core.mq import (
    ClusterOrigin,
    MessageOrigin,
    PalletOrigin,
)

from .harness import (
    ALICE,
    BOB,
    account,
    error_info,
    events_of,
    failures,
    fee_of,
    message_failures,
    read,
    register_sim_worker,
    root,
    sign,
    submit_and_produce,
    synced,
)
from .test_cluster import gatekeeper_synced
from .test_gatekeeper_rotation import GK1, Sequences, launch, sent

W1, W2, W3 = (Keypair.from_uri(f"//ContractsTestWorker{i}") for i in range(1, 4))
ECDH = {w: bytes([0x20 + i]) * 32 for i, w in enumerate((W1, W2, W3))}
POOR = Keypair.from_uri("//ContractsTestPoor")
ORIGIN = PalletOrigin(b"Contracts")
# The master key the cluster epoch keys of these tests derive from (the chain never sees it).
MASTER = KeyNode(bytes(range(32)))
C0, C1, C7 = cluster_id(0), cluster_id(1), cluster_id(7)
CODE = b"class Token:\n    pass\n"
CODE_HASH = blake2_256(CODE)
GAS = 1_000_000
ARGS = b"sealed constructor arguments"
SEALED = b"a sealed command"

# -- helpers ----------------------------------------------------------------------------------


def epoch_key(cid: bytes, epoch: int) -> KeyNode:
    return cluster_epoch_key(MASTER, cid, epoch)


def signer(cid: bytes, epoch: int) -> Keypair:
    """The sr25519 key a cluster's workers sign its messages with in ``epoch``."""
    return epoch_key(cid, epoch).sr25519()


def publish_cluster(node: Node, seq: Sequences, cid: bytes, epoch: int) -> None:
    """Publish the cluster's ``epoch`` keys (derived from :data:`MASTER`) as the gatekeeper."""
    key = epoch_key(cid, epoch)
    payload = encode(ClusterPubkey(cid, epoch, key.sr25519().public_key, key.x25519().public))
    submit_and_produce(node, gatekeeper_synced(node, seq, CLUSTER_PUBKEY_TOPIC, payload))
    assert message_failures(node) == []


@pytest.fixture
def seq() -> Sequences:
    return Sequences()


@pytest.fixture
def chain(node, seq) -> Node:
    """A node with a gatekeeper, cluster C0 = [W1, W3] and C1 = [W2], both with their epoch 0
    keys published, and :data:`CODE` uploaded by Alice."""
    launch(node, seq, GK1)
    for w in (W1, W2, W3):
        register_sim_worker(node, w, ECDH[w])
    root(node, cluster.create_cluster([W1.public_key, W3.public_key]))
    root(node, cluster.create_cluster([W2.public_key]))
    publish_cluster(node, seq, C0, 0)
    publish_cluster(node, seq, C1, 0)
    ok(node, ALICE, contracts.upload_code(CODE))
    return node


def signed(node: Node, who: Keypair, call: RuntimeCall) -> int:
    """Include ``who``'s ``call`` in a new block; the transaction fee it paid."""
    raw = sign(who, call, node.account_next_index(who.public_key))
    submit_and_produce(node, raw)
    return fee_of(raw)


def ok(node: Node, who: Keypair, call: RuntimeCall) -> int:
    fee = signed(node, who, call)
    assert failures(node.chain) == []
    return fee


def pallet_state(node: Node) -> list[tuple[bytes, bytes]]:
    """Everything the pallet stores (its keys share the prefix twox_128("Contracts"))."""
    return read(node.chain, lambda st: sorted(st.iter_prefix(contracts.Code.prefix[:16])))


def reserved(node: Node, who: Keypair | bytes) -> int:
    return account(node.chain, who).data.reserved


def refused(node: Node, who: Keypair, call: RuntimeCall, error: type) -> None:
    """``who``'s ``call`` fails with ``error``: the fee is paid, nothing else changes."""
    before = pallet_state(node)
    held = reserved(node, who)
    signed(node, who, call)
    assert failures(node.chain) == [(0, error_info(error))]
    assert pallet_state(node) == before
    assert reserved(node, who) == held
    assert sent(node) == []
    assert events_of(node.chain, contracts.Event) == []


def instantiate(
    node: Node, who: Keypair = BOB, cid: bytes = C0, salt: bytes = b"salt", gas: int = GAS
) -> bytes:
    """``who`` instantiates :data:`CODE` in ``cid``; the contract's id."""
    ok(node, who, contracts.instantiate(CODE_HASH, cid, salt, ARGS, gas))
    return contract_id(who.public_key, CODE_HASH, cid, salt)


def cluster_message(seq: Sequences, cid: bytes, topic: bytes, payload: bytes, epoch: int = 0) -> bytes:
    """A synced message of ``ClusterOrigin(cid)`` signed by the cluster's ``epoch`` key, with
    the origin's next sequence."""
    return synced(signer(cid, epoch), topic, payload, seq.take(b"cluster " + cid), sender=ClusterOrigin(cid))


def deliver(node: Node, seq: Sequences, cid: bytes, topic: bytes, payload: bytes, epoch: int = 0) -> None:
    """The cluster origin's message is accepted by the mq (its handler may still refuse it)."""
    submit_and_produce(node, cluster_message(seq, cid, topic, payload, epoch))
    assert failures(node.chain) == []
    assert len(events_of(node.chain, mq.OffchainMessageAccepted)) == 1


def pubkey_of(contract: bytes, cid: bytes = C0, epoch: int = 0) -> ContractPubkey:
    """The keys the workers derive for ``contract`` from the cluster's ``epoch`` key."""
    key = contract_key(epoch_key(cid, epoch), contract)
    return ContractPubkey(contract, epoch, key.sr25519().public_key, key.x25519().public)


def report(contract: bytes, index: int, gas_used: int, status: int = 0, message: str = "") -> bytes:
    return encode(CommandReport(contract, index, status, gas_used, message))


def halted(contract: bytes, reason: str = "the watchdog fired: 10 s") -> bytes:
    return encode(ContractHalted(contract, reason))


def halt(node: Node, seq: Sequences, payload: bytes, worker: Keypair = W1) -> None:
    """``worker`` sends the halt as itself (a watchdog fired on it: its own finding, which the
    cluster's shared origin cannot carry); the mq accepts it (the pallet may still refuse)."""
    submit_and_produce(node, synced(worker, HALTED_TOPIC, payload, seq.take(worker)))
    assert failures(node.chain) == []
    assert len(events_of(node.chain, mq.OffchainMessageAccepted)) == 1


def handler_refused(node: Node, error: type, origin: MessageOrigin = ClusterOrigin(C0)) -> None:  # noqa: B008
    assert message_failures(node) == [(origin, error_info(error))]
    assert events_of(node.chain, contracts.Event) == []


def contract_keys(node: Node, contract: bytes) -> ContractPubkey | None:
    return read(node.chain, lambda st: contracts.ContractKeys.get_opt(st, contract))


def pending(node: Node, contract: bytes, index: int) -> contracts.PendingFee | None:
    return read(node.chain, lambda st: contracts.PendingFees.get_opt(st, (contract, index)))


def count(node: Node, contract: bytes) -> int:
    return read(node.chain, lambda st: contracts.CommandCount.get(st, contract))


def outbound_of(node: Node, topic: bytes, kind: type) -> list:
    found = [m for m in sent(node) if m.topic == topic]
    assert all(m.sender == ORIGIN for m in found)
    return [decode(kind, m.payload) for m in found]
