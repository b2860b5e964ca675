"""The v1.3 backend in real `serve` processes: replicas on one Redis share the work,
tokens work on any replica and after a restart, and a cancelled call stops spending.

The v1.3 backend computes every page at the start of a classification (ranking needs
every video), so "one chain" here means one set of upstream requests: one embed-v2
per distinct prompt, the index listing, one retrieval per video.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_emulator.corpus import Corpus
from tests.support.emulators import reset_around
from tests.support.gateway import collect, error_info
from tests.support.sharing import Gateway, pages_bytes

SOCIAL = "6650701a27f0a43b740fd011"
V13 = {"upstream_api": "v1.3"}


@pytest.fixture
def emu(open_emulator: Any) -> Iterator[Any]:
    yield from reset_around(open_emulator, latency_ms=40)


def request(page_limit: int = 2) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        index_id=SOCIAL,
        options=[pb.SEARCH_OPTION_VISUAL, pb.SEARCH_OPTION_CONVERSATION],
        classes=[
            pb.ClassDefinition(name="dance", prompts=["people dancing"]),
            pb.ClassDefinition(name="cooking", prompts=["someone cooking food"]),
        ],
        include_clips=True,
        page_limit=page_limit,
    )


def v13_requests(emu: Any) -> int:
    return sum(1 for e in emu.admin.requests() if e["path"].startswith("/v1.3/"))


def one_classification() -> int:
    """Upstream requests of one cold classification of `request()`: 2 prompts, one
    listing page, one retrieval per video of the index."""
    return 2 + 1 + len(Corpus.load(None).indexes[SOCIAL].video_ids)


def unminted(pages: list[pb.ClassifyResponse]) -> list[bytes]:
    """The pages without what each replica mints for itself (tokens and their expiry)."""
    out = []
    for p in pages:
        q = pb.ClassifyResponse()
        q.CopyFrom(p)
        q.page_number = 0
        q.page_info.ClearField("next_page_token")
        q.page_info.ClearField("prev_page_token")
        q.page_info.ClearField("page_expired_at")
        out.append(q.SerializeToString())
    return out


async def test_identical_calls_over_two_replicas_cost_one_classification(
    emu: Any, redis: Any
) -> None:
    a = Gateway(emu, redis_url=redis.url, **V13)
    b = Gateway(emu, redis_url=redis.url, **V13)
    try:
        async with a.stub() as stub_a, b.stub() as stub_b:
            results = await asyncio.gather(
                *(collect((stub_a if i % 2 else stub_b).Classify(request())) for i in range(6))
            )
            assert all(err is None for _, err in results)
            first = pages_bytes(results[0][0])
            assert len(first) >= 2
            # Where the two replicas joined one chain, the very same pages. A replica
            # whose follower gave up on a stalled holder (a loaded machine) computes its
            # own: the same results, with tokens of its own minting.
            assert all(unminted(p) == unminted(results[0][0]) for p, _ in results), (
                "two replicas disagree on the results"
            )
            # At most one classification's requests per replica, and the second replica
            # found most of the first one's embeddings in Redis.
            assert v13_requests(emu) <= 2 * one_classification()
            emu.admin.clear_requests()
            again_a, err_a = await collect(stub_a.Classify(request()))
            again_b, err_b = await collect(stub_b.Classify(request()))
            assert err_a is None and err_b is None
            # The repeat is read from the shared page store: one chain for both replicas.
            assert pages_bytes(again_a) == pages_bytes(again_b)
            assert unminted(again_a) == unminted(results[0][0])
            # A token minted by one replica is served by the other.
            token = results[0][0][0].page_info.next_page_token
            page = await stub_b.GetClassifyPage(pb.GetClassifyPageRequest(page_token=token))
            assert page.data == results[0][0][1].data
    finally:
        a.stop()
        b.stop()
    assert v13_requests(emu) == 0


async def test_identical_calls_on_one_replica_are_coalesced(emu: Any) -> None:
    gw = Gateway(emu, **V13)
    try:
        async with gw.stub() as stub:
            results = await asyncio.gather(*(collect(stub.Classify(request())) for _ in range(5)))
    finally:
        gw.stop()
    assert all(err is None for _, err in results)
    assert v13_requests(emu) == one_classification()


async def test_a_token_works_after_a_restart_without_any_shared_store(emu: Any) -> None:
    first = Gateway(emu, **V13)
    try:
        async with first.stub() as stub:
            pages, err = await collect(stub.Classify(request()))
    finally:
        first.stop()
    assert err is None and len(pages) >= 2
    token = pages[0].page_info.next_page_token
    restarted = Gateway(emu, **V13)
    try:
        async with restarted.stub() as stub:
            page = await stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token=token))
            resumed, err = await collect(stub.Classify(pb.ClassifyRequest(page_token=token)))
    finally:
        restarted.stop()
    assert page.data == pages[1].data and page.scoring == pb.SCORING_EMBEDDINGS_V1_3
    assert err is None and [p.data for p in resumed] == [p.data for p in pages[1:]]


async def test_a_cancelled_call_stops_spending_the_quota(emu: Any) -> None:
    emu.admin.set_config(latency_ms=300)
    gw = Gateway(emu, **V13, v13_fetch_concurrency=1)
    try:
        async with gw.stub() as stub:
            call = stub.Classify(request())
            await asyncio.sleep(1.0)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call.read()
            await asyncio.sleep(0.5)
            after_cancel = v13_requests(emu)
            await asyncio.sleep(1.5)
            assert v13_requests(emu) == after_cancel
            assert after_cancel < one_classification()
    finally:
        gw.stop()


async def test_a_spent_embed_quota_stops_every_replica_but_not_video_reads(
    emu: Any, redis: Any
) -> None:
    # v1.3 limits embed-v2 and video retrieval separately; so does the shared quota.
    emu.admin.set_config(rate_limit_embed=2, rate_window_seconds=600)
    # B learns of the spent quota through Redis: a loaded machine can take longer than the
    # default 100 ms, and a replica that falls back limits on its own and asks the upstream
    # (what that costs is test_redis_quota_chaos's subject, not this).
    a = Gateway(emu, redis_url=redis.url, redis_timeout_ms=2000, **V13)
    b = Gateway(emu, redis_url=redis.url, redis_timeout_ms=2000, **V13)
    try:
        async with a.stub() as stub_a, b.stub() as stub_b:
            pages, err = await collect(stub_a.Classify(request()))  # 2 prompts: the quota
            assert err is None and pages
            embeds = sum(1 for e in emu.admin.requests() if e["path"] == "/v1.3/embed-v2")
            assert embeds == 2
            new_prompt = request()
            new_prompt.classes.add(name="sports", prompts=["people playing sports"])
            _, err = await collect(stub_b.Classify(new_prompt, timeout=5))
            assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Replica B knew from Redis: it sent no embed request to find out.
            assert embeds == sum(1 for e in emu.admin.requests() if e["path"] == "/v1.3/embed-v2")
            # Video retrieval is another bucket: a known question on another index goes.
            other = request()
            other.index_id = "664f13a0a71303ec18b99e04"
            pages, err = await collect(stub_b.Classify(other))
            assert err is None and pages
    finally:
        a.stop()
        b.stop()


async def test_a_drain_cuts_a_long_classification_off_with_shutting_down(emu: Any) -> None:
    # Every video retrieval is slow: the classification outlives the drain's grace.
    emu.admin.set_config(latency_ms=400)
    gw = Gateway(emu, **V13, drain_grace=1, v13_fetch_concurrency=1)
    try:
        async with gw.stub() as stub:
            call = stub.Classify(request())
            await asyncio.sleep(1.0)  # the classification is under way
            gw.proc.popen.send_signal(signal.SIGTERM)
            started = time.monotonic()
            pages, err = await collect(call)
            took = time.monotonic() - started
            exit_code = await asyncio.to_thread(gw.proc.popen.wait, 10)
    finally:
        gw.stop()
    assert pages == [] and err is not None
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    info = error_info(err)
    assert info is not None and info.reason == "GATEWAY_SHUTTING_DOWN"
    assert took < 1 + 2 and exit_code == 0


async def test_a_no_cache_call_on_one_replica_refreshes_the_listings_for_the_others(
    emu: Any, redis: Any
) -> None:
    """Both replicas hold the index's listing (each fetched it or read it in Redis); a
    video moves out of the index; a no-cache call on A sees it, and so does a new question
    on B at once, from the listing A refreshed in Redis (before, B kept its own copy for
    the listing's TTL)."""
    # A refresh that cannot reach Redis reaches only its own replica (docs/design.md):
    # Redis may be slow on a loaded machine, but not 2 s slow.
    a = Gateway(emu, redis_url=redis.url, redis_timeout_ms=2000, **V13)
    b = Gateway(emu, redis_url=redis.url, redis_timeout_ms=2000, **V13)
    try:
        async with a.stub() as stub_a, b.stub() as stub_b:
            pages, err = await collect(stub_a.Classify(request()))
            assert err is None
            moved = pages[0].data[0].video_id
            _, err = await collect(stub_b.Classify(request(page_limit=3)))
            assert err is None
            emu.admin.move_video(moved, "664f13a0a71303ec18b99e04")
            fresh, err = await collect(
                stub_a.Classify(request(), metadata=(("cache-control", "no-cache"),))
            )
            assert err is None and moved not in {v.video_id for p in fresh for v in p.data}
            other = request(page_limit=4)
            other.classes.add(name="dancers", prompts=["dancers on a stage"])
            later, err = await collect(stub_b.Classify(other))
            assert err is None and later
            assert moved not in {v.video_id for p in later for v in p.data}
    finally:
        a.stop()
        b.stop()
