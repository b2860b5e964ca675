"""State shared by every replica and worker: one small interface, two backends.

Architecture rule: new shared state (quota, fair share, cache, coalescing) sits
behind `SharedState`, which has two backends:

- `InProcessState`: the embedded default (`CLASSIFY_GATEWAY_REDIS_URL` unset); the
  state is this process's own, which is exact for one replica with one worker.
- `RedisState`: the state lives in Redis, so N replicas with M workers each see one quota,
  one set of fair shares and one cache. Each quota decision is one Lua script (one
  round trip, atomic, Redis's clock via TIME rather than the replicas' clocks).

`ResilientState` puts them together: Redis while it answers within
`REDIS_TIMEOUT_MS`, the in-process backend at once when it does not (with the rate
divided by the replicas last seen alive), and Redis again as soon as it answers.
Nothing here raises to a caller because of Redis.

The operations are few on purpose:

- quota: `reserve` (one upstream request: may it go, and after how long),
  `block` (the upstream said "no more until T": every replica stops spending);
- membership: `heartbeat` (this replica is alive; how many are);
- key/value for caches and request coalescing: `get`, `set`, `add` (set if absent:
  a lease), `delete`. Values are bytes; every key has a time to live.

Quota and fair share (the same algorithm in Lua and in Python, tested on both):
a GCRA per upstream API key (`rps`, `burst`) plus a GCRA per calling service whose
rate is the caller's weighted share of `rps` among the callers active in the last
`ACTIVE_WINDOW`. A caller within its share may take the next global slot (and wait
for it, up to its deadline, if it continues a stream; a first page only takes a slot
that is free now, so pages 2..N of admitted streams go first). A caller over its
share may still use the slack (work-conserving), but only while at least one more
slot stays free for callers within their share. An upstream that limits some endpoints
on their own (v1.3) has a GCRA per endpoint bucket (`endpoint_bucket`); the daily budget
stays one count per API key (`budget_of`), whichever endpoint spends it.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import hashlib
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from classify_gateway.config import Settings

if TYPE_CHECKING:
    # redis-py is imported only by a process whose REDIS_URL is set (RedisState, `build`):
    # a gateway without Redis does not pay for loading it at start-up.
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

log = logging.getLogger("classify_gateway.state.shared_state")
T = TypeVar("T")

ACTIVE_WINDOW_MS = 2000.0  # a caller counts for fair share this long after its last ask
MIN_RETRY_MS = 2.0
DAY_MS = 86_400_000.0
HEARTBEAT_TTL = 15.0  # a replica counts as alive this long after its last heartbeat
# Bookkeeping per key/value entry (key string, dict slot, tuple), counted against the
# memory bound so that many tiny entries cannot exceed it.
ENTRY_OVERHEAD = 400
SWEEP_INTERVAL = 1.0  # seconds between sweeps of expired entries (on writes)


def quota_share(rps: float, burst: int, daily: int, n: int) -> tuple[float, int, int]:
    """One of `n` equal shares of a quota (rate, burst, daily budget): what each of n
    processes may spend when nothing shares the count between them."""
    return rps / n, max(1, burst // n), math.ceil(daily / n) if daily else 0


def bucket_of(api_key: str) -> str:
    """The quota bucket of an upstream API key: a hash, so that Redis never holds the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def endpoint_bucket(bucket: str, endpoint: str) -> str:
    """The bucket of one upstream endpoint category with a rate of its own (v1.3: embed,
    videos) under a key's bucket: its own rate and learned blocks, but the key's one
    daily budget (`budget_of`), since the upstream counts a key's day across endpoints."""
    return f"{bucket}/{endpoint}" if endpoint else bucket


def budget_of(bucket: str) -> str:
    """The bucket that holds the daily budget of `bucket`: the API key's own, shared by
    every endpoint bucket under it."""
    return bucket.partition("/")[0]


