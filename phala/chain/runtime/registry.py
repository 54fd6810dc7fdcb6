"""Registry pallet: workers, their attestation, and the allowlists governance keeps.

A worker (a pRuntime in a TEE) registers with :class:`register_worker`: its registration
info (identity and ECDH keys, the chain's genesis hash, its operator) and an attestation
report whose report data commits to that info. The registry checks, in this order:

1. the **operator**: if the info names one, it must be the account that signed the call
   (anyone else may relay a registration whose info names no operator);
2. the **quote**:

   * ``SimQuote``: only on a chain whose genesis allows sim attestation, and only signed by
     the simulated attestation key the genesis names;
   * ``SgxDcap`` / ``TdxDcap``: verified with dcap-qvl (:mod:`.dcap`) against the collateral
     submitted with it, at the block's timestamp (``Timestamp.Now``, in seconds): a quote from
     the other TEE, a malformed quote or collateral, collateral outside its validity window,
     any failed signature or certificate, and a debug enclave or TD are each refused;
   * ``SevSnp``: always refused, no verifier is available;

3. the **measurement** against the allowlist root keeps: an SGX enclave's
   ``(MRENCLAVE, MRSIGNER)`` pair, a TDX guest's ``(MRTD, RTMR0..3)``. A sim quote's
   measurement needs no allowlisting: the sim key signs whatever it is asked to, so an
   allowlist entry would prove nothing; allowing sim attestation at genesis is the decision;
4. the **TCB status** mapped to a confidence level (lower is better):
   ``UpToDate`` 1, ``SWHardeningNeeded`` 2, ``ConfigurationNeeded`` and
   ``ConfigurationAndSWHardeningNeeded`` 3 if every advisory the verifier reports is on the
   advisory allowlist, ``OutOfDate`` and ``OutOfDateConfigurationNeeded`` 4, anything else
   refused. Sim workers get :data:`SIM_CONFIDENCE` (5): no hardware stands behind them;
5. the **report-data binding**: the quote's report data equals ``report_data(info)``;
6. the **chain**: ``info.genesis_hash`` is this chain's genesis hash.

dcap-qvl checks the TCB level inside its verification, so a quote whose platform matches no
TCB level (or is revoked) is refused in step 2 with the TCB error :class:`TcbNotAccepted`.

A registration of an identity already known updates it (new info, attestation and
measurement; active again, not yet acknowledged) and keeps its first registration block and
endpoint. Every registration sends the pRuntimes a ``phala/registry/worker_registered``
message (:class:`WorkerRegistered`); the worker answers on the chain-only topic
``^phala/registry/worker_online`` once it has synced, which marks it acknowledged.

Removing a measurement from an allowlist deactivates exactly the workers that registered
with it (an index keeps them by measurement). Their records stay; a new registration with
an allowed measurement activates them again.

A worker's endpoint is set with :class:`update_worker_endpoint`, which anyone may submit (the
relayer pays) but which carries a signature by the worker's **identity key** over
``(genesis hash, identity, endpoint, counter)``, with a counter above the last one used: the
pRuntime itself states where it is reachable, an old statement cannot be replayed, and a
statement for another chain is refused.

What registration does not prevent: while its collateral is current, anyone may submit a
worker's earlier registration again (same info, same quote). That passes every check the
original passed: it re-activates nothing the allowlist now refuses, but if the worker has
registered new info since (a new ECDH key, say), the replay puts the older info back until
the worker registers again. Quotes carry no chain-issued freshness value to prevent this.

``AttestationConfig`` (sim acceptance and the sim key) is written at genesis. Afterwards
only :class:`set_allow_sim` (root) changes it, and only its ``allow_sim`` flag: a test net
that graduates stops accepting sim quotes. The sim key is never written again. Sim workers
registered before keep their records; whoever hands out secrets (gatekeepers, the
Gatekeeper and Cluster pallets) refuses them while sim attestation is off.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from phala.core.attestation import (
    AttestationConfig,
    AttestationError,
    AttestationKind,
    AttestationReport,
    Measurement,
    SevSnp,
    SgxDcap,
    SgxMeasurement,
    SimMeasurement,
    SimQuote,
    TdxDcap,
    TdxMeasurement,
    WorkerInfo,
    WorkerRegistered,
    WorkerRegistrationInfo,
    endpoint_signing_bytes,
    report_data,
    verify_sim_quote,
)
from phala.core.codec import (
    H512,
    AccountId,
    DecodeError,
    codec_of,
    decode,
    encode,
    u8,
    u32,
    u64,
)
from phala.core.hashing import blake2_128_concat, blake2_256
from phala.core.keys import verify
from phala.core.mq import Message, PalletOrigin, WorkerOrigin
from phala.core.storage_keys import storage_prefix

from . import dcap, timestamp
from .frame import (
    Env,
    ModuleError,
    Origin,
    Pallet,
    RuntimeCall,
    RuntimeEvent,
    StorageMap,
    StorageValue,
    ensure_root,
    ensure_signed,
)

PALLET_INDEX = 5
NAME = "Registry"

WORKER_REGISTERED_TOPIC = b"phala/registry/worker_registered"
WORKER_ONLINE_TOPIC = b"^phala/registry/worker_online"
MESSAGE_ORIGIN = PalletOrigin(NAME.encode())

MAX_ENDPOINT_LEN = 256
MAX_ADVISORY_ID_LEN = 64


# Confidence levels: how far the platform's TCB can be trusted (lower is better).
CONFIDENCE_UP_TO_DATE = 1
CONFIDENCE_SW_HARDENING_NEEDED = 2
CONFIDENCE_CONFIGURATION_NEEDED = 3
CONFIDENCE_OUT_OF_DATE = 4
SIM_CONFIDENCE = 5  # a simulated TEE: no hardware guarantee at all

_STATUS_CONFIDENCE = {
    dcap.UP_TO_DATE: CONFIDENCE_UP_TO_DATE,
    dcap.SW_HARDENING_NEEDED: CONFIDENCE_SW_HARDENING_NEEDED,
    dcap.CONFIGURATION_NEEDED: CONFIDENCE_CONFIGURATION_NEEDED,
    dcap.CONFIGURATION_AND_SW_HARDENING_NEEDED: CONFIDENCE_CONFIGURATION_NEEDED,
    dcap.OUT_OF_DATE: CONFIDENCE_OUT_OF_DATE,
    dcap.OUT_OF_DATE_CONFIGURATION_NEEDED: CONFIDENCE_OUT_OF_DATE,
}
# Statuses acceptable only when root has allowlisted every advisory the verifier reports.
_ADVISORY_GATED = frozenset({dcap.CONFIGURATION_NEEDED, dcap.CONFIGURATION_AND_SW_HARDENING_NEEDED})

# -- types ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The outcome of the quote, measurement and TCB checks (steps 2–4)."""

    kind: AttestationKind
    measurement: Measurement
    confidence: int
    report_data: bytes
    tcb_status: str
    advisory_ids: tuple[str, ...] = ()


