"""The one httpx client toward the upstream: pooling, retries, rate limits, deadlines.

Everything here works against an absolute deadline (a `time.monotonic()` value)
that comes from the caller's gRPC deadline, so that each attempt, each backoff and
each wait for the rate limiter fits inside what the caller is still willing to
wait, and nothing runs on after the caller has gone (cancelling the awaiting task
aborts the in-flight HTTP request: httpx closes the connection).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import orjson

from classify_gateway.aiohttp_transport import AiohttpTransport
from classify_gateway.config import Settings
from classify_gateway.errors import GatewayError, from_upstream, own_error, row_for_status
from classify_gateway.tracing import instrument_httpx_client

log = logging.getLogger("classify_gateway.upstream")

# Leave this much of the caller's deadline for sending the answer back: the status (with
# resume_page_token) must reach the caller before the caller's own timer fires; with 10 ms
# it often did not under load (tests/reliability/test_fault_matrix.py).
DEADLINE_MARGIN = 0.1
RETRY_AFTER_CAP = 24 * 3600.0
_UPSTREAM_DOWN_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})


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


def retry_hint(headers: Mapping[str, str], status: int, now_epoch: float) -> float | None:
    """Seconds the upstream asks us to wait, from Retry-After or X-Ratelimit-Reset.

    X-Ratelimit-Reset is on every upstream response (the end of the quota window),
    so it only counts for a 429, where it says when the quota comes back.
    """
    raw = headers.get("retry-after")
    if raw:
        raw = raw.strip()
        try:
            return min(RETRY_AFTER_CAP, max(0.0, float(raw)))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
                return min(RETRY_AFTER_CAP, max(0.0, when.timestamp() - now_epoch))
            except (TypeError, ValueError):
                pass
    if status == 429:
        reset = headers.get("x-ratelimit-reset")
        if reset:
            try:
                return min(RETRY_AFTER_CAP, max(0.0, float(reset) - now_epoch))
            except ValueError:
                return None
    return None


class RateLimiter:
    """Process-wide cap on concurrent upstream requests and on requests per second.

    The per-second cap is a GCRA token bucket with reservations: a caller learns at
    once how long it must wait for its slot, so one whose deadline cannot be met
    gets RESOURCE_EXHAUSTED immediately instead of DEADLINE_EXCEEDED later.
    """

    def __init__(self, max_concurrency: int, rps: float, burst: int) -> None:
        self._sem = asyncio.Semaphore(max_concurrency)
        self._interval = 1.0 / rps if rps > 0 else 0.0
        self._tolerance = (burst - 1) * self._interval
        self._tat = 0.0  # theoretical arrival time of the next request
        self.waits = 0

    async def acquire(
        self, deadline: float, on_wait: Callable[[float], None] | None = None
    ) -> None:
        now = time.monotonic()
        if self._interval:
            tat = max(self._tat, now)
            wait = tat - self._tolerance - now
            if wait > 0 and now + wait > deadline:
                raise own_error("GATEWAY_RATE_LIMITED", retry_delay=wait)
            self._tat = tat + self._interval
            if wait > 0:
                self.waits += 1
                if on_wait:
                    on_wait(wait)
                await asyncio.sleep(wait)
        if self._sem.locked():
            if on_wait:
                on_wait(0.0)
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    await self._sem.acquire()
            except TimeoutError:
                raise own_error(
                    "GATEWAY_RATE_LIMITED",
                    "the gateway's cap on concurrent upstream requests did not free a slot "
                    "within the call's deadline",
                ) from None
        else:
            await self._sem.acquire()

    def release(self) -> None:
        self._sem.release()


def _loop_time(deadline: float) -> float:
    """Convert a monotonic deadline to the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())


class UpstreamHooks:
    """Callbacks for observability; the default does nothing."""

    def request_done(self, method: str, route: str, status: str, seconds: float) -> None:
        return None

    def retry(self, method: str, route: str, attempt: int, delay: float, why: str) -> None:
        return None

    def rate_limit_wait(self, seconds: float) -> None:
        return None

    def outcome(self, ok: bool) -> None:
        return None


