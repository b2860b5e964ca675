"""Two real gateway processes sharing one real redis-server: one chain per request across
replicas, a repeat on the other replica served from Redis, and a replica killed mid-chain
whose chain another replica finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from tests.support.classify import classify_request
from tests.support.emulators import reset_around
from tests.support.gateway import collect, read_rest
from tests.support.sharing import Gateway, pages_bytes, upstream

# Times what it measures under load: run with nothing else running (make test-python).
pytestmark = pytest.mark.alone


@pytest.fixture
def emu(open_emulator: Any) -> Iterator[Any]:
    yield from reset_around(open_emulator, latency_ms=80)


@pytest.fixture
def redis_url(redis: Any) -> str:
    return str(redis.url)


async def test_ten_calls_over_two_replicas_cost_one_chain(emu: Any, redis_url: str) -> None:
    # Counting one chain needs every Redis call to answer: a loaded machine can take longer
    # than the default 100 ms, and a replica that falls back fetches a chain of its own
    # (what that costs is test_redis_quota_chaos's and test_redis_ha's subject, not this).
    a = Gateway(emu, redis_url=redis_url, redis_timeout_ms=2000)
    b = Gateway(emu, redis_url=redis_url, redis_timeout_ms=2000)
    try:
        req = classify_request(emu, count=10, page_limit=2)
        async with a.stub() as stub_a, b.stub() as stub_b:
            results = await asyncio.gather(
                *(collect((stub_a if i % 2 else stub_b).Classify(req)) for i in range(10))
            )
            assert all(err is None for _, err in results)
            first = pages_bytes(results[0][0])
            assert len(first) == 5
            assert all(pages_bytes(p) == first for p, _ in results)
            assert upstream(emu) == (1, 4)
            # A repeat on either replica is served from Redis.
            emu.admin.clear_requests()
            again_a, err_a = await collect(stub_a.Classify(req))
            again_b, err_b = await collect(stub_b.Classify(req))
    finally:
        a.stop()
        b.stop()
    assert err_a is None and err_b is None
    assert pages_bytes(again_a) == first and pages_bytes(again_b) == first
    assert upstream(emu) == (0, 0)
    sources: dict[str, int] = {}
    for r in a.rpcs() + b.rpcs():
        for k, v in r["pages_from"].items():
            sources[k] = sources.get(k, 0) + v
    # 5 pages fetched once; the other replica read them from Redis.
    assert sources.get("upstream") == 5
    assert sources.get("replica", 0) + sources.get("cache", 0) >= 15


async def test_killing_the_fetching_replica_mid_chain(emu: Any, redis_url: str) -> None:
    emu.admin.set_config(latency_ms=250)
    a = Gateway(emu, redis_url=redis_url, chain_lease=1)
    b = Gateway(emu, redis_url=redis_url, chain_lease=1)
    try:
        req = classify_request(emu, count=12, page_limit=2)  # 6 pages, ~1.5 s of upstream
        async with a.stub() as stub_a, b.stub() as stub_b:
            on_a = stub_a.Classify(req)
            first_a = await on_a.read()  # replica A holds the chain now
            assert first_a.page_number == 1
            waiting = [stub_b.Classify(req) for _ in range(3)]
            firsts = await asyncio.gather(*(c.read() for c in waiting))
            assert all(f.page_number == 1 for f in firsts)
            a.kill()
            rests = await asyncio.gather(*(read_rest(c) for c in waiting))
    finally:
        a.stop()
        b.stop()
    for first, (rest, err) in zip(firsts, rests, strict=True):
        assert err is None
        pages = [first, *rest]
        assert [p.page_number for p in pages] == [1, 2, 3, 4, 5, 6]
        assert pages_bytes(pages) == pages_bytes([firsts[0], *rests[0][0]])
    posts, gets = upstream(emu)
    assert posts == 1  # B never started the classification again
    assert 5 <= gets <= 6  # at most the page A was fetching when it died, twice
    assert any(r["pages_from"].get("upstream") for r in b.rpcs())  # B took the chain over


# A caller that stops reading: its stream's flow-control window (1 KiB, no growth) fills
# after a page or two, and its replica's hub, which follows the fastest reader, stops.
STALLED = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]


async def test_a_reader_that_stops_on_one_replica_does_not_stall_another(
    emu: Any, redis_url: str
) -> None:
    """The caller on the other replica got 21 of 60 pages and then DEADLINE_EXCEEDED at
    15 s, while on the same replica it got all 60 in 0.4 s: "a slow reader never holds a
    fast one back" must hold across replicas too."""
    a = Gateway(emu, redis_url=redis_url)
    b = Gateway(emu, redis_url=redis_url)
    stalled = grpc.aio.insecure_channel(a.proc.address, options=STALLED)
    try:
        req = classify_request(emu, count=24, page_limit=2)  # 12 pages
        stopped = pb_grpc.ClassifyServiceStub(stalled).Classify(req)
        assert (await stopped.read()).page_number == 1  # A holds the chain; its caller stops
        async with b.stub() as stub_b:
            pages, err = await collect(stub_b.Classify(req, timeout=10))
        detached = b.metric("classify_gateway_shared_chains_total", 'event="detached"')
        stopped.cancel()
    finally:
        await stalled.close()
        a.stop()
        b.stop()
    assert err is None, err
    assert [p.page_number for p in pages] == list(range(1, 13))
    assert detached == 1, "B went on by itself"
