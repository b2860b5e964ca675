"""Streaming against the emulator: pages, caps, resume, prefetch, cancel, deadlines."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_gateway.backends.v1_2.translate import request_to_json
from tests.support.classify import classify_request, data_of, direct_pages, index_id, journal
from tests.support.gateway import collect, error_details, no_cache_gateway


def gw_for(emu: Any, **kw: Any) -> Any:
    return no_cache_gateway(emu.base_url + "/v1.2", emu.api_key, **kw)


async def test_every_page_in_order_equal_to_the_upstream(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=2)
    expected = direct_pages(emulator, request_to_json(req))
    assert len(expected) >= 3, "the corpus should give a multi-page result"
    async with gw_for(emulator) as gw:
        pages, err = await collect(gw.stub.Classify(req))
    assert err is None
    assert [p.page_number for p in pages] == list(range(1, len(expected) + 1))
    assert [data_of(p) for p in pages] == [data_of(p) for p in expected]
    for got, want in zip(pages, expected, strict=True):
        assert got.page_info.limit_per_page == want["page_info"]["limit_per_page"]
        assert got.page_info.total_results == want["page_info"]["total_results"]
        assert got.page_info.HasField("page_expired_at")
    assert all(p.page_info.next_page_token for p in pages[:-1])
    assert pages[-1].page_info.next_page_token == ""
    videos = [v.video_id for p in pages for v in p.data]
    assert len(videos) == len(set(videos)) == pages[0].page_info.total_results


async def test_bulk_classifies_an_index(emulator: Any) -> None:
    req = classify_request(emulator, page_limit=5)
    del req.video_ids[:]
    req.index_id = index_id(emulator)
    async with gw_for(emulator) as gw:
        pages, err = await collect(gw.stub.Classify(req))
    assert err is None and pages
    assert [r["path"] for r in journal(emulator, "POST")] == ["/v1.2/classify/bulk"]


async def test_page_cap_and_resume(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=2)
    async with gw_for(emulator) as gw:
        full, err = await collect(gw.stub.Classify(req))
        assert err is None and len(full) >= 4
        req.max_pages = 2
        head, err = await collect(gw.stub.Classify(req))
        assert err is None
        assert len(head) == 2
        token = head[-1].page_info.next_page_token
        assert token
        # The cap stops fetching too: no third page was requested.
        assert len(journal(emulator, "GET", "/classify/")) == len(full) - 1 + 1
        tail, err = await collect(gw.stub.Classify(pb.ClassifyRequest(page_token=token)))
        assert err is None
    assert [p.page_number for p in tail] == list(range(1, len(full) - 1))
    assert [data_of(p) for p in head + tail] == [data_of(p) for p in full]


async def test_unary_page_rpc_walks_by_hand(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=3, max_pages=1)
    async with gw_for(emulator) as gw:
        first, err = await collect(gw.stub.Classify(req))
        assert err is None
        token = first[0].page_info.next_page_token
        seen = [data_of(first[0])]
        while token:
            page = await gw.stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token=token))
            seen.append(data_of(page))  # type: ignore[arg-type]
            token = page.page_info.next_page_token
        # And back again with prev_page_token.
        back = await gw.stub.GetClassifyPage(
            pb.GetClassifyPageRequest(page_token=page.page_info.prev_page_token)
        )
    assert data_of(back) == seen[-2]  # type: ignore[arg-type]
    ids = [v.video_id for d in seen for v in d]
    assert len(ids) == len(set(ids)) == first[0].page_info.total_results


async def test_prefetch_is_bounded_to_one_page(emulator: Any) -> None:
    """A slow caller holds the gateway to one page ahead of what it has read.

    The caller's channel advertises a small HTTP/2 window (as a busy Go or Java
    client does once its buffers fill), so the transport cannot hide pages either:
    what the gateway fetches is bounded by what the caller reads.
    """
    req = classify_request(emulator, count=12, page_limit=1)
    options = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]
    async with (
        gw_for(emulator) as gw,
        grpc.aio.insecure_channel(f"127.0.0.1:{gw.gateway.port}", options=options) as ch,
    ):
        call = pb_grpc.ClassifyServiceStub(ch).Classify(req)
        first = await call.read()
        assert first.page_number == 1
        await asyncio.sleep(0.5)  # a slow caller
        # Page 2 is being written (held by flow control) and page 3 is prefetched: no more.
        gets = journal(emulator, "GET", "/classify/")
        assert len(gets) <= 2, f"fetched {len(gets)} pages ahead of a slow caller"
        second = await call.read()
        assert second.page_number == 2
        await asyncio.sleep(0.3)
        assert len(journal(emulator, "GET", "/classify/")) <= 3
        rest = []
        while (msg := await call.read()) is not grpc.aio.EOF:
            rest.append(msg)
    assert [p.page_number for p in rest] == list(range(3, 13))


async def test_cancel_aborts_the_upstream_request(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=2)
    emulator.admin.add_fault(
        {
            "match": {"method": "GET", "path": "/classify/"},
            "times": -1,
            "action": {"type": "latency", "ms": 3000},
        }
    )
    async with gw_for(emulator) as gw:
        call = gw.stub.Classify(req)
        first = await call.read()
        assert first.page_number == 1
        await asyncio.sleep(0.2)  # page 2 is now in flight upstream
        cancelled_at = time.monotonic()
        call.cancel()
        # The emulator sees the disconnect well before its 3 s latency ends.
        while time.monotonic() - cancelled_at < 2.0:
            gets = journal(emulator, "GET", "/classify/")
            if gets and gets[0].get("disconnected"):
                break
            await asyncio.sleep(0.05)
        gets = journal(emulator, "GET", "/classify/")
        assert len(gets) == 1
        assert gets[0]["disconnected"] is True
        assert not gets[0].get("completed")
        assert time.monotonic() - cancelled_at < 2.0
        # No orphan work: no stream left open, no upstream task running.
        assert gw.gateway.drain.streams == 0


async def test_deadline_exceeded_on_a_slow_upstream(emulator: Any) -> None:
    req = classify_request(emulator)
    emulator.admin.add_fault(
        {"match": {"method": "POST"}, "times": -1, "action": {"type": "latency", "ms": 3000}}
    )
    async with gw_for(emulator) as gw:
        started = time.monotonic()
        pages, err = await collect(gw.stub.Classify(req, timeout=0.5))
        elapsed = time.monotonic() - started
    assert pages == []
    assert err is not None and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 1.5


async def test_gateway_deadline_bounds_retries(emulator: Any) -> None:
    """The caller's deadline bounds all attempts together; the answer comes in time."""
    req = classify_request(emulator)
    emulator.admin.add_fault(
        {"match": {"method": "POST"}, "times": -1, "action": {"type": "status", "status": 503}}
    )
    async with gw_for(
        emulator, retry_max_attempts=20, retry_initial_backoff=0.2, retry_max_backoff=0.4
    ) as gw:
        started = time.monotonic()
        _, err = await collect(gw.stub.Classify(req, timeout=1.0))
        elapsed = time.monotonic() - started
    assert err is not None
    assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert elapsed < 1.3
    assert len(journal(emulator, "POST")) in range(2, 20)


