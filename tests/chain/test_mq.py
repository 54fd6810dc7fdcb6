"""The mq pallet: messages pushed by accounts, synced by off-chain senders (unsigned, by
sequence), routed to pallets (chain-only topics) or to the outbound messages pRuntimes read."""

import dataclasses

import orjson
import pytest

from phala.chain.pool import ALREADY_IMPORTED
from phala.chain.rpc import RpcServer
from phala.chain.runtime import executive, mq, registry
from phala.chain.runtime.frame import Env, ModuleError, Pallet
from phala.core.attestation import (
    SIM_ATTESTATION_URI,
    WorkerRegistrationInfo,
    report_data,
    sign_sim_quote,
)
from phala.core.codec import encode, u32
from phala.core.keys import Keypair
from phala.core.mq import (
    MAX_PAYLOAD,
    MAX_TOPIC,
    AccountOrigin,
    ContractOrigin,
    GatekeeperOrigin,
    Message,
    MessageOrigin,
    PalletOrigin,
    WorkerOrigin,
    sign_message,
)
from phala.core.types import UnsignedExtrinsic

from .harness import (
    BOB,
    CHARLIE,
    GENESIS,
    body,
    error_info,
    events_of,
    expect_invalid,
    expect_pool_error,
    failures,
    head_env,
    produce,
    read,
    run_in_block,
    sign,
    submit_and_produce,
    total_issuance,
)

WORKER = Keypair.from_uri("//MqTestWorker")
OTHER_WORKER = Keypair.from_uri("//MqTestOtherWorker")
SIM_KEY = Keypair.from_uri(SIM_ATTESTATION_URI)
W = WorkerOrigin(WORKER.public_key)

# -- helpers ----------------------------------------------------------------------------------


def register(node, worker: Keypair = WORKER, payer: Keypair = CHARLIE) -> None:
    """Register ``worker`` through the registry with a sim quote (the dev genesis allows them)."""
    info = WorkerRegistrationInfo(1, worker.public_key, bytes(32), GENESIS, None)
    call = registry.register_worker(info, sign_sim_quote(SIM_KEY, report_data(info)))
    submit_and_produce(node, sign(payer, call, node.account_next_index(payer.public_key)))
    assert failures(node.chain) == []
    assert read(node.chain, lambda st: registry.Workers.get(st, worker.public_key)).active


def synced(
    sequence: int,
    topic: bytes = b"test/topic",
    payload: bytes = b"payload",
    key: Keypair = WORKER,
    origin: MessageOrigin | None = None,
    genesis: bytes = GENESIS,
) -> bytes:
    origin = WorkerOrigin(key.public_key) if origin is None else origin
    signed = sign_message(key, genesis, Message(origin, topic, payload), sequence)
    return UnsignedExtrinsic(
        encode(mq.sync_offchain_message(signed), executive.RuntimeCall)
    ).encode()


def push(
    keypair: Keypair, nonce: int, topic: bytes = b"test/topic", payload: bytes = b"payload"
) -> bytes:
    return sign(keypair, mq.push_message(topic, payload), nonce)


def outbound(node) -> list[Message] | None:
    """The head block's OutboundMessages, or None when the key is absent."""
    return read(
        node.chain,
        lambda st: mq.OutboundMessages.get(st) if mq.OutboundMessages.exists(st) else None,
    )


def sequence(node, origin: MessageOrigin = W) -> int:
    return read(node.chain, lambda st: mq.OffchainSequence.get(st, origin))


@pytest.fixture
def worker_node(node):
    register(node)
    produce(node)  # a block without the registration's outbound message
    return node


# -- a test pallet that handles a chain-only topic --------------------------------------------

ECHO_TOPIC = b"^test/echo"
RECEIVED: list[Message] = []


class EchoRefused(ModuleError):
    """The echo pallet refuses payloads that say 'fail'."""

    pallet_index = 250
    code = 7


def on_echo(env: Env, message: Message) -> None:
    RECEIVED.append(message)
    mq.push_outbound(env, Message(PalletOrigin(b"Echo"), b"test/echoed", message.payload))
    if message.payload == b"fail":
        raise EchoRefused()


@pytest.fixture
def echo_pallet(monkeypatch):
    RECEIVED.clear()
    pallet = Pallet(name="Echo", index=250, topics=(ECHO_TOPIC,), on_message=on_echo)
    monkeypatch.setattr(executive, "PALLETS", (*executive.PALLETS, pallet))
    yield RECEIVED
    RECEIVED.clear()


# -- push_message and the outbound messages ---------------------------------------------------


