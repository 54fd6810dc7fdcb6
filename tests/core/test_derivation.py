"""The key derivation tree: pinned vectors, associativity, separation, one-wayness, IVs.

The hex below is repeated in docs/keys.md. If a vector changes, every key on every chain
changes with it: fix the code, not the vector.
"""

import hashlib
import hmac
import itertools

import pytest

from phala.core.derivation import (
    KeyNode,
    cluster_epoch_key,
    cluster_key,
    contract_key,
    iv_generator,
    random_number,
    u64le,
)
from phala.core.envelope import aead_decrypt, aead_encrypt, open_envelope, seal
from phala.core.keys import Keypair, verify

MASTER_SEED = bytes([0x01]) * 32
CLUSTER_ID = bytes([0x02]) * 32
CONTRACT_ID = bytes([0x03]) * 32

VECTORS = {
    # node: (secret, sr25519 public key, X25519 public key)
    "master": (
        "0101010101010101010101010101010101010101010101010101010101010101",
        "56cc4dc2fc4c66612f4c485905f299e293c375149891ad2b6f58ef01aadd1952",
        "c8c9b9777fe55298266e11aa3d35e84a2d60382352621b3ee911c82565dd027a",
    ),
    "cluster": (
        "aa4da50e648aa7a7e157e64b11bc9d7d313719588c49856d0777eafc81d00aa7",
        "4cc154369854471febb9c4294f0dd1ee2cab1d948a147cc7b4c8fa1609d39666",
        "131663b276e78da021d37943b7db76c8f1e1343562aef9303df940119c63a419",
    ),
    "contract": (
        "6d917eab67cc6d50cf3d9b1e61086cb61a11eea7605f0b22a868c64595e7c807",
        "de078b47d9f5931342ed78f3c38056c1caa064c736a742e4316193679f29035f",
        "db9b9af3e93ec1e4be979c92569431eda2242ac19b8001e5ca6374a19536a156",
    ),
}
CONTRACT_AEAD_KEY = "d1ce3e71e4a39dafab33fe6dede9c19be544710d52709a4bff2905d7952d48f0"
MASTER_BYTES32_LABEL = "2c851d62675f9256a70f59346368cefc4fdaa8616349772b6f887020df98b009"
RANDOM_ROUND_1 = "35600e7fec96d919d2a3095d953512a9a82dd0ee6bb4e88d3c7347e3ec9e1d00"
IV_MASTER_KEY_0_0 = "e22200a3c42464fbbbd67e68"
# cluster_epoch_key(master, CLUSTER_ID, epoch): (secret, sr25519 public, x25519 public)
EPOCH_VECTORS = {
    0: (
        "e5d0938baa49a1a28aaa378d70b37e459fdf0588cc121da2b255883ec0bb0315",
        "3e8fc0efab2d44877f8885341abe045cf8fec7977bbae0f8588a06885eecd506",
        "daac9b0b45922af5181de42b6727312dbb8baae9a2b18aa53c14607e8aef2f15",
    ),
    1: (
        "93b1426a519ad347c7db2f04b38a3877960fcb3b74ba8143db3c5002d4936e75",
        "007c891c6b0dc5ebc365461bae91a10fbfa6f5adbb54978c519f30c39b19b35a",
        "d4731b7bb163a27b0cdc6cb4ceb9bb7b5a4a911093012f162c3046260ca58855",
    ),
}


def nodes() -> dict[str, KeyNode]:
    master = KeyNode(MASTER_SEED)
    cluster = cluster_key(master, CLUSTER_ID)
    return {"master": master, "cluster": cluster, "contract": contract_key(cluster, CONTRACT_ID)}


# -- pinned vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_pinned_vectors(name: str) -> None:
    node = nodes()[name]
    secret, sr25519_public, x25519_public = VECTORS[name]
    assert node.secret.hex() == secret
    assert node.sr25519().public_key.hex() == sr25519_public
    assert node.x25519().public.hex() == x25519_public


def test_pinned_vectors_of_the_other_outputs() -> None:
    master, contract = nodes()["master"], nodes()["contract"]
    assert contract.aead_key().hex() == CONTRACT_AEAD_KEY
    assert master.bytes32("label").hex() == MASTER_BYTES32_LABEL
    assert random_number(master, 1, bytes(32)).hex() == RANDOM_ROUND_1
    assert iv_generator(master, "master_key", bytes([0x04]) * 32, 0, 0).hex() == IV_MASTER_KEY_0_0


@pytest.mark.parametrize("epoch", sorted(EPOCH_VECTORS))
def test_pinned_cluster_epoch_vectors(epoch: int) -> None:
    node = cluster_epoch_key(KeyNode(MASTER_SEED), CLUSTER_ID, epoch)
    secret, sr25519_public, x25519_public = EPOCH_VECTORS[epoch]
    assert node.secret.hex() == secret
    assert node.sr25519().public_key.hex() == sr25519_public
    assert node.x25519().public.hex() == x25519_public
    # One step below the cluster node, so the epoch key reveals neither it nor other epochs.
    assert node == nodes()["cluster"].derive("epoch", epoch.to_bytes(8, "little"))


