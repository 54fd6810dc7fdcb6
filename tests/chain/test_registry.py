"""Registry pallet: worker registration with sim and real DCAP quotes, the allowlists,
deactivation by measurement, endpoints, the worker-online message, and the attestation
config (written at genesis; afterwards only ``set_allow_sim`` changes its flag).

Every refusal is asserted by its error (pallet index and code), so each test fails if the
check it covers were missing. The real Intel samples come from ``../shared/fixtures/dcap``
(see ``test_dcap``); their report data is fixed, so a registration that uses them ends at
the report-data check. Tests that need such a worker *stored* (deactivation by measurement)
replace the binding with one that accepts the sample's report data, and say so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import dcap_qvl
import pytest

from phala.chain.blockchain import genesis_block
from phala.chain.runtime import dcap, mq, registry, sudo, timestamp
from phala.chain.runtime.frame import BadOrigin, RuntimeCall
from phala.chain.runtime.registry import (
    AttestationConfig,
    AttestationKind,
    SgxMeasurement,
    SimMeasurement,
    TdxMeasurement,
    WorkerInfo,
    WorkerRegistered,
)
from phala.chain.spec import ChainSpec
from phala.core.attestation import (
    SIM_ATTESTATION_URI,
    SIM_MEASUREMENT,
    SevSnp,
    SgxDcap,
    TdxDcap,
    WorkerRegistrationInfo,
    report_data,
    sign_endpoint,
    sign_sim_quote,
)
from phala.core.codec import decode, encode, u32
from phala.core.keys import Keypair
from phala.core.mq import AccountOrigin, Message, WorkerOrigin

from .harness import (
    ALICE,
    BOB,
    CHARLIE,
    error_info,
    events_of,
    failures,
    head_env,
    make_node,
    read,
    sign,
    submit_and_produce,
)
from .test_dcap import SGX, TDX, TDX15, TDX_OUTDATED, Sample, flip, report_data_offset

SIM_KEY = Keypair.from_uri(SIM_ATTESTATION_URI)
OTHER_KEY = Keypair.from_uri("//NotTheSimAttestationKey")
START_MS = 1_700_000_000_000
# A time when both the SGX and the first TDX sample's collateral are current.
SGX_AND_TDX_S = 1_751_600_000


class Chain:
    """A dev node for one test, with nonce bookkeeping and sudo."""

    def __init__(self, path: Path, spec: ChainSpec):
        self.node = make_node(path, spec)
        self.chain = self.node.chain
        self.genesis = genesis_block(spec)[0].hash
        assert self.genesis == self.chain.genesis_hash
        self.nonces: dict[bytes, int] = {}

    def submit(self, who: Keypair, call: RuntimeCall) -> list:
        """Include ``call`` signed by ``who`` in a new block; the block's failures."""
        nonce = self.nonces.get(who.public_key, 0)
        self.nonces[who.public_key] = nonce + 1
        submit_and_produce(self.node, sign(who, call, nonce, genesis=self.genesis))
        return failures(self.chain)

    def expect(self, who: Keypair, call: RuntimeCall, error: type | None) -> None:
        found = self.submit(who, call)
        assert found == ([] if error is None else [(0, error_info(error))]), found

    def root(self, call: RuntimeCall, error: type | None = None) -> None:
        """Dispatch ``call`` as root through sudo; ``error`` is the inner error expected."""
        assert self.submit(ALICE, sudo.sudo(call)) == []
        expected = None if error is None else error_info(error)
        assert events_of(self.chain, sudo.Sudid) == [sudo.Sudid(expected)]

    def worker(self, identity: bytes) -> WorkerInfo | None:
        return read(self.chain, lambda st: registry.Workers.get_opt(st, identity))

    def config(self) -> AttestationConfig:
        return read(self.chain, registry.Config.get)

    def outbound(self) -> list[Message]:
        return read(self.chain, mq.OutboundMessages.get)

    def info(
        self, key: Keypair, operator: bytes | None = None, ecdh: bytes = b"\x11" * 32
    ) -> WorkerRegistrationInfo:
        return WorkerRegistrationInfo(1, key.public_key, ecdh, self.genesis, operator)


def sim_register(info: WorkerRegistrationInfo, key: Keypair = SIM_KEY) -> registry.register_worker:
    return registry.register_worker(info, sign_sim_quote(key, report_data(info)))


@pytest.fixture
def make_chain(tmp_path: Path) -> Iterator:
    made: list[Chain] = []

    def build(start_ms: int = START_MS, **changes) -> Chain:
        spec = dataclasses.replace(ChainSpec.dev(start_time_ms=start_ms), **changes)
        chain = Chain(tmp_path / f"db{len(made)}", spec)
        made.append(chain)
        return chain

    yield build
    for chain in made:
        chain.node.close()


