"""Admission of upstream requests: the `Limiter` interface and the simple in-process limiter.

Every upstream request acquires a slot from a `Limiter` before it is sent and
releases it when its answer is in, and tells it what the upstream said of its quota
(`learn`). The gateway's limiter is classify_gateway/quota/limiter.py's `SharedLimiter`
(shared by every replica through Redis, or in-process; fair per caller; pages 2..N
first), built by `make_limiter`. `RateLimiter` here is the earlier process-wide
GCRA, first come first served: kept as the baseline that docs/benchmarks.md compares
against ("Quota spent on streams that fail").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from classify_gateway.config import Settings
from classify_gateway.core.call import DEADLINE_MARGIN, CallContext
from classify_gateway.core.errors import own_error

if TYPE_CHECKING:
    from classify_gateway.quota.limiter import QuotaObserver


class Limiter(Protocol):
    """What the upstream client needs from a rate limiter."""

    async def acquire(self, call: CallContext, *, first_page: bool) -> float:
        """Wait for a slot for one upstream request of `call`; return the seconds waited.

        `call.deadline` is absolute (`time.monotonic()`): a wait that cannot end before
        it is not started, GATEWAY_RATE_LIMITED (with RetryInfo when the wait is known)
        is raised at once instead. `call.api_key` names the upstream quota the request
        spends. `first_page` is False for pages 2..N of a stream the gateway has already
        admitted, which a limiter may serve first (a caller half-way through its pages
        loses most if refused now).
        """
        ...

    def release(self) -> None:
        """The request that `acquire` admitted has its answer (or failed)."""
        ...

    async def learn(self, api_key: str, status: int, headers: Mapping[str, str]) -> float:
        """The upstream answered `status` with `headers` (called only for a 429 or for
        `X-Ratelimit-Remaining: 0`); return the seconds every replica now waits."""
        ...


class RateLimiter:
    """Process-wide cap on concurrent upstream requests and on requests per second.

    The per-second cap is a GCRA token bucket with reservations: a caller learns at
    once how long it must wait for its slot, so one whose deadline cannot be met
    gets RESOURCE_EXHAUSTED immediately instead of DEADLINE_EXCEEDED later. It does
    not (yet) prefer later pages over first pages.
    """

    def __init__(
        self,
        max_concurrency: int,
        rps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sem = asyncio.Semaphore(max_concurrency)
        self._interval = 1.0 / rps if rps > 0 else 0.0
        self._tolerance = (burst - 1) * self._interval
        self._tat = 0.0  # theoretical arrival time of the next request
        self._clock = clock
        self._sleep = sleep
        self.waits = 0

    async def acquire(self, call: CallContext, *, first_page: bool = True) -> float:
        deadline = call.deadline
        now = self._clock()
        waited = 0.0
        # Give up early enough that the refusal reaches the caller before its deadline.
        deadline -= DEADLINE_MARGIN
        if self._interval:
            tat = max(self._tat, now)
            wait = tat - self._tolerance - now
            if wait > 0 and now + wait > deadline:
                raise own_error("GATEWAY_RATE_LIMITED", retry_delay=wait)
            self._tat = tat + self._interval
            if wait > 0:
                self.waits += 1
                await self._sleep(wait)
                waited = wait
        if not self._sem.locked():
            await self._sem.acquire()
            return waited
        queued = self._clock()
        if deadline <= queued:
            raise own_error(
                "GATEWAY_RATE_LIMITED",
                "the gateway's cap on concurrent upstream requests has no free slot and the "
                "call's deadline leaves no time to wait for one",
            )
        try:
            async with asyncio.timeout(deadline - queued):
                await self._sem.acquire()
        except TimeoutError:
            raise own_error(
                "GATEWAY_RATE_LIMITED",
                "the gateway's cap on concurrent upstream requests did not free a slot "
                "within the call's deadline",
            ) from None
        return waited + (self._clock() - queued)

    def release(self) -> None:
        self._sem.release()

    async def learn(self, api_key: str, status: int, headers: Mapping[str, str]) -> float:
        return 0.0  # the retry policy's Retry-After handling is all it does


def make_limiter(settings: Settings, hooks: QuotaObserver | None = None) -> Limiter:
    """The gateway's limiter (quota.SharedLimiter) over the state the settings ask for.

    The shared state behind it (in-process, or Redis with an in-process fallback) is
    the limiter's `state`; the gateway closes it at shutdown.
    """
    from classify_gateway.quota.limiter import build_limiter

    return build_limiter(settings, hooks)[0]
