"""Plain values: one canonical encoding each; anything else refused with its path. They are
what crosses the VM boundary (arguments, results, storage values, events, messages); the
host reads what a contract produced with the readers at the end, which build no dict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phala.contracts.values import (
    MAX_DEPTH,
    PlainValueError,
    Raw,
    decode_plain,
    decode_record,
    encode_plain,
    split_event,
    split_message,
    validate_plain,
)
from phala.core.codec import DecodeError
from phala.core.compact import encode_compact

keys = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.binary(max_size=8))
plain = st.recursive(
    keys,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=20,
)


@given(plain)
def test_round_trip_keeps_types_and_order(value):
    data = encode_plain(value)
    back = decode_plain(data)
    assert back == value and encode_plain(back) == data
    assert repr(back) == repr(value)  # same types (tuple vs list, bool vs int), same dict order


@pytest.mark.parametrize(
    "value, data",
    [
        (None, "00"), (False, "01"), (True, "02"), (0, "0300"), (1, "030401"), (-1, "0304ff"),
        (128, "03088000"), (-129, "03087fff"), ("a", "040461"), (b"\x00", "050400"),
        ([1], "0604030401"), ((), "0700"), ({"k": 0}, "080404046b0300"),
    ],
)
def test_pinned_encodings(value, data):
    assert encode_plain(value).hex() == data
    assert decode_plain(bytes.fromhex(data)) == value


@pytest.mark.parametrize(
    "value, where",
    [
        (1.5, "value is a float"),
        ([1, {"a": set()}], "[1]['a'] is a set"),
        ({1.0: 1}, "has a key of type float"),
        (type("Evil", (), {})(), "is a Evil"),
    ],
)
def test_non_plain_values_are_refused_with_their_path(value, where):
    with pytest.raises(PlainValueError, match=r".*" + where.replace("[", r"\[").replace("]", r"\]")):
        encode_plain(value)


def test_subclasses_are_not_plain():
    class Sneaky(int):
        def __repr__(self):  # would run in host code
            raise AssertionError("host code ran contract code")

    with pytest.raises(PlainValueError):
        encode_plain([Sneaky(1)])


@pytest.mark.parametrize(
    "data, reason",
    [
        ("030400", "non-canonical int"),  # 0 written with a byte
        ("0308ffff", "non-canonical int"),  # -1 written with 2 bytes
        ("09", "unknown tag"),
        ("0408", "too short"),
        ("0808000000", "key repeats"),
        ("0002", "trailing"),
        ("0404ff", "invalid UTF-8"),
    ],
)
def test_non_canonical_or_malformed_bytes_are_refused(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_plain(bytes.fromhex(data))


def test_depth_is_limited_both_ways():
    deep: list = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(PlainValueError, match="nested"):
        encode_plain(deep)
    with pytest.raises(DecodeError, match="nested"):
        decode_plain(b"\x06\x04" * (MAX_DEPTH + 1) + b"\x06\x00")


# -- what the host reads of a contract's output, without building it ------------------------------


P = (1 << 61) - 1  # 64-bit CPython hashes ints modulo P: keys k * P all collide in a host dict


def _dict_bytes(keys: list[int]) -> bytes:
    """The encoding of ``dict.fromkeys(keys)`` (repeats kept), built without a dict."""
    out = bytearray([8])
    encode_compact(len(keys), out)
    for key in keys:
        out += encode_plain(key) + b"\x00"
    return bytes(out)


def test_validate_plain_builds_no_dict():
    """The executor and the worker check events, messages and return values with
    validate_plain: it builds no dict, so it neither hashes a contract's keys (colliding or
    not) nor notices a repeated one; decode_plain, which builds the dict, refuses repeats."""
    colliding = _dict_bytes([k * P for k in range(1, 2001)])
    validate_plain(colliding)
    repeated = _dict_bytes([1, 1])
    validate_plain(repeated)
    with pytest.raises(DecodeError, match="key repeats"):
        decode_plain(repeated)


def test_validate_plain_counts_the_items_it_visits():
    wide = encode_plain([0] * 1000)
    validate_plain(wide, max_items=1001)
    with pytest.raises(DecodeError, match="too many items"):
        validate_plain(wide, max_items=1000)


@pytest.mark.parametrize(
    "data, reason",
    [("030400", "non-canonical int"), ("09", "unknown tag"), ("0408", "too short"), ("0002", "trailing"),
     ("0404ff", "invalid UTF-8"), ("06" * 65 + "00", "nested")],
)
def test_validate_plain_refuses_what_decode_plain_refuses(data, reason):
    for check in (validate_plain, decode_plain):
        with pytest.raises(DecodeError, match=reason):
            check(bytes.fromhex(data.replace("06" * 65, "0604" * 65)))


def test_split_event_checks_the_accounts_and_keeps_the_event_as_bytes():
    event = {"to": b"\x02" * 32, "n": 1}
    assert split_event(encode_plain(([b"\x01" * 32], event))) == ([b"\x01" * 32], encode_plain(event))
    for bad, reason in [
        (encode_plain(([b"\x01" * 32] * 17, 1)), "at most 16 accounts"),
        (encode_plain(([b"\x01" * 31], 1)), "32-byte ids"),
        (encode_plain(("not a list", 1)), "must be a list"),
        (encode_plain([[], 1]), "not a pair"),
        (encode_plain(([], 1)) + b"\x00", "trailing"),
        (encode_plain(([], 1))[:-3] + b"\x09", "unknown tag"),
    ]:
        with pytest.raises(DecodeError, match=reason):
            split_event(bad)


def test_split_message_checks_the_target_and_keeps_the_message_as_bytes():
    assert split_message(encode_plain((b"\x0e" * 32, [1]))) == (b"\x0e" * 32, encode_plain([1]))
    assert split_message(encode_plain(("Contracts", {"payout": 1}))) == ("Contracts", encode_plain({"payout": 1}))
    for bad in (encode_plain((b"short", 1)), encode_plain(("x" * 33, 1)), encode_plain((1, 1)),
                encode_plain((b"\x0e" * 32, 1)) + b"\x00"):
        with pytest.raises(DecodeError):
            split_message(bad)


def test_raw_bytes_are_spliced_in_as_they_are():
    inner = encode_plain({"k": [1, 2]})
    assert encode_plain([Raw(inner), 3]) == encode_plain([{"k": [1, 2]}, 3])
    assert decode_plain(encode_plain((Raw(inner),))) == ({"k": [1, 2]},)


def test_decode_record_reads_a_fixed_shape_strictly():
    data = encode_plain([1, "m", b"v", [b"e"], None])
    assert decode_record(data, "isbLN") == [1, "m", b"v", [b"e"], None]
    for shape in ("isbL", "isbLNN", "ssbLN", "isbLL"):
        with pytest.raises(DecodeError):
            decode_record(data, shape)
    with pytest.raises(DecodeError):
        decode_record(encode_plain([1, "m", b"v", [1], None]), "isbLN")  # not bytes in the list