@pytest.fixture
def dev(make_chain) -> Chain:
    return make_chain()


def workers(n: int) -> list[Keypair]:
    return [Keypair.from_uri(f"//Worker{i}") for i in range(n)]


W1, W2, W3, W4 = workers(4)

# -- DCAP sample helpers ----------------------------------------------------------------------


def sgx_measurement(sample: Sample) -> SgxMeasurement:
    report = dcap_qvl.parse_quote(sample.quote).report
    return SgxMeasurement(report.mr_enclave, report.mr_signer)


def tdx_measurement(sample: Sample) -> TdxMeasurement:
    r = dcap_qvl.parse_quote(sample.quote).report
    return TdxMeasurement(r.mr_td, r.rt_mr0, r.rt_mr1, r.rt_mr2, r.rt_mr3)


def dcap_report(sample: Sample, quote: bytes | None = None, collateral: bytes | None = None):
    cls = SgxDcap if sample.tee == "sgx" else TdxDcap
    return cls(
        sample.quote if quote is None else quote,
        sample.collateral if collateral is None else collateral,
    )


def allow(chain: Chain, sample: Sample) -> None:
    if sample.tee == "sgx":
        chain.root(registry.add_sgx_measurement(sgx_measurement(sample)))
    else:
        chain.root(registry.add_tdx_measurement(tdx_measurement(sample)))


@pytest.fixture
def sample_binding(monkeypatch: pytest.MonkeyPatch) -> dict[bytes, bytes]:
    """Replace the registry's report-data binding so that the identities put in the returned
    dict (identity -> a sample's fixed report data) are bound to that report data, which no
    registration info hashes to. Every other identity keeps the real binding. Only for
    tests of what happens *after* a successful DCAP registration."""
    accepted: dict[bytes, bytes] = {}
    real = registry.report_data

    def binding(info: WorkerRegistrationInfo) -> bytes:
        return accepted.get(info.identity) or real(info)

    monkeypatch.setattr(registry, "report_data", binding)
    return accepted


def register_with_sample(
    chain: Chain, binding: dict[bytes, bytes], key: Keypair, sample: Sample
) -> None:
    binding[key.public_key] = dcap_qvl.parse_quote(sample.quote).report.report_data
    chain.expect(BOB, registry.register_worker(chain.info(key), dcap_report(sample)), None)


# =============================================================================================
# Sim quotes


def test_sim_registration_on_the_dev_chain(dev: Chain):
    info = dev.info(W1, operator=BOB.public_key)
    dev.expect(BOB, sim_register(info), None)
    number = dev.chain.head.number
    stored = dev.worker(W1.public_key)
    assert stored == WorkerInfo(
        info=info,
        kind=AttestationKind.SIM,
        measurement=SimMeasurement(SIM_MEASUREMENT),
        confidence=registry.SIM_CONFIDENCE,
        registered_at=number,
        last_updated=number,
        active=True,
        endpoint=None,
        acknowledged=False,
    )
    assert events_of(dev.chain, registry.WorkerAdded) == [
        registry.WorkerAdded(W1.public_key, AttestationKind.SIM, SimMeasurement(SIM_MEASUREMENT), 5)
    ]
    # The pRuntimes hear of it.
    [message] = dev.outbound()
    assert message.sender == registry.MESSAGE_ORIGIN
    assert message.topic == b"phala/registry/worker_registered"
    assert decode(WorkerRegistered, message.payload) == WorkerRegistered(
        W1.public_key, info, AttestationKind.SIM, 5, number
    )
    with head_env(dev.chain) as env:
        assert registry.is_active_worker(env, W1.public_key)
        assert registry.worker(env, W1.public_key) == stored
        assert not registry.is_active_worker(env, W2.public_key)
        assert registry.worker(env, W2.public_key) is None
        assert registry.workers_with(env, SimMeasurement(SIM_MEASUREMENT)) == [W1.public_key]


def test_anyone_may_relay_a_registration_without_operator(dev: Chain):
    dev.expect(CHARLIE, sim_register(dev.info(W1, operator=None)), None)
    assert dev.worker(W1.public_key).active


def test_operator_other_than_signer_is_refused(dev: Chain):
    dev.expect(
        CHARLIE, sim_register(dev.info(W1, operator=BOB.public_key)), registry.OperatorMismatch
    )
    assert dev.worker(W1.public_key) is None
    assert dev.outbound() == []


