"""The hand-written encoder and decoder of a call's two frames give exactly the generic
codec's bytes and values, and refuse what the codec refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phala.contracts import protocol as p
from phala.core.codec import DecodeError, decode, encode

ids = st.binary(min_size=32, max_size=32)
calls = st.builds(
    p.Call, st.integers(0, 255), st.text(max_size=80), st.binary(max_size=300),
    st.builds(p.CallContext, st.none() | ids, st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), ids, ids),
    st.integers(0, 2**64 - 1),
)
outcomes = st.builds(
    p.Outcome, st.integers(0, 255), st.text(max_size=200), st.integers(0, 2**64 - 1), st.binary(max_size=300),
    st.lists(st.binary(max_size=100), max_size=5), st.lists(st.binary(max_size=100), max_size=5),
)


@given(ids, calls)
def test_an_enqueue_is_the_codecs_bytes(contract, call):
    assert p.encode_enqueue(contract, call) == encode(p.Enqueue(contract, call), p.Request)


@given(outcomes)
def test_an_outcome_decodes_as_the_codec_does(outcome):
    data = encode(outcome, p.Outcome)
    assert p.decode_outcome(data) == decode(p.Outcome, data) == outcome


@given(outcomes, st.data())
def test_a_damaged_outcome_is_refused_as_the_codec_refuses_it(outcome, data):
    raw = encode(outcome, p.Outcome)
    cut = data.draw(st.integers(0, len(raw) - 1))
    for damaged in (raw[:cut], raw + b"\x00"):
        try:
            expected = decode(p.Outcome, damaged)
        except DecodeError:
            with pytest.raises(DecodeError):
                p.decode_outcome(damaged)
        else:
            assert p.decode_outcome(damaged) == expected


def test_a_message_utf8_cannot_carry_never_breaks_a_reply():
    """A module body whose error message holds a lone surrogate is refused with the character
    replaced; the executor (which must encode every reply) stays up."""
    from phala.contracts.host import Executor

    source = 'from phala.contracts.sdk import Contract\nraise ValueError("\\ud800")\nclass A(Contract):\n    pass\n'
    with Executor() as executor:
        refused = executor.check(source)
        assert (refused.status, refused.message) == (p.REFUSED, "the module body failed: line 2: ValueError: ?")
        assert executor.check("from phala.contracts.sdk import Contract\nclass A(Contract):\n    pass\n").status == p.OK
