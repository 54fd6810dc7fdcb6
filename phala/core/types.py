"""Chain data types that both the node and the worker decode: headers, blocks, extrinsics,
justifications, authority sets and per-block storage changes.

Byte formats are described in ``docs/formats.md``; every type here is encoded with the
canonical codec (:mod:`phala.core.codec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from phala.core.codec import (
    COMPACT,
    H256,
    H512,
    AccountId,
    Codec,
    CompactU32,
    DecodeError,
    EncodeError,
    ScaleEnum,
    codec_of,
    decode,
    decode_compact,
    encode,
    encode_compact,
    register,
    u32,
    u64,
)
from phala.core.hashing import blake2_256

ZERO_HASH = bytes(32)

# ---------------------------------------------------------------------------------------------
# Mortality era (the same two-byte layout as Substrate's `Era`)


@dataclass(frozen=True)
class Era:
    """A transaction's validity window. ``period == 0`` means immortal.

    A mortal extrinsic is valid from its birth block for ``period`` blocks; its signature
    commits to the birth block's hash, so it cannot be replayed on another fork or after the
    window closes.
    """

    period: int = 0
    phase: int = 0

    @staticmethod
    def mortal(period: int, current: int) -> Era:
        """The era of ``period`` blocks (rounded to a power of two in 4..65536) born at ``current``."""
        period = 1 << max(2, min(16, (max(period, 1) - 1).bit_length()))
        quantize = max(period >> 12, 1)
        phase = (current % period) // quantize * quantize
        return Era(period, phase)

    @property
    def immortal(self) -> bool:
        return self.period == 0

    def birth(self, current: int) -> int:
        """The block this era starts at, seen from block ``current``."""
        if self.immortal:
            return 0
        return (max(current, self.phase) - self.phase) // self.period * self.period + self.phase

    def death(self, current: int) -> int:
        """First block at which the extrinsic is no longer valid."""
        if self.immortal:
            return 2**64
        return self.birth(current) + self.period


def _enc_era(era: Era, out: bytearray) -> None:
    if era.immortal:
        out.append(0)
        return
    period, phase = era.period, era.phase
    quantize = max(period >> 12, 1)
    # An unquantized phase would be silently rounded down: another era, another birth block.
    if (
        period < 4
        or period > 65536
        or period & (period - 1)
        or not 0 <= phase < period
        or phase % quantize
    ):
        raise EncodeError(f"invalid era period {period} phase {phase}")
    low = min(15, max(1, (period & -period).bit_length() - 2))
    value = low | ((phase // quantize) << 4)
    out += value.to_bytes(2, "little")


def _dec_era(data: bytes, pos: int) -> tuple[Era, int]:
    if data[pos] == 0:
        return Era(), pos + 1
    if pos + 2 > len(data):
        raise DecodeError("input too short for era")
    value = data[pos] | (data[pos + 1] << 8)
    period = 2 << (value % 16)
    quantize = max(period >> 12, 1)
    phase = (value >> 4) * quantize
    if period < 4 or phase >= period:
        raise DecodeError("invalid mortal era")
    era = Era(period, phase)
    # Only the canonical two bytes are accepted (no second encoding of the same era).
    check = bytearray()
    _enc_era(era, check)
    if bytes(check) != bytes(data[pos : pos + 2]):
        raise DecodeError("non-canonical era")
    return era, pos + 2


ERA = Codec("Era", _enc_era, _dec_era, 1)
register(Era, ERA)

# ---------------------------------------------------------------------------------------------
# Header digest, header, justification


class DigestItem(ScaleEnum):
    """Entries of a header's digest."""


@dataclass(frozen=True)
class Other(DigestItem, index=0):
    data: bytes


@dataclass(frozen=True)
class AuthoritiesChange(DigestItem, index=1):
    """The authority set that finalizes blocks from the next block on."""

    set_id: u64
    authorities: list[AccountId]


@dataclass(frozen=True)
class Header:
    parent_hash: H256
    number: CompactU32
    state_root: H256
    extrinsics_root: H256
    timestamp: u64  # milliseconds since the Unix epoch
    author: AccountId
    digest: list[DigestItem] = field(default_factory=list)

    def encode(self) -> bytes:
        return encode(self)

    @property
    def hash(self) -> bytes:
        return blake2_256(encode(self))

    def authorities_change(self) -> AuthoritiesChange | None:
        for item in self.digest:
            if isinstance(item, AuthoritiesChange):
                return item
        return None