def test_sim_quote_refused_where_genesis_does_not_allow_sim(make_chain):
    chain = make_chain(allow_sim_attestation=False)
    assert chain.config() == AttestationConfig(False, SIM_KEY.public_key)
    chain.expect(BOB, sim_register(chain.info(W1)), registry.SimAttestationNotAllowed)
    assert chain.worker(W1.public_key) is None
    # Without a key as well.
    chain = make_chain(allow_sim_attestation=False, sim_attestation_key=None)
    chain.expect(BOB, sim_register(chain.info(W1)), registry.SimAttestationNotAllowed)


def test_sim_quote_signed_by_another_key_is_refused(dev: Chain):
    info = dev.info(W1)
    # Signed by a key that says who it is.
    dev.expect(BOB, sim_register(info, OTHER_KEY), registry.InvalidSimQuote)
    # Claims the sim key but the signature is another key's.
    forged = dataclasses.replace(
        sign_sim_quote(OTHER_KEY, report_data(info)), attestation_key=SIM_KEY.public_key
    )
    dev.expect(BOB, registry.register_worker(info, forged), registry.InvalidSimQuote)
    # The sim key's quote with its measurement changed afterwards.
    edited = dataclasses.replace(
        sign_sim_quote(SIM_KEY, report_data(info)), measurement=b"\x01" * 32
    )
    dev.expect(BOB, registry.register_worker(info, edited), registry.InvalidSimQuote)
    assert dev.worker(W1.public_key) is None


def test_report_data_not_matching_the_info_is_refused(dev: Chain):
    info = dev.info(W1)
    quote = sign_sim_quote(SIM_KEY, report_data(dataclasses.replace(info, ecdh=b"\x22" * 32)))
    dev.expect(BOB, registry.register_worker(info, quote), registry.ReportDataMismatch)
    # Another identity's quote cannot register this one.
    dev.expect(BOB, registry.register_worker(dev.info(W2), quote), registry.ReportDataMismatch)
    assert dev.worker(W1.public_key) is None and dev.worker(W2.public_key) is None


def test_info_for_another_chain_is_refused(dev: Chain):
    info = dataclasses.replace(dev.info(W1), genesis_hash=b"\x42" * 32)
    dev.expect(BOB, sim_register(info), registry.GenesisHashMismatch)
    assert dev.worker(W1.public_key) is None


def test_sev_snp_is_refused(dev: Chain):
    dev.expect(
        BOB,
        registry.register_worker(dev.info(W1), SevSnp(b"\x00" * 1184)),
        registry.UnsupportedAttestation,
    )
    assert dev.worker(W1.public_key) is None


def test_re_registration_updates_the_worker(dev: Chain):
    first = dev.info(W1, operator=BOB.public_key)
    dev.expect(BOB, sim_register(first), None)
    registered_at = dev.chain.head.number
    dev.expect(BOB, sim_register(dev.info(W2)), None)  # another worker, untouched below
    second = dataclasses.replace(first, version=2, ecdh=b"\x33" * 32, operator=CHARLIE.public_key)
    measurement = SimMeasurement(b"\x05" * 32)
    quote = sign_sim_quote(SIM_KEY, report_data(second), measurement.measurement)
    dev.expect(CHARLIE, registry.register_worker(second, quote), None)
    stored = dev.worker(W1.public_key)
    assert stored.info == second
    assert stored.measurement == measurement
    assert stored.registered_at == registered_at
    assert stored.last_updated == dev.chain.head.number > registered_at
    assert stored.active and not stored.acknowledged
    assert events_of(dev.chain, registry.WorkerUpdated) == [
        registry.WorkerUpdated(W1.public_key, AttestationKind.SIM, measurement, 5)
    ]
    assert events_of(dev.chain, registry.WorkerAdded) == []
    [message] = dev.outbound()
    assert decode(WorkerRegistered, message.payload).info == second
    # The index follows the new measurement.
    with head_env(dev.chain) as env:
        assert registry.workers_with(env, SimMeasurement(SIM_MEASUREMENT)) == [W2.public_key]
        assert registry.workers_with(env, measurement) == [W1.public_key]
    assert dev.worker(W2.public_key).info == dev.info(W2)


# =============================================================================================
# Real DCAP samples


