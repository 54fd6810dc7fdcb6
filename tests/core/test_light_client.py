"""The light client follows a real chain (built in-process) from genesis through an
authority-set change, reads a balance with a storage proof, and refuses every forged or
misordered input without changing its state."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from phala.chain.blockchain import Blockchain
from phala.chain.consensus import DevConsensus
from phala.chain.db import ChainDB
from phala.chain.node import Node
from phala.chain.runtime import authorities, balances, sudo, system
from phala.chain.runtime.executive import VERSION
from phala.chain.runtime.frame import RuntimeCall
from phala.chain.spec import UNIT, ChainSpec
from phala.chain.state import Overlay
from phala.core.codec import encode
from phala.core.finality import sign_vote
from phala.core.keys import Keypair, dev_keypair
from phala.core.light_client import AUTHORITY_SET_KEY, LightClient, LightClientError
from phala.core.trie import prove
from phala.core.types import (
    AuthoritySet,
    AuthoritySignature,
    Era,
    Extrinsic,
    Header,
    Justification,
    signing_payload,
)

ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")
CHARLIE = dev_keypair("Charlie")
EVE = dev_keypair("Eve")
BLOCKS_BEFORE_CHANGE = 6
BLOCKS_AFTER_CHANGE = 6
BATCH = 4


@dataclass
class Chain:
    genesis: Header
    headers: list[Header]  # index = block number
    justifications: list[Justification | None]
    change_at: int  # number of the header that carries the AuthoritiesChange digest
    node: Node

    def proof(self, header: Header, keys: list[bytes]) -> list[bytes]:
        return prove(header.state_root, keys, self.node.chain.db.node)


def _sign(chain: Blockchain, kp: Keypair, call: RuntimeCall, nonce: int) -> bytes:
    encoded = encode(call, RuntimeCall)
    payload = signing_payload(
        encoded,
        Era(),
        nonce,
        0,
        VERSION.spec_version,
        VERSION.transaction_version,
        chain.genesis_hash,
        chain.genesis_hash,
    )
    return Extrinsic(kp.public_key, kp.sign(payload), Era(), nonce, 0, encoded).encode()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    path: Path = tmp_path_factory.mktemp("light-client") / "db"
    spec = ChainSpec.dev(start_time_ms=1_700_000_000_000)
    node = Node(Blockchain(ChainDB(path), spec), DevConsensus([ALICE, BOB], "manual"))
    bc = node.chain
    nonces = {ALICE.public_key: 0, BOB.public_key: 0}

    def send(kp: Keypair, call: RuntimeCall) -> None:
        node.submit(_sign(bc, kp, call, nonces[kp.public_key]))
        nonces[kp.public_key] += 1

    for i in range(BLOCKS_BEFORE_CHANGE):
        send(ALICE, balances.transfer_keep_alive(CHARLIE.public_key, (i + 1) * UNIT))
        send(BOB, balances.transfer_keep_alive(CHARLIE.public_key, UNIT))
        node.produce_block()
    send(ALICE, sudo.sudo(authorities.set_authorities([BOB.public_key])))
    change = node.produce_block()
    assert change.authorities_change() is not None
    for i in range(BLOCKS_AFTER_CHANGE):
        send(BOB, balances.transfer_keep_alive(CHARLIE.public_key, (i + 1) * UNIT))
        node.produce_block()
    assert bc.authority_set() == AuthoritySet(1, [BOB.public_key])

    db = bc.db
    headers, justifications = [], []
    for n in range(bc.head.number + 1):
        h = db.hash_of(n)
        headers.append(db.header(h))
        justifications.append(db.justification(h))
    return Chain(headers[0], headers, justifications, change.number, node)


def _genesis_client(chain: Chain) -> LightClient:
    proof = chain.proof(chain.genesis, [AUTHORITY_SET_KEY])
    return LightClient(chain.genesis, proof, chain.genesis.hash)


def _snapshot(lc: LightClient) -> tuple:
    return (lc.genesis_hash, lc.finalized, lc.authority_set, dict(lc.accepted))


def _refused(lc: LightClient, fn, *args, match: str | None = None) -> None:
    """``fn(*args)`` raises LightClientError and leaves ``lc`` as it was."""
    before = _snapshot(lc)
    with pytest.raises(LightClientError, match=match):
        fn(*args)
    assert _snapshot(lc) == before


def _batches(chain: Chain, start: int, end: int) -> list[tuple[list[Header], Justification]]:
    """Batches of at most BATCH headers over ``start..end`` inclusive, split so that the
    authority-change header ends its batch; each with its last header's justification."""
    out = []
    n = start
    while n <= end:
        last = min(n + BATCH - 1, end)
        if n <= chain.change_at < last:
            last = chain.change_at
        out.append((chain.headers[n : last + 1], chain.justifications[last]))
        n = last + 1
    return out


