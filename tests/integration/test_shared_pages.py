"""Pages shared across replicas through a real redis-server: two in-process "replicas"
(each its own page path, shared state, page store and claim) over one fake upstream that
counts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError
from classify_gateway.core.page import Page
from classify_gateway.pages.fleet import FleetChains
from classify_gateway.pages.hub import ChainStart
from classify_gateway.pages.path import FROM_CACHE, FROM_REPLICA, Call, PagePath
from classify_gateway.pages.store import NoHooks, PageStore, encode_page
from classify_gateway.state.shared_state import (
    InProcessState,
    RedisState,
    ResilientState,
    SharedState,
)
from tests.support.counting_source import CountingSource, chain_page


class Replica:
    def __init__(self, r: Redis, up: CountingSource, ttl: float, lease: float = 2.0) -> None:
        self.hooks = NoHooks()
        state = ResilientState(RedisState(r, "test"))
        self.state: SharedState = state
        self.store = PageStore(state, ttl, self.hooks)
        self.fleet = FleetChains(state, lease=lease, poll=0.02, hooks=self.hooks)
        self.delivery = PagePath(None, self.store, source=up.open, fleet=self.fleet)


@pytest.fixture
async def r(redis: Any) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis.url)
    try:
        yield client
    finally:
        await client.aclose()


def call(max_pages: int = 0) -> Call:
    return Call(CallContext("k", time.monotonic() + 30), "chain", ChainStart(1), max_pages)


async def read(replica: Replica, c: Call | None = None) -> list[tuple[bytes, str]]:
    out = []
    gen: Any = replica.delivery.deliver(c or call())
    try:
        async for page, source in gen:
            out.append((page.body, source))
    finally:
        await gen.aclose()
    return out


async def test_ten_calls_over_two_replicas_cost_one_chain_and_a_repeat_costs_nothing(
    r: Redis,
) -> None:
    up = CountingSource(5, delay=0.02)
    a, b = Replica(r, up, ttl=300), Replica(r, up, ttl=300)
    results = await asyncio.gather(*(read(a if i % 2 else b) for i in range(10)))
    assert (up.posts, up.gets) == (1, 4)
    bodies = [[body for body, _ in res] for res in results]
    assert all(x == bodies[0] for x in bodies) and len(bodies[0]) == 5
    assert FROM_REPLICA in {s for res in results for _, s in res}
    again = await read(b)
    assert {s for _, s in again} == {FROM_CACHE}
    assert [body for body, _ in again] == bodies[0]
    assert (up.posts, up.gets) == (1, 4)


async def test_without_cache_identical_calls_in_flight_still_share_across_replicas(
    r: Redis,
) -> None:
    up = CountingSource(4, delay=0.03)
    a, b = Replica(r, up, ttl=0), Replica(r, up, ttl=0)
    results = await asyncio.gather(read(a), read(b), read(a), read(b))
    assert (up.posts, up.gets) == (1, 3)
    assert all(len(res) == 4 for res in results)
    await read(b)  # TTL 0: a repeat goes upstream again
    assert (up.posts, up.gets) == (2, 6)


async def test_a_reader_takes_over_when_the_holder_dies(r: Redis) -> None:
    """A dead replica held the lease and published pages 1-2: after its lease expires,
    a reader on another replica continues from page 2's next_page_token."""
    up = CountingSource(5)
    dead_chain = "deadchain"
    await r.set("test:kv:pages:lease:chain", f"dead|{dead_chain}", px=300)
    for pos in (1, 2):
        page = Page.from_message(chain_page(pos, 5), dead_chain)
        await r.set(f"test:kv:pages:chain:{dead_chain}:{pos}", encode_page(page))
    await r.set(f"test:kv:pages:chain:{dead_chain}:head", b'{"published": 2}')
    b = Replica(r, up, ttl=0, lease=1.0)
    got = await asyncio.wait_for(read(b), 10)
    assert len(got) == 5
    assert [s for _, s in got][:2] == [FROM_REPLICA, FROM_REPLICA]
    assert (up.posts, up.gets) == (0, 3)  # pages 3, 4, 5 from the token of page 2