@pytest.mark.parametrize("sample", [SGX, TDX, TDX15], ids=lambda s: s.name)
def test_real_quote_passes_the_verifier_and_fails_at_the_binding(make_chain, sample: Sample):
    chain = make_chain(start_ms=sample.mid * 1000)
    call = registry.register_worker(chain.info(W1), dcap_report(sample))
    # Not allowlisted: refused with the measurement error.
    chain.expect(BOB, call, registry.MeasurementNotAllowed)
    allow(chain, sample)
    if sample.advisories:
        # ConfigurationAndSWHardeningNeeded: every advisory must be allowlisted.
        chain.expect(BOB, call, registry.AdvisoryNotAllowed)
        chain.root(registry.add_advisory(sample.advisories[0]))
        chain.expect(BOB, call, registry.AdvisoryNotAllowed)
        chain.root(registry.add_advisory(sample.advisories[1]))
    # Verifier, allowlist and TCB pass; the fixed report data does not commit to the info.
    chain.expect(BOB, call, registry.ReportDataMismatch)
    assert chain.worker(W1.public_key) is None
    with head_env(chain.chain) as env:
        verdict = registry.verify_attestation(env, dcap_report(sample))
    expected_level = {dcap.UP_TO_DATE: 1, dcap.CONFIGURATION_AND_SW_HARDENING_NEEDED: 3}[
        sample.status
    ]
    assert verdict.confidence == expected_level
    assert verdict.tcb_status == sample.status
    assert verdict.advisory_ids == sample.advisories
    assert verdict.report_data == dcap_qvl.parse_quote(sample.quote).report.report_data
    if sample.tee == "sgx":
        assert verdict.kind == AttestationKind.SGX_DCAP and verdict.measurement == sgx_measurement(
            sample
        )
    else:
        assert verdict.kind == AttestationKind.TDX_DCAP and verdict.measurement == tdx_measurement(
            sample
        )


def test_sgx_sample_level_3_needs_both_advisories_and_removal_counts(make_chain):
    chain = make_chain(start_ms=SGX.mid * 1000)
    allow(chain, SGX)
    chain.root(registry.add_advisory("INTEL-SA-00289"))
    chain.root(registry.add_advisory("INTEL-SA-00615"))
    with head_env(chain.chain) as env:
        assert registry.verify_attestation(env, dcap_report(SGX)).confidence == 3
    chain.root(registry.remove_advisory("INTEL-SA-00615"))
    assert events_of(chain.chain, registry.AdvisoryRemoved) == [
        registry.AdvisoryRemoved("INTEL-SA-00615")
    ]
    with (
        head_env(chain.chain) as env,
        pytest.raises(registry.AdvisoryNotAllowed, match="INTEL-SA-00615"),
    ):
        registry.verify_attestation(env, dcap_report(SGX))


def test_outdated_tdx_sample_is_refused(make_chain):
    chain = make_chain(start_ms=TDX_OUTDATED.mid * 1000)
    allow(chain, TDX_OUTDATED)
    chain.expect(
        BOB,
        registry.register_worker(chain.info(W1), dcap_report(TDX_OUTDATED)),
        registry.TcbNotAccepted,
    )


@pytest.mark.parametrize("sample", [SGX, TDX], ids=lambda s: s.name)
def test_collateral_outside_its_window_is_refused(make_chain, sample: Sample):
    for start_s in (sample.first - 86_400, sample.last + 86_400):
        chain = make_chain(start_ms=start_s * 1000)
        allow(chain, sample)
        call = registry.register_worker(chain.info(W1), dcap_report(sample))
        chain.expect(BOB, call, registry.CollateralExpired)


@pytest.mark.parametrize("sample", [SGX, TDX15], ids=lambda s: s.name)
def test_one_flipped_bit_is_refused(make_chain, sample: Sample):
    chain = make_chain(start_ms=sample.mid * 1000)
    allow(chain, sample)
    for advisory in sample.advisories:
        chain.root(registry.add_advisory(advisory))
    offset = report_data_offset(sample)
    for bad in (flip(sample.quote, offset), flip(sample.quote, offset - 100, 7)):
        call = registry.register_worker(chain.info(W1), dcap_report(sample, quote=bad))
        chain.expect(BOB, call, registry.InvalidQuote)


def test_quote_of_the_wrong_tee_for_its_variant_is_refused(make_chain):
    chain = make_chain(start_ms=SGX_AND_TDX_S * 1000)
    allow(chain, SGX)
    allow(chain, TDX)
    info = chain.info(W1)
    chain.expect(
        BOB,
        registry.register_worker(info, TdxDcap(SGX.quote, SGX.collateral)),
        registry.WrongTeeType,
    )
    chain.expect(
        BOB,
        registry.register_worker(info, SgxDcap(TDX.quote, TDX.collateral)),
        registry.WrongTeeType,
    )


