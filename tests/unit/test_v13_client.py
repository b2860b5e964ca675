"""The v1.3 client against scripted upstream answers: what it refuses to cache."""

from __future__ import annotations

import asyncio
import time

import grpc
import orjson
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.v1_3.client import V13Client
from classify_gateway.config import from_env
from classify_gateway.core.call import CallContext
from classify_gateway.core.errors import GatewayError
from tests.support.raw_upstream import RawUpstream, ok

KEY = "raw-upstream-key-000000"


def request() -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        index_id="idx",
        options=[pb.SEARCH_OPTION_VISUAL],
        classes=[pb.ClassDefinition(name="dance", prompts=["people dancing"])],
    )


def video(video_id: str) -> bytes:
    segment = {
        "float": [1.0, 0.0, 0.0],
        "start_offset_sec": 0.0,
        "end_offset_sec": 6.0,
        "embedding_option": "visual",
        "embedding_scope": "clip",
    }
    return orjson.dumps(
        {
            "_id": video_id,
            "system_metadata": {"duration": 6.0},
            "embedding": {"model_name": "marengo3.0", "video_embedding": {"segments": [segment]}},
        }
    )


@pytest.mark.parametrize("answered", ["vid-a", "vid-b"])
async def test_another_videos_answer_is_refused_not_cached(answered: str) -> None:
    embedding = orjson.dumps({"data": [{"embedding": [1.0, 0.0, 0.0]}]})
    listing = orjson.dumps({"data": [{"_id": "vid-a"}], "page_info": {"total_page": 1}})
    async with RawUpstream([ok(embedding), ok(listing), ok(video(answered))]) as up:
        settings = from_env({}, upstream_url=up.url + "/v1.3", api_key=KEY, upstream_api="v1.3")
        client = V13Client(settings)
        call = CallContext(KEY, time.monotonic() + 10)
        try:
            backend_question = client.question(request())
            if answered == "vid-a":
                pages = [p async for p in client.pages(call, backend_question)]
                listed = pb.ClassifyResponse.FromString(pages[0].body)
                assert [v.video_id for v in listed.data] == ["vid-a"]
            else:
                with pytest.raises(GatewayError) as info:
                    _ = [p async for p in client.pages(call, backend_question)]
                assert info.value.code == grpc.StatusCode.DATA_LOSS
                assert "vid-b" in info.value.message
        finally:
            await client.aclose()
    paths = [r.split(b" ", 2)[1] for r in up.requests]
    assert paths == [b"/v1.3/embed-v2", b"/v1.3/indexes/idx/videos?page=1&page_limit=50",
                     b"/v1.3/indexes/idx/videos/vid-a?embedding_option=visual"]  # fmt: skip


async def test_a_failed_prompt_embedding_cancels_the_others_and_keeps_its_status() -> None:
    rejected = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 58\r\n\r\n"
        b'{"code":"parameter_invalid","message":"The text is bad."}'
    ).replace(
        b"58", str(len(b'{"code":"parameter_invalid","message":"The text is bad."}')).encode()
    )
    async with RawUpstream([rejected], delay=0.05) as up:
        settings = from_env(
            {}, upstream_url=up.url + "/v1.3", api_key=KEY, upstream_api="v1.3",
            v13_fetch_concurrency=1,
        )  # fmt: skip
        client = V13Client(settings)
        call = CallContext(KEY, time.monotonic() + 10)
        many = request()
        many.classes[0].prompts.extend(["b", "c", "d"])
        try:
            with pytest.raises(GatewayError) as info:
                _ = [p async for p in client.pages(call, client.question(many))]
            await asyncio.sleep(0.5)  # time for any embedding still running to be sent
        finally:
            await client.aclose()
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.reason == "PARAMETER_INVALID"
    # At most the one already woken for the freed slot; the other prompts were never sent
    # (gathered instead, each would have been sent and retried).
    assert len(up.requests) <= 2
