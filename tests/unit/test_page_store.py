"""The page store over the in-process shared state: TTL, page_expired_at, the LRU memory
bound (also for Redis's fallback), the token index; Page bytes and chain ids."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from classify_gateway_proto.v1 import classify_service_pb2 as pb
from redis.asyncio import Redis

from classify_gateway.backends.exchange import Provenances
from classify_gateway.backends.v1_2.transport import Provenance
from classify_gateway.core.page import Page, new_chain_id
from classify_gateway.pages.store import EXPIRY_MARGIN, PageStore
from classify_gateway.state.shared_state import InProcessState, RedisState, ResilientState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def page(i: int, expires_in: float = 300.0, size: int = 10) -> Page:
    wall = time.time()
    msg = pb.ClassifyResponse()
    msg.data.add(video_id=f"v{i}" + "x" * size)
    msg.page_info.next_page_token = f"t{i + 1}"
    msg.page_info.prev_page_token = f"t{i - 1}" if i > 1 else ""
    msg.page_info.page_expired_at.FromSeconds(int(wall + expires_in))
    return Page.from_message(msg, "chain-1")


class Counting:
    def __init__(self) -> None:
        self.hits = self.misses = self.evicted = 0
        self.size = 0

    def cache_lookup(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def chain_event(self, event: str) -> None:
        return None

    def cache_evicted(self, entries: int) -> None:
        self.evicted += entries

    def cache_size(self, entries: int, size: int) -> None:
        self.size = size


def make(
    ttl: float = 60, max_bytes: int = 10**6
) -> tuple[PageStore, InProcessState, Clock, Counting]:
    clock = Clock()
    hooks = Counting()
    state = InProcessState(clock, max_bytes=max_bytes, hooks=hooks)
    return PageStore(state, ttl, hooks), state, clock, hooks


def test_page_bytes_round_trip_and_page_number_is_per_stream() -> None:
    p = page(1)
    a, b = p.message(1), p.message(7)
    assert (a.page_number, b.page_number) == (1, 7)
    assert a.data[0].video_id == b.data[0].video_id
    assert pb.GetClassifyPageResponse.FromString(p.body).SerializeToString() == p.body


def test_wire_is_the_message_with_this_streams_page_number() -> None:
    """What a stream sends (the shared body plus field 3) parses to the same message as
    setting page_number and serializing, for one-byte and multi-byte varints; page 0
    (none) is the body itself."""
    p = page(3)
    for n in (1, 127, 128, 300, 16_384, 2**31 - 1):
        expected = pb.ClassifyResponse.FromString(p.body)
        expected.page_number = n
        got = pb.ClassifyResponse.FromString(p.wire(n))
        assert got == expected
        assert got.page_number == n
    assert p.wire(0) == p.body


async def test_get_after_put_and_expiry_after_ttl() -> None:
    store, _, clock, hooks = make(ttl=60)
    await store.put("k", 1, page(1), "kh")
    assert await store.get("k", 1) == page(1)
    clock.now += 59
    assert await store.get("k", 1) is not None
    clock.now += 2
    assert await store.get("k", 1) is None
    assert (hooks.hits, hooks.misses) == (2, 1)


async def test_never_past_page_expired_at() -> None:
    store, _, clock, _ = make(ttl=300)
    await store.put("k", 1, page(1, expires_in=30), "kh")
    clock.now += 30 - EXPIRY_MARGIN - 1
    assert await store.get("k", 1) is not None
    clock.now += 2
    assert await store.get("k", 1) is None


async def test_page_already_near_expiry_is_not_stored() -> None:
    store, state, _, _ = make(ttl=300)
    await store.put("k", 1, page(1, expires_in=EXPIRY_MARGIN - 1), "kh")
    assert len(state) == 0


def test_ttl_zero_is_no_store() -> None:
    store, _, _, _ = make(ttl=0)
    assert not store.enabled


async def test_lru_eviction_keeps_the_memory_bound() -> None:
    one = page(1, size=2000)
    store, state, _, hooks = make(max_bytes=3 * (len(one.body) + 1000))
    for i in range(1, 6):
        await store.put("k", i, page(i, size=2000), "kh")
        await store.get("k", 1)  # page 1 stays recently used
    assert state.size <= state.max_bytes
    assert hooks.evicted > 0 and 0 < hooks.size <= state.max_bytes
    assert await store.get("k", 1) is not None
    assert await store.get("k", 2) is None


async def test_expired_entries_are_swept_on_writes_not_only_on_reads() -> None:
    store, state, clock, _ = make(ttl=10)
    for i in range(1, 21):
        await store.put("a", i, page(i), "kh")
    full = state.size
    clock.now += 11
    await store.put("b", 1, page(1), "kh")
    assert state.size < full / 5


async def test_tokens_name_the_neighbouring_pages_under_the_same_key_only() -> None:
    store, _, _, _ = make()
    await store.put("k", 2, page(2), "kh")
    nxt = await store.find_token("kh", "t3")
    prev = await store.find_token("kh", "t1")
    assert nxt is not None and (nxt.chain_key, nxt.position, nxt.chain_id) == ("k", 3, "chain-1")
    assert prev is not None and prev.position == 1
    assert await store.find_token("other-key-hash", "t3") is None


async def test_the_bound_holds_while_redis_is_down() -> None:
    """Issue 25 item 11: Redis's in-process fallback had no bound and no eviction (RSS
    73 -> 557 MiB for 600 distinct calls with a 2 MiB cap), and the size metric said 0."""
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.1, socket_timeout=0.1)
    hooks = Counting()
    cap = 256 * 1024
    state = ResilientState(
        RedisState(dead, "test"), local=InProcessState(max_bytes=cap, hooks=hooks)
    )
    store = PageStore(state, 300, hooks)
    try:
        for i in range(1, 301):
            await store.put(f"chain-{i}", 1, page(i, size=10_000), "kh")
        assert state.falling_back
        local = state.local
        assert isinstance(local, InProcessState)
        assert 0 < local.size <= cap and hooks.size == local.size
        assert await store.get("chain-300", 1) is not None
    finally:
        await dead.aclose()


def test_chain_ids_are_hex_and_unique_across_a_fork() -> None:
    """Chain ids name chains in Redis for every replica and `--workers` child: a forked
    child must not continue its parent's sequence under the same prefix."""
    ids = {new_chain_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(int(i, 16) >= 0 and " " not in i and "|" not in i for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write, new_chain_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    parent = new_chain_id()
    assert child not in ids and child[:16] != parent[:16]


async def test_a_page_that_turns_suspect_is_deleted_from_redis_for_every_replica(
    redis: Any,
) -> None:
    """Issue 25 item 3: the flag that a page's connection later carried unsolicited bytes
    (a late extra answer may have been read as this page) turns true after the page was
    stored. This process stops serving it at its next read; another replica, reading the
    page from Redis, cannot ask the flag, so the page is deleted from Redis when it turns."""
    wire = Provenance()  # the transport's own object, one per connection
    wires = Provenances()
    wires.add(wire)
    msg = pb.ClassifyResponse.FromString(page(1).body)
    suspect = Page.from_message(
        msg, "chain-1", unsolicited=wires.unsolicited, watch_unsolicited=wires.watch
    )
    mine = Redis.from_url(redis.url)
    theirs = Redis.from_url(redis.url)
    here = PageStore(RedisState(mine, "test"), 300, Counting())
    there = PageStore(RedisState(theirs, "test"), 300, Counting())
    try:
        await here.put("chain-k", 1, suspect, "kh")
        assert await there.get("chain-k", 1) is not None  # shared, as pages are
        wire.mark()  # the connection is found to carry bytes nobody asked for
        for _ in range(50):
            if await there.get("chain-k", 1) is None:
                break
            await asyncio.sleep(0.01)
        assert await there.get("chain-k", 1) is None
        assert await here.get("chain-k", 1) is None
        # A page stored after its connection was already marked is never stored.
        await here.put("chain-k", 2, suspect, "kh")
        assert await there.get("chain-k", 2) is None
    finally:
        await mine.aclose()
        await theirs.aclose()