def test_malformed_quote_or_collateral_is_refused(make_chain):
    chain = make_chain(start_ms=SGX.mid * 1000)
    allow(chain, SGX)
    info = chain.info(W1)
    chain.expect(
        BOB,
        registry.register_worker(info, SgxDcap(SGX.quote[:200], SGX.collateral)),
        registry.MalformedQuote,
    )
    chain.expect(
        BOB,
        registry.register_worker(info, SgxDcap(SGX.quote, b"{not json")),
        registry.InvalidCollateral,
    )
    chain.expect(
        BOB,
        registry.register_worker(info, SgxDcap(SGX.quote, TDX.collateral)),
        registry.InvalidCollateral,
    )


def test_debug_tee_is_refused(dev: Chain, monkeypatch):
    """dcap-qvl verifies a debug enclave's quote like any other; the registry refuses it."""
    real = dcap.verify_dcap

    def as_debug(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), debug=True)

    monkeypatch.setattr(dcap, "verify_dcap", as_debug)
    chain = dev
    with head_env(chain.chain) as env:
        timestamp.Now.put(env.state, SGX.mid * 1000)
        registry.AllowedSgxMeasurements.put(env.state, sgx_measurement(SGX), 0)
        with pytest.raises(registry.DebugTee):
            registry.verify_attestation(env, dcap_report(SGX))


def test_tcb_status_to_confidence_level(dev: Chain):
    with head_env(dev.chain) as env:
        level = registry.confidence_level
        assert level(env, "UpToDate", ()) == 1
        assert level(env, "SWHardeningNeeded", ("INTEL-SA-00001",)) == 2
        assert level(env, "ConfigurationNeeded", ()) == 3
        assert level(env, "OutOfDate", ("INTEL-SA-00001",)) == 4
        assert level(env, "OutOfDateConfigurationNeeded", ()) == 4
        for gated in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            with pytest.raises(registry.AdvisoryNotAllowed):
                level(env, gated, ("INTEL-SA-00001",))
        registry.AllowedAdvisories.put(env.state, "INTEL-SA-00001", 0)
        assert level(env, "ConfigurationAndSWHardeningNeeded", ("INTEL-SA-00001",)) == 3
        for refused in ("Revoked", "TCBRevoked", "Unknown", ""):
            with pytest.raises(registry.TcbNotAccepted):
                level(env, refused, ())


# =============================================================================================
# Allowlists and deactivation


def test_allowlists_are_root_only_and_report_duplicates(dev: Chain):
    m = SgxMeasurement(b"\x01" * 32, b"\x02" * 32)
    t = TdxMeasurement(*(bytes([i]) * 48 for i in range(5)))
    for call in (
        registry.add_sgx_measurement(m),
        registry.remove_sgx_measurement(m),
        registry.add_tdx_measurement(t),
        registry.remove_tdx_measurement(t),
        registry.add_advisory("INTEL-SA-00001"),
        registry.remove_advisory("INTEL-SA-00001"),
    ):
        dev.expect(BOB, call, BadOrigin)
    dev.root(registry.add_sgx_measurement(m))
    assert events_of(dev.chain, registry.SgxMeasurementAdded) == [registry.SgxMeasurementAdded(m)]
    dev.root(registry.add_sgx_measurement(m), registry.MeasurementAlreadyAllowed)
    dev.root(registry.add_tdx_measurement(t))
    assert events_of(dev.chain, registry.TdxMeasurementAdded) == [registry.TdxMeasurementAdded(t)]
    dev.root(registry.add_tdx_measurement(t), registry.MeasurementAlreadyAllowed)
    dev.root(registry.add_advisory("INTEL-SA-00001"))
    assert events_of(dev.chain, registry.AdvisoryAdded) == [
        registry.AdvisoryAdded("INTEL-SA-00001")
    ]
    dev.root(registry.add_advisory("INTEL-SA-00001"), registry.AdvisoryAlreadyAllowed)
    for bad in ("", "INTEL SA 1", "x" * 65, "INTEL-SA-0001\u00e9"):
        dev.root(registry.add_advisory(bad), registry.InvalidAdvisoryId)
    added_at = 7  # six refused blocks, then the first root call
    assert read(dev.chain, lambda st: dict(registry.AllowedSgxMeasurements.items(st))) == {
        m: added_at
    }
    dev.root(registry.remove_sgx_measurement(m))
    assert events_of(dev.chain, registry.SgxMeasurementRemoved) == [
        registry.SgxMeasurementRemoved(m)
    ]
    dev.root(registry.remove_sgx_measurement(m), registry.MeasurementNotFound)
    dev.root(registry.remove_tdx_measurement(t))
    assert events_of(dev.chain, registry.TdxMeasurementRemoved) == [
        registry.TdxMeasurementRemoved(t)
    ]
    dev.root(registry.remove_tdx_measurement(t), registry.MeasurementNotFound)
    dev.root(registry.remove_advisory("INTEL-SA-00001"))
    dev.root(registry.remove_advisory("INTEL-SA-00001"), registry.AdvisoryNotFound)


