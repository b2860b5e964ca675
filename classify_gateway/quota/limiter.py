"""The upstream quota as a `Limiter`: shared by every replica, fair per caller, streams first.

`SharedLimiter` admits each upstream request through `SharedState.reserve` (one
round trip to Redis when it is configured, nothing but a function call when not):

- the quota is `UPSTREAM_RPS` / `UPSTREAM_BURST` (and `UPSTREAM_DAILY_QUOTA`) per
  upstream API key, for all replicas and workers together; an upstream that limits
  some endpoints on their own (v1.3: embed, videos) has a bucket per endpoint, each
  with its own rate (`Settings.endpoint_rates`), while the daily budget stays one per
  key, spent by every endpoint (it is the key's budget at the upstream);
- each calling service (classify_gateway/quota/callers.py) gets at least its weighted share
  while the quota is contended, and any share it leaves unused goes to the others;
- pages 2..N of an admitted stream reserve their slot ahead (and wait for it), while a
  first page only takes a slot that is free now, so under contention streams that
  started finish before new ones start;
- what the upstream says about its own quota (a 429 and its reset, or
  `X-Ratelimit-Remaining: 0` with `X-Ratelimit-Reset`) stops every replica until
  the reset, instead of each replica spending requests to discover the 429.

A request that cannot get a slot before its deadline ends with RESOURCE_EXHAUSTED
(GATEWAY_RATE_LIMITED, RetryInfo) as soon as that is known, having spent nothing.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from classify_gateway.config import Settings
from classify_gateway.core.call import DEADLINE_MARGIN, CallContext, within
from classify_gateway.core.errors import own_error
from classify_gateway.quota.callers import load_weights, share_of
from classify_gateway.state.shared_state import (
    QuotaAsk,
    SharedState,
    SizeHooks,
    bucket_of,
    build,
    endpoint_bucket,
)

log = logging.getLogger("classify_gateway.quota.limiter")

LEARN_CAP = 24 * 3600.0
HEARTBEAT_INTERVAL = 2.0  # seconds; replicas count as alive for shared_state.HEARTBEAT_TTL
UNLIMITED_RPS = 1_000_000.0  # UPSTREAM_RPS=0: only the daily budget and learned resets apply
MAX_CALLER_LABELS = 100  # distinct `caller` label values per process beyond the weights file

_MESSAGES = {
    "daily": "the daily upstream budget (CLASSIFY_GATEWAY_UPSTREAM_DAILY_QUOTA) is spent",
    "upstream": "the upstream's quota for this API key is spent until its reset",
}


class Limiter(Protocol):
    """What the upstream client needs from a rate limiter."""

    async def acquire(self, call: CallContext, *, first_page: bool, endpoint: str = "") -> float:
        """Wait for a slot for one upstream request of `call`; return the seconds waited.

        `call.deadline` is absolute (`time.monotonic()`): a wait that cannot end before
        it is not started, GATEWAY_RATE_LIMITED (with RetryInfo when the wait is known)
        is raised at once instead. `call.api_key` names the upstream quota the request
        spends. `first_page` is False for pages 2..N of a stream the gateway has already
        admitted, which a limiter may serve first (a caller half-way through its pages
        loses most if refused now). `endpoint` names an upstream endpoint category with
        a limit of its own ("" for none): its bucket and rate, for the same key.
        """
        ...

    def release(self) -> None:
        """The request that `acquire` admitted has its answer (or failed)."""
        ...

    async def learn(
        self, api_key: str, status: int, headers: Mapping[str, str], *, endpoint: str = ""
    ) -> float:
        """The upstream answered `status` with `headers` (called only for a 429 or for
        `X-Ratelimit-Remaining: 0`) to a request of `endpoint`; return the seconds every
        replica now waits for that bucket."""
        ...


class QuotaHooks(Protocol):
    """Observability of the quota (observability.Metrics implements it)."""

    def quota_wait(self, seconds: float) -> None: ...

    def quota_rejected(self, caller: str, reason: str) -> None: ...


class NoQuotaHooks:
    def quota_wait(self, seconds: float) -> None:
        return None

    def quota_rejected(self, caller: str, reason: str) -> None:
        return None


class SharedLimiter:
    """A Limiter over SharedState."""

    def __init__(
        self,
        state: SharedState,
        *,
        rps: float,
        burst: int,
        max_concurrency: int,
        daily_quota: int = 0,
        weights: Mapping[str, float] | None = None,
        hooks: QuotaHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        endpoints: Mapping[str, tuple[float, int]] | None = None,
    ) -> None:
        """`endpoints`: (rps, burst) per endpoint category with a bucket of its own; a
        category not listed gets a bucket of its own at `rps` / `burst`."""
        self.state = state
        self._rps, self._burst = _rate(rps, burst)
        self._endpoints = {name: _rate(*rate) for name, rate in (endpoints or {}).items()}
        self._daily = daily_quota
        self._weights = dict(weights or {})
        self._hooks: QuotaHooks = hooks or NoQuotaHooks()
        self._sem = asyncio.Semaphore(max_concurrency)
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[tuple[str, str], str] = {}
        self._labels: set[str] = set()

    def _label(self, caller: str) -> str:
        """The `caller` label: identities in the weights file and the first
        MAX_CALLER_LABELS others; "other" beyond (metadata:<key> is caller-supplied)."""
        if not caller:
            return "-"
        if caller in self._weights or caller in self._labels:
            return caller
        if len(self._labels) < MAX_CALLER_LABELS:
            self._labels.add(caller)
            return caller
        return "other"

    def _bucket(self, key: str, endpoint: str = "") -> str:
        """The bucket of `key` (and `endpoint`): an endpoint's bucket lives under the
        key's, so that both spend the key's one daily budget (shared_state.budget_of)."""
        memo = (key, endpoint)
        bucket = self._buckets.get(memo)
        if bucket is None:
            if len(self._buckets) > 1000:  # callers' own keys: keep the memo small
                self._buckets.clear()
            bucket = self._buckets[memo] = endpoint_bucket(bucket_of(key), endpoint)
        return bucket

    async def acquire(
        self, call: CallContext, *, first_page: bool = True, endpoint: str = ""
    ) -> float:
        """Wait for a slot; return the seconds waited, or raise GATEWAY_RATE_LIMITED."""
        deadline, key, caller = call.deadline, call.api_key, call.caller
        started = self._clock()
        bucket = self._bucket(key, endpoint)
        rps, burst = self._endpoints.get(endpoint, (self._rps, self._burst))
        member, weight = share_of(caller, self._weights)
        while True:
            now = self._clock()
            grant = await self.state.reserve(
                QuotaAsk(
                    bucket,
                    rps,
                    burst,
                    member,
                    weight,
                    first_page,
                    max(0.0, deadline - now - DEADLINE_MARGIN),
                    self._daily,
                )
            )
            if grant.ok:
                if grant.wait > 0:
                    await self._sleep(grant.wait)
                break
            now = self._clock()
            if now + grant.retry_in >= deadline - DEADLINE_MARGIN:
                self._hooks.quota_rejected(self._label(caller), grant.reason)
                raise own_error(
                    "GATEWAY_RATE_LIMITED",
                    _MESSAGES.get(grant.reason),
                    retry_delay=grant.retry_in,
                )
            # Ask again when a slot may be free; the jitter spreads the waiters of all
            # replicas so that they do not all ask in the same millisecond.
            await self._sleep(grant.retry_in * random.uniform(1.0, 1.2))
        if self._sem.locked():
            # Give up early enough that the refusal reaches the caller before its deadline.
            budget = deadline - DEADLINE_MARGIN - self._clock()
            try:
                await within(budget, self._sem.acquire())
            except TimeoutError:
                self._hooks.quota_rejected(self._label(caller), "concurrency")
                raise own_error(
                    "GATEWAY_RATE_LIMITED",
                    "the gateway's cap on concurrent upstream requests did not free a slot "
                    "within the call's deadline",
                ) from None
        else:
            await self._sem.acquire()
        waited = self._clock() - started
        self._hooks.quota_wait(waited)
        return waited

    def release(self) -> None:
        self._sem.release()

    async def learn(
        self,
        api_key: str,
        status: int,
        headers: Mapping[str, str],
        now_epoch: float | None = None,
        *,
        endpoint: str = "",
    ) -> float:
        """Tell every replica what the upstream said of its quota; return the block set.

        A 429 blocks the key until its Retry-After or X-Ratelimit-Reset; any answer with
        `X-Ratelimit-Remaining: 0` blocks it until X-Ratelimit-Reset. Other answers
        change nothing (the daily budget and the rate are ours to keep).
        """
        now_epoch = time.time() if now_epoch is None else now_epoch
        seconds = 0.0
        if status == 429:
            hint = upstream_wait(headers, status, now_epoch)
            seconds = 1.0 if hint is None else hint
        elif header_number(headers.get("x-ratelimit-remaining")) == 0:
            reset = header_number(headers.get("x-ratelimit-reset"))
            seconds = _wait(None if reset is None else reset - now_epoch) or 0.0
        if seconds > 0:
            await self.state.block(self._bucket(api_key, endpoint), seconds)
            log.warning(
                "upstream quota spent: every replica waits for its reset",
                extra={"event": "quota_learned", "status": status, "seconds": round(seconds, 3)},
            )
        return max(0.0, seconds)


def _rate(rps: float, burst: int) -> tuple[float, int]:
    """A bucket's (rps, burst) as the shared state takes them: rps 0 means no cap (only
    the daily budget and learned resets apply)."""
    return (rps, burst) if rps > 0 else (UNLIMITED_RPS, max(burst, 1000))


def header_number(raw: str | None) -> float | None:
    """A finite number from a quota header (Retry-After, X-Ratelimit-*), else None.

    The upstream is untrusted input: `nan` would pass every comparison as false (a
    `min(cap, nan)` is the cap, a 24-hour block of every replica) and `inf` is no time
    at all, so neither is a number here.
    """
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _wait(seconds: float | None) -> float | None:
    """A wait the upstream asked for, refused when it is past any quota window."""
    if seconds is None or seconds > LEARN_CAP:
        return None
    return seconds


def upstream_wait(headers: Mapping[str, str], status: int, now_epoch: float) -> float | None:
    """Seconds the upstream asks us to wait, from Retry-After or X-Ratelimit-Reset.

    Retry-After (seconds or an HTTP date) counts on any answer; X-Ratelimit-Reset is on
    every upstream answer (the end of the quota window), so it only counts for a 429,
    where it says when the quota comes back. Non-finite values and waits past any quota
    window are refused (None), never read as a long block.
    """
    raw = headers.get("retry-after")
    if raw:
        raw = raw.strip()
        seconds = header_number(raw)
        if seconds is None:
            try:
                seconds = email.utils.parsedate_to_datetime(raw).timestamp() - now_epoch
            except (TypeError, ValueError, OverflowError):
                seconds = None
        wait = _wait(seconds)
        if wait is not None:
            return max(0.0, wait)
    if status == 429:
        reset = header_number(headers.get("x-ratelimit-reset"))
        wait = _wait(None if reset is None else reset - now_epoch)
        if wait is not None:
            return max(0.0, wait)
    return None


class QuotaObserver(QuotaHooks, SizeHooks, Protocol):
    """QuotaHooks plus the Redis fallback signal and the in-process store's size
    (observability.Metrics)."""

    def redis_fallback(self, active: bool) -> None: ...


def build_limiter(
    settings: Settings, hooks: QuotaObserver | None = None
) -> tuple[SharedLimiter, SharedState]:
    """The limiter and shared state of one gateway process, from Settings.

    In-process state unless CLASSIFY_GATEWAY_REDIS_URL is set; the caller weights file
    is read here (a bad file stops start-up with ConfigError naming the setting).
    """
    on_change = hooks.redis_fallback if hooks is not None else None
    state = build(settings, on_change=on_change, hooks=hooks)
    limiter = SharedLimiter(
        state,
        rps=settings.upstream_rps,
        burst=settings.upstream_burst,
        max_concurrency=settings.upstream_max_concurrency,
        daily_quota=settings.upstream_daily_quota,
        weights=load_weights(settings.caller_weights),
        hooks=hooks,
        endpoints=settings.endpoint_rates,
    )
    return limiter, state


def make_limiter(settings: Settings, hooks: QuotaObserver | None = None) -> Limiter:
    """The gateway's limiter over the state the settings ask for (its `state`; the
    gateway closes it at shutdown)."""
    return build_limiter(settings, hooks)[0]


async def heartbeat(state: SharedState, interval: float = HEARTBEAT_INTERVAL) -> None:
    """Tell the other replicas this one is alive, until cancelled.

    The count of live replicas is what each divides UPSTREAM_RPS by when Redis fails.
    """
    member = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    while True:
        n = await state.heartbeat(member)
        log.debug("heartbeat", extra={"event": "heartbeat", "replicas": n})
        await asyncio.sleep(interval)