def _hkdf_reference(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac, independent of the cryptography package."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def test_byte_level_definition_matches_the_docstring() -> None:
    def info(kind: bytes, data: bytes) -> bytes:
        return b"phala/derive/v1/" + kind + b"\x00" + len(data).to_bytes(4, "little") + data

    master = KeyNode(MASTER_SEED)
    step1 = _hkdf_reference(MASTER_SEED, info(b"segment", b"cluster_key"), 32)
    cluster = _hkdf_reference(step1, info(b"segment", CLUSTER_ID), 32)
    assert cluster.hex() == VECTORS["cluster"][0]
    node = KeyNode(cluster)
    assert node.aead_key() == _hkdf_reference(cluster, info(b"aead", b""), 32)
    assert node.bytes32("x") == _hkdf_reference(cluster, info(b"bytes32", b"x"), 32)
    assert node.x25519().secret == _hkdf_reference(cluster, info(b"x25519", b""), 32)
    seed = _hkdf_reference(cluster, info(b"sr25519", b""), 32)
    assert node.sr25519() == Keypair.from_seed(seed)
    iv_node = master.derive("iv_generator", "p", b"r", u64le(7), u64le(9))
    assert iv_generator(master, "p", b"r", 7, 9) == _hkdf_reference(
        iv_node.secret, info(b"iv", b""), 12
    )


# -- the tree ---------------------------------------------------------------------------------


def test_path_associativity() -> None:
    master = KeyNode(MASTER_SEED)
    path = ("cluster_key", CLUSTER_ID, "contract_key", CONTRACT_ID)
    whole = master.derive(*path)
    assert whole == nodes()["contract"]
    for i in range(len(path) + 1):
        assert master.derive(*path[:i]).derive(*path[i:]) == whole
    assert (
        master.derive("cluster_key").derive(CLUSTER_ID).derive("contract_key").derive(CONTRACT_ID)
        == whole
    )
    assert master.derive() == master


def test_a_cluster_key_holder_derives_every_contract_key_of_its_cluster() -> None:
    master = KeyNode(MASTER_SEED)
    received = KeyNode(cluster_key(master, CLUSTER_ID).secret)  # as a worker gets it
    for i in range(20):
        contract_id = bytes([i]) * 32
        assert contract_key(received, contract_id) == master.derive(
            "cluster_key", CLUSTER_ID, "contract_key", contract_id
        )


def test_str_is_utf8_and_bytes_are_raw() -> None:
    master = KeyNode(MASTER_SEED)
    assert master.derive("cluster_key") == master.derive(b"cluster_key")
    assert master.derive("é") == master.derive("é".encode())
    assert master.derive(bytearray(b"x")) == master.derive(b"x")
    with pytest.raises(TypeError, match="str or bytes"):
        master.derive(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str or bytes"):
        master.bytes32(None)  # type: ignore[arg-type]


def test_segment_boundaries_are_separated() -> None:
    master = KeyNode(MASTER_SEED)
    paths = [
        ("ab", "c"),
        ("a", "bc"),
        ("abc",),
        ("abc", ""),
        ("", "abc"),
        ("a", "b", "c"),
        ("", ""),
        ("",),
        ("a\x00", "bc"),
        ("a", "\x00bc"),
        ("\x01\x00\x00\x00a",),
        ("a", "\x01\x00\x00\x00a"),
    ]
    secrets = [master.derive(*p).secret for p in paths]
    assert len(set(secrets)) == len(paths)
    assert master.derive("") != master


def test_different_labels_and_conversions_give_independent_keys() -> None:
    for node in nodes().values():
        outputs = [
            node.secret,
            node.sr25519().public_key,
            node.sr25519().secret_key[:32],
            node.x25519().secret,
            node.x25519().public,
            node.aead_key(),
            node.bytes32(""),
            node.bytes32("a"),
            node.bytes32("b"),
            node.bytes32("sr25519"),
            node.bytes32("aead"),
            node.derive("a").secret,
            node.derive("sr25519").secret,
            node.derive("aead").secret,
            node.derive("").secret,
        ]
        assert len(set(outputs)) == len(outputs)
    names = ["cluster_key", "contract_key", "random_number", "iv_generator"]
    master = nodes()["master"]
    assert len({master.derive(n, CLUSTER_ID).secret for n in names}) == len(names)
    # The same id under different parents is a different key.
    assert cluster_key(master, CLUSTER_ID) != cluster_key(KeyNode(bytes(32)), CLUSTER_ID)
    assert contract_key(master, CONTRACT_ID) != nodes()["contract"]


def test_derived_keys_work_with_the_envelope_and_signatures() -> None:
    contract = nodes()["contract"]
    envelope = seal(contract.x25519().public, b"state", b"aad")
    assert open_envelope(contract.x25519().secret, envelope, b"aad") == b"state"
    nonce = iv_generator(contract, "state", b"", 0, 0)
    ciphertext = aead_encrypt(contract.aead_key(), nonce, b"state", b"")
    assert aead_decrypt(contract.aead_key(), nonce, ciphertext, b"") == b"state"
    pair = contract.sr25519()
    assert verify(pair.public_key, b"m", pair.sign(b"m"))


# -- one-wayness ------------------------------------------------------------------------------


def test_a_child_does_not_reveal_its_parent() -> None:
    all_nodes = nodes()
    lineage = [("master", "cluster", ["master"]), ("cluster", "contract", ["master", "cluster"])]
    for parent_name, child_name, ancestor_names in lineage:
        parent, child = all_nodes[parent_name], all_nodes[child_name]
        assert child != parent
        assert parent.secret not in child.secret
        # Whatever the child derives, with any of the protocol's names, is never the parent.
        labels = ["", "cluster_key", "contract_key", "random_number", "iv_generator", "parent"]
        ids = [b"", CLUSTER_ID, CONTRACT_ID, bytes(32)]
        reachable = set()
        for label, ident in itertools.product(labels, ids):
            reachable.add(child.derive(label).secret)
            reachable.add(child.derive(label, ident).secret)
            reachable.add(child.derive(label, ident, label, ident).secret)
            reachable.add(child.bytes32(label))
        reachable |= {child.aead_key(), child.x25519().secret, child.x25519().public}
        reachable |= {child.sr25519().public_key, child.sr25519().secret_key[:32]}
        for ancestor in [all_nodes[name] for name in ancestor_names]:
            assert ancestor.secret not in reachable
            for value in reachable:
                assert ancestor.secret not in value
        # Siblings are unrelated too.
        label = "cluster_key" if parent_name == "master" else "contract_key"
        sibling = parent.derive(label, bytes([0x09]) * 32)
        assert sibling != child and sibling.secret not in reachable


def test_child_bytes_do_not_correlate_with_parent_bytes() -> None:
    # Flipping one bit of the parent changes about half of the child's bits (no visible link).
    master = KeyNode(MASTER_SEED)
    flipped = KeyNode(bytes([MASTER_SEED[0] ^ 1]) + MASTER_SEED[1:])
    a = cluster_key(master, CLUSTER_ID).secret
    b = cluster_key(flipped, CLUSTER_ID).secret
    differing = bin(int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).count("1")
    assert 64 <= differing <= 192


# -- IVs and the beacon -----------------------------------------------------------------------


def test_iv_is_unique_over_a_large_grid_of_contexts() -> None:
    master = KeyNode(MASTER_SEED)
    purposes = ["master_key", "cluster_key", "rotation", "beacon"]
    recipients = [bytes([i]) * 32 for i in range(8)]
    rotations = range(6)
    sequences = range(128)
    seen: dict[bytes, tuple] = {}
    for context in itertools.product(purposes, recipients, rotations, sequences):
        iv = iv_generator(master, *context)
        assert len(iv) == 12
        assert iv not in seen, f"IV repeated for {context} and {seen.get(iv)}"
        seen[iv] = context
    assert len(seen) == 4 * 8 * 6 * 128
    # Deterministic: every gatekeeper computes the same IV for the same context.
    assert iv_generator(KeyNode(MASTER_SEED), "beacon", recipients[3], 5, 127) == iv_generator(
        master, "beacon", recipients[3], 5, 127
    )


def test_iv_context_fields_do_not_run_into_each_other() -> None:
    master = KeyNode(MASTER_SEED)
    ivs = {
        iv_generator(master, "ab", b"c", 0, 0),
        iv_generator(master, "a", b"bc", 0, 0),
        iv_generator(master, "a", b"", 1, 0),
        iv_generator(master, "a", b"", 0, 1),
        iv_generator(master, "a", b"", 1 << 32, 0),
        iv_generator(master, "a", b"", 0, 1 << 32),
    }
    assert len(ivs) == 6
    assert iv_generator(master, "a", b"", 0, 0) != iv_generator(
        cluster_key(master, CLUSTER_ID), "a", b"", 0, 0
    )
    with pytest.raises(ValueError, match="0..2"):
        iv_generator(master, "a", b"", -1, 0)
    with pytest.raises(ValueError, match="0..2"):
        iv_generator(master, "a", b"", 0, 1 << 64)


def test_random_number_chains_and_depends_on_the_master() -> None:
    master = KeyNode(MASTER_SEED)
    values = [bytes(32)]
    for round_number in range(1, 50):
        values.append(random_number(master, round_number, values[-1]))
    assert len(set(values)) == len(values)
    assert random_number(master, 2, values[1]) == values[2]
    assert random_number(master, 2, values[0]) != values[2]
    assert random_number(KeyNode(bytes(32)), 1, bytes(32)) != values[1]


def test_key_node_rejects_bad_material_and_hides_it() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyNode(bytes(31))
    with pytest.raises(ValueError, match="32 bytes"):
        KeyNode(bytes(33))
    node = KeyNode(bytearray(MASTER_SEED))
    assert type(node.secret) is bytes
    assert MASTER_SEED.hex() not in repr(node) and "01, " not in repr(node)
    assert node == KeyNode(MASTER_SEED) and hash(node) == hash(KeyNode(MASTER_SEED))
    assert node != MASTER_SEED