@dataclass(frozen=True)
class QuotaAsk:
    """One upstream request asking for a slot."""

    bucket: str  # bucket_of(api_key), or an endpoint_bucket under it
    rps: float  # the quota for all replicas together (> 0)
    burst: int
    caller: str = ""  # calling service ("" when identity is off)
    weight: float = 1.0
    first_page: bool = True  # False: page 2..N of an admitted stream (goes first)
    max_wait: float = 0.0  # seconds this request may wait for a reserved slot
    daily_quota: int = 0  # 0 = no daily budget
    # What this replica knows the day's count must include (ResilientState): requests it
    # granted while Redis was away (added to the count), and the count it last read plus
    # those (the count is raised to it: a Redis that came back empty does not restart the
    # day). Both only for `daily_day`, the UTC day number they belong to.
    daily_add: int = 0
    daily_floor: int = 0
    daily_day: int = -1


@dataclass(frozen=True)
class Grant:
    """The answer: go after `wait` seconds, or ask again in `retry_in` seconds."""

    ok: bool
    wait: float = 0.0
    retry_in: float = 0.0
    reason: str = ""  # when refused: rate | share | daily | upstream
    daily_used: int = -1  # the day's count after this answer (-1: no daily budget)
    day: int = -1  # the UTC day number of that count


class SharedStateUnavailable(Exception):
    """The backend did not answer in time (Redis down or slow)."""


