"""Retry policy, retry hints and the rate limiter, without a network."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import pytest

from classify_gateway.errors import GatewayError
from classify_gateway.upstream import RateLimiter, RetryPolicy, retry_hint


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


class FakeClock:
    """time.monotonic and asyncio.sleep for the limiter's module: a sleep moves the clock
    at once, so that a test checks the waits the limiter asks for, not the machine's speed."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float, result: Any = None) -> Any:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        return result


class _Patched:
    """A module whose attributes are the real module's, but for the ones given."""

    def __init__(self, real: Any, **override: Any) -> None:
        self._real, self._override = real, override

    def __getattr__(self, name: str) -> Any:
        return self._override.get(name, getattr(self._real, name))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    module = sys.modules[RateLimiter.__module__]
    monkeypatch.setattr(module, "time", _Patched(time, monotonic=fake.monotonic))
    monkeypatch.setattr(module, "asyncio", _Patched(asyncio, sleep=fake.sleep))
    return fake


async def test_rate_limiter_spaces_requests(clock: FakeClock) -> None:
    limiter = RateLimiter(max_concurrency=10, rps=20.0, burst=1)
    start = clock.now
    for _ in range(5):
        await limiter.acquire(clock.now + 5)
        limiter.release()
    # Five requests at 20/s: the first at once, each next one interval (50 ms) later.
    assert clock.slept == pytest.approx([0.05] * 4)
    assert clock.now - start == pytest.approx(0.2)
    assert limiter.waits == 4


async def test_rate_limiter_refuses_at_once_when_deadline_cannot_be_met(clock: FakeClock) -> None:
    limiter = RateLimiter(max_concurrency=10, rps=1.0, burst=1)
    await limiter.acquire(clock.now + 5)
    limiter.release()
    with pytest.raises(GatewayError) as info:
        await limiter.acquire(clock.now + 0.2)
    assert clock.slept == []  # at once, not after the deadline
    assert info.value.code.name == "RESOURCE_EXHAUSTED"
    assert info.value.reason == "GATEWAY_RATE_LIMITED"
    assert info.value.retry_delay == pytest.approx(1.0)  # the next slot, one second on


async def test_concurrency_cap_waits_then_refuses() -> None:
    limiter = RateLimiter(max_concurrency=1, rps=0, burst=1)
    await limiter.acquire(time.monotonic() + 5)
    waiter = asyncio.create_task(limiter.acquire(time.monotonic() + 5))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # queued, not failed
    limiter.release()
    await asyncio.wait_for(waiter, 1)
    with pytest.raises(GatewayError) as info:
        await limiter.acquire(time.monotonic() + 0.05)
    assert info.value.code.name == "RESOURCE_EXHAUSTED"
