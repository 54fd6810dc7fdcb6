"""The first gatekeeper's launch, in process: a registered worker is made a gatekeeper by
sudo, generates the master key inside its enclave, seals it, and publishes the master public
keys through the message queue; the chain stores them."""

from __future__ import annotations

from pathlib import Path

import pytest

from phala.chain.blockchain import Blockchain
from phala.chain.consensus import DevConsensus
from phala.chain.db import ChainDB
from phala.chain.node import Node
from phala.chain.runtime import gatekeeper, mq, registry, sudo
from phala.chain.runtime.executive import InvalidTransaction
from phala.chain.runtime.frame import RuntimeCall
from phala.chain.spec import ChainSpec
from phala.chain.state import Overlay
from phala.client.tx import build_extrinsic
from phala.core.attestation import SIM_ATTESTATION_URI, WorkerRegistrationInfo, sign_sim_quote
from phala.core.codec import encode
from phala.core.derivation import random_number
from phala.core.envelope import X25519Keypair, aead_decrypt, aead_encrypt
from phala.core.gatekeeper import BEACON_INTERVAL, BEACON_TOPIC, BeaconValue
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair, dev_keypair
from phala.core.light_client import AUTHORITY_SET_KEY
from phala.core.mq import GatekeeperOrigin, Message, sign_message
from phala.core.trie import prove
from phala.core.types import BlockChanges, UnsignedExtrinsic
from phala.gatekeeper.role import MASTER_KEY_FILE, GatekeeperRole
from phala.pruntime.runtime import Worker

ALICE = dev_keypair("Alice")


class Identity:
    def __init__(self, seed: bytes):
        self.keypair = Keypair.from_seed(blake2_256(seed))
        self.ecdh = X25519Keypair.from_secret(blake2_256(seed + b"ecdh"))
        self.public_key = self.keypair.public_key
        self.ecdh_public = self.ecdh.public

    def registration_info(self, genesis_hash, operator, version) -> WorkerRegistrationInfo:
        return WorkerRegistrationInfo(version, self.public_key, self.ecdh_public, genesis_hash, operator)


class Enclave:
    kind = "sim"
    key = b"s" * 32

    def quote(self, report_data: bytes):
        return sign_sim_quote(Keypair.from_uri(SIM_ATTESTATION_URI), report_data)

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = blake2_256(aad + data)[:12]
        return nonce + aead_encrypt(self.key, nonce, data, aad)

    def unseal(self, blob: bytes, aad: bytes) -> bytes:
        return aead_decrypt(self.key, blob[:12], blob[12:], aad)


class Network:
    """A manual-seal node and one worker that follows it block by block."""

    def __init__(self, path: Path):
        spec = ChainSpec.dev(start_time_ms=1_700_000_000_000)
        self.node = Node(Blockchain(ChainDB(path / "chain"), spec), DevConsensus([ALICE], "manual"))
        self.chain = self.node.chain
        self.enclave = Enclave()
        self.worker = Worker(Identity(b"gk-1"), self.enclave, self.chain.genesis_hash)
        self.role = GatekeeperRole(self.worker, path, self.enclave.seal, self.enclave.unseal)
        genesis = self.chain.db.header(self.chain.genesis_hash)
        proof = prove(genesis.state_root, [AUTHORITY_SET_KEY], self.chain.db.node)
        self.registration = self.worker.init_runtime(genesis, proof, ALICE.public_key)
        self.nonce = 0

    def block(self, *calls: RuntimeCall, unsigned: tuple[RuntimeCall, ...] = ()) -> None:
        for call in calls:
            self.node.submit(build_extrinsic(ALICE, call, self.nonce, self.chain.genesis_hash))
            self.nonce += 1
        for call in unsigned:
            self.node.submit(UnsignedExtrinsic(encode(call, RuntimeCall)).encode())
        self.node.produce_block()
        self.sync()

    def sync(self) -> None:
        db = self.chain.db
        start = self.worker.chain.next_block
        head = self.chain.head.number
        if start == 0:
            self.worker.dispatch_blocks([BlockChanges(0, self.chain.genesis_hash, db.changes(0))])
            start = 1
        if start > head:
            return
        headers = [db.header(db.hash_of(n)) for n in range(start, head + 1)]
        self.worker.sync_header(headers, db.justification(db.hash_of(head)))
        self.worker.dispatch_blocks([BlockChanges(n, db.hash_of(n), db.changes(n)) for n in range(start, head + 1)])

    def relay_egress(self) -> None:
        self.block(unsigned=tuple(mq.sync_offchain_message(m) for m in self.worker.egress_messages()))

    def read(self, item):
        view = self.chain.db.state_view()
        try:
            return item.get(Overlay(view))
        finally:
            view.close()