def test_removing_a_measurement_deactivates_exactly_its_workers(make_chain, sample_binding):
    chain = make_chain(start_ms=SGX_AND_TDX_S * 1000)
    allow(chain, SGX)
    allow(chain, TDX)
    for advisory in SGX.advisories:
        chain.root(registry.add_advisory(advisory))
    register_with_sample(chain, sample_binding, W1, SGX)
    register_with_sample(chain, sample_binding, W2, SGX)
    register_with_sample(chain, sample_binding, W3, TDX)
    chain.expect(BOB, sim_register(chain.info(W4)), None)
    sgx_m, tdx_m = sgx_measurement(SGX), tdx_measurement(TDX)
    w1 = chain.worker(W1.public_key)
    assert (w1.kind, w1.measurement, w1.confidence, w1.active) == (
        AttestationKind.SGX_DCAP,
        sgx_m,
        3,
        True,
    )
    w3 = chain.worker(W3.public_key)
    assert (w3.kind, w3.measurement, w3.confidence, w3.active) == (
        AttestationKind.TDX_DCAP,
        tdx_m,
        1,
        True,
    )

    chain.root(registry.remove_sgx_measurement(sgx_m))
    deactivated = events_of(chain.chain, registry.WorkerDeactivated)
    assert sorted(deactivated, key=lambda e: e.identity) == sorted(
        [
            registry.WorkerDeactivated(W1.public_key, sgx_m),
            registry.WorkerDeactivated(W2.public_key, sgx_m),
        ],
        key=lambda e: e.identity,
    )
    active = {k.public_key: chain.worker(k.public_key).active for k in (W1, W2, W3, W4)}
    assert active == {
        W1.public_key: False,
        W2.public_key: False,
        W3.public_key: True,
        W4.public_key: True,
    }
    with head_env(chain.chain) as env:
        assert not registry.is_active_worker(env, W1.public_key)
        assert registry.worker(env, W1.public_key).info == chain.info(W1)  # the record stays
        assert registry.workers_with(env, sgx_m) == []
        assert registry.workers_with(env, tdx_m) == [W3.public_key]

    # Allowing the measurement again does not re-activate; registering again does.
    allow(chain, SGX)
    assert not chain.worker(W1.public_key).active
    register_with_sample(chain, sample_binding, W1, SGX)
    assert chain.worker(W1.public_key).active and not chain.worker(W2.public_key).active
    assert events_of(chain.chain, registry.WorkerUpdated) == [
        registry.WorkerUpdated(W1.public_key, AttestationKind.SGX_DCAP, sgx_m, 3)
    ]

    chain.root(registry.remove_tdx_measurement(tdx_m))
    assert events_of(chain.chain, registry.WorkerDeactivated) == [
        registry.WorkerDeactivated(W3.public_key, tdx_m)
    ]
    assert [chain.worker(k.public_key).active for k in (W1, W2, W3, W4)] == [
        True,
        False,
        False,
        True,
    ]


def test_a_worker_that_moved_to_another_measurement_is_not_deactivated_by_the_old_one(
    make_chain, sample_binding
):
    chain = make_chain(start_ms=SGX_AND_TDX_S * 1000)
    allow(chain, SGX)
    allow(chain, TDX)
    for advisory in SGX.advisories:
        chain.root(registry.add_advisory(advisory))
    register_with_sample(chain, sample_binding, W1, SGX)
    register_with_sample(chain, sample_binding, W1, TDX)  # same identity, now a TDX guest
    chain.root(registry.remove_sgx_measurement(sgx_measurement(SGX)))
    assert events_of(chain.chain, registry.WorkerDeactivated) == []
    assert chain.worker(W1.public_key).active


# =============================================================================================
# Endpoints


def endpoint_call(
    chain: Chain, key: Keypair, endpoint: bytes | None, counter: int, genesis: bytes | None = None
):
    signature = sign_endpoint(
        key, chain.genesis if genesis is None else genesis, endpoint, counter
    )
    return registry.update_worker_endpoint(key.public_key, endpoint, counter, signature)


