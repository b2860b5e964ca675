"""Coalescing and the page cache on a real `classify-gateway serve` process.

The emulator's journal counts what reached the upstream; every test asserts what a
caller would check (the pages) and what the quota would see (the journal).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from tests.support.classify import classify_request
from tests.support.emulators import reset_around
from tests.support.gateway import collect
from tests.support.sharing import (
    KEY_A,
    KEY_B,
    NO_CACHE,
    Gateway,
    pages_bytes,
    upstream,
)


@pytest.fixture
def emu(open_emulator: Any) -> Iterator[Any]:
    yield from reset_around(open_emulator, latency_ms=60)


@pytest.fixture(scope="module")
def coalescing(open_emulator: Any) -> Iterator[Gateway]:
    """A gateway with the cache off: only coalescing can save upstream requests."""
    gw = Gateway(open_emulator, cache_ttl=0)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def caching(open_emulator: Any) -> Iterator[Gateway]:
    """A gateway with the shipped defaults (cache on). Each test asks its own request."""
    gw = Gateway(open_emulator)
    yield gw
    gw.stop()


async def test_twenty_identical_concurrent_calls_cost_one_chain(
    emu: Any, coalescing: Gateway
) -> None:
    gw = coalescing
    mark = gw.mark()
    saved_before = gw.metric("classify_gateway_upstream_requests_saved_total", 'how="coalesced"')
    req = classify_request(emu, count=10, page_limit=2)
    async with gw.stub() as stub:
        results = await asyncio.gather(*(collect(stub.Classify(req)) for _ in range(20)))
    saved = gw.metric("classify_gateway_upstream_requests_saved_total", 'how="coalesced"')
    assert all(err is None for _, err in results)
    first = pages_bytes(results[0][0])
    n = len(first)
    assert n == 5
    for pages, _ in results:
        assert pages_bytes(pages) == first
    assert upstream(emu) == (1, n - 1)
    assert saved - saved_before == 19 * n
    sources = [r["pages_from"] for r in gw.rpcs(mark) if r["method"] == "Classify"]
    assert len(sources) == 20
    assert sum(s.get("upstream", 0) for s in sources) == n
    assert sum(s.get("coalesced", 0) for s in sources) == 19 * n


async def test_slow_and_fast_callers_both_get_every_page(emu: Any, coalescing: Gateway) -> None:
    finished: list[str] = []
    req = classify_request(emu, count=12, page_limit=2)
    async with coalescing.stub() as stub:

        async def reader(name: str, pause: float) -> list[pb.ClassifyResponse]:
            pages = []
            async for page in stub.Classify(req):
                pages.append(page)
                await asyncio.sleep(pause)
            finished.append(name)
            return pages

        slow, fast = await asyncio.gather(reader("slow", 0.3), reader("fast", 0))
    assert len(fast) == 6
    assert pages_bytes(slow) == pages_bytes(fast)
    assert finished == ["fast", "slow"]  # the slow one never held the fast one back
    assert upstream(emu) == (1, 5)


async def test_first_caller_cancelling_does_not_stop_the_others(
    emu: Any, coalescing: Gateway
) -> None:
    req = classify_request(emu, count=11, page_limit=2)
    async with coalescing.stub() as stub:
        first = stub.Classify(req)
        others = [stub.Classify(req) for _ in range(3)]
        assert (await first.read()).page_number == 1
        first.cancel()
        results = await asyncio.gather(*(collect(c) for c in others))
    for pages, err in results:
        assert err is None and len(pages) == 6
    assert upstream(emu) == (1, 5)


async def test_ttl_zero_goes_upstream_every_time(emu: Any, coalescing: Gateway) -> None:
    req = classify_request(emu, count=4, page_limit=2)
    async with coalescing.stub() as stub:
        for _ in range(2):
            _, err = await collect(stub.Classify(req))
            assert err is None
    assert upstream(emu) == (2, 2)


async def test_another_request_or_another_key_is_not_merged(emu: Any, caching: Gateway) -> None:
    key_a, key_b = (("x-api-key", KEY_A),), (("x-api-key", KEY_B),)
    req = classify_request(emu, count=6, page_limit=2)
    other = classify_request(emu, count=6, page_limit=3)
    async with caching.stub() as stub:
        # In flight at the same time: another request, and the same request under key B.
        results = await asyncio.gather(
            collect(stub.Classify(req, metadata=key_a)),
            collect(stub.Classify(other, metadata=key_a)),
            collect(stub.Classify(req, metadata=key_b)),
        )
        assert all(err is None for _, err in results)
        assert upstream(emu)[0] == 3
        # Cached: a repeat under key A costs nothing; key A's cache is not key C's.
        emu.admin.clear_requests()
        _, err_a = await collect(stub.Classify(req, metadata=key_a))
        assert upstream(emu) == (0, 0)
        _, err_c = await collect(stub.Classify(req, metadata=(("x-api-key", "key-c"),)))
    assert err_a is None and err_c is None
    assert upstream(emu) == (1, 2)


async def test_repeat_within_ttl_costs_no_upstream_request(emu: Any, caching: Gateway) -> None:
    req = classify_request(emu, count=8, page_limit=2)
    async with caching.stub() as stub:
        first, err = await collect(stub.Classify(req))
        assert err is None and len(first) == 4
        emu.admin.clear_requests()
        mark = caching.mark()
        hits_before = caching.metric(
            "classify_gateway_upstream_requests_saved_total", 'how="cache"'
        )
        again, err = await collect(stub.Classify(req))
        assert err is None
        # GetClassifyPage and a resumed stream find the same pages by their tokens.
        token2 = first[0].page_info.next_page_token
        one = await stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token=token2))
        resumed, err2 = await collect(stub.Classify(pb.ClassifyRequest(page_token=token2)))
    hits = caching.metric("classify_gateway_upstream_requests_saved_total", 'how="cache"')
    assert pages_bytes(again) == pages_bytes(first)
    assert one.SerializeToString() == pages_bytes(first)[1]
    assert err2 is None and pages_bytes(resumed) == pages_bytes(first)[1:]
    assert upstream(emu) == (0, 0)
    assert hits - hits_before == 4 + 1 + 3
    assert [r["pages_from"] for r in caching.rpcs(mark)] == [
        {"cache": 4},
        {"cache": 1},
        {"cache": 3},
    ]


async def test_no_cache_metadata_goes_upstream_and_refreshes_the_cache(
    emu: Any, caching: Gateway
) -> None:
    req = classify_request(emu, count=5, page_limit=2)
    async with caching.stub() as stub:
        _, err = await collect(stub.Classify(req))
        assert err is None
        emu.admin.clear_requests()
        fresh, err = await collect(stub.Classify(req, metadata=NO_CACHE))
        assert err is None and len(fresh) == 3
        assert upstream(emu) == (1, 2)
        emu.admin.clear_requests()
        # The refreshed pages are what the cache serves now: their tokens.
        again, err = await collect(stub.Classify(req))
    assert err is None and upstream(emu) == (0, 0)
    assert [p.page_info.next_page_token for p in again] == [
        p.page_info.next_page_token for p in fresh
    ]


async def test_no_store_metadata_keeps_the_pages_out_of_the_cache(
    emu: Any, caching: Gateway
) -> None:
    """`cache-control: no-store` means what it means in HTTP: the answer is not kept. Its
    pages were stored and served to the next caller (issue 25 item 15)."""
    req = classify_request(emu, count=7, page_limit=2)
    async with caching.stub() as stub:
        private, err = await collect(stub.Classify(req, metadata=(("cache-control", "no-store"),)))
        assert err is None and len(private) == 4
        assert upstream(emu) == (1, 3)
        emu.admin.clear_requests()
        # The next identical call goes upstream: nothing of the first was kept.
        again, err = await collect(stub.Classify(req))
        assert err is None and len(again) == 4
        assert upstream(emu) == (1, 3)
        emu.admin.clear_requests()
        # Its own pages are stored as usual.
        third, err = await collect(stub.Classify(req))
    assert err is None and upstream(emu) == (0, 0)
    assert pages_bytes(third) == pages_bytes(again)