def test_first_gatekeeper_generates_seals_and_publishes_the_master_key(tmp_path: Path):
    net = Network(tmp_path)
    net.sync()
    reg = net.registration
    net.block(registry.register_worker(reg.info, reg.attestation))
    assert net.worker.registered
    net.relay_egress()  # worker_online
    assert net.worker.egress_messages() == []
    assert not net.role.is_gatekeeper and net.role.master is None

    identity = net.worker.identity.public_key
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(identity)))
    assert net.role.is_gatekeeper
    assert net.role.master is not None
    assert (tmp_path / MASTER_KEY_FILE).exists()
    assert net.read(gatekeeper.MasterPubkey) is None  # announced, not yet on chain
    [announce] = net.worker.egress_messages()
    net.relay_egress()

    expected = net.role.announcement()
    assert net.read(gatekeeper.MasterPubkey) == expected.master_pubkey
    assert net.worker.egress_messages() == []
    assert net.worker.info()["role"] == "gatekeeper"
    # The sealed master key survives a restart of the worker (same enclave, same identity).
    again = GatekeeperRole(net.worker, tmp_path, net.enclave.seal, net.enclave.unseal)
    assert again.announcement() == expected
    # The sealed file holds no plaintext key material.
    assert net.role.master.secret not in (tmp_path / MASTER_KEY_FILE).read_bytes()
    assert announce.message.topic.startswith(b"^")


def launched(tmp_path: Path) -> Network:
    net = Network(tmp_path)
    net.sync()
    net.block(registry.register_worker(net.registration.info, net.registration.attestation))
    net.relay_egress()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(net.worker.identity.public_key)))
    net.relay_egress()
    assert net.read(gatekeeper.MasterPubkey) is not None
    return net


def until_beacon_request(net: Network) -> None:
    while net.chain.head.number % BEACON_INTERVAL:
        net.block()


def test_beacon_rounds_link_and_come_from_the_master_key(tmp_path: Path):
    net = launched(tmp_path)
    until_beacon_request(net)
    assert net.read(gatekeeper.BeaconRequested) == 1
    [signed] = net.worker.egress_messages()
    assert signed.message.sender == GatekeeperOrigin()
    net.relay_egress()
    first = net.read(gatekeeper.Beacon)
    assert first.round == 1 and first.previous == bytes(32)
    assert first.value == random_number(net.role.master, 1, bytes(32))
    until_beacon_request(net)
    net.relay_egress()
    second = net.read(gatekeeper.Beacon)
    assert (second.round, second.previous) == (2, first.value)
    assert second.value == random_number(net.role.master, 2, first.value)
    assert net.worker.egress_messages() == []


def test_gatekeeper_origin_with_a_wrong_key_or_a_broken_link_is_refused(tmp_path: Path):
    net = launched(tmp_path)
    until_beacon_request(net)
    net.worker.egress.clear()  # drop the honest answer: the test sends its own
    seq = net.worker.chain.mq_next_sequence(GatekeeperOrigin())
    good = BeaconValue(1, bytes(32), random_number(net.role.master, 1, bytes(32)))
    message = Message(GatekeeperOrigin(), BEACON_TOPIC, encode(good))
    # Claiming the gatekeeper origin without the master key.
    forged = sign_message(ALICE, net.chain.genesis_hash, message, seq)
    with pytest.raises(InvalidTransaction) as info:
        net.node.submit(UnsignedExtrinsic(encode(mq.sync_offchain_message(forged), RuntimeCall)).encode())
    assert info.value.kind == "BadProof"
    # With the master key but not linked to the previous value: accepted by mq, refused by
    # the pallet (the sequence is used up, the beacon unchanged).
    broken = BeaconValue(1, b"\x01" * 32, good.value)
    signed = sign_message(net.role.master.sr25519(), net.chain.genesis_hash,
                          Message(GatekeeperOrigin(), BEACON_TOPIC, encode(broken)), seq)
    net.block(unsigned=(mq.sync_offchain_message(signed),))
    assert net.read(gatekeeper.Beacon) is None
    assert net.read(gatekeeper.BeaconRequested) == 1
