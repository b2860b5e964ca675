"""The one Redis client of a gateway process, built from Settings.

Redis holds the state that must be the same for every replica and worker (the
upstream quota, fair shares, learned upstream resets, and the cache of issue 15).
It is optional: with `CLASSIFY_GATEWAY_REDIS_URL` unset nothing here is used and
the gateway keeps that state in-process.

Platform teams run Redis in three shapes, so the URL names one of them
(docs/operations.md, "Redis URL forms"):

- `redis://` / `rediss://` (TLS): one server, redis-py's own URL form;
- `redis+sentinel://` / `rediss+sentinel://`: a master found through Sentinel, found
  again on every new connection, so a failover costs the calls in flight and no more;
- `redis+cluster://` / `rediss+cluster://`: Redis Cluster; every multi-key script keeps
  its keys in one hash slot (shared_state.py's `{bucket}` tags), and the client refreshes
  its slot map after a connection error, so a promoted replica is found.

Every command is bounded by `REDIS_TIMEOUT_MS` (connect and read) and never retried
by the client: a slow or failing Redis must cost a call a few milliseconds, then the
caller of this client falls back to in-process state (classify_gateway/state/shared_state.py),
never an error to our callers. The password comes from `REDIS_PASSWORD_FILE` (a mounted
Secret) or the URL; it lives only in Settings and in the client's connection
arguments, and it is redacted from the start-up log (`Settings.redacted()` and
`redact_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from classify_gateway.config import Settings
from classify_gateway.core.redis_url import (
    SINGLE_SCHEMES,
    TLS_OPTIONS,
    RedisTarget,
    parse_url,
)

# Enough for every concurrent quota round trip of one process; a waiter for a free
# connection is bounded by the same timeout as a command.
MAX_CONNECTIONS = 64
# redis-py's cluster client does not wait for a free connection: past this many per node
# a command fails at once (and the process falls back), so the cap is set well above
# what one process has in flight.
CLUSTER_MAX_CONNECTIONS_PER_NODE = 4 * MAX_CONNECTIONS
# How often a Sentinel client asks who the master is (one SENTINEL MASTERS round trip):
# the bound on how long it may write to a master the sentinels have replaced.
MASTER_CHECK_INTERVAL = 1.0

Client = Redis | RedisCluster


async def _as_redis_error(command: Awaitable[Any]) -> Any:
    """`command`, with redis-py's connection-closed races turned into ConnectionError.

    A write on a connection closed under it (by the peer, or by redis-py's cluster client,
    which closes every connection on CLUSTERDOWN while other tasks are using them)
    escapes redis-py as AttributeError or TypeError (redis/redis-py#4287, #3546). Those
    are no RedisError, so without this they would fail a call instead of falling back.
    """
    try:
        return await command
    except (AttributeError, TypeError) as exc:
        raise RedisConnectionError(f"connection closed under the command: {exc!r}") from exc


class _Redis(Redis):
    """The single-server client, with redis-py's races mapped (_as_redis_error)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await _as_redis_error(super().execute_command(*args, **options))  # type: ignore[no-untyped-call]


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool that waits (up to the command timeout) for a free connection,
    as the single-server pool does, instead of failing at once under a burst."""


class _Sentinel(Sentinel):
    """Sentinel whose answer is the master of the latest configuration epoch.

    redis-py takes the first sentinel that names a master, but after a failover only the
    sentinel that led it knows at once; the others learn the new epoch from its hello
    messages, up to seconds later, and meanwhile name the old master, which keeps taking
    writes until it is demoted. All sentinels are asked at once and the highest
    `config-epoch` wins, so no more than one round trip is spent and a lagging sentinel
    cannot send a gateway back to the old master.
    """

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        async def ask(sentinel: Redis) -> Any:
            try:
                return await sentinel.sentinel_masters()
            except (RedisError, OSError):
                return None

        answers = await asyncio.gather(*(ask(s) for s in self.sentinels))
        best: dict[str, Any] | None = None
        for masters in answers:
            state = masters.get(service_name) if masters else None
            if not state or not self.check_master_state(state, service_name):
                continue
            if best is None or state.get("config-epoch", 0) > best.get("config-epoch", 0):
                best = state
        if best is None:
            raise MasterNotFoundError(f"No master found for {service_name!r}")
        return best["ip"], best["port"]


class _SentinelMaster(_Redis):
    """The master's client, asking the sentinels who the master is at most every
    MASTER_CHECK_INTERVAL, not only when it opens a connection.

    redis-py finds the master again only for a new connection. After a crash that is
    enough (every connection breaks), but after `SENTINEL FAILOVER` the old master keeps
    accepting writes until the sentinels demote it, seconds later, and pooled
    connections would go on spending the quota there, unseen by the other replicas.
    When the sentinels name another master, idle connections close at once and busy ones
    when they are released. Closing this client closes the connections to the sentinels
    too (redis-py leaves those to the caller, and the process has no other handle on them).
    """

    _next_check = 0.0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + MASTER_CHECK_INTERVAL
            pool: Any = self.connection_pool
            before = pool.master_address
            # A sentinel that does not answer is no reason to fail the command: the
            # command itself says whether the master it reaches is one.
            with contextlib.suppress(Exception):
                if await pool.get_master_address() != before and before is not None:
                    await pool.update_active_connections_for_reconnect()
        return await super().execute_command(*args, **options)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        await super().aclose(close_connection_pool)
        if manager is not None:
            await manager.aclose()


class _BoundedCluster(RedisCluster):
    """The cluster client with each command bounded as a whole by REDIS_TIMEOUT_MS.

    Within one command redis-py's cluster client may refresh its slot map from several
    nodes, and after CLUSTERDOWN it closes every connection and pauses before raising:
    each step has its own socket timeout, but not their sum, which a call waiting for
    its quota would pay in full.
    """

    _bound = 1.0

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with asyncio.timeout(self._bound):
            return await _as_redis_error(super().execute_command(*args, **kwargs))


def _tls_kwargs(target: RedisTarget) -> dict[str, Any]:
    if not target.tls:
        return {}
    out: dict[str, Any] = {"ssl": True}
    for name in TLS_OPTIONS:
        if name in target.options:
            out[name] = target.options[name]
    if "ssl_check_hostname" in target.options:
        out["ssl_check_hostname"] = target.options["ssl_check_hostname"]
    return out


def _auth(target: RedisTarget, settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    password = settings.redis_password or target.password
    if password:
        out["password"] = password
    if target.username:
        out["username"] = target.username
    return out


def connect(settings: Settings) -> Client | None:
    """One client for the process, or None when Redis is not configured.

    Nothing connects here: the first command opens a connection, so a gateway whose
    Redis is down at start-up starts anyway (on its in-process fallback).
    """
    if not settings.redis_url:
        return None
    timeout = settings.redis_timeout_ms / 1000.0
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # No client-side retries: a failed command falls back at once, and the next
        # request tries Redis again.
        "retry": Retry(NoBackoff(), 0),
    }
    scheme = settings.redis_url.partition("://")[0]
    if scheme in SINGLE_SCHEMES:
        kwargs: dict[str, Any] = {
            **common,
            "max_connections": MAX_CONNECTIONS,
            # A waiter for a pooled connection gives up as quickly as a command would.
            "timeout": timeout,
            "client_name": "classify-gateway",
        }
        if settings.redis_password:
            kwargs["password"] = settings.redis_password
        pool = BlockingConnectionPool.from_url(settings.redis_url, **kwargs)
        return _Redis.from_pool(pool)
    target = parse_url(settings.redis_url)
    tls, auth = _tls_kwargs(target), _auth(target, settings)
    if target.kind == "cluster":
        cluster = _BoundedCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=CLUSTER_MAX_CONNECTIONS_PER_NODE,
            # The slots of a lost master without a replica stay unserved; the other
            # masters' slots keep working (their keys are all this process needs of them).
            require_full_coverage=False,
            client_name="classify-gateway",
            **common,
            **auth,
            **tls,
        )
        cluster._bound = timeout
        return cluster
    sentinel_kwargs: dict[str, Any] = {**common, **tls}
    if target.options.get("sentinel_auth"):
        sentinel_kwargs.update(auth)
    sentinel = _Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    master: Redis = sentinel.master_for(
        target.service,
        redis_class=_SentinelMaster,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        db=target.db,
        client_name="classify-gateway",
        **common,
        **auth,
        **tls,
    )
    return master
