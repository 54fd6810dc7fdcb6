"""Worker registration info and attestation reports, as both the worker and the chain see them.

A worker proves it runs trusted code in a TEE with a quote whose report data commits to its
registration info: ``report_data = blake2_256(encode(info))``, padded with zeros to the 64
bytes a quote carries. The chain's registry verifies the quote (``phala.chain.runtime.registry``);
this module only defines the formats and the simulated quote that dev chains accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

from .codec import H256, H512, AccountId, Fixed, ScaleEnum, encode, u8, u32, u64
from .hashing import blake2_256
from .keys import Keypair, verify

SIM_QUOTE_CONTEXT = b"phala/sim-quote/v1"
SIM_MEASUREMENT = blake2_256(b"phala/sim-enclave")  # what a sim worker reports as its code
SIM_ATTESTATION_URI = "//PhalaSimAttestation"  # the dev chain's simulated attestation key


class AttestationError(Exception):
    """A quote does not prove what it claims; the message says which check failed."""


@dataclass(frozen=True)
class WorkerRegistrationInfo:
    """What a worker registers: its keys, the chain it serves and who operates it."""

    version: u32  # pRuntime version
    identity: AccountId  # sr25519 identity key: signs the worker's messages
    ecdh: H256  # X25519 key: secrets are encrypted to it
    genesis_hash: H256
    operator: AccountId | None


WORKER_REGISTERED_TOPIC = b"phala/registry/worker_registered"
WORKER_ONLINE_TOPIC = b"^phala/registry/worker_online"




@dataclass(frozen=True)
class WorkerRegistered:
    """Payload of the registry's outbound message when a worker (re-)registers: what the
    pRuntimes learn (the registry keeps more, such as the measurement)."""

    identity: AccountId
    info: WorkerRegistrationInfo
    kind: u8  # the registry's attestation kind
    confidence: u8
    block: u32  # the block that registered it


ENDPOINT_CONTEXT = b"phala/registry/endpoint/v1"


@dataclass(frozen=True)
class EndpointPayload:
    """What a worker's identity key signs to set its endpoint (after :data:`ENDPOINT_CONTEXT`).
    ``counter`` must exceed the last one the chain saw for this worker."""

    genesis_hash: H256
    identity: AccountId
    endpoint: bytes | None
    counter: u64


def endpoint_signing_bytes(genesis_hash: bytes, identity: bytes, endpoint: bytes | None, counter: int) -> bytes:
    return ENDPOINT_CONTEXT + encode(EndpointPayload(genesis_hash, identity, endpoint, counter))


def sign_endpoint(key: Keypair, genesis_hash: bytes, endpoint: bytes | None, counter: int) -> bytes:
    """The worker's signature for ``Registry.update_worker_endpoint``."""
    return key.sign(endpoint_signing_bytes(genesis_hash, key.public_key, endpoint, counter))


def report_data(info: WorkerRegistrationInfo) -> bytes:
    """The 64 bytes a quote must carry for ``info``."""
    return blake2_256(encode(info)) + bytes(32)


class AttestationReport(ScaleEnum):
    """Evidence that a worker runs in a TEE."""


@dataclass(frozen=True)
class SimQuote(AttestationReport, index=0):
    """A software-only quote, signed by a simulated attestation key that the chain spec names.
    Only chains whose genesis allows sim attestation accept it."""

    report_data: H512
    measurement: H256
    attestation_key: AccountId
    signature: H512


@dataclass(frozen=True)
class SgxDcap(AttestationReport, index=1):
    """An Intel SGX DCAP quote with the collateral (JSON) that verifies it."""

    quote: bytes
    collateral: bytes


@dataclass(frozen=True)
class TdxDcap(AttestationReport, index=2):
    """An Intel TDX DCAP quote with the collateral (JSON) that verifies it."""

    quote: bytes
    collateral: bytes


@dataclass(frozen=True)
class SevSnp(AttestationReport, index=3):
    """An AMD SEV-SNP attestation report (no verifier is available: always refused)."""

    report: bytes


def sim_quote_message(report_data_: bytes, measurement: bytes) -> bytes:
    return SIM_QUOTE_CONTEXT + report_data_ + measurement


def sign_sim_quote(key: Keypair, report_data_: bytes, measurement: bytes = SIM_MEASUREMENT) -> SimQuote:
    if len(report_data_) != 64:
        raise AttestationError("report data must be 64 bytes")
    return SimQuote(report_data_, measurement, key.public_key, key.sign(sim_quote_message(report_data_, measurement)))


def verify_sim_quote(quote: SimQuote, trusted_key: bytes) -> None:
    """Raise :class:`AttestationError` unless ``trusted_key`` signed ``quote``."""
    if quote.attestation_key != trusted_key:
        raise AttestationError("sim quote signed by a key the chain spec does not name")
    if not verify(trusted_key, sim_quote_message(quote.report_data, quote.measurement), quote.signature):
        raise AttestationError("sim quote signature is invalid")


# -- what the chain records about a worker (read by the registry and by gatekeepers) ---------

H384 = Annotated[bytes, Fixed(48)]


class AttestationKind(IntEnum):
    """How a worker proved its TEE; the values are the ``AttestationReport`` variant indices."""

    SIM = 0
    SGX_DCAP = 1
    TDX_DCAP = 2


class Measurement(ScaleEnum):
    """The code a worker runs, as its TEE measured it."""


@dataclass(frozen=True)
class SimMeasurement(Measurement, index=0):
    measurement: H256


@dataclass(frozen=True)
class SgxMeasurement(Measurement, index=1):
    """An SGX enclave: its code (MRENCLAVE) and the key that signed it (MRSIGNER)."""

    mr_enclave: H256
    mr_signer: H256


@dataclass(frozen=True)
class TdxMeasurement(Measurement, index=2):
    """A TDX guest: its initial image (MRTD) and runtime measurement registers RTMR0..3."""

    mr_td: H384
    rtmr0: H384
    rtmr1: H384
    rtmr2: H384
    rtmr3: H384


@dataclass(frozen=True)
class AttestationConfig:
    """Whether sim quotes are accepted, and the key that signs them. Both start from the chain
    spec; root can later stop (or resume) accepting sim quotes with ``Registry.set_allow_sim``."""

    allow_sim: bool
    sim_attestation_key: AccountId | None


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker. ``kind`` is an :class:`AttestationKind`; block numbers are those
    of its first and latest registration; ``acknowledged`` is set once the worker has reported
    itself online after its latest registration."""

    info: WorkerRegistrationInfo
    kind: u8
    measurement: Measurement
    confidence: u8
    registered_at: u32
    last_updated: u32
    active: bool
    endpoint: bytes | None
    acknowledged: bool