def test_endpoint_is_set_by_the_worker_identity_key(dev: Chain):
    dev.expect(BOB, endpoint_call(dev, W1, b"http://w1:8000", 1), registry.WorkerNotRegistered)
    dev.expect(BOB, sim_register(dev.info(W1, operator=BOB.public_key)), None)
    # Any account may submit it (here not even the operator): the worker's signature decides.
    dev.expect(CHARLIE, endpoint_call(dev, W1, b"http://w1:8000", 1), None)
    assert dev.worker(W1.public_key).endpoint == b"http://w1:8000"
    assert events_of(dev.chain, registry.WorkerEndpointUpdated) == [
        registry.WorkerEndpointUpdated(W1.public_key, b"http://w1:8000")
    ]
    # A replay (same counter) and an older counter are refused.
    dev.expect(CHARLIE, endpoint_call(dev, W1, b"http://w1:8000", 1), registry.StaleEndpointCounter)
    dev.expect(CHARLIE, endpoint_call(dev, W1, b"http://evil", 0), registry.StaleEndpointCounter)
    # Signed by another key (the operator's, another worker's) or for another chain: refused.
    bad = registry.update_worker_endpoint(
        W1.public_key,
        b"http://evil",
        5,
        sign_endpoint(BOB, dev.genesis, b"http://evil", 5),
    )
    dev.expect(BOB, bad, registry.BadEndpointSignature)
    stolen = sign_endpoint(W2, dev.genesis, b"http://evil", 5)
    dev.expect(
        BOB,
        registry.update_worker_endpoint(W1.public_key, b"http://evil", 5, stolen),
        registry.BadEndpointSignature,
    )
    dev.expect(
        BOB,
        endpoint_call(dev, W1, b"http://evil", 5, genesis=b"\x00" * 32),
        registry.BadEndpointSignature,
    )
    # A signature over one endpoint does not authorise another.
    sig = sign_endpoint(W1, dev.genesis, b"http://w1:9000", 6)
    dev.expect(
        BOB,
        registry.update_worker_endpoint(W1.public_key, b"http://evil", 6, sig),
        registry.BadEndpointSignature,
    )
    dev.expect(
        BOB,
        endpoint_call(dev, W1, b"x" * (registry.MAX_ENDPOINT_LEN + 1), 7),
        registry.EndpointTooLong,
    )
    assert dev.worker(W1.public_key).endpoint == b"http://w1:8000"
    # Counters may skip; the endpoint survives re-registration; None clears it.
    dev.expect(BOB, endpoint_call(dev, W1, b"http://w1:9000", 10), None)
    dev.expect(BOB, sim_register(dev.info(W1, operator=BOB.public_key, ecdh=b"\x44" * 32)), None)
    assert dev.worker(W1.public_key).endpoint == b"http://w1:9000"
    dev.expect(BOB, endpoint_call(dev, W1, None, 11), None)
    assert dev.worker(W1.public_key).endpoint is None


# =============================================================================================
# The worker-online message


def online(key: Keypair, synced_to: int) -> Message:
    return Message(
        WorkerOrigin(key.public_key), registry.WORKER_ONLINE_TOPIC, encode(synced_to, u32)
    )


def test_worker_online_through_the_message_queue(dev: Chain):
    from phala.core.mq import sign_message
    from phala.core.types import UnsignedExtrinsic

    assert registry.PALLET.topics == (b"^phala/registry/worker_online",)
    dev.expect(BOB, sim_register(dev.info(W1)), None)
    signed = sign_message(W1, dev.genesis, online(W1, 7), 0)
    raw = UnsignedExtrinsic(encode(mq.sync_offchain_message(signed), RuntimeCall)).encode()
    submit_and_produce(dev.node, raw)
    assert failures(dev.chain) == []
    assert events_of(dev.chain, mq.OffchainMessageFailed) == []
    assert events_of(dev.chain, registry.WorkerOnline) == [registry.WorkerOnline(W1.public_key, 7)]
    assert dev.worker(W1.public_key).acknowledged
    # A new registration needs a new acknowledgement.
    dev.expect(BOB, sim_register(dev.info(W1, ecdh=b"\x55" * 32)), None)
    assert not dev.worker(W1.public_key).acknowledged


def test_worker_online_handler_refusals(make_chain, sample_binding):
    chain = make_chain(start_ms=SGX.mid * 1000)
    allow(chain, SGX)
    for advisory in SGX.advisories:
        chain.root(registry.add_advisory(advisory))
    register_with_sample(chain, sample_binding, W1, SGX)
    chain.root(registry.remove_sgx_measurement(sgx_measurement(SGX)))
    chain.expect(BOB, sim_register(chain.info(W2)), None)
    with head_env(chain.chain) as env:
        with pytest.raises(registry.WorkerNotActive):
            registry.on_message(env, online(W1, 1))  # deactivated
        with pytest.raises(registry.WorkerNotActive):
            registry.on_message(env, online(W3, 1))  # never registered
        with pytest.raises(registry.InvalidWorkerMessage):
            registry.on_message(
                env,
                Message(AccountOrigin(W2.public_key), registry.WORKER_ONLINE_TOPIC, encode(1, u32)),
            )
        with pytest.raises(registry.InvalidWorkerMessage):
            registry.on_message(
                env, Message(WorkerOrigin(W2.public_key), registry.WORKER_ONLINE_TOPIC, b"\x01")
            )
        with pytest.raises(registry.InvalidWorkerMessage):
            registry.on_message(
                env, Message(WorkerOrigin(W2.public_key), b"^phala/registry/other", encode(1, u32))
            )
        registry.on_message(env, online(W2, 3))
        assert registry.worker(env, W2.public_key).acknowledged
        assert env.events[-1][1] == registry.WorkerOnline(W2.public_key, 3)


