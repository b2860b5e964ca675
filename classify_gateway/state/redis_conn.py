"""The one Redis connection pool of a gateway process, built from Settings.

Redis holds the state that must be the same for every replica and worker (the
upstream quota, fair shares, learned upstream resets, and the cache of issue 15).
It is optional: with `CLASSIFY_GATEWAY_REDIS_URL` unset nothing here is used and
the gateway keeps that state in-process.

Every command is bounded by `REDIS_TIMEOUT_MS` (connect and read): a slow Redis
must cost a call a few milliseconds, then the caller of this pool falls back to
in-process state (classify_gateway/state/shared_state.py), never an error to our callers.
The password comes from `REDIS_PASSWORD_FILE` (a mounted Secret) or the URL; it
lives only in Settings and in the pool's connection arguments, and it is redacted
from the start-up log (`Settings.redacted()` and `redact_url`).
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from classify_gateway.config import Settings

# Enough for every concurrent quota round trip of one process; a waiter for a free
# connection is bounded by the same timeout as a command.
MAX_CONNECTIONS = 64


def secrets_of(settings: Settings) -> list[str]:
    """The Redis secrets the log formatter must redact, should they ever appear."""
    out = [settings.redis_password] if settings.redis_password else []
    _, sep, rest = settings.redis_url.partition("://")
    userinfo, at, _ = rest.partition("/")[0].rpartition("@")
    if sep and at and ":" in userinfo:
        password = userinfo.partition(":")[2]
        if password:
            out.append(password)
    return out


def connect(settings: Settings) -> Redis | None:
    """One client over one shared pool, or None when Redis is not configured.

    Nothing connects here: the first command opens a connection, so a gateway whose
    Redis is down at start-up starts anyway (on its in-process fallback).
    """
    if not settings.redis_url:
        return None
    timeout = settings.redis_timeout_ms / 1000.0
    kwargs: dict[str, object] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "max_connections": MAX_CONNECTIONS,
        # A waiter for a pooled connection gives up as quickly as a command would.
        "timeout": timeout,
        # No client-side retries: a failed command falls back at once, and the next
        # request tries Redis again.
        "retry": Retry(NoBackoff(), 0),
        "client_name": "classify-gateway",
    }
    if settings.redis_password:
        kwargs["password"] = settings.redis_password
    pool = BlockingConnectionPool.from_url(settings.redis_url, **kwargs)
    return Redis.from_pool(pool)