@dataclass(frozen=True)
class AuthoritySet:
    set_id: u64
    authorities: list[AccountId]

    def threshold(self) -> int:
        """Signatures needed: more than two thirds of the set."""
        return len(self.authorities) * 2 // 3 + 1


@dataclass(frozen=True)
class FinalityVote:
    """What each authority signs to finalize a block (prefixed by ``FINALITY_CONTEXT``)."""

    genesis_hash: H256
    set_id: u64
    number: u32
    block_hash: H256


FINALITY_CONTEXT = b"phala/finality/v1"


def finality_message(genesis_hash: bytes, set_id: int, number: int, block_hash: bytes) -> bytes:
    return FINALITY_CONTEXT + encode(FinalityVote(genesis_hash, set_id, number, block_hash))


@dataclass(frozen=True)
class AuthoritySignature:
    authority: AccountId
    signature: H512


@dataclass(frozen=True)
class Justification:
    """Finality proof: signatures of the authority set ``set_id`` over the block."""

    set_id: u64
    number: u32
    block_hash: H256
    signatures: list[AuthoritySignature]


@dataclass(frozen=True)
class Block:
    header: Header
    extrinsics: list[bytes]


@dataclass(frozen=True)
class SignedBlock:
    block: Block
    justification: Justification | None


def extrinsics_root(extrinsics: list[bytes]) -> bytes:
    """Commitment to a block body: a binary Merkle tree over the extrinsics.

    Leaves are ``blake2_256(0x00 ++ extrinsic)``, inner nodes ``blake2_256(0x01 ++ left ++
    right)``; an odd node at the end of a level moves up unchanged. The root is
    ``blake2_256(0x02 ++ u32_le(count) ++ top)`` (``top`` is 32 zero bytes for an empty body),
    so no two different lists share a root: the tags keep leaves and nodes apart and the
    count pins the shape.
    """
    level = [blake2_256(b"\x00" + x) for x in extrinsics]
    while len(level) > 1:
        paired = [blake2_256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    top = level[0] if level else ZERO_HASH
    return blake2_256(b"\x02" + len(extrinsics).to_bytes(4, "little") + top)


# ---------------------------------------------------------------------------------------------
# Extrinsics (Substrate's v4 layout: version byte, address, signature, extra, call)

EXTRINSIC_VERSION = 4
SIGNED_BIT = 0x80
MULTIADDRESS_ID = 0  # MultiAddress::Id
MULTISIG_SR25519 = 1  # MultiSignature::Sr25519
# Version, address kind, signer, signature kind, signature, the shortest era, nonce and tip,
# and a two-byte call (pallet index, call index).
MIN_EXTRINSIC_SIZE = 1 + 1 + 32 + 1 + 64 + 1 + 1 + 1 + 2


@dataclass(frozen=True)
class Extrinsic:
    """A signed extrinsic. ``call`` stays encoded: the runtime decodes it."""

    signer: bytes
    signature: bytes
    era: Era
    nonce: int
    tip: int
    call: bytes

    def encode(self) -> bytes:
        out = bytearray((SIGNED_BIT | EXTRINSIC_VERSION, MULTIADDRESS_ID))
        if len(self.signer) != 32 or len(self.signature) != 64:
            raise EncodeError("signer must be 32 bytes and signature 64 bytes")
        # Refuse what decode() refuses, so that every encoded extrinsic decodes.
        if not 0 <= self.nonce < 1 << 32 or not 0 <= self.tip < 1 << 128 or not self.call:
            raise EncodeError("nonce must fit in u32, tip in u128, and the call must not be empty")
        out += self.signer
        out.append(MULTISIG_SR25519)
        out += self.signature
        _enc_era(self.era, out)
        encode_compact(self.nonce, out)
        encode_compact(self.tip, out)
        out += self.call
        if len(out) < MIN_EXTRINSIC_SIZE:
            raise EncodeError(f"extrinsic of {len(out)} bytes is too short")
        return bytes(out)

    @staticmethod
    def decode(data: bytes) -> Extrinsic:
        """Decode a signed extrinsic; raises :class:`DecodeError` with the reason."""
        if len(data) < MIN_EXTRINSIC_SIZE:
            raise DecodeError(f"extrinsic of {len(data)} bytes is too short")
        version = data[0]
        if version != SIGNED_BIT | EXTRINSIC_VERSION:
            if version == EXTRINSIC_VERSION:
                raise DecodeError("an unsigned extrinsic is not a signed one (see decode_extrinsic)")
            raise DecodeError(f"unsupported extrinsic version byte 0x{version:02x}")
        if data[1] != MULTIADDRESS_ID:
            raise DecodeError("only MultiAddress::Id signers are supported")
        signer = bytes(data[2:34])
        if data[34] != MULTISIG_SR25519:
            raise DecodeError("only sr25519 signatures are supported")
        signature = bytes(data[35:99])
        try:
            era, pos = _dec_era(data, 99)
            nonce, pos = decode_compact(data, pos)
            tip, pos = decode_compact(data, pos)
        except IndexError as exc:
            raise DecodeError("extrinsic truncated in its signed extra") from exc
        if nonce >= 1 << 32:
            raise DecodeError("nonce does not fit in u32")
        if tip >= 1 << 128:
            raise DecodeError("tip does not fit in u128")
        if pos >= len(data):
            raise DecodeError("extrinsic has no call")
        return Extrinsic(signer, signature, era, nonce, tip, bytes(data[pos:]))


# An unsigned ("bare") extrinsic: the version byte without the signed bit, then the call.
# Only calls that define ``validate_unsigned`` are accepted in this form (see the executive).
MIN_UNSIGNED_SIZE = 1 + 2


@dataclass(frozen=True)
class UnsignedExtrinsic:
    """An unsigned extrinsic (Substrate's bare extrinsic): ``0x04 ++ call``. Its call carries
    its own proof (a signed mq message, for instance); it pays no fee and has no nonce."""

    call: bytes

    def encode(self) -> bytes:
        if len(self.call) < MIN_UNSIGNED_SIZE - 1:
            raise EncodeError("the call of an unsigned extrinsic needs at least two bytes")
        return bytes((EXTRINSIC_VERSION,)) + self.call

    @staticmethod
    def decode(data: bytes) -> UnsignedExtrinsic:
        """Decode an unsigned extrinsic; raises :class:`DecodeError` with the reason."""
        if len(data) < MIN_UNSIGNED_SIZE:
            raise DecodeError(f"unsigned extrinsic of {len(data)} bytes is too short")
        version = data[0]
        if version != EXTRINSIC_VERSION:
            if version == SIGNED_BIT | EXTRINSIC_VERSION:
                raise DecodeError("a signed extrinsic is not an unsigned one (see decode_extrinsic)")
            raise DecodeError(f"unsupported extrinsic version byte 0x{version:02x}")
        return UnsignedExtrinsic(bytes(data[1:]))


def decode_extrinsic(data: bytes) -> Extrinsic | UnsignedExtrinsic:
    """Decode either form, by the version byte (``0x84`` signed, ``0x04`` unsigned)."""
    if data and data[0] == EXTRINSIC_VERSION:
        return UnsignedExtrinsic.decode(data)
    return Extrinsic.decode(data)


@dataclass(frozen=True)
class SignedPayloadExtra:
    """Values the signature commits to but the extrinsic does not carry."""

    spec_version: u32
    transaction_version: u32
    genesis_hash: H256
    birth_hash: H256


def signing_payload(
    call: bytes,
    era: Era,
    nonce: int,
    tip: int,
    spec_version: int,
    transaction_version: int,
    genesis_hash: bytes,
    birth_hash: bytes,
) -> bytes:
    """The bytes an account signs: call, era, nonce, tip, runtime version, genesis and birth
    hashes. Payloads over 256 bytes are signed by their blake2_256 hash, as in Substrate."""
    out = bytearray(call)
    _enc_era(era, out)
    encode_compact(nonce, out)
    encode_compact(tip, out)
    out += encode(SignedPayloadExtra(spec_version, transaction_version, genesis_hash, birth_hash))
    return blake2_256(bytes(out)) if len(out) > 256 else bytes(out)


# ---------------------------------------------------------------------------------------------
# Storage changes of a block


@dataclass(frozen=True)
class StorageChange:
    key: bytes
    value: bytes | None  # None: the key was deleted


@dataclass(frozen=True)
class BlockChanges:
    """Every storage write a block made, sorted by key: enough to move state from the parent
    block's root to this block's root."""

    number: u32
    block_hash: H256
    changes: list[StorageChange]


__all__ = [
    "AccountId",
    "AuthoritiesChange",
    "AuthoritySet",
    "AuthoritySignature",
    "Block",
    "BlockChanges",
    "COMPACT",
    "DigestItem",
    "ERA",
    "Era",
    "Extrinsic",
    "FinalityVote",
    "Header",
    "Justification",
    "Other",
    "SignedBlock",
    "StorageChange",
    "UnsignedExtrinsic",
    "ZERO_HASH",
    "codec_of",
    "decode",
    "decode_extrinsic",
    "encode",
    "extrinsics_root",
    "finality_message",
    "signing_payload",
]
