"""SharedState: the same behaviour from the in-process backend and from a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from classify_gateway.config import from_env, secrets_of
from classify_gateway.state.redis_conn import connect
from classify_gateway.state.shared_state import (
    InProcessState,
    QuotaAsk,
    RedisState,
    ResilientState,
    SharedState,
    bucket_of,
    build,
    endpoint_bucket,
)
from tests.support.redis_server import redis_server

KEY = "tlk_SHARED_STATE_KEY_123"


def _settings(**kw: Any) -> Any:
    return from_env({}, api_key=KEY, **kw)


@pytest.fixture(params=["in-process", "redis", "cluster"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[SharedState]:
    """Each backend; "cluster" is a real 3-master Redis Cluster, where a script whose keys
    span two hash slots fails (CROSSSLOT) instead of passing as on one server."""
    if request.param == "in-process":
        yield InProcessState()
        return
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        url = cluster.url
    else:
        url = request.getfixturevalue("redis").url
    client = connect(_settings(redis_url=url, redis_timeout_ms=2000))
    assert client is not None
    s = RedisState(client)
    try:
        yield s
    finally:
        await s.aclose()


def ask(**kw: Any) -> QuotaAsk:
    base: dict[str, Any] = {"bucket": bucket_of(KEY), "rps": 2.0, "burst": 3}
    return QuotaAsk(**{**base, **kw})


async def test_key_value_and_leases(state: SharedState) -> None:
    assert await state.get("a") is None
    await state.set("a", b"1", ttl=5)
    assert await state.get("a") == b"1"
    assert await state.add("lease", b"me", ttl=5) is True
    assert await state.add("lease", b"you", ttl=5) is False
    assert await state.get("lease") == b"me"
    await state.delete("lease")
    assert await state.add("lease", b"you", ttl=0.2) is True
    await asyncio.sleep(0.3)
    assert await state.get("lease") is None


async def test_first_pages_paced_continuations_burst_and_reserve(state: SharedState) -> None:
    first = await state.reserve(ask())
    assert first.ok and first.wait == 0
    refused = await state.reserve(ask())
    # A first page never queues and never uses the burst: it is told when to ask again.
    assert not refused.ok and refused.reason == "rate" and 0 < refused.retry_in <= 0.5
    # Pages 2..N of admitted streams use the burst ...
    burst = [await state.reserve(ask(first_page=False)) for _ in range(2)]
    assert all(g.ok and g.wait == 0 for g in burst)
    # ... then reserve the next slot and learn their wait,
    cont = await state.reserve(ask(first_page=False, max_wait=5))
    assert cont.ok and 0.3 < cont.wait <= 0.5
    # unless the wait would outlive their deadline.
    late = await state.reserve(ask(first_page=False, max_wait=0.1))
    assert not late.ok


async def test_continuations_go_before_new_first_pages(state: SharedState) -> None:
    assert (await state.reserve(ask())).ok
    conts = [await state.reserve(ask(first_page=False, max_wait=5)) for _ in range(4)]
    assert all(c.ok for c in conts)
    await asyncio.sleep(0.55)  # slots came back, but they are promised to continuations
    assert not (await state.reserve(ask())).ok


async def test_a_caller_over_its_share_leaves_room_for_the_other(state: SharedState) -> None:
    quiet = {"caller": "quiet", "rps": 5, "burst": 4}
    busy = {"caller": "busy", "rps": 5, "burst": 4}
    assert (await state.reserve(ask(**quiet))).ok  # both callers are active now
    taken = [await state.reserve(ask(first_page=False, **busy)) for _ in range(3)]
    # Half the rate each: "busy" gets two slots of the burst, then it is over its share
    # although the quota still has room ...
    assert [g.ok for g in taken] == [True, True, False]
    assert taken[2].reason == "share"
    # ... which goes to the caller within its share.
    assert (await state.reserve(ask(first_page=False, **quiet))).ok


async def test_a_caller_alone_may_use_everything(state: SharedState) -> None:
    alone = {"caller": "alone", "rps": 5, "burst": 4}
    grants = [await state.reserve(ask(**alone))]
    grants += [await state.reserve(ask(first_page=False, **alone)) for _ in range(3)]
    assert all(g.ok and g.wait == 0 for g in grants)


async def test_upstream_block_stops_every_request(state: SharedState) -> None:
    await state.block(bucket_of(KEY), 0.3)
    g = await state.reserve(ask(first_page=False, max_wait=10))
    assert not g.ok and g.reason == "upstream" and 0.1 < g.retry_in <= 0.3
    await asyncio.sleep(0.35)
    assert (await state.reserve(ask())).ok


async def test_daily_quota(state: SharedState) -> None:
    for _ in range(2):
        assert (await state.reserve(ask(daily_quota=2, rps=100, burst=10, first_page=False))).ok
    g = await state.reserve(ask(daily_quota=2, rps=100, burst=10, first_page=False))
    assert not g.ok and g.reason == "daily" and 0 < g.retry_in <= 86400


async def test_endpoint_buckets_spend_one_daily_budget_at_their_own_rates(
    state: SharedState,
) -> None:
    """v1.3's endpoint buckets (embed, videos) each have a rate, but the key has one daily
    budget at the upstream: 3 a day is 3 in all, not 3 per endpoint (before: 6). On the
    cluster the day counter and both buckets' keys must share a slot (no CROSSSLOT)."""
    embed, videos = (
        endpoint_bucket(bucket_of(KEY), "embed"),
        endpoint_bucket(bucket_of(KEY), "videos"),
    )
    daily = {"daily_quota": 3, "first_page": False}
    # The rate is per endpoint: embed's burst of 1 is spent, videos' is not.
    assert (await state.reserve(ask(bucket=embed, rps=0.5, burst=1, **daily))).ok
    assert not (await state.reserve(ask(bucket=embed, rps=0.5, burst=1, **daily))).ok
    assert (await state.reserve(ask(bucket=videos, rps=100, burst=10, **daily))).ok
    # The day is the key's: the key's own bucket (v1.2) counts in it too.
    assert (await state.reserve(ask(rps=100, burst=10, **daily))).ok
    for bucket in (videos, bucket_of(KEY)):
        g = await state.reserve(ask(bucket=bucket, rps=100, burst=10, **daily))
        assert not g.ok and g.reason == "daily" and g.daily_used == 3, g


