"""Decoding and checking chain data from its JSON: headers, blocks, events."""

from __future__ import annotations

import dataclasses

import pytest

from phala.chain.rpc import header_json
from phala.client.chain import ChainEvent, VerificationError, header_from_json, header_to_json
from phala.client.describe import DispatchOutcome, dispatch_outcome, error_name
from phala.core.keys import dev_keypair
from phala.core.types import AuthoritiesChange, Header, Other, extrinsics_root

ALICE = dev_keypair("Alice").public_key


def sample_header(**changes: object) -> Header:
    header = Header(
        parent_hash=bytes(range(32)),
        number=1234,
        state_root=b"\x11" * 32,
        extrinsics_root=extrinsics_root([b"\x01\x02"]),
        timestamp=1_767_225_600_000,
        author=ALICE,
        digest=[Other(b"hello"), AuthoritiesChange(2, [ALICE])],
    )
    return dataclasses.replace(header, **changes)


def test_round_trip_through_the_servers_json() -> None:
    header = sample_header()
    obj = header_json(header)  # what the node serves
    assert obj == header_to_json(header)
    rebuilt = header_from_json(obj)
    assert rebuilt == header
    assert rebuilt.hash == header.hash
    assert obj["number"] == hex(1234)


def test_genesis_like_header_round_trips() -> None:
    header = sample_header(number=0, digest=[])
    assert header_from_json(header_to_json(header)) == header


def test_number_may_be_an_integer() -> None:
    obj = header_to_json(sample_header())
    obj["number"] = 1234
    assert header_from_json(obj).number == 1234


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("number", hex(1235)),
        ("timestamp", 1_767_225_600_001),
        ("stateRoot", "0x" + "22" * 32),
        ("author", "0x" + "00" * 32),
        ("digest", {"logs": []}),
        ("hash", "0x" + "00" * 32),
    ],
)
def test_hash_mismatch_is_refused(field: str, value: object) -> None:
    obj = header_to_json(sample_header())
    obj[field] = value
    with pytest.raises(VerificationError, match="hashes to"):
        header_from_json(obj)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("stateRoot"),
        lambda o: o.__setitem__("parentHash", "0x1234"),
        lambda o: o.__setitem__("parentHash", "zz"),
        lambda o: o.__setitem__("number", "0xzz"),
        lambda o: o.__setitem__("digest", {"logs": ["0xff"]}),
        lambda o: o.__setitem__("digest", None),
    ],
)
def test_malformed_headers_are_refused(mutate) -> None:  # noqa: ANN001
    obj = header_to_json(sample_header())
    mutate(obj)
    with pytest.raises(VerificationError):
        header_from_json(obj)


def test_not_an_object() -> None:
    with pytest.raises(VerificationError):
        header_from_json(["not", "a", "header"])


def test_dispatch_outcome_names_the_error() -> None:
    ok = [ChainEvent(0, "Balances", "Transfer", {}), ChainEvent(0, "System", "ExtrinsicSuccess", {})]
    assert dispatch_outcome(ok) == DispatchOutcome(True)
    failed = [ChainEvent(0, "System", "ExtrinsicFailed", {"error": {"pallet": 2, "code": 0}})]
    outcome = dispatch_outcome(failed)
    assert outcome is not None and not outcome.ok
    assert outcome.error == "Balances.InsufficientBalance"
    assert "pallet 2, error 0" in str(outcome)
    assert dispatch_outcome([]) is None
    assert error_name(0, 255) == "BadOrigin"
    assert error_name(0, 254) == "System.Unexpected"
    assert error_name(99, 1) == "Pallet99.Error1"
    assert error_name(2, 200) == "Balances.Error200"