class SharedState(abc.ABC):
    """The one interface of shared state; see the module docstring."""

    backend: str = ""

    @abc.abstractmethod
    async def reserve(self, ask: QuotaAsk) -> Grant: ...

    @abc.abstractmethod
    async def block(self, bucket: str, seconds: float) -> None:
        """No request of `bucket` goes for `seconds` (longer blocks are kept)."""

    @abc.abstractmethod
    async def heartbeat(self, member: str, ttl: float = HEARTBEAT_TTL) -> int:
        """Record `member` alive; return how many members were alive within `ttl`."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    @abc.abstractmethod
    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Set only if absent (a lease); True if this call set it."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None: ...

    def delete_soon(self, key: str) -> None:
        """Delete `key` in a task of its own, for a caller that cannot await: the
        transport's callback when a connection turns out to have carried unsolicited
        bytes, and what was stored from it must go (issue 25 item 3)."""
        try:
            task = asyncio.get_running_loop().create_task(self.delete(key))
        except RuntimeError:  # no loop: the process is ending, and the entry with it
            return
        _DELETING.add(task)  # a task nobody holds may be collected before it runs
        task.add_done_callback(_DELETING.discard)

    async def aclose(self) -> None:
        return None


_DELETING: set[asyncio.Task[None]] = set()


# -- the algorithm, once in Python ---------------------------------------------------


@dataclass
class _Buckets:
    tat: dict[str, float]
    active: dict[str, dict[str, tuple[float, float]]]  # bucket -> caller -> (seen, weight)
    blocked: dict[str, float]
    daily: dict[str, tuple[int, int]]  # budget_of(bucket) -> (day number, used)


def _decide(state: _Buckets, ask: QuotaAsk, now: float) -> Grant:
    """One reservation at `now` (milliseconds); mirrors _RESERVE_LUA line by line."""
    b = ask.bucket
    budget = budget_of(b)
    blocked = state.blocked.get(b, 0.0)
    if blocked > now:
        return Grant(False, retry_in=(blocked - now) / 1000, reason="upstream")
    day = int(now // DAY_MS)
    used = -1
    if ask.daily_quota > 0:
        used_day, used = state.daily.get(budget, (day, 0))
        if used_day != day:
            used = 0
        if ask.daily_day == day:
            used = max(used + ask.daily_add, ask.daily_floor, used)
            state.daily[budget] = (day, used)
        if used >= ask.daily_quota:
            return Grant(
                False,
                retry_in=((day + 1) * DAY_MS - now) / 1000,
                reason="daily",
                daily_used=used,
                day=day,
            )
    callers = state.active.setdefault(b, {})
    callers[ask.caller] = (now, ask.weight)
    for name, (seen, _) in list(callers.items()):
        if seen < now - ACTIVE_WINDOW_MS:
            del callers[name]
    total_weight = sum(w for _, w in callers.values())
    ig = 1000.0 / ask.rps
    tolg = (ask.burst - 1) * ig
    ic = ig * total_weight / ask.weight
    tolc = ic  # a caller may run at most one of its own intervals ahead of its share
    gkey, ckey = b, f"{b}:{ask.caller}"
    tatg = max(state.tat.get(gkey, now), now)
    tatc = max(state.tat.get(ckey, now), now)
    # The burst is for pages 2..N of admitted streams: a first page only starts when
    # the schedule is rested, so new streams cannot crowd out the ones under way.
    tol = 0.0 if ask.first_page else tolg
    gwait = max(0.0, tatg - tol - now)
    # A caller alone is within its share by definition: it may use everything.
    cwait = 0.0 if total_weight <= ask.weight else max(0.0, tatc - tolc - now)
    horizon = 0.0 if ask.first_page else ask.max_wait * 1000
    if cwait <= horizon:  # within its share (for a continuation: within it by then)
        wait = max(cwait, gwait)
        if wait > horizon:
            return Grant(
                False,
                retry_in=max(MIN_RETRY_MS, wait - horizon) / 1000,
                reason="rate",
                daily_used=used,
                day=day,
            )
    else:  # over its share: only slack, and one slot stays free for the others
        slack_at = tatg - tol + ig
        if slack_at > now:
            retry = min(cwait - horizon, slack_at - now)
            why = "rate" if gwait > 0 else "share"
            return Grant(
                False,
                retry_in=max(MIN_RETRY_MS, retry) / 1000,
                reason=why,
                daily_used=used,
                day=day,
            )
        wait = 0.0
    # GCRA with the request's real send time: the bound holds for what is sent.
    at = now + wait
    state.tat[gkey] = max(tatg, at) + ig
    state.tat[ckey] = max(tatc, at) + ic
    if ask.daily_quota > 0:
        used_day, used = state.daily.get(budget, (day, 0))
        used = (used if used_day == day else 0) + 1
        state.daily[budget] = (day, used)
    return Grant(True, wait=wait / 1000, daily_used=used, day=day)


class SizeHooks(Protocol):
    """What the bounded key/value store reports (observability.Metrics implements it)."""

    def cache_evicted(self, entries: int) -> None: ...

    def cache_size(self, entries: int, size: int) -> None: ...


class InProcessState(SharedState):
    """The embedded default: exact for one process, nothing to run beside it.

    Its key/value store (the page store, chain leases) is an LRU bounded by `max_bytes`
    (CACHE_MAX_BYTES): the least recently used entries go first, and expired ones are
    swept on writes, not only when read. As Redis's fallback it keeps the same bound.
    """

    backend = "in-process"

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        hooks: SizeHooks | None = None,
    ) -> None:
        self._clock = clock
        self._q = _Buckets({}, {}, {}, {})
        self._kv: OrderedDict[str, tuple[bytes, float, int]] = OrderedDict()
        self.max_bytes = max_bytes
        self.size = 0
        self._hooks = hooks
        self._next_sweep = 0.0
        self._members: dict[str, float] = {}

    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    async def reserve(self, ask: QuotaAsk) -> Grant:
        return _decide(self._q, ask, self._now_ms())

    async def block(self, bucket: str, seconds: float) -> None:
        until = self._now_ms() + seconds * 1000
        self._q.blocked[bucket] = max(self._q.blocked.get(bucket, 0.0), until)

    async def heartbeat(self, member: str, ttl: float = HEARTBEAT_TTL) -> int:
        now = self._clock()
        self._members[member] = now
        for name, seen in list(self._members.items()):
            if seen < now - ttl:
                del self._members[name]
        return len(self._members)

    def __len__(self) -> int:
        return len(self._kv)

    def _live(self, key: str) -> bytes | None:
        entry = self._kv.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._drop(key)
            return None
        self._kv.move_to_end(key)
        return entry[0]

    def _drop(self, key: str) -> None:
        entry = self._kv.pop(key, None)
        if entry is not None:
            self.size -= entry[2]

    def _put(self, key: str, value: bytes, ttl: float) -> None:
        now = self._clock()
        self._drop(key)
        size = len(key) + len(value) + ENTRY_OVERHEAD
        evicted = 0
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            for old in [k for k, e in self._kv.items() if e[1] <= now]:
                self._drop(old)
                evicted += 1
        if size <= self.max_bytes:
            self._kv[key] = (value, now + ttl, size)
            self.size += size
        while self.size > self.max_bytes:
            self._drop(next(iter(self._kv)))
            evicted += 1
        if self._hooks is not None:
            if evicted:
                self._hooks.cache_evicted(evicted)
            self._hooks.cache_size(len(self._kv), self.size)

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._put(key, value, ttl)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._put(key, value, ttl)
        return True

    async def delete(self, key: str) -> None:
        self._drop(key)


# -- the algorithm, once in Lua -------------------------------------------------------

# KEYS: 1 global tat, 2 caller tat, 3 active callers (zset), 4 weights (hash),
#       5 blocked-until, 6 daily counter prefix
# ARGV: 1 caller, 2 weight, 3 rps, 4 burst, 5 first_page (1/0), 6 max_wait ms,
#       7 daily quota, 8 active window ms, 9 daily add, 10 daily floor, 11 their day
# Returns {ok (1/0), wait or retry ms (string), reason, day's count (-1: none), day}
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local caller, weight = ARGV[1], tonumber(ARGV[2])
local rps, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local first_page, max_wait = ARGV[5] == '1', tonumber(ARGV[6])
local daily, window = tonumber(ARGV[7]), tonumber(ARGV[8])
local blocked = tonumber(redis.call('GET', KEYS[5]) or '0')
if blocked > now then
  return {0, tostring((blocked - now)), 'upstream', -1, -1}
end
local day = math.floor(now / 86400000)
local daykey = KEYS[6] .. ':' .. day
local used = -1
if daily > 0 then
  used = tonumber(redis.call('GET', daykey) or '0')
  if tonumber(ARGV[11]) == day then
    local known = math.max(used + tonumber(ARGV[9]), tonumber(ARGV[10]))
    if known > used then
      used = known
      redis.call('SET', daykey, used, 'PX', math.ceil((day + 1) * 86400000 - now + 60000))
    end
  end
  if used >= daily then
    return {0, tostring((day + 1) * 86400000 - now), 'daily', used, day}
  end
end
redis.call('ZADD', KEYS[3], now, caller)
redis.call('HSET', KEYS[4], caller, ARGV[2])
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - window))
for _, name in ipairs(gone) do redis.call('HDEL', KEYS[4], name) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - window))
local total = 0
local members = redis.call('ZRANGE', KEYS[3], 0, -1)
local weights = redis.call('HMGET', KEYS[4], unpack(members))
for i = 1, #members do total = total + (tonumber(weights[i]) or 1) end
local keep = math.ceil(window * 2)
redis.call('PEXPIRE', KEYS[3], keep)
redis.call('PEXPIRE', KEYS[4], keep)
local ig = 1000 / rps
local tolg = (burst - 1) * ig
local ic = ig * total / weight
local tolc = ic
local tatg = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local tatc = math.max(tonumber(redis.call('GET', KEYS[2]) or now), now)
local tol = tolg
if first_page then tol = 0 end
local gwait = math.max(0, tatg - tol - now)
local cwait = 0
if total > weight then cwait = math.max(0, tatc - tolc - now) end
local horizon = max_wait
if first_page then horizon = 0 end
local wait = 0
if cwait <= horizon then
  wait = math.max(cwait, gwait)
  if wait > horizon then
    return {0, tostring(math.max(2, wait - horizon)), 'rate', used, day}
  end
else
  local slack_at = tatg - tol + ig
  if slack_at > now then
    local why = 'share'
    if gwait > 0 then why = 'rate' end
    return {0, tostring(math.max(2, math.min(cwait - horizon, slack_at - now))), why, used, day}
  end
end
local at = now + wait
local ng = math.max(tatg, at) + ig
local nc = math.max(tatc, at) + ic
redis.call('SET', KEYS[1], tostring(ng), 'PX', math.ceil(ng - now + tolg + 1000))
redis.call('SET', KEYS[2], tostring(nc), 'PX', math.ceil(nc - now + tolc + 1000))
if daily > 0 then
  used = redis.call('INCR', daykey)
  redis.call('PEXPIRE', daykey, math.ceil((day + 1) * 86400000 - now + 60000))
end
return {1, tostring(wait), '', used, day}
"""