def test_outbound_holds_exactly_the_blocks_messages(node):
    assert outbound(node) is None
    submit_and_produce(node, push(BOB, 0, b"a", b"1"), push(BOB, 1, b"b", b"2"))
    bob = AccountOrigin(BOB.public_key)
    assert outbound(node) == [Message(bob, b"a", b"1"), Message(bob, b"b", b"2")]
    assert events_of(node.chain, mq.MessagePushed) == [
        mq.MessagePushed(bob, b"a"),
        mq.MessagePushed(bob, b"b"),
    ]
    submit_and_produce(node, push(CHARLIE, 0, b"c", b"3"))
    assert outbound(node) == [Message(AccountOrigin(CHARLIE.public_key), b"c", b"3")]
    produce(node)
    assert outbound(node) is None  # a block with no messages has no OutboundMessages at all
    # The storage changes of that block delete the key: a pRuntime applying them sees it go.
    changes = node.chain.db.changes(node.chain.head.number)
    assert [(c.key, c.value) for c in changes if c.key == mq.OutboundMessages.key] == [
        (mq.OutboundMessages.key, None)
    ]
    produce(node)
    changes = node.chain.db.changes(node.chain.head.number)
    assert not [
        c for c in changes if c.key.startswith(mq.OutboundMessages.key[:16])
    ]  # no Mq key at all


def test_scratch_storage_never_committed(node):
    submit_and_produce(node, push(BOB, 0), push(BOB, 1))
    mq_prefix = mq.OutboundMessages.key[:16]
    keys = [k for k, _ in node.chain.db.state_items() if k.startswith(mq_prefix)]
    assert keys == [mq.OutboundMessages.key]


def test_pruntime_layout_of_outbound_messages(node):
    """pRuntimes read Mq.OutboundMessages as list[Message] at storage_prefix("Mq", "OutboundMessages")."""
    from phala.core.codec import decode
    from phala.core.storage_keys import map_key, storage_prefix

    submit_and_produce(node, push(BOB, 0, b"t", b"p"))
    raw = node.chain.db.state_get(storage_prefix("Mq", "OutboundMessages"))
    assert decode(list[Message], raw) == [Message(AccountOrigin(BOB.public_key), b"t", b"p")]
    assert mq.OffchainSequence.key(W) == map_key("Mq", "OffchainSequence", encode(W, MessageOrigin))


def test_push_message_size_limits(node):
    chain = node.chain
    submit_and_produce(
        node,
        push(BOB, 0, topic=b"t" * (MAX_TOPIC + 1)),
        push(BOB, 1, payload=b"p" * (MAX_PAYLOAD + 1)),
        push(BOB, 2, topic=b"t" * MAX_TOPIC, payload=b"p" * MAX_PAYLOAD),
    )
    assert failures(chain) == [
        (0, error_info(mq.TopicTooLong)),
        (1, error_info(mq.PayloadTooLarge)),
    ]
    assert outbound(node) == [
        Message(AccountOrigin(BOB.public_key), b"t" * MAX_TOPIC, b"p" * MAX_PAYLOAD)
    ]


def test_chain_only_topic_goes_to_its_pallet(node, echo_pallet):
    submit_and_produce(node, push(BOB, 0, ECHO_TOPIC, b"ping"))
    bob = AccountOrigin(BOB.public_key)
    assert echo_pallet == [Message(bob, ECHO_TOPIC, b"ping")]
    # The chain-only message itself never reaches the outbound messages; what the handler
    # sent does.
    assert outbound(node) == [Message(PalletOrigin(b"Echo"), b"test/echoed", b"ping")]
    assert failures(node.chain) == []


def test_failed_handler_reverts_its_messages(node, echo_pallet):
    submit_and_produce(node, push(BOB, 0, ECHO_TOPIC, b"fail"), push(BOB, 1, b"plain", b"kept"))
    assert failures(node.chain) == [(0, error_info(EchoRefused))]
    assert outbound(node) == [Message(AccountOrigin(BOB.public_key), b"plain", b"kept")]
    assert events_of(node.chain, mq.MessagePushed) == [
        mq.MessagePushed(AccountOrigin(BOB.public_key), b"plain")
    ]


def test_unknown_chain_only_topic(node):
    submit_and_produce(node, push(BOB, 0, b"^nobody/handles/this"))
    assert failures(node.chain) == [(0, error_info(mq.UnknownTopic))]
    assert outbound(node) is None


def test_push_outbound_helper(node, monkeypatch):
    sent = Message(PalletOrigin(b"Test"), b"from/a/pallet", b"!")

    def hook(env):
        mq.push_outbound(env, sent)
        with pytest.raises(ValueError, match="chain-only"):
            mq.push_outbound(env, Message(PalletOrigin(b"Test"), b"^chain/only", b""))

    run_in_block(monkeypatch, node, hook)
    assert outbound(node) == [sent]


