"""An in-process network for tests and benchmarks: a manual-seal dev node and workers, each
with its roles (gatekeeper, cluster keys, contracts, queries), its own simulated enclave
(sealing key) and data directory, fed block by block as pherry would feed them. Nothing here
is used by a running node or pRuntime."""

from __future__ import annotations

from pathlib import Path

from phala.chain.blockchain import Blockchain
from phala.chain.consensus import DevConsensus
from phala.chain.db import ChainDB
from phala.chain.node import Node
from phala.chain.pool import PoolError
from phala.chain.runtime import gatekeeper, mq, registry, sudo, system
from phala.chain.runtime.executive import InvalidTransaction
from phala.chain.runtime.frame import RuntimeCall
from phala.chain.spec import ChainSpec
from phala.chain.state import Overlay
from phala.client.tx import build_extrinsic
from phala.core.attestation import SIM_ATTESTATION_URI, sign_sim_quote
from phala.core.codec import decode, encode
from phala.core.envelope import X25519Keypair, aead_decrypt, aead_encrypt
from phala.core.hashing import blake2_256
from phala.core.keys import Keypair, dev_keypair
from phala.core.light_client import AUTHORITY_SET_KEY
from phala.core.mq import Message
from phala.core.trie import prove
from phala.core.types import BlockChanges, UnsignedExtrinsic
from phala.pruntime.checkpoint import CheckpointStore, restore
from phala.pruntime.identity import WorkerIdentity
from phala.pruntime.runtime import Worker
from phala.pruntime.service import attach_roles

ALICE = dev_keypair("Alice")


def Identity(seed: bytes) -> WorkerIdentity:  # noqa: N802 - reads as the class it builds
    return WorkerIdentity(Keypair.from_seed(blake2_256(seed)), X25519Keypair.from_secret(blake2_256(seed + b"ecdh")))


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


class Member:
    """One worker with its gatekeeper role, its own enclave key and data directory."""

    def __init__(self, net: Network, name: bytes, path: Path):
        self.name = name
        self.enclave = Enclave()
        self.enclave.key = (name * 32)[:32]
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.worker = Worker(Identity(name), self.enclave, net.chain.genesis_hash)
        self.role, self.cluster_keys, self.contracts, self.queries = attach_roles(self.worker, path, self.enclave.seal, self.enclave.unseal)
        genesis = net.chain.db.header(net.chain.genesis_hash)
        proof = prove(genesis.state_root, [AUTHORITY_SET_KEY], net.chain.db.node)
        self.registration = self.worker.init_runtime(genesis, proof, ALICE.public_key)

    def restart(self, net: Network) -> None:
        """A crash and restart: a fresh worker process with the same enclave and data
        directory, resumed from its newest checkpoint; whatever it had queued is lost."""
        store = CheckpointStore(self.path, self.enclave.seal, self.enclave.unseal)
        self.worker = Worker(self.worker.identity, self.enclave, net.chain.genesis_hash)
        self.role, self.cluster_keys, self.contracts, self.queries = attach_roles(self.worker, self.path, self.enclave.seal, self.enclave.unseal)
        restore(self.worker, store.load_newest(self.worker))

    def checkpoint(self) -> None:
        CheckpointStore(self.path, self.enclave.seal, self.enclave.unseal).save(self.worker)

    @property
    def identity(self) -> bytes:
        return self.worker.identity.public_key


class Network:
    def __init__(self, path: Path, names: list[bytes]):
        spec = ChainSpec.dev(start_time_ms=1_700_000_000_000)
        self.node = Node(Blockchain(ChainDB(path / "chain"), spec), DevConsensus([ALICE], "manual"))
        self.chain = self.node.chain
        self.members = [Member(self, name, path / name.decode()) for name in names]
        self.delivered: list[Message] = []  # every outbound message, in chain order
        self.events: list = []  # every event, in chain order
        self.sync()

    def block(self, *calls: RuntimeCall | tuple[Keypair, RuntimeCall], unsigned: tuple = ()) -> None:
        """One block with ``calls`` (signed by Alice, or by the keypair paired with a call)
        and ``unsigned`` calls, then every member syncs it."""
        for item in calls:
            signer, call = item if isinstance(item, tuple) else (ALICE, item)
            nonce = self.node.account_next_index(signer.public_key)
            self.node.submit(build_extrinsic(signer, call, nonce, self.chain.genesis_hash))
        for call in unsigned:
            try:
                self.node.submit(UnsignedExtrinsic(encode(call, RuntimeCall)).encode())
            except PoolError:  # another gatekeeper's copy of the same message is pooled
                pass
            except InvalidTransaction as exc:  # already on chain: pherry skips these too
                if exc.kind != "Stale":
                    raise
        self.node.produce_block()
        self.delivered.extend(self.read(mq.OutboundMessages))
        self.events.extend(record.event for record in self.read(system.Events))
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

    def relay(self, keep_back: set[bytes] = frozenset()) -> None:
        """Submit every member's egress messages, as their relayers would, in one block
        (except those on a topic in ``keep_back``: a slow relayer)."""
        self.block(unsigned=tuple(
            mq.sync_offchain_message(s)
            for m in self.members
            for s in m.worker.egress_messages()
            if s.message.topic not in keep_back
        ))

    def settle(self, rounds: int = 6) -> None:
        """Relay until no member has anything left to send (each round is one block)."""
        for _ in range(rounds):
            if not any(m.worker.egress_messages() for m in self.members):
                return
            self.relay()
        raise AssertionError("egress messages keep coming")

    def sudo(self, *calls: RuntimeCall) -> None:
        """One block with each call made by root, then relay what it caused."""
        self.block(*(sudo.sudo(c) for c in calls))
        self.settle()

    def launch(self, gatekeepers: int) -> None:
        """Register every member as a worker and make the first ``gatekeepers`` of them
        gatekeepers, one after another, each holding the master key at the end."""
        self.block(*(registry.register_worker(m.registration.info, m.registration.attestation) for m in self.members))
        self.settle()
        for m in self.members[:gatekeepers]:
            self.sudo(gatekeeper.register_gatekeeper(m.identity))
            assert m.role.master is not None

    def member(self, name: bytes) -> Member:
        return next(m for m in self.members if m.name == name)

    def sent(self, topic: bytes, payload: type | None = None) -> list:
        """The payloads of every outbound message on ``topic`` so far (decoded as ``payload``
        if given)."""
        raw = [m.payload for m in self.delivered if m.topic == topic]
        return raw if payload is None else [decode(payload, p) for p in raw]

    def read_map(self, item, key):
        view = self.chain.db.state_view()
        try:
            return item.get(Overlay(view), key)
        finally:
            view.close()

    def read(self, item):
        view = self.chain.db.state_view()
        try:
            return item.get(Overlay(view))
        finally:
            view.close()