# KEYS: 1 blocked-until. ARGV: 1 milliseconds from now. Keeps the later of the two.
_BLOCK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local untl = now + tonumber(ARGV[1])
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > old then
  redis.call('SET', KEYS[1], tostring(untl), 'PX', math.ceil(tonumber(ARGV[1])) + 1)
end
return 1
"""

# KEYS: 1 members (zset). ARGV: 1 member, 2 ttl ms. Returns the number alive.
_HEARTBEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 2))
return redis.call('ZCARD', KEYS[1])
"""


class RedisState(SharedState):
    """State in Redis: one quota and one cache for every replica and worker.

    Quota keys are `<prefix>:q:{<bucket>}:...`, and an endpoint bucket's
    `<prefix>:q:{<bucket>}/<endpoint>:...`: the braces are a Redis Cluster hash tag, so
    every key of one script (the key's day counter, shared by its endpoint buckets, too)
    lives in one slot. The
    other keys (`<prefix>:replicas`, `<prefix>:kv:<key>`) are each the only key of their
    command, so they may land anywhere (tests/support/slot_audit.py checks every test's
    commands). Every failure (refused, reset, timed out, an error reply) raises
    SharedStateUnavailable for ResilientState to handle.
    """

    backend = "redis"

    def __init__(self, client: Redis | RedisCluster, prefix: str = "classify-gateway") -> None:
        from redis.exceptions import RedisClusterException, RedisError

        # RedisClusterException is the cluster client's own (no slot map, no node for a
        # slot) and no RedisError: it too must fall back, not fail a call.
        self._failures = (RedisError, RedisClusterException, OSError, TimeoutError)
        self._r = client
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE_LUA)
        self._block = client.register_script(_BLOCK_LUA)
        self._heartbeat = client.register_script(_HEARTBEAT_LUA)

    def _q(self, bucket: str, *parts: str) -> str:
        key, _, endpoint = bucket.partition("/")
        head = "{" + key + "}" + (f"/{endpoint}" if endpoint else "")
        return ":".join((self._prefix, "q", head, *parts))

    def _kv(self, key: str) -> str:
        return f"{self._prefix}:kv:{key}"

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            return await op
        except self._failures as exc:
            raise SharedStateUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def reserve(self, ask: QuotaAsk) -> Grant:
        b = ask.bucket
        keys = [
            self._q(b, "tat"),
            self._q(b, "tat", "c", ask.caller),
            self._q(b, "active"),
            self._q(b, "weights"),
            self._q(b, "blocked"),
            self._q(budget_of(b), "day"),
        ]
        args: list[Any] = [
            ask.caller,
            repr(float(ask.weight)),
            repr(float(ask.rps)),
            ask.burst,
            1 if ask.first_page else 0,
            repr(max(0.0, ask.max_wait) * 1000),
            ask.daily_quota,
            repr(ACTIVE_WINDOW_MS),
            ask.daily_add,
            ask.daily_floor,
            ask.daily_day,
        ]
        ok, ms, reason, used, day = await self._call(self._reserve(keys=keys, args=args))
        seconds = float(ms) / 1000
        if int(ok):
            return Grant(True, wait=seconds, daily_used=int(used), day=int(day))
        why = reason.decode() if isinstance(reason, bytes) else str(reason)
        return Grant(False, retry_in=seconds, reason=why, daily_used=int(used), day=int(day))

    async def block(self, bucket: str, seconds: float) -> None:
        if seconds > 0:
            await self._call(
                self._block(keys=[self._q(bucket, "blocked")], args=[repr(seconds * 1000)])
            )

    async def heartbeat(self, member: str, ttl: float = HEARTBEAT_TTL) -> int:
        n = await self._call(
            self._heartbeat(keys=[f"{self._prefix}:replicas"], args=[member, int(ttl * 1000)])
        )
        return int(n)

    async def get(self, key: str) -> bytes | None:
        value = await self._call(self._r.get(self._kv(key)))
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._call(self._r.set(self._kv(key), value, px=max(1, math.ceil(ttl * 1000))))

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        done = await self._call(
            self._r.set(self._kv(key), value, px=max(1, math.ceil(ttl * 1000)), nx=True)
        )
        return bool(done)

    async def delete(self, key: str) -> None:
        await self._call(self._r.delete(self._kv(key)))

    async def aclose(self) -> None:
        await self._r.aclose()


