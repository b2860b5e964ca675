"""The hub and the page path over a fake source that counts requests."""

from __future__ import annotations

import asyncio
import time

import pytest

from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError
from classify_gateway.edge.drain import DrainState
from classify_gateway.pages.hub import ChainStart
from classify_gateway.pages.path import FROM_CACHE, FROM_COALESCED, FROM_UPSTREAM, Call, PagePath
from classify_gateway.pages.store import PageStore
from classify_gateway.state.shared_state import InProcessState
from tests.support.counting_source import CountingSource

KH = CallContext("k", 0.0).key_hash


def delivery(up: CountingSource, cache: PageStore | None = None, buffer: int = 16) -> PagePath:
    return PagePath(None, cache, source=up.open, buffer_pages=buffer)


def store(ttl: float = 300) -> PageStore:
    return PageStore(InProcessState(max_bytes=10**6), ttl)


def call(
    chain_key: str = "k",
    *,
    no_cache: bool = False,
    seconds: float = 30,
    max_pages: int = 0,
) -> Call:
    ctx = CallContext("k", time.monotonic() + seconds, no_cache=no_cache)
    return Call(ctx, chain_key, ChainStart(1), max_pages)


async def read_all(
    d: PagePath, c: Call, pause: float = 0.0, stop_after: int | None = None
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    gen = d.deliver(c)
    try:
        async for page, source in gen:
            out.append((page.message(len(out) + 1).data[0].video_id, source))
            if stop_after is not None and len(out) >= stop_after:
                break
            if pause:
                await asyncio.sleep(pause)
    finally:
        await gen.aclose()
    return out


async def test_twenty_identical_calls_share_one_chain() -> None:
    up = CountingSource(5, delay=0.01)
    d = delivery(up)
    results = await asyncio.gather(*(read_all(d, call()) for _ in range(20)))
    assert up.posts == 1
    assert up.gets == 4
    expected = [f"c-video-{i}" for i in range(1, 6)]
    for r in results:
        assert [v for v, _ in r] == expected
    sources = [s for r in results for _, s in r]
    assert sources.count(FROM_UPSTREAM) == 5
    assert sources.count(FROM_COALESCED) == 95


async def test_different_keys_are_not_merged() -> None:
    up = CountingSource(3, delay=0.01)
    d = delivery(up)
    await asyncio.gather(read_all(d, call("a")), read_all(d, call("b")))
    assert up.posts == 2


async def test_slow_reader_does_not_hold_back_fast_reader() -> None:
    up = CountingSource(6)
    d = delivery(up)
    slow_started = asyncio.Event()
    release = asyncio.Event()
    slow_pages: list[str] = []

    async def slow() -> None:
        gen = d.deliver(call())
        async for page, _ in gen:
            slow_pages.append(page.message(1).data[0].video_id)
            slow_started.set()
            await release.wait()

    task = asyncio.create_task(slow())
    await slow_started.wait()
    fast = await asyncio.wait_for(read_all(d, call()), 5)
    assert [v for v, _ in fast] == [f"c-video-{i}" for i in range(1, 7)]
    release.set()
    await asyncio.wait_for(task, 5)
    assert slow_pages == [f"c-video-{i}" for i in range(1, 7)]
    assert (up.posts, up.gets) == (1, 5)


async def test_reader_that_falls_behind_the_buffer_continues_from_the_cache() -> None:
    up = CountingSource(8)
    cache = store()
    d = delivery(up, cache, buffer=2)
    release = asyncio.Event()
    got: list[tuple[str, str]] = []

    async def slow() -> None:
        gen = d.deliver(call(no_cache=True))
        async for page, source in gen:
            got.append((page.message(1).data[0].video_id, source))
            await release.wait()

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.01)
    fast = await read_all(d, call(no_cache=False))
    release.set()
    await asyncio.wait_for(task, 5)
    assert len(fast) == 8
    # The slow reader (no-cache: it never reads the cache) lagged out of the buffer and
    # went on from its own token: every page, in order.
    assert [v for v, _ in got] == [f"c-video-{i}" for i in range(1, 9)]
    assert up.posts == 1 and up.gets > 7  # its own GETs for the pages it missed


async def test_lagging_reader_uses_cache_when_allowed() -> None:
    up = CountingSource(8)
    cache = store()
    d = delivery(up, cache, buffer=2)
    release = asyncio.Event()
    got: list[tuple[str, str]] = []

    async def slow() -> None:
        gen = d.deliver(call())
        async for page, source in gen:
            got.append((page.message(1).data[0].video_id, source))
            await release.wait()

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.01)
    await read_all(d, call())
    release.set()
    await asyncio.wait_for(task, 5)
    assert [v for v, _ in got] == [f"c-video-{i}" for i in range(1, 9)]
    assert FROM_CACHE in {s for _, s in got}
    assert (up.posts, up.gets) == (1, 7)