# =============================================================================================
# AttestationConfig: written at genesis; only set_allow_sim changes it, and only its flag


REGISTRY_CALLS = {
    0: "register_worker",
    1: "add_sgx_measurement",
    2: "remove_sgx_measurement",
    3: "add_tdx_measurement",
    4: "remove_tdx_measurement",
    5: "add_advisory",
    6: "remove_advisory",
    7: "update_worker_endpoint",
    8: "set_allow_sim",
}


def test_no_other_call_changes_the_attestation_config(make_chain):
    """Every registry call but ``set_allow_sim``, dispatched as root through sudo (the most
    privileged origin there is), leaves AttestationConfig alone, and no block writes its key."""
    chain = make_chain(allow_sim_attestation=False)
    assert {i: c.__name__ for i, c in registry.Call.__variants__.items()} == REGISTRY_CALLS
    assert sorted(c.__name__ for c in sudo.Call.__variants__.values()) == ["set_key", "sudo"]
    before = chain.config()
    assert before == AttestationConfig(False, SIM_KEY.public_key)
    m = SgxMeasurement(b"\x01" * 32, b"\x02" * 32)
    t = TdxMeasurement(*(bytes([i]) * 48 for i in range(5)))
    info = chain.info(W1)
    calls = [
        sim_register(info),
        registry.add_sgx_measurement(m),
        registry.remove_sgx_measurement(m),
        registry.add_tdx_measurement(t),
        registry.remove_tdx_measurement(t),
        registry.add_advisory("INTEL-SA-00001"),
        registry.remove_advisory("INTEL-SA-00001"),
        endpoint_call(chain, W1, b"http://w1", 1),
    ]
    assert {type(c).__name__ for c in calls} == set(REGISTRY_CALLS.values()) - {"set_allow_sim"}
    for call in calls:
        assert chain.submit(ALICE, sudo.sudo(call)) == []
        assert chain.config() == before
    # Root cannot register (it has no account), so sim stays refused for everyone.
    chain.expect(BOB, sim_register(info), registry.SimAttestationNotAllowed)
    for number in range(1, chain.chain.head.number + 1):
        changes = chain.chain.db.changes(number)
        assert changes is not None
        assert registry.Config.key not in {c.key for c in changes}
    assert chain.config() == before


def test_set_allow_sim(make_chain):
    """A chain that graduates turns sim attestation off: new sim registrations are refused,
    the sim workers registered before keep their records; root can turn it on again."""
    chain = make_chain()
    info = chain.info(W1)
    chain.expect(BOB, sim_register(info), None)
    chain.root(registry.set_allow_sim(False))
    assert events_of(chain.chain, registry.AllowSimSet) == [registry.AllowSimSet(False)]
    assert chain.config() == AttestationConfig(False, SIM_KEY.public_key)
    record = chain.worker(W1.public_key)
    assert record is not None and record.active and record.kind == AttestationKind.SIM
    chain.expect(BOB, sim_register(chain.info(W2)), registry.SimAttestationNotAllowed)
    chain.expect(BOB, sim_register(info), registry.SimAttestationNotAllowed)
    chain.root(registry.set_allow_sim(True))
    assert chain.config() == AttestationConfig(True, SIM_KEY.public_key)
    chain.expect(BOB, sim_register(chain.info(W2)), None)


def test_set_allow_sim_needs_root_and_a_sim_key(make_chain):
    chain = make_chain(allow_sim_attestation=False, sim_attestation_key=None)
    chain.expect(BOB, registry.set_allow_sim(True), BadOrigin)
    chain.root(registry.set_allow_sim(True), registry.NoSimAttestationKey)
    assert events_of(chain.chain, registry.AllowSimSet) == []
    assert chain.config() == AttestationConfig(False, None)
    chain.root(registry.set_allow_sim(False))  # off stays off: allowed, it changes nothing
    assert chain.config() == AttestationConfig(False, None)
    chain.expect(BOB, sim_register(chain.info(W1)), registry.SimAttestationNotAllowed)