# -- Redis with an in-process fallback ------------------------------------------------


@dataclass
class _DayCount:
    """One API key's daily count as this replica knows it (ResilientState)."""

    day: int = -1  # UTC day number
    seen: int = 0  # the fleet's count at the last answer from Redis
    unsynced: int = 0  # granted here while Redis was away, not yet added to Redis's count


def utc_day(now_epoch: float) -> int:
    return int(now_epoch * 1000 // DAY_MS)


class ResilientState(SharedState):
    """Redis while it answers; the in-process backend the moment it does not.

    In fallback the rate is divided by the number of replicas last seen alive (each
    replica's heartbeat; before Redis has ever answered, `fallback_replicas`, the
    FALLBACK_REPLICAS setting), so N replicas together still stay near the configured
    rate. The daily budget is held for the fleet, not restarted: in fallback a replica
    may spend its share of what was left at its last answer from Redis, and when Redis
    answers again what it spent meanwhile is added to the count, which is never let
    fall below what this replica last saw (a Redis that restarted empty does not give
    the day's budget back). Every call tries Redis again first (bounded by
    REDIS_TIMEOUT_MS), so the gateway returns to shared state as soon as Redis takes a
    write again; `on_change(True)` is called when falling back and `on_change(False)`
    when back on Redis.
    """

    def __init__(
        self,
        primary: SharedState,
        local: SharedState | None = None,
        on_change: Callable[[bool], None] | None = None,
        retry_after: float = 0.5,
        *,
        fallback_replicas: int = 1,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.primary = primary
        self.local = local if local is not None else InProcessState()
        self.backend = primary.backend
        # Replicas last seen alive (including this one); until Redis has answered a
        # heartbeat, the operator's estimate.
        self.replicas = max(1, fallback_replicas)
        self.falling_back = False
        self._on_change = on_change
        # While Redis is down, ask it again at most this often, so that every request
        # does not pay the timeout first.
        self._retry_after = retry_after
        self._down_until = 0.0
        self._days: dict[str, _DayCount] = {}
        self._wall = wall_clock
        self._log_next = 0.0  # transitions are logged at most once per LOG_EVERY
        self._unlogged = 0

    LOG_EVERY = 30.0

    def _log(self, message: str, event: str, **extra: Any) -> None:
        """A fallback or recovery line, at most one per LOG_EVERY: a Redis that fails
        only some commands (out of memory refuses writes, not reads) or restarts in a
        loop would otherwise fill the log; the metrics still count every transition."""
        now = time.monotonic()
        if now < self._log_next:
            self._unlogged += 1
            return
        self._log_next = now + self.LOG_EVERY
        log.warning(
            message, extra={"event": event, "transitions_unlogged": self._unlogged, **extra}
        )
        self._unlogged = 0

    def _failed(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + self._retry_after * random.uniform(0.5, 1.0)
        if not self.falling_back:
            self.falling_back = True
            self._log(
                "shared state unavailable: in-process fallback",
                "redis_fallback",
                error=str(exc),
                replicas=self.replicas,
            )
            if self._on_change:
                self._on_change(True)

    def _ok(self) -> None:
        if self.falling_back:
            self.falling_back = False
            self._log("shared state back on redis", "redis_recovered")
            if self._on_change:
                self._on_change(False)

    async def _try(
        self, op: Callable[[SharedState], Awaitable[T]], *, write: bool = True
    ) -> tuple[bool, T | None]:
        """`op` on Redis, or (False, None) when Redis is away. Only a write that succeeds
        ends a fallback: a read that works proves little (Redis out of memory still
        answers reads while it refuses every write)."""
        if self.falling_back and time.monotonic() < self._down_until:
            return False, None
        try:
            result = await op(self.primary)
        except SharedStateUnavailable as exc:
            self._failed(exc)
            return False, None
        if write:
            self._ok()
        return True, result

    def _day_count(self, bucket: str) -> _DayCount:
        """The day's count of `bucket`'s key: one for all its endpoint buckets."""
        budget = budget_of(bucket)
        today = utc_day(self._wall())
        count = self._days.get(budget)
        if count is None or count.day != today:
            if len(self._days) > 1000:  # callers' own keys: keep the memo small
                self._days.clear()
            count = self._days[budget] = _DayCount(today)
        return count

    async def reserve(self, ask: QuotaAsk) -> Grant:
        count = self._day_count(ask.bucket) if ask.daily_quota > 0 else None
        shared = ask
        if count is not None:
            shared = dataclasses.replace(
                ask,
                daily_add=count.unsynced,
                daily_floor=count.seen + count.unsynced,
                daily_day=count.day,
            )
        ok, grant = await self._try(lambda s: s.reserve(shared))
        if ok and grant is not None:
            if count is not None and grant.daily_used >= 0:
                # Redis has what was spent here meanwhile; its count is the fleet's now.
                count.unsynced = 0
                count.day = grant.day
                count.seen = grant.daily_used
            return grant
        n = max(1, self.replicas)
        rps, burst, _ = quota_share(ask.rps, ask.burst, 0, n)
        if count is not None:
            allowed = math.ceil(max(0, ask.daily_quota - count.seen) / n)
            if count.unsynced >= allowed:
                tomorrow = (count.day + 1) * DAY_MS / 1000
                return Grant(False, retry_in=max(1.0, tomorrow - self._wall()), reason="daily")
        local = dataclasses.replace(ask, rps=rps, burst=burst, daily_quota=0)
        grant = await self.local.reserve(local)
        if grant.ok and count is not None:
            count.unsynced += 1
        return grant

    async def block(self, bucket: str, seconds: float) -> None:
        await self.local.block(bucket, seconds)
        await self._try(lambda s: s.block(bucket, seconds))

    async def heartbeat(self, member: str, ttl: float = HEARTBEAT_TTL) -> int:
        ok, n = await self._try(lambda s: s.heartbeat(member, ttl))
        if ok and n:
            self.replicas = n
        return self.replicas

    async def get(self, key: str) -> bytes | None:
        ok, value = await self._try(lambda s: s.get(key), write=False)
        return value if ok else await self.local.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        ok, _ = await self._try(lambda s: s.set(key, value, ttl))
        if not ok:
            await self.local.set(key, value, ttl)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        ok, done = await self._try(lambda s: s.add(key, value, ttl))
        return bool(done) if ok else await self.local.add(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self.local.delete(key)
        await self._try(lambda s: s.delete(key))

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.local.aclose()


def build(
    settings: Settings,
    on_change: Callable[[bool], None] | None = None,
    hooks: SizeHooks | None = None,
) -> SharedState:
    """The shared state a gateway process uses, from Settings: its in-process store (the
    whole state, or Redis's fallback) bounded by CACHE_MAX_BYTES."""
    local = InProcessState(max_bytes=settings.cache_max_bytes, hooks=hooks)
    if not settings.redis_url:
        return local
    from classify_gateway.state.redis_conn import connect

    client = connect(settings)
    if client is None:
        return local
    return ResilientState(
        RedisState(client, settings.redis_key_prefix),
        local=local,
        on_change=on_change,
        fallback_replicas=settings.fallback_replicas,
    )


__all__ = [
    "Grant",
    "InProcessState",
    "QuotaAsk",
    "RedisState",
    "ResilientState",
    "SharedState",
    "SharedStateUnavailable",
    "SizeHooks",
    "bucket_of",
    "budget_of",
    "build",
    "endpoint_bucket",
    "quota_share",
]