# -- storage ----------------------------------------------------------------------------------

Config: StorageValue[AttestationConfig] = StorageValue(NAME, "AttestationConfig", AttestationConfig)
# Allowlists: the value is the block at which root added the entry.
AllowedSgxMeasurements: StorageMap[SgxMeasurement, int] = StorageMap(
    NAME, "AllowedSgxMeasurements", SgxMeasurement, u32
)
AllowedTdxMeasurements: StorageMap[TdxMeasurement, int] = StorageMap(
    NAME, "AllowedTdxMeasurements", TdxMeasurement, u32
)
AllowedAdvisories: StorageMap[str, int] = StorageMap(NAME, "AllowedAdvisories", str, u32)
Workers: StorageMap[bytes, WorkerInfo] = StorageMap(NAME, "Workers", AccountId, WorkerInfo)
# The last endpoint counter each worker signed (see update_worker_endpoint).
EndpointCounter: StorageMap[bytes, int] = StorageMap(NAME, "EndpointCounter", AccountId, u64, 0)


class _WorkersByMeasurement:
    """Index of the *active* workers by measurement: a double map
    ``prefix ++ blake2_128_concat(measurement id) ++ blake2_128_concat(identity) -> block``,
    so that one measurement's workers are one key prefix."""

    def __init__(self) -> None:
        self.prefix = storage_prefix(NAME, "WorkersByMeasurement")
        self.codec = codec_of(u32)

    def _outer(self, measurement: Measurement) -> bytes:
        return self.prefix + blake2_128_concat(measurement_id(measurement))

    def insert(self, env: Env, measurement: Measurement, identity: bytes) -> None:
        key = self._outer(measurement) + blake2_128_concat(identity)
        env.state.set(key, self.codec.encode(env.block.number))

    def remove(self, env: Env, measurement: Measurement, identity: bytes) -> None:
        env.state.delete(self._outer(measurement) + blake2_128_concat(identity))

    def identities(self, env: Env, measurement: Measurement) -> list[bytes]:
        return [key[-32:] for key, _ in env.state.iter_prefix(self._outer(measurement))]