def _follow(lc: LightClient, chain: Chain, upto: int) -> None:
    for headers, justification in _batches(chain, lc.finalized.number + 1, upto):
        assert lc.import_headers(headers, justification) == headers[-1]


def test_follows_chain_through_authority_change_and_reads_balance(chain: Chain) -> None:
    lc = _genesis_client(chain)
    assert lc.authority_set == AuthoritySet(0, [ALICE.public_key])
    head = chain.headers[-1]
    _follow(lc, chain, head.number)
    assert lc.finalized == head
    assert lc.authority_set == AuthoritySet(1, [BOB.public_key])
    assert all(h.hash in lc.accepted for h in chain.headers)

    keys = [system.Account.key(CHARLIE.public_key), system.Account.key(BOB.public_key)]
    values = lc.read_storage(head.hash, chain.proof(head, keys), keys)
    view = chain.node.chain.db.state_view()
    try:
        state = Overlay(view)
        for who, key in zip((CHARLIE, BOB), keys, strict=True):
            info = system.Account.codec.decode(values[key])
            assert info == system.Account.get(state, who.public_key)
        assert system.Account.codec.decode(values[keys[0]]).data.free > 1_000_000 * UNIT
    finally:
        view.close()
    # A key proven absent reads as None.
    absent = system.Account.key(b"\x07" * 32)
    assert lc.read_storage(head.hash, chain.proof(head, [absent]), [absent]) == {absent: None}


def test_wrong_pinned_genesis_hash(chain: Chain) -> None:
    proof = chain.proof(chain.genesis, [AUTHORITY_SET_KEY])
    with pytest.raises(LightClientError, match="pinned"):
        LightClient(chain.genesis, proof, bytes(32))
    with pytest.raises(LightClientError, match="pinned"):
        LightClient(chain.headers[1], proof, chain.genesis.hash)


def test_tampered_authority_set_proof(chain: Chain) -> None:
    proof = chain.proof(chain.genesis, [AUTHORITY_SET_KEY])
    # A proof that claims another set: the value blob no longer matches its bucket.
    forged_value = b"\x00" + encode(AuthoritySet(0, [EVE.public_key]))
    forged = [forged_value if blob[0] == 0 else blob for blob in proof]
    assert forged != proof
    flipped = [bytearray(b) for b in proof]
    flipped[-1][-1] ^= 1
    for bad in (forged, [bytes(b) for b in flipped], proof[:-1], []):
        with pytest.raises(LightClientError, match="authority set proof"):
            LightClient(chain.genesis, bad, chain.genesis.hash)
    # A valid proof, but of a key that is not the authority set (it proves nothing about it).
    other = chain.proof(chain.genesis, [system.Account.key(ALICE.public_key)])
    with pytest.raises(LightClientError):
        LightClient(chain.genesis, other, chain.genesis.hash)


def test_batch_must_extend_finalized_header(chain: Chain) -> None:
    lc = _genesis_client(chain)
    h = chain.headers
    j = chain.justifications
    _refused(lc, lc.import_headers, [], j[1], match="no headers")
    _refused(lc, lc.import_headers, h[2:4], j[3], match="does not extend")  # gap after genesis
    _refused(lc, lc.import_headers, [h[1], h[3]], j[3], match="does not extend")  # gap inside
    _refused(lc, lc.import_headers, [h[2], h[1]], j[1], match="does not extend")  # out of order
    lc.import_headers(h[1:3], j[2])
    _refused(lc, lc.import_headers, h[1:4], j[3], match="does not extend")  # replays #1
    _refused(lc, lc.import_headers, h[2:4], j[3], match="does not extend")  # replays #2
    # A header claiming to be #3 with the right parent but a wrong number.
    wrong_number = dataclasses.replace(h[3], number=4)
    _refused(lc, lc.import_headers, [wrong_number], j[3], match="does not extend")
    lc.import_headers(h[3:4], j[3])
    assert lc.finalized == h[3]


