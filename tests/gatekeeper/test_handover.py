"""Handover of the master key to a later gatekeeper, in process: the existing gatekeeper
encrypts the master key to the newcomer's ECDH key and sends it through the chain as the
gatekeeper origin; the newcomer checks it against the master public key on chain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from phala.chain.blockchain import Blockchain
from phala.chain.consensus import DevConsensus
from phala.chain.db import ChainDB
from phala.chain.node import Node
from phala.chain.runtime import gatekeeper, mq, registry, sudo
from phala.chain.runtime.frame import RuntimeCall
from phala.chain.spec import ChainSpec
from phala.chain.state import Overlay
from phala.client.tx import build_extrinsic
from phala.core.codec import decode, encode
from phala.core.gatekeeper import MASTER_KEY_TOPIC, MasterKeyHandover
from phala.core.keys import dev_keypair
from phala.core.light_client import AUTHORITY_SET_KEY
from phala.core.trie import prove
from phala.core.types import BlockChanges, UnsignedExtrinsic
from phala.gatekeeper.role import GatekeeperRole
from phala.pruntime.runtime import Worker

from .test_launch import Enclave, Identity

ALICE = dev_keypair("Alice")


class Member:
    """One worker with its gatekeeper role, its own enclave key and data directory."""

    def __init__(self, net: Cluster, name: bytes, path: Path):
        self.enclave = Enclave()
        self.enclave.key = (name * 32)[:32]
        path.mkdir(parents=True, exist_ok=True)
        self.worker = Worker(Identity(name), self.enclave, net.chain.genesis_hash)
        self.role = GatekeeperRole(self.worker, path, self.enclave.seal, self.enclave.unseal)
        genesis = net.chain.db.header(net.chain.genesis_hash)
        proof = prove(genesis.state_root, [AUTHORITY_SET_KEY], net.chain.db.node)
        self.registration = self.worker.init_runtime(genesis, proof, ALICE.public_key)

    @property
    def identity(self) -> bytes:
        return self.worker.identity.public_key


class Cluster:
    def __init__(self, path: Path, names: list[bytes]):
        spec = ChainSpec.dev(start_time_ms=1_700_000_000_000)
        self.node = Node(Blockchain(ChainDB(path / "chain"), spec), DevConsensus([ALICE], "manual"))
        self.chain = self.node.chain
        self.members = [Member(self, name, path / name.decode()) for name in names]
        self.nonce = 0
        self.sync()

    def block(self, *calls: RuntimeCall, unsigned: tuple = ()) -> None:
        for call in calls:
            self.node.submit(build_extrinsic(ALICE, call, self.nonce, self.chain.genesis_hash))
            self.nonce += 1
        for raw in unsigned:
            try:
                self.node.submit(raw)
            except Exception:  # another member already submitted the same bytes
                pass
        self.node.produce_block()
        self.sync()

    def sync(self) -> None:
        db = self.chain.db
        head = self.chain.head.number
        for m in self.members:
            start = m.worker.chain.next_block
            if start == 0:
                m.worker.dispatch_blocks([BlockChanges(0, self.chain.genesis_hash, db.changes(0))])
                start = 1
            if start > head:
                continue
            m.worker.sync_header([db.header(db.hash_of(n)) for n in range(start, head + 1)],
                                 db.justification(db.hash_of(head)))
            m.worker.dispatch_blocks([BlockChanges(n, db.hash_of(n), db.changes(n)) for n in range(start, head + 1)])

    def relay(self) -> None:
        raws = [
            UnsignedExtrinsic(encode(mq.sync_offchain_message(s), RuntimeCall)).encode()
            for m in self.members
            for s in m.worker.egress_messages()
        ]
        self.block(unsigned=tuple(raws))

    def read(self, item):
        view = self.chain.db.state_view()
        try:
            return item.get(Overlay(view))
        finally:
            view.close()


def test_second_gatekeeper_receives_the_master_key(tmp_path: Path):
    net = Cluster(tmp_path, [b"gk1", b"gk2", b"wk3"])
    first, second, bystander = net.members
    net.block(*(registry.register_worker(m.registration.info, m.registration.attestation) for m in net.members))
    net.relay()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(first.identity)))
    net.relay()
    assert first.role.master is not None and second.role.master is None

    net.block(sudo.sudo(gatekeeper.register_gatekeeper(second.identity)))
    [handover] = first.worker.egress_messages()
    assert handover.message.topic == MASTER_KEY_TOPIC
    net.relay()
    assert second.role.master == first.role.master
    assert second.role.announcement() == first.role.announcement()
    assert second.role.announcement().master_pubkey == net.read(gatekeeper.MasterPubkey)
    # The bystander saw the same outbound message and learnt nothing.
    assert bystander.role.master is None
    # The handover carried no plaintext key.
    assert first.role.master.secret not in encode(handover)


def test_handover_is_deterministic_and_bound_to_its_recipient(tmp_path: Path):
    """Two holders of the master key produce byte-identical handovers; the same envelope
    replayed to a different worker does not open."""
    net = Cluster(tmp_path, [b"gk1", b"gk2", b"wk3"])
    first, second, third = net.members
    net.block(*(registry.register_worker(m.registration.info, m.registration.attestation) for m in net.members))
    net.relay()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(first.identity)))
    net.relay()
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(second.identity)))
    net.relay()
    # Both are gatekeepers now; the third worker joins and both hand over.
    net.block(sudo.sudo(gatekeeper.register_gatekeeper(third.identity)))
    [a] = first.worker.egress_messages()
    [b] = second.worker.egress_messages()
    assert a.message == b.message and a.sequence == b.sequence  # signatures are randomised
    # The envelope replayed to another worker (readdressed to it) does not open there.
    envelope = decode(MasterKeyHandover, a.message.payload).envelope
    outsider = Member(net, b"out", tmp_path / "outsider")
    net.members.append(outsider)
    net.sync()
    replayed = dataclasses.replace(a.message, payload=encode(MasterKeyHandover(outsider.identity, envelope)))
    outsider.role.on_handover(net.chain.head, replayed)
    assert outsider.role.master is None
    net.relay()
    assert third.role.master == first.role.master