def test_registry_pushes_outbound_on_registration(node):
    register(node)
    messages = outbound(node)
    assert [(m.sender, m.topic) for m in messages] == [
        (registry.MESSAGE_ORIGIN, registry.WORKER_REGISTERED_TOPIC)
    ]


# -- sync_offchain_message --------------------------------------------------------------------


def test_accepts_the_next_sequence(worker_node):
    node = worker_node
    issuance = total_issuance(node.chain)
    submit_and_produce(node, synced(0, b"hello", b"world"))
    assert failures(node.chain) == []
    assert sequence(node) == 1
    assert outbound(node) == [Message(W, b"hello", b"world")]
    assert events_of(node.chain, mq.OffchainMessageAccepted) == [
        mq.OffchainMessageAccepted(W, 0, b"hello")
    ]
    assert total_issuance(node.chain) == issuance
    submit_and_produce(node, synced(1), synced(2))
    assert sequence(node) == 3
    assert len(outbound(node)) == 2


def test_worker_online_routed_to_the_registry(worker_node):
    node = worker_node
    assert not read(node.chain, lambda st: registry.Workers.get(st, WORKER.public_key)).acknowledged
    submit_and_produce(node, synced(0, registry.WORKER_ONLINE_TOPIC, encode(7, u32)))
    assert read(node.chain, lambda st: registry.Workers.get(st, WORKER.public_key)).acknowledged
    assert outbound(node) is None  # chain-only: not for pRuntimes


def test_routing_failure_uses_up_the_sequence(worker_node):
    """An accepted message whose chain-only topic nobody handles: the sequence moves on (the
    worker is not stuck), the failure is reported, nothing else changes."""
    node = worker_node
    submit_and_produce(node, synced(0, b"^nobody/handles/this"))
    assert failures(node.chain) == []
    assert sequence(node) == 1
    assert events_of(node.chain, mq.OffchainMessageFailed) == [
        mq.OffchainMessageFailed(W, 0, error_info(mq.UnknownTopic))
    ]
    assert outbound(node) is None
    submit_and_produce(node, synced(1))
    assert sequence(node) == 2


def test_wrong_signature_refused(worker_node):
    raw = bytearray(synced(0))
    raw[-10] ^= 1  # inside the signature (the last 64 bytes)
    expect_invalid(worker_node, bytes(raw), "BadProof")
    # Signed by another key than the one registered for the origin.
    expect_invalid(worker_node, synced(0, key=OTHER_WORKER, origin=W), "BadProof")


def test_signed_for_another_chain_refused(worker_node):
    expect_invalid(worker_node, synced(0, genesis=b"\x11" * 32), "BadProof")


def test_stale_and_replayed_refused(worker_node):
    node = worker_node
    first = synced(0)
    node.submit(first)
    expect_pool_error(node, first, ALREADY_IMPORTED)  # the same bytes while pooled
    produce(node)
    assert sequence(node) == 1
    expect_invalid(node, first, "Stale")  # replay of the accepted message
    expect_invalid(node, synced(0, payload=b"other"), "Stale")  # reused sequence
    assert sequence(node) == 1


def test_skipped_sequence_waits_for_the_gap(worker_node):
    node = worker_node
    server = RpcServer(node)
    assert rpc_next_sequence(server, W) == 0
    third = synced(2, payload=b"third")
    node.submit(third)
    assert rpc_next_sequence(server, W) == 0  # a future message is not counted
    assert not node.pool_has_ready()
    produce(node)
    assert body(node) == [] and sequence(node) == 0
    assert len(node.pool) == 1  # still held
    first, second = synced(0, payload=b"first"), synced(1, payload=b"second")
    node.submit(first)
    assert rpc_next_sequence(server, W) == 1
    node.submit(second)
    assert rpc_next_sequence(server, W) == 3  # the gap is filled: all three are ready
    produce(node)
    assert body(node) == [first, second, third]
    assert sequence(node) == 3
    assert [m.payload for m in outbound(node)] == [b"first", b"second", b"third"]
    assert len(node.pool) == 0
    assert rpc_next_sequence(server, W) == 3


def test_pool_learns_the_sequence_after_each_block(worker_node):
    node = worker_node
    node.submit(synced(0))
    produce(node)
    key = mq.sender_key(W)
    assert key not in node.pool.account_nonce  # no entries left for the sender
    node.submit(synced(2))
    node.submit(synced(1))
    assert node.pool.account_nonce[key] == 1
    assert node.mq_next_sequence(W) == 3
    produce(node)
    assert sequence(node) == 3