async def test_first_reader_cancelling_does_not_stop_the_others() -> None:
    up = CountingSource(5, delay=0.01)
    d = delivery(up)
    first = asyncio.create_task(read_all(d, call(), pause=0.05))
    others = [asyncio.create_task(read_all(d, call())) for _ in range(3)]
    await asyncio.sleep(0.03)
    first.cancel()
    results = await asyncio.gather(*others)
    for r in results:
        assert len(r) == 5
    assert (up.posts, up.gets) == (1, 4)


async def test_last_reader_out_cancels_the_chain() -> None:
    up = CountingSource(5)
    up.gate = asyncio.Event()
    d = delivery(up)
    tasks = [asyncio.create_task(read_all(d, call())) for _ in range(3)]
    await asyncio.sleep(0.02)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert up.cancelled == 1
    assert len(d.hubs) == 0


async def test_max_pages_stops_the_chain_without_fetching_more() -> None:
    up = CountingSource(5)
    d = delivery(up)
    r = await read_all(d, call(max_pages=2))
    assert len(r) == 2
    await asyncio.sleep(0.01)
    assert (up.posts, up.gets) == (1, 1)


async def test_upstream_error_reaches_every_reader_after_its_pages() -> None:
    up = CountingSource(5, delay=0.005, fail_at=3)
    d = delivery(up)

    async def one() -> tuple[list[str], GatewayError | None]:
        seen: list[str] = []
        try:
            async for page, _ in d.deliver(call()):
                seen.append(page.next_token)
        except GatewayError as err:
            return seen, err
        return seen, None

    results = await asyncio.gather(*(one() for _ in range(4)))
    for seen, err in results:
        assert err is not None and err.reason == "UPSTREAM_UNREACHABLE"
        # The resume token is the next_page_token of the last page received: page 3's.
        assert seen == ["c-t2", "c-t3"]
    assert up.posts == 1


async def test_repeat_is_served_from_cache_and_no_cache_goes_upstream() -> None:
    up = CountingSource(3)
    cache = store()
    d = delivery(up, cache)
    first = await read_all(d, call())
    second = await read_all(d, call())
    assert [v for v, _ in first] == [v for v, _ in second]
    assert {s for _, s in second} == {FROM_CACHE}
    assert (up.posts, up.gets) == (1, 2)
    third = await read_all(d, call(no_cache=True))
    assert {s for _, s in third} == {FROM_UPSTREAM}
    assert (up.posts, up.gets) == (2, 4)


async def test_ttl_zero_goes_upstream_every_time() -> None:
    up = CountingSource(2)
    d = delivery(up, store(ttl=0))
    await read_all(d, call())
    await read_all(d, call())
    assert (up.posts, up.gets) == (2, 2)


async def test_resume_from_cached_token_stays_on_its_chain() -> None:
    up = CountingSource(4)
    cache = store()
    d = delivery(up, cache)
    await read_all(d, call())
    target = await cache.find_token(KH, "c-t3")
    assert target is not None and target.position == 3
    ctx = CallContext("k", time.monotonic() + 10)
    c = Call(ctx, target.chain_key, ChainStart(target.position, "c-t3"), 0, target.chain_id)
    r = await read_all(d, c)
    assert [v for v, _ in r] == ["c-video-3", "c-video-4"]
    assert {s for _, s in r} == {FROM_CACHE}
    assert (up.posts, up.gets) == (1, 3)


@pytest.mark.parametrize("readers", [1, 3])
async def test_drain_cut_off_ends_every_reader_with_shutting_down(readers: int) -> None:
    up = CountingSource(5)
    up.gate = asyncio.Event()
    up.drain = DrainState()
    d = delivery(up)

    async def one() -> str:
        try:
            async for _ in d.deliver(call()):
                pass
        except GatewayError as err:
            return err.reason
        return "OK"

    readers_t = [asyncio.create_task(one()) for _ in range(readers)]
    await asyncio.sleep(0.02)
    assert up.drain.cut_off() == 1  # one request in flight, whoever reads the chain
    assert await asyncio.gather(*readers_t) == ["GATEWAY_SHUTTING_DOWN"] * readers


async def test_chain_stopped_at_max_pages_goes_on_when_a_later_reader_wants_more() -> None:
    up = CountingSource(5)
    d = delivery(up)
    capped = asyncio.create_task(read_all(d, call(max_pages=2), pause=0.05))
    await asyncio.sleep(0.01)
    full = await read_all(d, call())
    assert len(await capped) == 2
    assert [v for v, _ in full] == [f"c-video-{i}" for i in range(1, 6)]
    assert (up.posts, up.gets) == (1, 4)


async def test_each_reader_keeps_its_own_deadline() -> None:
    up = CountingSource(3)
    up.gate = asyncio.Event()
    d = delivery(up)

    async def outcome(c: Call) -> str:
        try:
            return str(len(await read_all(d, c)))
        except GatewayError as err:
            return err.reason

    short = call(seconds=0.3)
    patient = asyncio.create_task(outcome(call()))
    await asyncio.sleep(0)  # the patient reader opened the chain: its deadline bounds it
    assert await outcome(short) == "DEADLINE_EXCEEDED"
    up.gate.set()
    assert await patient == "3"
    assert up.posts == 1