async def test_default_deadline_applies_when_caller_sets_none(emulator: Any) -> None:
    req = classify_request(emulator)
    emulator.admin.add_fault(
        {"match": {"method": "POST"}, "times": -1, "action": {"type": "latency", "ms": 3000}}
    )
    async with gw_for(emulator, default_deadline=0.4) as gw:
        started = time.monotonic()
        _, err = await collect(gw.stub.Classify(req))
    assert err is not None and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5


async def test_mid_stream_failure_keeps_pages_and_gives_resume_token(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=2)
    async with gw_for(emulator) as gw:
        full, err = await collect(gw.stub.Classify(req))
        assert err is None and len(full) >= 4
        emulator.admin.reset()
        emulator.admin.add_fault(
            {
                "match": {"method": "GET", "path": "/classify/"},
                "after": 1,
                "times": -1,
                "action": {"type": "status", "status": 500},
            }
        )
        head, err = await collect(gw.stub.Classify(req))
        assert err is not None
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert len(head) == 2  # pages 1 and 2 arrived before page 3 failed
        details = error_details(err)
        assert details.info is not None
        resume = details.info.metadata["resume_page_token"]
        assert resume == head[-1].page_info.next_page_token
        assert details.info.metadata["http_status"] == "500"
        emulator.admin.clear_faults()
        tail, err = await collect(gw.stub.Classify(pb.ClassifyRequest(page_token=resume)))
        assert err is None
    assert [data_of(p) for p in head + tail] == [data_of(p) for p in full]


async def test_concurrent_streams_are_independent(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=3)
    async with gw_for(emulator) as gw:
        results = await asyncio.gather(*(collect(gw.stub.Classify(req)) for _ in range(20)))
    assert all(err is None for _, err in results)
    first = [data_of(p) for p in results[0][0]]
    assert all([data_of(p) for p in pages] == first for pages, _ in results)