def test_unregistered_worker_refused(worker_node):
    err = expect_invalid(worker_node, synced(0, key=OTHER_WORKER), "BadSigner")
    assert "not registered" in err.message


def test_deactivated_worker_refused(worker_node, monkeypatch):
    node = worker_node
    pooled = synced(1)
    submit_and_produce(node, synced(0))
    node.submit(pooled)

    def deactivate(env):
        record = registry.Workers.get(env.state, WORKER.public_key)
        registry.Workers.put(
            env.state, WORKER.public_key, dataclasses.replace(record, active=False)
        )

    # The block that deactivates the worker (in on_initialize) also drops its pooled message.
    run_in_block(monkeypatch, node, deactivate)
    assert body(node) == []
    assert len(node.pool) == 0
    assert sequence(node) == 1
    expect_invalid(node, synced(1), "BadSigner")


def test_other_origins_refused(worker_node):
    node = worker_node
    for origin in (AccountOrigin(WORKER.public_key), PalletOrigin(b"Registry")):
        err = expect_invalid(node, synced(0, origin=origin), "BadSigner")
        assert "not an off-chain sender" in err.message
    # A contract with no published keys has no key to sign with.
    err = expect_invalid(node, synced(0, origin=ContractOrigin(bytes(32))), "BadSigner")
    assert "has no key on chain" in err.message
    # Before a master key is published, the gatekeeper origin has no key.
    err = expect_invalid(node, synced(0, origin=GatekeeperOrigin()), "BadSigner")
    assert "not registered" in err.message


def test_oversized_synced_message_refused(worker_node):
    expect_invalid(worker_node, synced(0, payload=b"p" * (MAX_PAYLOAD + 1)), "ExhaustsResources")
    expect_invalid(worker_node, synced(0, topic=b"t" * (MAX_TOPIC + 1)), "ExhaustsResources")


def test_sequences_are_per_sender(worker_node):
    node = worker_node
    register(node, OTHER_WORKER)
    other = WorkerOrigin(OTHER_WORKER.public_key)
    submit_and_produce(node, synced(0), synced(1), synced(0, key=OTHER_WORKER))
    assert (sequence(node), sequence(node, other)) == (2, 1)


def test_block_import_checks_synced_messages_again(worker_node, tmp_path):
    """A second node importing the blocks re-validates the unsigned extrinsics."""
    from .harness import make_node

    node = worker_node
    submit_and_produce(node, synced(0), push(BOB, 0))
    other = make_node(tmp_path / "other")
    try:
        db = node.chain.db
        for n in range(1, node.chain.head.number + 1):
            h = db.hash_of(n)
            other.chain.import_block(db.header(h), db.body(h), db.justification(h))
        assert other.chain.head == node.chain.head
    finally:
        other.close()


# -- RPC --------------------------------------------------------------------------------------


def rpc(server: RpcServer, method: str, params) -> dict:
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return server.handle_body(orjson.dumps(request), None)


def rpc_next_sequence(server: RpcServer, origin: MessageOrigin) -> int:
    response = rpc(server, "phala_mqNextSequence", ["0x" + encode(origin, MessageOrigin).hex()])
    return response["result"]


def test_rpc_next_sequence_params(node):
    server = RpcServer(node)
    assert rpc_next_sequence(server, GatekeeperOrigin()) == 0
    assert "phala_mqNextSequence" in rpc(server, "rpc_methods", [])["result"]["methods"]
    for params in (
        [],
        ["02"],
        ["0x02"],
        ["0x" + encode(W, MessageOrigin).hex() + "00"],
        ["0xff"],
        [5],
        ["0xzz"],
    ):
        response = rpc(server, "phala_mqNextSequence", params)
        assert response["error"]["code"] == -32602, params


def test_rpc_submit_unsigned(worker_node):
    server = RpcServer(worker_node)
    response = rpc(server, "author_submitExtrinsic", ["0x" + synced(0).hex()])
    assert "result" in response
    response = rpc(server, "author_submitExtrinsic", ["0x" + synced(0, key=OTHER_WORKER).hex()])
    assert response["error"]["code"] == 1010
    assert response["error"]["data"].startswith("BadSigner:")
    produce(worker_node)
    assert sequence(worker_node) == 1


def test_next_sequence_via_env(worker_node):
    with head_env(worker_node.chain) as env:
        assert mq.next_sequence(env, W) == 0
        assert mq.expected_sequence_of_key(env, mq.sender_key(W)[len(mq.SENDER_PREFIX) :]) == 0