async def test_heartbeat_counts_live_members(state: SharedState) -> None:
    assert await state.heartbeat("a", ttl=0.3) == 1
    assert await state.heartbeat("b", ttl=0.3) == 2
    await asyncio.sleep(0.35)
    assert await state.heartbeat("b", ttl=0.3) == 1


async def test_redis_never_holds_the_api_key(redis: Any) -> None:
    client = connect(_settings(redis_url=redis.url, redis_timeout_ms=2000))
    assert client is not None
    s = RedisState(client)
    await s.reserve(ask(caller="svc", daily_quota=5))
    await s.block(bucket_of(KEY), 1)
    keys = [k.decode() for k in await client.keys("*")]
    assert keys and not any(KEY in k for k in keys)
    for k in keys:
        if await client.type(k) == b"string":
            assert KEY.encode() not in (await client.get(k) or b"")
    await s.aclose()


async def test_password_from_file_and_never_in_the_log_view(tmp_path: Path) -> None:
    secret = "s3cret-redis-pass"
    pw = tmp_path / "pw"
    pw.write_text(secret + "\n")
    with redis_server(password=secret) as server:
        settings = from_env(
            {
                "CLASSIFY_GATEWAY_API_KEY": KEY,
                "CLASSIFY_GATEWAY_REDIS_URL": server.url,
                "CLASSIFY_GATEWAY_REDIS_PASSWORD_FILE": str(pw),
                "CLASSIFY_GATEWAY_REDIS_TIMEOUT_MS": "2000",
            }
        )
        assert settings.redis_password == secret
        assert secret not in repr(settings) and secret not in str(settings.redacted())
        client = connect(settings)
        assert client is not None
        assert await client.ping()
        await client.aclose()
        # The same password in the URL works, and is redacted for the log.
        in_url = server.url.replace("redis://", f"redis://:{secret}@")
        s2 = _settings(redis_url=in_url, redis_timeout_ms=2000)
        assert secret not in str(s2.redacted()) and "<redacted>" in s2.redacted()["redis_url"]
        assert secret in secrets_of(s2)
        client = connect(s2)
        assert client is not None
        assert await client.ping()
        await client.aclose()
        # A wrong password is refused by the server, not ignored.
        bad = connect(_settings(redis_url=server.url, redis_timeout_ms=2000))
        assert bad is not None
        with pytest.raises(redis.exceptions.AuthenticationError):
            await bad.ping()
        await bad.aclose()


