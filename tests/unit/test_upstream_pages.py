"""The v1.2 backend's pages and page against a scripted upstream: paths, tokens, prefetch depth."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.v1_2.client import UpstreamClient
from classify_gateway.config import from_env
from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError
from tests.support.upstream import FakeUpstream, serving

PAGES = [{"data": [], "page_info": {"limit_per_page": 1, "total_results": 4}}] * 4


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    scripted = FakeUpstream(PAGES)
    with serving(scripted) as url:
        yield scripted, url


@pytest.fixture
async def client(upstream: tuple[FakeUpstream, str]) -> AsyncIterator[UpstreamClient]:
    settings = from_env({}, upstream_url=upstream[1], api_key="k", retry_max_attempts=1)
    c = UpstreamClient(settings)
    yield c
    await c.aclose()


def call(seconds: float = 10.0) -> CallContext:
    return CallContext("k", time.monotonic() + seconds, trace={"traceparent": "00-x-y-01"})


def request(**fields: object) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        video_ids=["v1"],
        options=[pb.SEARCH_OPTION_VISUAL],
        classes=[pb.ClassDefinition(name="a", prompts=["b"])],
        **fields,  # type: ignore[arg-type]
    )


async def test_every_page_numbered_and_paths_from_the_tokens(
    client: UpstreamClient, upstream: tuple[FakeUpstream, str]
) -> None:
    q = client.question(request())
    async with contextlib.aclosing(client.pages(call(), q)) as pages:
        got = [(p.message(0).page_number, p.next_token) async for p in pages]
    assert got == [(0, "p1"), (0, "p2"), (0, "p3"), (0, "")]
    assert len(upstream[0].bodies) == 1  # one POST, then GETs of the tokens
    assert all(h["x-api-key"] == "k" for h in upstream[0].headers)
    assert all(h["traceparent"] == "00-x-y-01" for h in upstream[0].headers)


async def test_max_pages_stops_without_fetching_further(
    client: UpstreamClient, upstream: tuple[FakeUpstream, str]
) -> None:
    q = client.question(request())
    async with contextlib.aclosing(client.pages(call(), q, limit=2)) as pages:
        got = [p.next_token async for p in pages]
    assert got == ["p1", "p2"]
    assert len(upstream[0].headers) == 2


async def test_prefetch_is_exactly_one_page_ahead(
    client: UpstreamClient, upstream: tuple[FakeUpstream, str]
) -> None:
    async with contextlib.aclosing(client.pages(call(), client.question(request()))) as pages:
        first = await anext(pages)
        assert first.next_token == "p1"
        await asyncio.sleep(0.3)  # a slow caller: page 2 is fetched, page 3 is not
        assert len(upstream[0].headers) == 2
        second = await anext(pages)
        await asyncio.sleep(0.3)
        assert second.next_token == "p2"
        assert len(upstream[0].headers) == 3


async def test_a_resumed_stream_starts_at_its_token(
    client: UpstreamClient, upstream: tuple[FakeUpstream, str]
) -> None:
    async with contextlib.aclosing(client.pages(call(), None, "p2")) as pages:
        got = [p.next_token async for p in pages]
    assert got == ["p3", ""]
    assert upstream[0].bodies == []


async def test_a_refused_token_names_the_field_and_cannot_be_resumed(
    client: UpstreamClient,
) -> None:
    with pytest.raises(GatewayError) as info:
        await client.page(call(), "nope")
    err = info.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.http_status == 400 and err.token_refused
    assert [f for f, _ in err.violations] == ["page_token"]


async def test_one_page_by_token(client: UpstreamClient) -> None:
    page = await client.page(call(), "p3")
    assert pb.GetClassifyPageResponse.FromString(page.body).page_info.prev_page_token == "p2"
    assert page.prev_token == "p2"


async def test_no_time_left_is_deadline_exceeded_without_a_request(
    client: UpstreamClient, upstream: tuple[FakeUpstream, str]
) -> None:
    with pytest.raises(GatewayError) as info:
        await client.page(call(0.05), "p1")
    assert info.value.reason == "DEADLINE_EXCEEDED"
    assert upstream[0].headers == []


async def test_calls_share_their_request_headers_unless_they_forward_a_trace(
    client: UpstreamClient, upstream: tuple[FakeUpstream, str]
) -> None:
    """Every waiting stream would hold its own headers: calls with the same API key and no
    trace context share them, and a traced call's headers stay its own (its traceparent
    reaches no other call's request)."""
    plain = [CallContext(key, time.monotonic() + 10) for key in ("k", "k", "k2")]
    traced = call()
    assert client._headers(plain[0]) is client._headers(plain[1])
    assert client._headers(plain[0]) is not client._headers(plain[2])
    assert client._headers(traced) is not client._headers(plain[0])
    for ctx in (plain[0], traced, plain[2], plain[1]):
        async with contextlib.aclosing(client.pages(ctx, client.question(request()))) as pages:
            await anext(pages)
    sent = [(h["x-api-key"], h.get("traceparent")) for h in upstream[0].headers]
    assert sent[0] == ("k", None) and sent[-1] == ("k", None)
    assert ("k", "00-x-y-01") in sent and ("k2", None) in sent
    assert all(h["content-type"] == "application/json" for h in upstream[0].headers[:1])


def test_a_question_is_kept_by_a_digest_of_its_canonical_form(client: UpstreamClient) -> None:
    """Every waiting stream's chain holds its Question: its key is 32 bytes whatever the
    size of the question, and still equal exactly for the same canonical question."""
    many = request(page_limit=10)
    many.classes.extend(pb.ClassDefinition(name=f"c{i}", prompts=["p" * 50]) for i in range(40))
    key = client.question(many).key
    assert len(key) == 32
    same = request()  # page_limit 10 is the upstream default
    same.classes.extend(many.classes[1:])
    assert client.question(same).key == key
    assert client.question(request()).key != key
