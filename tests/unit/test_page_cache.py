"""The in-process page cache: TTL, page_expired_at, LRU memory bound, token index."""

from __future__ import annotations

import os

from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.core.page import Page, new_chain_id
from classify_gateway.pages.page_cache import (
    EXPIRY_MARGIN,
    CacheHooks,
    PageCache,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def page(i: int, expires_in: float = 300.0, wall: float = 1_700_000_000.0, size: int = 10) -> Page:
    msg = pb.ClassifyResponse()
    msg.data.add(video_id=f"v{i}" + "x" * size)
    msg.page_info.next_page_token = f"t{i + 1}"
    msg.page_info.prev_page_token = f"t{i - 1}" if i > 1 else ""
    msg.page_info.page_expired_at.FromSeconds(int(wall + expires_in))
    return Page.from_message(msg, "chain-1")


class Counting(CacheHooks):
    def __init__(self) -> None:
        self.hits = self.misses = self.evicted = 0

    def cache_lookup(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def cache_evicted(self, entries: int) -> None:
        self.evicted += entries


def make(ttl: float = 60, max_bytes: int = 10**6) -> tuple[PageCache, Clock, Counting]:
    clock = Clock()
    hooks = Counting()
    cache = PageCache(
        ttl, max_bytes, hooks, clock=clock, wall=lambda: 1_700_000_000.0 + (clock.now - 1000.0)
    )
    return cache, clock, hooks


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


def test_get_after_put_and_expiry_after_ttl() -> None:
    cache, clock, hooks = make(ttl=60)
    cache.put_now("k", 1, page(1), "kh")
    assert cache.get_now("k", 1) == page(1)
    clock.now += 59
    assert cache.get_now("k", 1) is not None
    clock.now += 2
    assert cache.get_now("k", 1) is None
    assert (hooks.hits, hooks.misses) == (2, 1)


def test_never_past_page_expired_at() -> None:
    cache, clock, _ = make(ttl=300)
    cache.put_now("k", 1, page(1, expires_in=30), "kh")
    clock.now += 30 - EXPIRY_MARGIN - 1
    assert cache.get_now("k", 1) is not None
    clock.now += 2
    assert cache.get_now("k", 1) is None


def test_page_already_near_expiry_is_not_stored() -> None:
    cache, _, _ = make(ttl=300)
    cache.put_now("k", 1, page(1, expires_in=EXPIRY_MARGIN - 1), "kh")
    assert len(cache) == 0


def test_ttl_zero_stores_nothing() -> None:
    cache, _, _ = make(ttl=0)
    cache.put_now("k", 1, page(1), "kh")
    assert cache.get_now("k", 1) is None and len(cache) == 0


def test_lru_eviction_keeps_the_memory_bound() -> None:
    one = page(1, size=2000)
    cache, _, hooks = make(max_bytes=3 * (len(one.body) + 1000))
    for i in range(1, 6):
        cache.put_now("k", i, page(i, size=2000), "kh")
        cache.get_now("k", 1)  # page 1 stays recently used
    assert cache.size <= cache.max_bytes
    assert hooks.evicted > 0
    assert cache.get_now("k", 1) is not None
    assert cache.get_now("k", 2) is None


def test_tokens_name_the_neighbouring_pages_under_the_same_key_only() -> None:
    cache, _, _ = make()
    cache.put_now("k", 2, page(2), "kh")
    nxt = cache.find_token_now("kh", "t3")
    prev = cache.find_token_now("kh", "t1")
    assert nxt is not None and (nxt.chain_key, nxt.position, nxt.chain_id) == ("k", 3, "chain-1")
    assert prev is not None and prev.position == 1
    assert cache.find_token_now("other-key-hash", "t3") is None


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
