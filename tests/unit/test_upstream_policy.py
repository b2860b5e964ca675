"""Retry policy, retry hints and the rate limiter, without a network."""

from __future__ import annotations

import pytest

from classify_gateway.backends.retry import RetryPolicy
from classify_gateway.quota.limiter import upstream_wait as retry_hint


def test_backoff_full_jitter_bounds() -> None:
    p = RetryPolicy(max_attempts=5, initial=0.2, maximum=1.0, multiplier=2.0)
    assert p.backoff(1, rng=lambda lo, hi: hi) == pytest.approx(0.2)
    assert p.backoff(2, rng=lambda lo, hi: hi) == pytest.approx(0.4)
    assert p.backoff(5, rng=lambda lo, hi: hi) == pytest.approx(1.0)  # capped
    assert p.backoff(3, rng=lambda lo, hi: lo) == 0.0  # full jitter starts at 0


def test_retry_after_seconds_and_date() -> None:
    now = 1_700_000_000.0
    assert retry_hint({"retry-after": "3"}, 503, now) == 3.0
    assert retry_hint({"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"}, 503, now) == pytest.approx(
        10.0
    )
    assert retry_hint({"retry-after": "soon"}, 503, now) is None


def test_ratelimit_reset_only_counts_for_429() -> None:
    now = 1_700_000_000.0
    headers = {"x-ratelimit-reset": str(int(now + 42))}
    assert retry_hint(headers, 429, now) == pytest.approx(42.0)
    assert retry_hint(headers, 503, now) is None
    assert retry_hint({"x-ratelimit-reset": "1"}, 429, now) == 0.0


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e12"])
def test_non_finite_or_absurd_waits_are_refused(value: str) -> None:
    """The upstream is untrusted input: `nan` or `inf` is no wait at all, and neither is
    a wait past any quota window (a 24-hour window is the longest the upstream has)."""
    now = 1_700_000_000.0
    assert retry_hint({"retry-after": value}, 429, now) is None
    assert retry_hint({"x-ratelimit-reset": value}, 429, now) is None
