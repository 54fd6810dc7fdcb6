"""Plain values: one canonical encoding each; anything else refused with its path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phala.contracts.values import (
    MAX_DEPTH,
    PlainValueError,
    decode_plain,
    encode_plain,
    split_pair,
)
from phala.core.codec import DecodeError

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


def test_split_pair_decodes_the_first_and_keeps_the_second_as_bytes():
    second = {"event": "transfer", "amount": 5}
    first, raw = split_pair(encode_plain(([b"\x01" * 32], second)))
    assert first == [b"\x01" * 32] and raw == encode_plain(second)
    for bad in (encode_plain([1, 2]), encode_plain((1, 2, 3)), encode_plain((1,)), encode_plain((1, 2)) + b"\x00"):
        with pytest.raises(DecodeError):
            split_pair(bad)
