"""Redis as platform teams run it, against real processes: TLS, Sentinel, Cluster.

Each URL form of CLASSIFY_GATEWAY_REDIS_URL (docs/operations.md, "Redis URL forms") goes
through `redis_conn.connect` and the gateway's own shared state, so what is tested is
what a gateway process does. The failovers under load, through gateway processes, are
in tests/reliability/test_redis_ha.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio
from redis.cluster import key_slot

from classify_gateway.config import ConfigError, from_env, secrets_of
from classify_gateway.state.redis_conn import connect, parse_url
from classify_gateway.state.shared_state import (
    QuotaAsk,
    RedisState,
    ResilientState,
    SharedStateUnavailable,
    bucket_of,
)
from tests.support.redis_ha import ClusterSetup, cluster_setup, sentinel_setup
from tests.support.redis_server import CERT, RedisServer, redis_server
from tests.support.slot_audit import slot_audit

KEY = "tlk_TOPOLOGY_KEY_1"


def _settings(url: str, timeout_ms: int = 2000, **kw: Any) -> Any:
    return from_env({}, api_key=KEY, redis_url=url, redis_timeout_ms=timeout_ms, **kw)


def ask(**kw: Any) -> QuotaAsk:
    return QuotaAsk(**{"bucket": bucket_of(KEY), "rps": 1000.0, "burst": 10, **kw})


async def exercise(state: RedisState) -> None:
    """Every kind of operation once: quota script, block, heartbeat, key/value."""
    assert (await state.reserve(ask(first_page=False, daily_quota=1_000_000))).ok
    await state.block(bucket_of(KEY), 0.01)
    assert await state.heartbeat("me") == 1
    await state.set("pages:page:abc:1", b"v", 5)
    assert await state.get("pages:page:abc:1") == b"v"
    assert await state.add("pages:lease:abc", b"me", 5)
    await state.delete("pages:lease:abc")


# -- URL forms -------------------------------------------------------------------------


def test_url_forms() -> None:
    t = parse_url("redis+sentinel://:pa%40ss@s1:26380,s2,[::1]:26381/mymaster/2")
    assert (t.kind, t.tls, t.service, t.db, t.password) == (
        "sentinel",
        False,
        "mymaster",
        2,
        "pa@ss",
    )
    assert t.nodes == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    t = parse_url("rediss+sentinel://gw:pw@s1/m?ssl_ca_certs=/ca.pem&sentinel_auth=yes")
    assert (
        t.tls
        and t.username == "gw"
        and t.options
        == {
            "ssl_ca_certs": "/ca.pem",
            "sentinel_auth": True,
        }
    )
    t = parse_url("redis+cluster://n1:7000,n2:7001")
    assert (t.kind, t.nodes, t.db) == ("cluster", (("n1", 7000), ("n2", 7001)), 0)
    for bad, why in [
        ("redis+sentinel://s1:26379", "master name"),
        ("redis+sentinel://s1/m/x", "not a number"),
        ("redis+cluster://n1/3", "database 0 only"),
        ("redis+cluster://n1?sentinel_auth=1", "for redis.sentinel"),
        ("redis+cluster://n1?ssl_ca_cert=/x", "unknown option"),
        ("redis+cluster://n1:99999", "out of range"),
        ("redis+cluster://", "no host"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_url(bad)
        # ... and a gateway refuses to start with it, naming the setting.
        with pytest.raises(ConfigError, match="REDIS_URL"):
            _settings(bad)
    with pytest.raises(ConfigError, match="REDIS_URL"):
        _settings("memcached://m:11211")


def test_passwords_in_the_new_forms_are_redacted() -> None:
    s = _settings("redis+sentinel://gw:s3cret@s1:26379,s2:26379/m")
    assert "s3cret" not in str(s.redacted()) and "s3cret" in secrets_of(s)
    assert s.redacted()["redis_url"] == "redis+sentinel://gw:<redacted>@s1:26379,s2:26379/m"


# -- TLS -------------------------------------------------------------------------------


async def test_rediss_against_a_tls_server() -> None:
    server = RedisServer(tls=True).start()
    try:
        # The server checks clients' certificates too (mTLS), from the same test root.
        client = connect(_settings(server.url + server.client_cert))
        assert client is not None
        await exercise(RedisState(client))
        await client.aclose()
        # Without a client certificate the server refuses the handshake; the gateway's
        # shared state falls back rather than failing the call.
        refused = ResilientState(RedisState(connect(_settings(server.url))))  # type: ignore[arg-type]
        assert (await refused.reserve(ask())).ok and refused.falling_back
        await refused.aclose()
        # A server whose certificate no trusted root signed is refused by the client.
        untrusted = server.url.replace(f"ssl_ca_certs={CERT}", "ssl_cert_reqs=required")
        client = connect(_settings(untrusted + server.client_cert))
        assert client is not None
        with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.ping()
        await client.aclose()
    finally:
        server.stop()


# -- Sentinel --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "failover"])
async def test_sentinel_finds_the_new_master(how: str) -> None:
    """Commands fail (and fall back) only until the sentinels have promoted the replica."""
    with sentinel_setup() as s:
        client = connect(_settings(s.url, timeout_ms=1000))
        assert client is not None
        state = RedisState(client)
        await exercise(state)
        old = s.master_port()
        started = time.monotonic()
        if how == "kill":
            await asyncio.to_thread(s.kill_master)
        else:
            await asyncio.to_thread(s.failover)
        promoted = await asyncio.to_thread(s.wait_promoted, old)
        assert promoted != old
        errors = rounds = 0
        while True:  # until what the gateway writes lands on the promoted master
            rounds += 1
            try:
                await exercise(state)
                await state.set("marker", str(rounds).encode(), 30)
                if await _get(promoted, "classify-gateway:kv:marker") == str(rounds).encode():
                    break
            except SharedStateUnavailable:
                errors += 1
            assert time.monotonic() - started < 10, "never reached the new master"
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        print(f"sentinel {how}: {errors} failed rounds, on the new master after {took:.2f} s")
        await state.aclose()


async def _get(port: int, key: str) -> bytes | None:
    async with redis.asyncio.Redis(host="127.0.0.1", port=port) as r:
        value: bytes | None = await r.get(key)
        return value


# -- Cluster ---------------------------------------------------------------------------


async def test_every_operation_on_a_real_cluster(redis_cluster: ClusterSetup) -> None:
    redis_cluster.flush()
    client = connect(_settings(redis_cluster.url))
    assert client is not None
    state = RedisState(client)
    for i in range(20):  # buckets all over the slot space, each in one slot
        await state.reserve(QuotaAsk(bucket_of(f"key-{i}"), 100.0, 5, caller="svc"))
    await exercise(state)
    await state.aclose()


async def test_a_cross_slot_script_is_caught_by_the_cluster_and_the_audit(
    redis_cluster: ClusterSetup,
) -> None:
    """The two guards of the key layout fail on a script whose keys span two slots: the
    real cluster (CROSSSLOT), and the audit of single-server tests (slot_audit.py)."""
    keys = ["gw:q:{a}:tat", "gw:q:{b}:tat"]
    assert key_slot(keys[0].encode()) != key_slot(keys[1].encode())
    script = "return redis.call('GET', KEYS[1])"
    client = connect(_settings(redis_cluster.url))
    assert client is not None
    # CROSSSLOT from the node (or the client's own check, whichever comes first).
    crossslot = (redis.exceptions.RedisClusterException, redis.exceptions.ResponseError)
    with pytest.raises(crossslot, match=r"same (key )?slot"):
        await client.register_script(script)(keys=keys)
    await client.aclose()
    # A cluster-client failure is a Redis failure to the gateway: it falls back.
    state = ResilientState(RedisState(connect(_settings("redis+cluster://127.0.0.1:1"))))  # type: ignore[arg-type]
    assert (await state.reserve(ask())).ok and state.falling_back
    await state.aclose()

    # Not the `redis` fixture: its own audit would fail this test.
    with redis_server() as server, slot_audit(server) as audit:
        async with redis.asyncio.Redis.from_url(server.url) as single:
            await single.register_script(script)(keys=keys)  # declared keys
            await single.eval("return redis.call('GET', '{b}' .. KEYS[1])", 1, "{a}")  # touched
            await single.mget("{a}1", "{b}1")  # multi-key command
            async with single.pipeline(transaction=True) as tx:  # transaction
                await tx.set("{a}2", 1).set("{b}2", 1).execute()
            await single.eval("return redis.call('GET', KEYS[1] .. ':day')", 1, "{a}:x")  # fine
            await single.mget("{a}3", "{a}4")  # fine
            await asyncio.sleep(0.2)
        problems = audit.problems()
    assert len(problems) == 4, problems
    assert [p.split(" ")[0] for p in problems] == ["EVAL", "EVALSHA", "MGET", "MULTI"], problems


@pytest.mark.slow
async def test_a_cluster_node_lost_under_concurrency_only_ever_falls_back() -> None:
    """Twenty tasks share one cluster client while the node of their quota slot dies and
    comes back. redis-py's cluster client closes every connection on CLUSTERDOWN while
    the other tasks use them, which escaped as AttributeError (a call failed INTERNAL);
    every failure must be SharedStateUnavailable, and the client must recover."""
    with cluster_setup() as c:
        node = c.node_for("{" + bucket_of(KEY) + "}")
        state = RedisState(connect(_settings(c.url, timeout_ms=500)))  # type: ignore[arg-type]
        other: list[BaseException] = []
        unavailable = served_after = 0
        restarted: list[float] = []
        stop = time.monotonic() + 30

        async def worker(i: int) -> None:
            nonlocal unavailable, served_after
            while time.monotonic() < stop and served_after < 200:
                try:
                    await state.reserve(ask(first_page=False))
                    await state.heartbeat(f"m{i}")
                    await state.get("x")
                    if restarted:
                        served_after += 1
                except SharedStateUnavailable:
                    unavailable += 1
                except Exception as exc:
                    other.append(exc)
                await asyncio.sleep(0.01)

        async def fault() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(node.kill)
            await asyncio.to_thread(c.wait_state, "fail")
            await asyncio.sleep(0.5)
            await asyncio.to_thread(node.start)
            restarted.append(time.monotonic())

        await asyncio.gather(fault(), *(worker(i) for i in range(20)))
        await state.aclose()
    assert not other, other[:3]
    assert unavailable > 0 and served_after >= 200  # it failed, then it came back
