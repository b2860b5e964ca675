"""Retry policy, retry hints and the rate limiter, without a network."""

from __future__ import annotations

import asyncio
import time

import pytest

from classify_gateway.backends.v1_2.client import RetryPolicy
from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError
from classify_gateway.quota.limiter import upstream_wait as retry_hint
from classify_gateway.quota.limits import RateLimiter


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


def call(deadline: float) -> CallContext:
    return CallContext("key", deadline)


class FakeTime:
    """A clock whose sleeps return at once and move it on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_rate_limiter_spaces_requests() -> None:
    t = FakeTime()
    limiter = RateLimiter(max_concurrency=10, rps=20.0, burst=1, clock=t.clock, sleep=t.sleep)
    waited = []
    for _ in range(5):
        waited.append(await limiter.acquire(call(t.now + 5), first_page=True))
        limiter.release()
    # Five requests at 20/s: the first goes at once, each next one 50 ms after the last.
    assert waited == pytest.approx([0.0, 0.05, 0.05, 0.05, 0.05])
    assert t.now - 1000.0 == pytest.approx(0.2)
    assert limiter.waits == 4


async def test_rate_limiter_lets_a_burst_through() -> None:
    t = FakeTime()
    limiter = RateLimiter(max_concurrency=10, rps=1.0, burst=3, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        assert await limiter.acquire(call(t.now + 5), first_page=True) == 0.0
        limiter.release()
    assert await limiter.acquire(call(t.now + 5), first_page=True) == pytest.approx(1.0)


async def test_rate_limiter_refuses_at_once_when_deadline_cannot_be_met() -> None:
    t = FakeTime()
    limiter = RateLimiter(max_concurrency=10, rps=1.0, burst=1, clock=t.clock, sleep=t.sleep)
    await limiter.acquire(call(t.now + 5), first_page=True)
    limiter.release()
    with pytest.raises(GatewayError) as info:
        await limiter.acquire(call(t.now + 0.2), first_page=False)
    assert t.slept == []  # at once, not after the deadline
    assert info.value.code.name == "RESOURCE_EXHAUSTED"
    assert info.value.reason == "GATEWAY_RATE_LIMITED"
    assert info.value.retry_delay == pytest.approx(1.0)


async def test_concurrency_cap_waits_then_refuses() -> None:
    limiter = RateLimiter(max_concurrency=1, rps=0, burst=1)
    await limiter.acquire(call(time.monotonic() + 5))
    waiter = asyncio.create_task(limiter.acquire(call(time.monotonic() + 5), first_page=False))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # queued, not failed
    limiter.release()
    assert await asyncio.wait_for(waiter, 1) > 0  # it waited, and says so
    limiter.release()
    await limiter.acquire(call(time.monotonic() + 5))
    with pytest.raises(GatewayError) as info:
        await limiter.acquire(call(time.monotonic() + 0.05))
    assert info.value.code.name == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e12"])
def test_non_finite_or_absurd_waits_are_refused(value: str) -> None:
    """The upstream is untrusted input: `nan` or `inf` is no wait at all, and neither is
    a wait past any quota window (a 24-hour window is the longest the upstream has)."""
    now = 1_700_000_000.0
    assert retry_hint({"retry-after": value}, 429, now) is None
    assert retry_hint({"x-ratelimit-reset": value}, 429, now) is None
