"""Hypothesis settings and value strategies shared by the bad-input tests."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Unicode without lone surrogates (which protobuf strings cannot hold: the caller's own
# library refuses them before anything is sent).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
ODD_TEXT = st.sampled_from(
    ["", " ", "\t", "\x00", "\u200b", "é", "🎬" * 3, "a/b", "a?b", "%2F", "x" * 300, "x" * 2001]
)
ANY_TEXT = st.one_of(TEXT, ODD_TEXT)
INT32 = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([-1, 0, 1, 49, 50, 51, 10_000, 10_001, 2**31 - 1, -(2**31)]),
)
ENUM = st.one_of(st.integers(-3, 5), st.sampled_from([2**31 - 1, -(2**31), 1000]))
FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.005, 0.01, 1.0, 1.01, 100.0, 100.5, float("nan"), float("inf")]),
)