async def test_pages_replayed_from_an_earlier_holder_are_not_counted_as_upstream(
    r: Redis,
) -> None:
    """A reader that stays on a chain nobody holds any more (a lagged reader's new hub, a
    resume from a stored token) claims it and first replays what the earlier holder
    published: those pages come from Redis, and the per-RPC accounting must say so."""
    up = CountingSource(4)
    a, b = Replica(r, up, ttl=0), Replica(r, up, ttl=0)
    first: list[Page] = []
    gen: Any = a.delivery.deliver(call())
    async for page, source in gen:
        assert source == "upstream"
        first.append(page)
    assert (up.posts, up.gets) == (1, 3)
    resume = Call(
        CallContext("k", time.monotonic() + 30),
        "chain",
        ChainStart(3, first[1].next_token),
        0,
        first[0].chain_id,
    )
    got: list[tuple[bytes, str]] = []
    gen = b.delivery.deliver(resume)
    async for page, source in gen:
        got.append((page.body, source))
    assert [body for body, _ in got] == [p.body for p in first[2:]]
    assert (up.posts, up.gets) == (1, 3)  # nothing fetched again
    assert [s for _, s in got] == [FROM_REPLICA, FROM_REPLICA]


async def test_upstream_error_reaches_readers_on_the_other_replica(r: Redis) -> None:
    up = CountingSource(5, delay=0.02, fail_at=3)
    a, b = Replica(r, up, ttl=0), Replica(r, up, ttl=0)

    async def reasons(rep: Replica) -> tuple[int, str]:
        n = 0
        try:
            async for _ in rep.delivery.deliver(call()):
                n += 1
        except Exception as err:
            return n, getattr(err, "reason", repr(err))
        return n, "OK"

    got = await asyncio.gather(reasons(a), reasons(b))
    assert got == [(2, "UPSTREAM_UNREACHABLE"), (2, "UPSTREAM_UNREACHABLE")]
    assert up.posts == 1


async def test_redis_down_is_a_miss_not_a_failure() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.1, socket_timeout=0.1)
    up = CountingSource(3)
    a = Replica(dead, up, ttl=300)
    got = await read(a)
    assert len(got) == 3
    assert (up.posts, up.gets) == (1, 2)
    await dead.aclose()


async def test_an_upstream_error_is_not_replayed_to_a_later_caller(r: Redis) -> None:
    """Issue 25 item 8: a mid-chain error was stored with the chain in Redis and every
    resume or identical call got it again for 120 s, with no upstream request."""
    up = CountingSource(5, fail_at=3)
    a = Replica(r, up, ttl=300)
    with pytest.raises(GatewayError):
        await read(a)
    up.fail_at = None  # the upstream is healthy again
    b = Replica(r, up, ttl=300)
    got = await asyncio.wait_for(read(b), 10)
    assert len(got) == 5
    assert [s for _, s in got][:2] == [FROM_CACHE, FROM_CACHE]


class LosesCancellation(SharedState):
    """Shared state whose waits swallow a cancellation, as redis-py's did on Python 3.11
    (python/cpython#86296): cancelling a task inside one of them is lost."""

    backend = "lossy"

    def __init__(self) -> None:
        self.inner = InProcessState()
        self.lease_writes = 0

    async def _slow(self) -> None:
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(end - time.monotonic())

    async def reserve(self, ask: Any) -> Any:
        return await self.inner.reserve(ask)

    async def block(self, bucket: str, seconds: float) -> None:
        await self.inner.block(bucket, seconds)

    async def heartbeat(self, member: str, ttl: float = 15.0) -> int:
        return await self.inner.heartbeat(member, ttl)

    async def get(self, key: str) -> bytes | None:
        if key.startswith("pages:lease:"):
            await self._slow()
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if key.startswith("pages:lease:"):
            self.lease_writes += 1
            await self._slow()
        await self.inner.set(key, value, ttl)

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        return await self.inner.add(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)


async def test_a_lease_is_not_renewed_once_its_readers_left() -> None:
    """Issue 25 item 9: the renewal task's cancellation was lost inside redis-py's wait
    and the abandoned chain renewed its lease forever, wedging identical calls on every
    replica. Renewal now stops because nobody reads, whatever became of the cancel."""
    up = CountingSource(5, delay=0.1)
    state = LosesCancellation()
    fleet = FleetChains(state, lease=0.006, poll=0.02, hooks=NoHooks())
    path = PagePath(None, None, source=up.open, fleet=fleet)
    got = []
    async for page, _ in path.deliver(call(max_pages=1)):
        got.append(page)
    assert len(got) == 1
    await asyncio.sleep(0.2)  # any renewal in progress ends
    writes = state.lease_writes
    await asyncio.sleep(0.5)
    assert state.lease_writes == writes