def test_unset_url_means_in_process() -> None:
    assert connect(_settings()) is None
    assert isinstance(build(_settings()), InProcessState)


async def test_fallback_at_once_and_back_when_redis_answers(redis: Any) -> None:
    changes: list[bool] = []
    settings = _settings(redis_url=redis.url, redis_timeout_ms=50)
    state = build(settings, on_change=changes.append)
    assert isinstance(state, ResilientState)
    state._retry_after = 0.05
    await state.heartbeat("me")
    await state.reserve(ask())
    assert not state.falling_back
    redis.kill()
    loop = asyncio.get_running_loop()
    started = loop.time()
    g = await state.reserve(ask())
    assert loop.time() - started < 1.0  # no long hang on a dead Redis
    assert g.ok and state.falling_back and changes == [True]
    redis.start()
    await asyncio.sleep(0.1)
    await state.reserve(ask())
    assert not state.falling_back and changes == [True, False]
    await state.aclose()


async def test_fallback_divides_the_rate_by_live_replicas(redis: Any) -> None:
    state = build(_settings(redis_url=redis.url, redis_timeout_ms=50))
    assert isinstance(state, ResilientState)
    for member in ("r1", "r2", "me"):
        await state.heartbeat(member)
    assert state.replicas == 3
    redis.pause()  # slow, not gone: every command times out
    try:
        grants = [await state.reserve(ask(rps=30, burst=9, first_page=False)) for _ in range(5)]
        # 9 // 3 = a burst of 3 on this replica while Redis is away.
        assert [g.ok for g in grants] == [True, True, True, False, False]
    finally:
        redis.resume()
    await state.aclose()


async def test_the_fallback_spends_the_keys_one_daily_budget_across_endpoints(redis: Any) -> None:
    """While Redis is away a replica spends its share of what was left of the key's day,
    whichever endpoint asks (before: a share per endpoint bucket, so twice as much)."""
    state = build(_settings(redis_url=redis.url, redis_timeout_ms=50))
    assert isinstance(state, ResilientState)
    state._retry_after = 0.05
    embed, videos = (
        endpoint_bucket(bucket_of(KEY), "embed"),
        endpoint_bucket(bucket_of(KEY), "videos"),
    )
    daily = {"daily_quota": 6, "first_page": False, "rps": 100, "burst": 10}
    for _ in range(2):
        assert (await state.reserve(ask(bucket=embed, **daily))).ok
    redis.kill()
    try:
        grants = [await state.reserve(ask(bucket=b, **daily)) for b in (videos, embed) * 4]
        assert state.falling_back
        # 6 - 2 = 4 left, one replica: 4 in all, then "daily" for both endpoints.
        assert [g.ok for g in grants] == [True] * 4 + [False] * 4
        assert {g.reason for g in grants[4:]} == {"daily"}
    finally:
        redis.start()
    await asyncio.sleep(0.1)
    # Back on Redis (which came back empty): the day's 6 are known, for both endpoints.
    for bucket in (videos, embed):
        g = await state.reserve(ask(bucket=bucket, **daily))
        assert not g.ok and g.reason == "daily", g
    assert not state.falling_back
    await state.aclose()