WorkersByMeasurement = _WorkersByMeasurement()


def measurement_id(measurement: Measurement) -> bytes:
    """A 32-byte id of a measurement (the index's key)."""
    return blake2_256(encode(measurement, Measurement))


# -- events -----------------------------------------------------------------------------------


class Event(RuntimeEvent, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class WorkerAdded(Event, index=0):
    """A new worker registered."""

    identity: AccountId
    kind: u8
    measurement: Measurement
    confidence: u8


@dataclass(frozen=True)
class WorkerUpdated(Event, index=1):
    """A known worker registered again (new attestation; active again)."""

    identity: AccountId
    kind: u8
    measurement: Measurement
    confidence: u8


@dataclass(frozen=True)
class WorkerDeactivated(Event, index=2):
    """The measurement the worker registered with was removed from the allowlist."""

    identity: AccountId
    measurement: Measurement


@dataclass(frozen=True)
class SgxMeasurementAdded(Event, index=3):
    measurement: SgxMeasurement


@dataclass(frozen=True)
class SgxMeasurementRemoved(Event, index=4):
    measurement: SgxMeasurement


@dataclass(frozen=True)
class TdxMeasurementAdded(Event, index=5):
    measurement: TdxMeasurement


@dataclass(frozen=True)
class TdxMeasurementRemoved(Event, index=6):
    measurement: TdxMeasurement


@dataclass(frozen=True)
class AdvisoryAdded(Event, index=7):
    advisory_id: str


@dataclass(frozen=True)
class AdvisoryRemoved(Event, index=8):
    advisory_id: str


@dataclass(frozen=True)
class WorkerEndpointUpdated(Event, index=9):
    identity: AccountId
    endpoint: bytes | None


@dataclass(frozen=True)
class WorkerOnline(Event, index=10):
    """The worker reported itself online, synced up to ``synced_to``."""

    identity: AccountId
    synced_to: u32


@dataclass(frozen=True)
class AllowSimSet(Event, index=11):
    """Root turned sim attestation on or off for new registrations."""

    allow_sim: bool


# -- errors (codes in the order registration checks them) -------------------------------------


class Error(ModuleError):
    pallet_index = PALLET_INDEX


class OperatorMismatch(Error):
    """The registration info names an operator other than the account that signed the call."""

    code = 0


class SimAttestationNotAllowed(Error):
    """A sim quote, on a chain whose genesis does not accept simulated attestation."""

    code = 1


class InvalidSimQuote(Error):
    """The sim quote is not signed by the simulated attestation key the genesis names."""

    code = 2


class UnsupportedAttestation(Error):
    """No verifier exists for this attestation type (AMD SEV-SNP)."""

    code = 3


class WrongTeeType(Error):
    """The DCAP quote is from another TEE than its report variant says (SGX vs TDX)."""

    code = 4


class MalformedQuote(Error):
    """The DCAP quote cannot be parsed."""

    code = 5


class InvalidCollateral(Error):
    """The collateral is not valid collateral JSON, or is for another TEE or platform."""

    code = 6


class CollateralExpired(Error):
    """The block's time lies outside the collateral's validity window."""

    code = 7


class InvalidQuote(Error):
    """A signature, hash or certificate of the quote or collateral does not verify."""

    code = 8


class DebugTee(Error):
    """The quote comes from a debug enclave or TD, whose memory its host can read."""

    code = 9


class MeasurementNotAllowed(Error):
    """The quote's measurement is not on the allowlist."""

    code = 10


class TcbNotAccepted(Error):
    """The platform's TCB status is refused (no matching TCB level, revoked, or unknown)."""

    code = 11


class AdvisoryNotAllowed(Error):
    """The TCB needs configuration and an advisory it reports is not on the allowlist."""

    code = 12


class ReportDataMismatch(Error):
    """The quote's report data is not the hash of the registration info."""

    code = 13


class GenesisHashMismatch(Error):
    """The registration info is for another chain (genesis hash)."""

    code = 14


class MeasurementAlreadyAllowed(Error):
    """The measurement is already on the allowlist."""

    code = 15


class MeasurementNotFound(Error):
    """The measurement is not on the allowlist."""

    code = 16


class AdvisoryAlreadyAllowed(Error):
    """The advisory is already on the allowlist."""

    code = 17


class AdvisoryNotFound(Error):
    """The advisory is not on the allowlist."""

    code = 18


class InvalidAdvisoryId(Error):
    """An advisory id must be 1–64 ASCII letters, digits and dashes (``INTEL-SA-00615``)."""

    code = 19


class WorkerNotRegistered(Error):
    """No worker is registered with this identity."""

    code = 20


class EndpointTooLong(Error):
    """The endpoint is longer than :data:`MAX_ENDPOINT_LEN` bytes."""

    code = 21


class BadEndpointSignature(Error):
    """The endpoint is not signed by the worker's identity key for this chain."""

    code = 22


class StaleEndpointCounter(Error):
    """The endpoint's counter is not above the last one the worker used (a replay)."""

    code = 23


class WorkerNotActive(Error):
    """The message's sender is not an active registered worker."""

    code = 24


class InvalidWorkerMessage(Error):
    """A message on a registry topic is malformed (topic, sender or payload)."""

    code = 25


class NoSimAttestationKey(Error):
    """Sim attestation cannot be turned on: the genesis names no sim attestation key."""

    code = 26


_DCAP_ERRORS: dict[type[dcap.DcapError], type[Error]] = {
    dcap.WrongTeeType: WrongTeeType,
    dcap.QuoteMalformed: MalformedQuote,
    dcap.CollateralMalformed: InvalidCollateral,
    dcap.CollateralMismatch: InvalidCollateral,
    dcap.CollateralExpired: CollateralExpired,
    dcap.QuoteInvalid: InvalidQuote,
    dcap.TcbUnrecognized: TcbNotAccepted,
}


# -- helpers: the interface other pallets use -------------------------------------------------


def worker(env: Env, identity: bytes) -> WorkerInfo | None:
    """The worker registered with ``identity``, active or not."""
    return Workers.get_opt(env.state, identity)


class KeyRecipientRefused(Exception):
    """No secret may be sealed to a worker. ``kind`` says why: ``"not_registered"``,
    ``"not_active"`` or ``"sim_not_allowed"``; each pallet reports it with its own error."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


def key_recipient(env: Env, identity: bytes) -> WorkerInfo:
    """The record of ``identity`` if gatekeepers may seal secrets to it: a registered, active
    worker, sim-attested only while this chain accepts sim attestation (the same rule the
    gatekeepers apply on their side). Raises :class:`KeyRecipientRefused`."""
    record = Workers.get_opt(env.state, identity)
    if record is None:
        raise KeyRecipientRefused("not_registered", f"no worker is registered with identity {identity.hex()}")
    if not record.active:
        raise KeyRecipientRefused("not_active", f"worker {identity.hex()} is not active")
    if record.kind == AttestationKind.SIM and not attestation_config(env).allow_sim:
        raise KeyRecipientRefused(
            "sim_not_allowed",
            f"worker {identity.hex()} is sim-attested and this chain does not accept sim attestation",
        )
    return record


def is_active_worker(env: Env, identity: bytes) -> bool:
    """Whether ``identity`` is a registered worker whose measurement is still allowed."""
    found = Workers.get_opt(env.state, identity)
    return found is not None and found.active


def workers_with(env: Env, measurement: Measurement) -> list[bytes]:
    """Identities of the active workers registered with ``measurement``."""
    return WorkersByMeasurement.identities(env, measurement)


def attestation_config(env: Env) -> AttestationConfig:
    found = Config.get(env.state)
    return AttestationConfig(False, None) if found is None else found


def now_seconds(env: Env) -> int:
    """The block's time in Unix seconds: DCAP collateral is checked against it."""
    return timestamp.Now.get(env.state) // 1000


def confidence_level(env: Env, status: str, advisory_ids: tuple[str, ...]) -> int:
    """Map a DCAP TCB status to a confidence level (see the module docstring)."""
    level = _STATUS_CONFIDENCE.get(status)
    if level is None:
        raise TcbNotAccepted(f"TCB status {status!r} is not accepted")
    if status in _ADVISORY_GATED:
        missing = [a for a in advisory_ids if not AllowedAdvisories.contains(env.state, a)]
        if missing:
            raise AdvisoryNotAllowed(
                f"TCB status {status} with advisories not allowed: {', '.join(missing)}"
            )
    return level


def verify_attestation(env: Env, attestation: AttestationReport) -> Verdict:
    """Steps 2–4 of registration: the quote, the measurement, the TCB status.

    Raises the pallet's error for the first check that fails; returns what the report
    proves. The report-data binding and the genesis hash are checked by the caller.
    """
    if isinstance(attestation, SimQuote):
        config = attestation_config(env)
        if not config.allow_sim or config.sim_attestation_key is None:
            raise SimAttestationNotAllowed("this chain's genesis does not accept sim quotes")
        try:
            verify_sim_quote(attestation, config.sim_attestation_key)
        except AttestationError as exc:
            raise InvalidSimQuote(str(exc)) from exc
        # Sim measurements are accepted without an allowlist (see the module docstring).
        return Verdict(
            AttestationKind.SIM,
            SimMeasurement(attestation.measurement),
            SIM_CONFIDENCE,
            attestation.report_data,
            "Simulated",
        )
    if isinstance(attestation, SgxDcap | TdxDcap):
        sgx = isinstance(attestation, SgxDcap)
        try:
            result = dcap.verify_dcap(
                attestation.quote, attestation.collateral, now_seconds(env), "sgx" if sgx else "tdx"
            )
        except dcap.DcapError as exc:
            raise _DCAP_ERRORS.get(type(exc), InvalidQuote)(str(exc)) from exc
        if result.debug:
            raise DebugTee("the quote comes from a debug " + ("enclave" if sgx else "TD"))
        measurement: Measurement
        if sgx:
            assert result.mr_enclave is not None and result.mr_signer is not None
            measurement = SgxMeasurement(result.mr_enclave, result.mr_signer)
            allowed = AllowedSgxMeasurements.contains(env.state, measurement)
        else:
            assert result.mr_td is not None and result.rtmr is not None
            measurement = TdxMeasurement(result.mr_td, *result.rtmr)
            allowed = AllowedTdxMeasurements.contains(env.state, measurement)
        if not allowed:
            raise MeasurementNotAllowed(
                f"measurement {measurement_id(measurement).hex()} is not allowed"
            )
        level = confidence_level(env, result.status, result.advisory_ids)
        return Verdict(
            AttestationKind.SGX_DCAP if sgx else AttestationKind.TDX_DCAP,
            measurement,
            level,
            result.report_data,
            result.status,
            result.advisory_ids,
        )
    if isinstance(attestation, SevSnp):
        raise UnsupportedAttestation("SEV-SNP reports cannot be verified here")
    raise UnsupportedAttestation(f"unknown attestation type {type(attestation).__name__}")


def _push_registered(env: Env, record: WorkerInfo) -> None:
    from . import mq  # the mq pallet imports this one's helpers; import it late

    payload = WorkerRegistered(
        record.info.identity, record.info, record.kind, record.confidence, env.block.number
    )
    mq.push_outbound(env, Message(MESSAGE_ORIGIN, WORKER_REGISTERED_TOPIC, encode(payload)))


def _deactivate_workers_of(env: Env, measurement: Measurement) -> None:
    for identity in WorkersByMeasurement.identities(env, measurement):
        WorkersByMeasurement.remove(env, measurement, identity)
        record = Workers.get_opt(env.state, identity)
        if record is None or not record.active or record.measurement != measurement:
            continue  # not reachable while the index is kept in step; never act on a stale entry
        Workers.put(env.state, identity, replace(record, active=False))
        env.deposit_event(WorkerDeactivated(identity, measurement))


def _check_advisory_id(advisory_id: str) -> None:
    ok = 0 < len(advisory_id) <= MAX_ADVISORY_ID_LEN and all(
        c.isascii() and (c.isalnum() or c == "-") for c in advisory_id
    )
    if not ok:
        raise InvalidAdvisoryId(f"invalid advisory id {advisory_id[:80]!r}")


# -- calls ------------------------------------------------------------------------------------


class Call(RuntimeCall, index=PALLET_INDEX):
    pass


@dataclass(frozen=True)
class register_worker(Call, index=0):  # noqa: N801
    """Register (or re-register) a worker; signed by anyone, usually its operator's relayer.

    Checks in order: operator, quote, measurement, TCB status, report data, genesis hash
    (see the module docstring); then stores the worker as active and unacknowledged, emits
    ``WorkerAdded`` or ``WorkerUpdated`` and sends the pRuntimes ``WorkerRegistered``.
    """

    info: WorkerRegistrationInfo
    attestation: AttestationReport

    def dispatch(self, env: Env, origin: Origin) -> None:
        signer = ensure_signed(origin)
        info = self.info
        if info.operator is not None and info.operator != signer:
            raise OperatorMismatch("the info names another operator than the signer")
        verdict = verify_attestation(env, self.attestation)
        if verdict.report_data != report_data(info):
            raise ReportDataMismatch(
                "the quote's report data does not commit to this registration info"
            )
        if info.genesis_hash != env.block.genesis_hash:
            raise GenesisHashMismatch("the registration info is for another chain")
        identity = info.identity
        number = env.block.number
        previous = Workers.get_opt(env.state, identity)
        if previous is not None:
            WorkersByMeasurement.remove(env, previous.measurement, identity)
        record = WorkerInfo(
            info=info,
            kind=int(verdict.kind),
            measurement=verdict.measurement,
            confidence=verdict.confidence,
            registered_at=number if previous is None else previous.registered_at,
            last_updated=number,
            active=True,
            endpoint=None if previous is None else previous.endpoint,
            acknowledged=False,
        )
        Workers.put(env.state, identity, record)
        WorkersByMeasurement.insert(env, verdict.measurement, identity)
        event = WorkerAdded if previous is None else WorkerUpdated
        env.deposit_event(event(identity, record.kind, record.measurement, record.confidence))
        _push_registered(env, record)


@dataclass(frozen=True)
class add_sgx_measurement(Call, index=1):  # noqa: N801
    """Root: allow SGX workers with this (MRENCLAVE, MRSIGNER)."""

    measurement: SgxMeasurement

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        if AllowedSgxMeasurements.contains(env.state, self.measurement):
            raise MeasurementAlreadyAllowed("this SGX measurement is already allowed")
        AllowedSgxMeasurements.put(env.state, self.measurement, env.block.number)
        env.deposit_event(SgxMeasurementAdded(self.measurement))


@dataclass(frozen=True)
class remove_sgx_measurement(Call, index=2):  # noqa: N801
    """Root: stop allowing this SGX measurement and deactivate every worker registered
    with it (one ``WorkerDeactivated`` each)."""

    measurement: SgxMeasurement

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        if not AllowedSgxMeasurements.contains(env.state, self.measurement):
            raise MeasurementNotFound("this SGX measurement is not allowed")
        AllowedSgxMeasurements.remove(env.state, self.measurement)
        _deactivate_workers_of(env, self.measurement)
        env.deposit_event(SgxMeasurementRemoved(self.measurement))


@dataclass(frozen=True)
class add_tdx_measurement(Call, index=3):  # noqa: N801
    """Root: allow TDX workers with this (MRTD, RTMR0..3)."""

    measurement: TdxMeasurement

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        if AllowedTdxMeasurements.contains(env.state, self.measurement):
            raise MeasurementAlreadyAllowed("this TDX measurement is already allowed")
        AllowedTdxMeasurements.put(env.state, self.measurement, env.block.number)
        env.deposit_event(TdxMeasurementAdded(self.measurement))


@dataclass(frozen=True)
class remove_tdx_measurement(Call, index=4):  # noqa: N801
    """Root: stop allowing this TDX measurement and deactivate every worker registered
    with it (one ``WorkerDeactivated`` each)."""

    measurement: TdxMeasurement

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        if not AllowedTdxMeasurements.contains(env.state, self.measurement):
            raise MeasurementNotFound("this TDX measurement is not allowed")
        AllowedTdxMeasurements.remove(env.state, self.measurement)
        _deactivate_workers_of(env, self.measurement)
        env.deposit_event(TdxMeasurementRemoved(self.measurement))


@dataclass(frozen=True)
class add_advisory(Call, index=5):  # noqa: N801
    """Root: accept platforms that need configuration for this Intel advisory
    (statuses ``ConfigurationNeeded`` and ``ConfigurationAndSWHardeningNeeded``).
    Workers already registered keep their state."""

    advisory_id: str

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        _check_advisory_id(self.advisory_id)
        if AllowedAdvisories.contains(env.state, self.advisory_id):
            raise AdvisoryAlreadyAllowed(f"{self.advisory_id} is already allowed")
        AllowedAdvisories.put(env.state, self.advisory_id, env.block.number)
        env.deposit_event(AdvisoryAdded(self.advisory_id))


@dataclass(frozen=True)
class remove_advisory(Call, index=6):  # noqa: N801
    """Root: stop accepting this advisory for new registrations (workers already registered
    stay active until their measurement is removed or they register again)."""

    advisory_id: str

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        if not AllowedAdvisories.contains(env.state, self.advisory_id):
            raise AdvisoryNotFound(f"{self.advisory_id[:80]} is not allowed")
        AllowedAdvisories.remove(env.state, self.advisory_id)
        env.deposit_event(AdvisoryRemoved(self.advisory_id))


@dataclass(frozen=True)
class update_worker_endpoint(Call, index=7):  # noqa: N801
    """Set (or, with ``None``, clear) a worker's endpoint; signed by anyone, authorised by
    ``signature``: the worker's identity key over ``ENDPOINT_CONTEXT ++
    encode(EndpointPayload(genesis hash, identity, endpoint, counter))`` (:func:`sign_endpoint`),
    with ``counter`` above the last one the worker used."""

    identity: AccountId
    endpoint: bytes | None
    counter: u64
    signature: H512

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_signed(origin)
        record = Workers.get_opt(env.state, self.identity)
        if record is None:
            raise WorkerNotRegistered("no worker has this identity")
        if self.endpoint is not None and len(self.endpoint) > MAX_ENDPOINT_LEN:
            raise EndpointTooLong(
                f"endpoint of {len(self.endpoint)} bytes exceeds {MAX_ENDPOINT_LEN}"
            )
        message = endpoint_signing_bytes(
            env.block.genesis_hash, self.identity, self.endpoint, self.counter
        )
        if not verify(self.identity, message, self.signature):
            raise BadEndpointSignature(
                "the endpoint is not signed by the worker's identity key for this chain"
            )
        if self.counter <= EndpointCounter.get(env.state, self.identity):
            raise StaleEndpointCounter(f"counter {self.counter} was already used")
        EndpointCounter.put(env.state, self.identity, self.counter)
        Workers.put(env.state, self.identity, replace(record, endpoint=self.endpoint))
        env.deposit_event(WorkerEndpointUpdated(self.identity, self.endpoint))


@dataclass(frozen=True)
class set_allow_sim(Call, index=8):  # noqa: N801
    """Root: accept sim quotes in new registrations, or stop accepting them.

    Checks in order: root, and to turn it on, a sim attestation key in the config
    (:class:`NoSimAttestationKey`). Writes ``AttestationConfig.allow_sim`` (the key is kept)
    and emits ``AllowSimSet``. Registered sim workers keep their records.
    """

    allow: bool

    def dispatch(self, env: Env, origin: Origin) -> None:
        ensure_root(origin)
        config = attestation_config(env)
        if self.allow and config.sim_attestation_key is None:
            raise NoSimAttestationKey("the genesis names no sim attestation key")
        Config.put(env.state, replace(config, allow_sim=self.allow))
        env.deposit_event(AllowSimSet(self.allow))


# -- mq ---------------------------------------------------------------------------------------


def on_message(env: Env, message: Any) -> None:
    """A chain-only message the mq pallet accepted on one of this pallet's topics.

    ``^phala/registry/worker_online`` from ``WorkerOrigin(identity)`` of an active worker,
    payload ``encode(u32)`` (the block the worker has synced to): marks the worker
    acknowledged and emits ``WorkerOnline``. Raises :class:`InvalidWorkerMessage` for another
    topic, sender kind or payload, :class:`WorkerNotActive` if the sender is not active.
    """
    if message.topic != WORKER_ONLINE_TOPIC:
        raise InvalidWorkerMessage(f"the registry handles no topic {message.topic[:80]!r}")
    sender = message.sender
    if not isinstance(sender, WorkerOrigin):
        raise InvalidWorkerMessage("worker_online must come from a worker")
    try:
        synced_to = decode(u32, message.payload)
    except DecodeError as exc:
        raise InvalidWorkerMessage(
            f"worker_online payload must be a u32 block number: {exc}"
        ) from exc
    record = Workers.get_opt(env.state, sender.identity)
    if record is None or not record.active:
        raise WorkerNotActive("worker_online from a worker that is not active")
    Workers.put(env.state, sender.identity, replace(record, acknowledged=True))
    env.deposit_event(WorkerOnline(sender.identity, synced_to))


# -- genesis ----------------------------------------------------------------------------------


def build_genesis(env: Env, spec: dict) -> None:
    """``spec``: ``{"allowSim": bool, "simAttestationKey": bytes | None}``."""
    Config.put(env.state, AttestationConfig(spec["allowSim"], spec["simAttestationKey"]))


PALLET = Pallet(
    name=NAME,
    index=PALLET_INDEX,
    call=Call,
    event=Event,
    error=Error,
    build_genesis=build_genesis,
    topics=(WORKER_ONLINE_TOPIC,),
    on_message=on_message,
)
