"""A backend's requests with the retries the error table allows, within the call's deadline.

Shared by the backends that call an upstream over HTTP (v1.2, v1.3): each attempt asks the
limiter for a slot first, reports to the metrics and the health recorder, and a failure is
retried only when its row says so, with backoff and full jitter (AIP-194), honouring the
upstream's Retry-After, and never past the deadline (less `DEADLINE_MARGIN`): a wait that
would outlive it is not started, the caller gets the error at once and when to retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVarTuple

from classify_gateway.backends.base import HealthRecorder
from classify_gateway.core.call import DEADLINE_MARGIN, CallContext
from classify_gateway.core.errors import GatewayError, own_error
from classify_gateway.quota.limiter import Limiter
from classify_gateway.telemetry.observability import Metrics

log = logging.getLogger("classify_gateway.backends.retry")
Ts = TypeVarTuple("Ts")


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
    """What every attempt of a backend reports to, and the policy between attempts."""

    policy: RetryPolicy
    limiter: Limiter
    metrics: Metrics
    health: HealthRecorder

    async def run(
        self,
        method: str,
        route: str,
        quota: CallContext,
        attempt: Callable[[*Ts], Awaitable[Any]],
        *args: *Ts,
        first_page: bool,
        endpoint: str = "",
    ) -> Any:
        """`attempt(*args)`'s answer, after the retries the error table allows. `quota` is
        the call as the limiter should count it (its key and `endpoint` name the bucket)
        and its deadline bounds every attempt and wait. (The attempt's arguments apart
        rather than in a closure or a partial: every stream waiting on the upstream holds
        them.)"""
        deadline = quota.deadline
        number = 0
        while True:
            number += 1
            if deadline - time.monotonic() - DEADLINE_MARGIN <= 0:
                raise own_error("DEADLINE_EXCEEDED")
            waited = await self.limiter.acquire(quota, first_page=first_page, endpoint=endpoint)
            if waited > 0:
                self.metrics.rate_limit_wait(waited)
            started = time.monotonic()
            try:
                body = await attempt(*args)
            except GatewayError as failure:
                err = failure
            else:
                self.metrics.upstream_request_done(method, route, "200", time.monotonic() - started)
                self.health.record(True)
                return body
            finally:
                self.limiter.release()
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
            await asyncio.sleep(delay)
