"""The shared quota when Redis dies, stalls, comes back empty or runs out of memory.

Real redis-server processes (tests/support/redis_server.py) under the shared state a
gateway builds (`ResilientState` over `RedisState`), asked as the limiter asks it. What
an operator was promised (docs/operations.md, "When Redis fails" and "The daily budget
through a Redis loss"): `UPSTREAM_DAILY_QUOTA` holds for the fleet through an outage and
through a Redis that restarts empty; replicas that never reached Redis divide the rate by
`FALLBACK_REPLICAS`; and a Redis that refuses writes is down, not flapping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from classify_gateway.config import from_env
from classify_gateway.state.redis_conn import connect
from classify_gateway.state.shared_state import (
    QuotaAsk,
    RedisState,
    ResilientState,
    bucket_of,
)
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer

KEY = "tlk_CHAOS_QUOTA_KEY"
DAILY = 10
# A continuation may wait for its slot, so the rate never refuses here: only the budget.
ASK = QuotaAsk(bucket_of(KEY), 1000.0, 100, first_page=False, max_wait=2.0, daily_quota=DAILY)


def replica(url: str, **kw: Any) -> ResilientState:
    client = connect(from_env({}, api_key=KEY, redis_url=url, redis_timeout_ms=200))
    assert client is not None
    return ResilientState(RedisState(client), retry_after=0.05, **kw)


async def spend(state: ResilientState, tries: int) -> int:
    granted = 0
    for _ in range(tries):
        grant = await state.reserve(ASK)
        if grant.ok:
            await asyncio.sleep(grant.wait)
            granted += 1
        else:
            assert grant.reason == "daily", grant
    return granted


async def back_on_redis(state: ResilientState) -> None:
    """Until a write reaches Redis again (the fallback asks it at most every 50 ms)."""
    deadline = time.monotonic() + 10
    while True:
        await state.heartbeat("probe")  # a write: the first that Redis takes ends it
        if not state.falling_back:
            return
        assert time.monotonic() < deadline, "never back on Redis"
        await asyncio.sleep(0.06)


@pytest.mark.parametrize("outage", ["kill then restart empty", "SIGSTOP then SIGCONT"])
async def test_the_daily_budget_holds_for_the_fleet_through_an_outage(outage: str) -> None:
    """Once 10 went normally, 7 more in an outage and 10 more after Redis came back empty:
    27 in a day against a budget of 10."""
    server = RedisServer().start()
    state = replica(server.url)
    try:
        granted = await spend(state, 6)
        assert granted == 6
        if outage.startswith("kill"):
            server.kill()
        else:
            server.pause()
        in_outage = await spend(state, 10)
        assert state.falling_back
        assert in_outage == DAILY - 6, "its share of what was left, not a new day"
        if outage.startswith("kill"):
            server.start()  # same port, nothing saved: the day's count is gone
        else:
            server.resume()
        await back_on_redis(state)
        after = await spend(state, 10)
        assert granted + in_outage + after == DAILY
        # What was spent during the outage reached Redis, for every replica to see.
        other = replica(server.url)
        try:
            assert await spend(other, 3) == 0
        finally:
            await other.aclose()
    finally:
        await state.aclose()
        server.stop()


async def test_two_replicas_split_what_was_left() -> None:
    server = RedisServer().start()
    a, b = replica(server.url), replica(server.url)
    try:
        for r, name in ((a, "a"), (b, "b")):
            assert await r.heartbeat(name) >= 1
        await a.heartbeat("a")
        assert await spend(a, 3) == 3
        assert await spend(b, 1) == 1  # both have read the day's count
        await a.heartbeat("a")
        assert a.replicas == b.replicas == 2 or await b.heartbeat("b") == 2
        a.replicas = b.replicas = 2
        server.kill()
        # 6 left when they last looked (a saw 3, b saw 4): shares of 4 and 3.
        during = await spend(a, 10) + await spend(b, 10)
        assert 4 + during <= DAILY + 1, "at most one rounding beyond the budget"
        assert during >= DAILY - 4 - 1
    finally:
        await a.aclose()
        await b.aclose()
        server.stop()


async def test_replicas_that_never_reached_redis_divide_the_rate() -> None:
    """Wrong password or a Redis down at deploy time: each replica used to spend the whole
    fleet rate (2 replicas sent 30-45 requests/s against a setting of 20)."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    state = replica(dead, fallback_replicas=2)
    ask = QuotaAsk(bucket_of(KEY), 20.0, 1, first_page=False, max_wait=5.0)
    try:
        started = time.monotonic()
        granted = 0
        while time.monotonic() - started < 1.5:
            grant = await state.reserve(ask)
            assert grant.ok, grant
            await asyncio.sleep(grant.wait)
            granted += 1
        rate = granted / (time.monotonic() - started)
        assert state.falling_back
        assert rate <= 20 / 2 * 1.2, rate
    finally:
        await state.aclose()


async def test_redis_out_of_memory_is_down_not_flapping(redis: Any) -> None:
    """maxmemory with noeviction refuses writes and still answers reads: every read used
    to end the fallback and the next write to start it again, a log line each."""
    changes: list[bool] = []
    state = replica(redis.url, on_change=changes.append)
    admin = connect(from_env({}, api_key=KEY, redis_url=redis.url, redis_timeout_ms=2000))
    assert admin is not None
    try:
        await state.set("warm", b"x", 60)
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")
        for _ in range(10):
            # Each past the retry pause, so that Redis is asked every time.
            await state.set("k", b"v" * 100, 60)
            await asyncio.sleep(0.06)
            assert await state.get("warm") == b"x"  # reads still work
            await asyncio.sleep(0.06)
        assert changes == [True], changes
        await admin.config_set("maxmemory", "0")
        await back_on_redis(state)
        assert changes == [True, False]
    finally:
        await admin.aclose()
        await state.aclose()
