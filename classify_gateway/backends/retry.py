"""A backend's requests with the retries the error table allows, within the call's deadline.

Shared by the backends that call an upstream over HTTP (v1.2, v1.3): each attempt asks the
limiter for a slot first, reports to the metrics and the health recorder, and a failure is
retried only when its row says so, with backoff and full jitter (AIP-194), honouring the
upstream's Retry-After, and never past the deadline (less `DEADLINE_MARGIN`): a wait that
would outlive it is not started, the caller gets the error at once and when to retry.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from classify_gateway.backends.base import HealthRecorder
from classify_gateway.core.call import DEADLINE_MARGIN, CallContext
from classify_gateway.core.errors import GatewayError, own_error
from classify_gateway.quota.limiter import Limiter
from classify_gateway.telemetry.observability import Metrics

log = logging.getLogger("classify_gateway.backends.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (AIP-194; python-api-core's Retry)."""

    max_attempts: int
    initial: float
    maximum: float
    multiplier: float

    def backoff(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        """Delay before retry number `attempt` (1 = the first retry)."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        return rng(0.0, ceiling)


@dataclass(frozen=True)
class Retrying:
    """What every attempt of a backend reports to, and the policy between attempts.

    The loop itself is the caller's (`Exchange.call`: the attempt and its retries in one
    coroutine, since every stream waiting on the upstream holds each frame it awaits
    through); these are its steps before an attempt, after a success and after a failure.
    """

    policy: RetryPolicy
    limiter: Limiter
    metrics: Metrics
    health: HealthRecorder

    async def admit(self, quota: CallContext, *, first_page: bool, endpoint: str = "") -> None:
        """Before an attempt: refused past the deadline (less the margin), else a slot of
        the limiter (release it with `limiter.release()` once the attempt is over). `quota`
        is the call as the limiter should count it (its key and `endpoint` name the
        bucket)."""
        if quota.deadline - time.monotonic() - DEADLINE_MARGIN <= 0:
            raise own_error("DEADLINE_EXCEEDED")
        waited = await self.limiter.acquire(quota, first_page=first_page, endpoint=endpoint)
        if waited > 0:
            self.metrics.rate_limit_wait(waited)

    def succeeded(self, method: str, route: str, started: float) -> None:
        self.metrics.upstream_request_done(method, route, "200", time.monotonic() - started)
        self.health.record(True)

    def failed(
        self,
        err: GatewayError,
        number: int,
        method: str,
        route: str,
        started: float,
        deadline: float,
    ) -> float:
        """After attempt `number` (1 = the first) failed with `err`: how long to wait
        before the next, or the error to answer with, raised (not retryable, the attempts
        spent, or a wait that would outlive `deadline`)."""
        self.metrics.upstream_request_done(
            method,
            route,
            str(err.http_status) if err.http_status is not None else err.reason,
            time.monotonic() - started,
        )
        if err.reason != "DEADLINE_EXCEEDED":
            self.health.record_failure(err.code)
        if not err.retryable:
            raise err
        # From here on the gateway retries this failure itself; if it still reaches
        # the caller, the caller's own retry policy must not start over.
        err = err.replace(pushback=True)
        if number >= self.policy.max_attempts:
            raise err
        delay = max(self.policy.backoff(number), err.retry_after or 0.0)
        if time.monotonic() + delay >= deadline - DEADLINE_MARGIN:
            # Waiting would outlive the caller's deadline: answer now, and say when.
            if err.retry_delay is None and err.retry_after is not None:
                err = err.replace(retry_delay=err.retry_after)
            raise err
        self.metrics.upstream_retry(route, err.reason)
        log.info(
            "upstream retry",
            extra={
                "event": "upstream_retry",
                "method": method,
                "route": route,
                "attempt": number,
                "delay_s": round(delay, 3),
                "reason": err.reason,
            },
        )
        return delay