def _with_signatures(j: Justification, sigs: list[AuthoritySignature]) -> Justification:
    return dataclasses.replace(j, signatures=sigs)


def test_forged_justifications(chain: Chain) -> None:
    lc = _genesis_client(chain)
    h, j = chain.headers, chain.justifications
    target = h[1:3]
    good = j[2]
    (sig,) = good.signatures
    bad_sig = bytearray(sig.signature)
    bad_sig[5] ^= 0x10
    forged = _with_signatures(good, [AuthoritySignature(sig.authority, bytes(bad_sig))])
    _refused(lc, lc.import_headers, target, forged, match="invalid signature")

    # Signed by a key outside the set: Eve alone, and Eve claiming to be Alice.
    eve = sign_vote(EVE, chain.genesis.hash, 0, 2, h[2].hash)
    _refused(lc, lc.import_headers, target, _with_signatures(good, [eve]), match="outside")
    posing = AuthoritySignature(ALICE.public_key, eve.signature)
    _refused(
        lc, lc.import_headers, target, _with_signatures(good, [posing]), match="invalid signature"
    )
    _refused(lc, lc.import_headers, target, _with_signatures(good, [sig, eve]), match="outside")
    _refused(lc, lc.import_headers, target, _with_signatures(good, []), match="needed")
    _refused(
        lc, lc.import_headers, target, _with_signatures(good, [sig, sig]), match="two signatures"
    )

    # A valid justification, but for another block; and one re-labelled as this block.
    _refused(lc, lc.import_headers, target, j[1], match="another block")
    _refused(lc, lc.import_headers, target, j[3], match="another block")
    relabelled = dataclasses.replace(j[1], number=2, block_hash=h[2].hash)
    _refused(lc, lc.import_headers, target, relabelled, match="invalid signature")
    # Alice's genuine signature, but over another chain's genesis hash.
    other_chain = sign_vote(ALICE, bytes(32), 0, 2, h[2].hash)
    _refused(
        lc,
        lc.import_headers,
        target,
        _with_signatures(good, [other_chain]),
        match="invalid signature",
    )
    # The right signer and block, but a set id the client is not at.
    wrong_set = Justification(
        1, 2, h[2].hash, [sign_vote(ALICE, chain.genesis.hash, 1, 2, h[2].hash)]
    )
    _refused(lc, lc.import_headers, target, wrong_set, match="authority set 1")

    lc.import_headers(target, good)
    assert lc.finalized == h[2]


def test_old_set_refused_after_change(chain: Chain) -> None:
    lc = _genesis_client(chain)
    _follow(lc, chain, chain.change_at)
    assert lc.authority_set == AuthoritySet(1, [BOB.public_key])
    h = chain.headers
    n = chain.change_at + 2
    target = h[chain.change_at + 1 : n + 1]
    # Alice (the old set) signs as set 0, and as set 1; Bob signs as set 0.
    old = Justification(0, n, h[n].hash, [sign_vote(ALICE, chain.genesis.hash, 0, n, h[n].hash)])
    _refused(lc, lc.import_headers, target, old, match="authority set 0")
    alice_as_new = Justification(
        1, n, h[n].hash, [sign_vote(ALICE, chain.genesis.hash, 1, n, h[n].hash)]
    )
    _refused(lc, lc.import_headers, target, alice_as_new, match="outside")
    bob_as_old = Justification(
        1, n, h[n].hash, [sign_vote(BOB, chain.genesis.hash, 0, n, h[n].hash)]
    )
    _refused(lc, lc.import_headers, target, bob_as_old, match="invalid signature")
    lc.import_headers(target, chain.justifications[n])
    assert lc.finalized == h[n]