class UpstreamClient:
    """Calls the upstream classify API; returns parsed JSON or raises GatewayError."""

    def __init__(
        self,
        settings: Settings,
        hooks: UpstreamHooks | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._hooks = hooks or UpstreamHooks()
        self._policy = RetryPolicy(
            settings.retry_max_attempts,
            settings.retry_initial_backoff,
            settings.retry_max_backoff,
            settings.retry_multiplier,
        )
        self._limiter = RateLimiter(
            settings.upstream_max_concurrency, settings.upstream_rps, settings.upstream_burst
        )
        limits = httpx.Limits(
            max_connections=settings.upstream_max_connections, keepalive_expiry=30.0
        )
        self._client = httpx.AsyncClient(
            base_url=settings.upstream_base,
            headers={"accept": "application/json", "user-agent": "classify-gateway/0.1"},
            limits=limits,
            timeout=httpx.Timeout(
                settings.upstream_timeout, connect=settings.upstream_connect_timeout
            ),
            transport=transport or AiohttpTransport(limits),
            follow_redirects=False,
        )
        instrument_httpx_client(self._client)

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    async def aclose(self) -> None:
        await self._client.aclose()

    async def probe(self, api_key: str) -> bool:
        """One cheap request (`GET /indexes?page_limit=1`, not the classify quota) that
        tells whether the upstream answers at all; any answer below 500 counts as alive."""
        started = time.monotonic()
        try:
            response = await self._client.get(
                "/indexes",
                params={"page_limit": 1},
                headers={"x-api-key": api_key} if api_key else None,
                timeout=min(5.0, self._settings.upstream_timeout),
            )
            alive = response.status_code < 500
            status = str(response.status_code)
        except httpx.HTTPError as exc:
            alive, status = False, type(exc).__name__
        self._hooks.request_done(
            "GET", "GET /indexes (health probe)", status, time.monotonic() - started
        )
        self._hooks.outcome(alive)
        return alive

    async def post(
        self,
        path: str,
        body: dict[str, Any],
        deadline: float,
        api_key: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Any:
        content = orjson.dumps(body)
        return await self._call(
            "POST", path, "POST " + path, content, deadline, api_key, extra_headers
        )

    async def get_page(
        self,
        path: str,
        deadline: float,
        api_key: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            return await self._call(
                "GET", path, "GET /classify/{page_token}", None, deadline, api_key, extra_headers
            )
        except GatewayError as err:
            if err.metadata.get("http_status") == "400":
                # The only input of a page request is its token: name it, and say why.
                err.token_refused = True
                err.violations = (
                    (
                        "page_token",
                        "the upstream refused this page token: it expired (tokens live about "
                        "5 minutes, see page_info.page_expired_at) or is unknown; start the "
                        "classification again",
                    ),
                )
            raise

    async def _call(
        self,
        method: str,
        path: str,
        route: str,
        content: bytes | None,
        deadline: float,
        api_key: str,
        extra_headers: Mapping[str, str] | None,
    ) -> Any:
        headers = {"x-api-key": api_key}
        if content is not None:
            headers["content-type"] = "application/json"
        if extra_headers:
            headers.update(extra_headers)
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic() - DEADLINE_MARGIN
            if remaining <= 0:
                raise own_error("DEADLINE_EXCEEDED")
            await self._limiter.acquire(deadline, self._hooks.rate_limit_wait)
            started = time.monotonic()
            try:
                result, failure, hint = await self._attempt(
                    method, path, route, content, headers, deadline
                )
            finally:
                self._limiter.release()
            elapsed = time.monotonic() - started
            if failure is None:
                self._hooks.request_done(method, route, "200", elapsed)
                self._hooks.outcome(True)
                return result
            self._hooks.request_done(
                method, route, failure.metadata.get("http_status", failure.reason), elapsed
            )
            retryable = self._retryable(failure)
            if failure.reason != "DEADLINE_EXCEEDED":
                # An answer in the 4xx range still proves the upstream is alive.
                self._hooks.outcome(failure.code not in _UPSTREAM_DOWN_CODES)
            if not retryable:
                raise failure
            # From here on the gateway retries this failure itself; if it still reaches
            # the caller, the caller's own retry policy must not start over.
            failure.pushback = True
            if attempt >= self._policy.max_attempts:
                raise failure
            delay = max(self._policy.backoff(attempt), hint or 0.0)
            if time.monotonic() + delay >= deadline - DEADLINE_MARGIN:
                # Waiting would outlive the caller's deadline: answer now, and say when.
                if failure.retry_delay is None and hint is not None:
                    failure.retry_delay = hint
                raise failure
            self._hooks.retry(method, route, attempt, delay, failure.reason)
            log.info(
                "upstream retry",
                extra={
                    "event": "upstream_retry",
                    "method": method,
                    "route": route,
                    "attempt": attempt,
                    "delay_s": round(delay, 3),
                    "reason": failure.reason,
                },
            )
            await asyncio.sleep(delay)

    @staticmethod
    def _retryable(failure: GatewayError) -> bool:
        status = failure.metadata.get("http_status")
        if status is not None:
            return row_for_status(int(status)).retryable
        return failure.reason in {
            "UPSTREAM_UNREACHABLE",
            "UPSTREAM_TIMEOUT",
            "UPSTREAM_MALFORMED_RESPONSE",
        }

    async def _attempt(
        self,
        method: str,
        path: str,
        route: str,
        content: bytes | None,
        headers: dict[str, str],
        deadline: float,
    ) -> tuple[Any, GatewayError | None, float | None]:
        """One HTTP exchange: (parsed body, None, None) or (None, failure, retry hint)."""
        budget = deadline - time.monotonic() - DEADLINE_MARGIN
        per_attempt = min(self._settings.upstream_timeout, budget)
        caller_bound = per_attempt < self._settings.upstream_timeout
        timeout = httpx.Timeout(
            per_attempt, connect=min(per_attempt, self._settings.upstream_connect_timeout)
        )
        try:
            # A hard cap as well: httpx timeouts are per read, a trickled body is not.
            async with asyncio.timeout(per_attempt):
                response = await self._client.request(
                    method, path, content=content, headers=headers, timeout=timeout
                )
        except (TimeoutError, httpx.TimeoutException):
            if caller_bound:
                return None, own_error("DEADLINE_EXCEEDED"), None
            return None, own_error("UPSTREAM_TIMEOUT"), None
        except httpx.TransportError as exc:
            return (
                None,
                own_error(
                    "UPSTREAM_UNREACHABLE",
                    f"the upstream could not be reached: {type(exc).__name__}",
                ),
                None,
            )
        status = response.status_code
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if 200 <= status < 300:
            if body is None:
                return (
                    None,
                    own_error(
                        "UPSTREAM_MALFORMED_RESPONSE",
                        f"the upstream answered HTTP {status} with a body that is not valid JSON "
                        f"({len(response.content)} bytes)",
                    ),
                    None,
                )
            return body, None, None
        hint = retry_hint(response.headers, status, time.time())
        err_body = body if isinstance(body, dict) else None
        return (
            None,
            from_upstream(status, err_body, retry_delay=hint if status == 429 else None),
            hint,
        )