def test_change_header_must_end_its_batch(chain: Chain) -> None:
    lc = _genesis_client(chain)
    c = chain.change_at
    _follow(lc, chain, c - 2)
    h, j = chain.headers, chain.justifications
    # The batch runs past the change: the old set would be trusted beyond its term.
    _refused(lc, lc.import_headers, h[c - 1 : c + 2], j[c + 1], match="must end its batch")
    # Even with a justification by the old set for the later header, made up by Alice.
    fake = Justification(
        0, c + 1, h[c + 1].hash, [sign_vote(ALICE, chain.genesis.hash, 0, c + 1, h[c + 1].hash)]
    )
    _refused(lc, lc.import_headers, h[c - 1 : c + 2], fake, match="must end its batch")
    lc.import_headers(h[c - 1 : c + 1], j[c])
    assert lc.authority_set.set_id == 1


def test_change_header_cannot_be_altered(chain: Chain) -> None:
    lc = _genesis_client(chain)
    c = chain.change_at
    _follow(lc, chain, c - 1)
    h, j = chain.headers, chain.justifications
    change = h[c].authorities_change()
    # Removing or swapping the change digest changes the header's hash: the justification
    # no longer matches.
    stripped = dataclasses.replace(h[c], digest=[])
    _refused(lc, lc.import_headers, [stripped], j[c], match="another block")
    swapped = dataclasses.replace(
        h[c], digest=[dataclasses.replace(change, authorities=[EVE.public_key])]
    )
    _refused(lc, lc.import_headers, [swapped], j[c], match="another block")


def test_modified_state_root(chain: Chain) -> None:
    lc = _genesis_client(chain)
    h, j = chain.headers, chain.justifications
    evil_root = bytes(31) + b"\x01"
    # The last header of the batch: its justification no longer matches.
    last = dataclasses.replace(h[3], state_root=evil_root)
    _refused(lc, lc.import_headers, [h[1], h[2], last], j[3], match="another block")
    # A header inside the batch: the next header no longer links to it.
    middle = dataclasses.replace(h[2], state_root=evil_root)
    _refused(lc, lc.import_headers, [h[1], middle, h[3]], j[3], match="does not extend")
    lc.import_headers(h[1:4], j[3])
    assert lc.accepted[h[2].hash].state_root == h[2].state_root
    assert middle.hash not in lc.accepted


def test_storage_proofs(chain: Chain) -> None:
    lc = _genesis_client(chain)
    _follow(lc, chain, 4)
    h = chain.headers
    key = system.Account.key(CHARLIE.public_key)
    # A block the client has not accepted (it exists, but is not finalized for the client),
    # and a made-up hash.
    for block in (h[5], h[-1]):
        _refused(lc, lc.read_storage, block.hash, chain.proof(block, [key]), [key], match="not one")
    _refused(lc, lc.read_storage, b"\x42" * 32, chain.proof(h[4], [key]), [key], match="not one")
    # A proof made at a later block, presented for an accepted one.
    _refused(
        lc, lc.read_storage, h[4].hash, chain.proof(h[6], [key]), [key], match="bad storage proof"
    )
    proof = chain.proof(h[4], [key])
    # Tampered: a value blob replaced by a richer one, any blob flipped, blobs missing.
    rich = system.Account.codec.encode(system.AccountInfo(0, 0, 1, system.AccountData(10**30)))
    replaced = [b"\x00" + rich if blob[0] == 0 else blob for blob in proof]
    _refused(lc, lc.read_storage, h[4].hash, replaced, [key], match="bad storage proof")
    for i in range(len(proof)):
        flipped = list(proof)
        blob = bytearray(flipped[i])
        blob[len(blob) // 2] ^= 0x01
        flipped[i] = bytes(blob)
        _refused(lc, lc.read_storage, h[4].hash, flipped, [key], match="bad storage proof")
        _refused(
            lc,
            lc.read_storage,
            h[4].hash,
            proof[:i] + proof[i + 1 :],
            [key],
            match="bad storage proof",
        )
    values = lc.read_storage(h[4].hash, proof, [key])
    expected = chain.node.chain.db.read_at(h[4].state_root, key)
    assert values == {key: expected} and expected is not None
