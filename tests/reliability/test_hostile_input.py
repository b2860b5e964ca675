"""Hostile caller input: refused with INVALID_ARGUMENT and a BadRequest that always fits.

Issue 13 items 5 and 9. A request whose violations are many or long (1,000 copies of one
video id, 10,000 classes with empty names, 2,000-character class names) used to make a
BadRequest trailer of 34 KB to 1.8 MB, which grpc refuses to deliver ("received metadata
size exceeds hard limit"): the caller saw a bare RESOURCE_EXHAUSTED. Control characters
in any string field reached the upstream. Two `x-api-key` entries, the second empty,
skipped the refusal of callers' keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.edge.validation import _string_fields, classify_violations
from tests.support.gateway import collect, error_details, running_gateway
from tests.support.hostile_upstream import HostileUpstream, Reply, hostile_upstream, page

C = grpc.StatusCode
KEY = "tlk_INPUT_canary_3f9a"
# What every caller must be able to receive: grpc's default metadata limit is 8 KiB.
TRAILER_LIMIT = 8 * 1024


def good(**kw: Any) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        video_ids=kw.pop("video_ids", ["v1"]),
        options=[pb.SEARCH_OPTION_VISUAL],
        classes=kw.pop("classes", [pb.ClassDefinition(name="Dance", prompts=["dance"])]),
        **kw,
    )


@pytest.fixture
async def up() -> AsyncIterator[HostileUpstream]:
    async with hostile_upstream(lambda seen: Reply.json(page())) as server:
        yield server


def trailer_size(err: grpc.aio.AioRpcError) -> int:
    return sum(len(k) + len(v) for k, v in err.trailing_metadata() or ())


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(good(video_ids=["same"] * 1000), id="1000-duplicate-video-ids"),
        pytest.param(
            good(classes=[pb.ClassDefinition(name="", prompts=[]) for _ in range(10000)]),
            id="10000-empty-classes",
        ),
        pytest.param(
            good(classes=[pb.ClassDefinition(name="n" * 2000, prompts=["p"]) for _ in range(100)]),
            id="100-classes-one-2000-char-name",
        ),
        pytest.param(good(video_ids=["\u00e9" * 2000] * 1000), id="1000-long-non-ascii-duplicates"),
    ],
)
async def test_any_number_of_violations_reaches_the_caller(
    up: HostileUpstream, request_: pb.ClassifyRequest
) -> None:
    async with running_gateway(up.base_url, KEY, max_receive_message_bytes=8 * 1024 * 1024) as gw:
        for _ in range(3):  # grpc's refusal above the soft limit is random: try more than once
            _, err = await collect(gw.stub.Classify(request_, timeout=10))
            assert err is not None and err.code() == C.INVALID_ARGUMENT, err
            assert trailer_size(err) < TRAILER_LIMIT
            details = error_details(err)
            assert details.bad_request is not None and details.info is not None
            # Every case has far more than 20 violations (99 to 29,999): the first 20 are
            # listed, and the message says how many there were in all.
            assert len(details.bad_request.field_violations) == 20
            assert "in all, the first 20 listed in BadRequest" in (err.details() or "")
            assert len(err.details() or "") <= 1024
        assert up.requests == []


def _inject(req: pb.ClassifyRequest, path: str, bad: str) -> pb.ClassifyRequest:
    """A copy of `req` with `bad` appended to the string at proto path `path`."""
    out = pb.ClassifyRequest()
    out.CopyFrom(req)
    target: Any = out
    parts = path.split(".")
    for part in parts[:-1]:
        name, _, index = part.partition("[")
        target = getattr(target, name)
        if index:
            target = target[int(index[:-1])]
    name, _, index = parts[-1].partition("[")
    if index:
        getattr(target, name)[int(index[:-1])] += bad
    else:
        setattr(target, name, getattr(target, name) + bad)
    return out


FULL = pb.ClassifyRequest(
    video_ids=["v1", "v2"],
    options=[pb.SEARCH_OPTION_VISUAL],
    classes=[
        pb.ClassDefinition(name="Dance", prompts=["dance", "ballet"]),
        pb.ClassDefinition(name="Cook", prompts=["recipe"]),
    ],
)
STRING_PATHS = [p for p, _ in _string_fields(FULL)]


@pytest.mark.parametrize("bad", ["\x00", "\x1b[31m", "\r\nX-Evil: 1", "\x7f", "\u202e", "\x85"])
@pytest.mark.parametrize("path", STRING_PATHS)
def test_control_characters_refused_in_every_string_field(path: str, bad: str) -> None:
    assert path in [f for f, _ in classify_violations(_inject(FULL, path, bad))]


def test_every_string_field_is_walked() -> None:
    """The walk reaches each string field of the proto, so a new one is checked too."""
    assert set(STRING_PATHS) == {
        "video_ids[0]",
        "video_ids[1]",
        "classes[0].name",
        "classes[0].prompts[0]",
        "classes[0].prompts[1]",
        "classes[1].name",
        "classes[1].prompts[0]",
    }
    assert "index_id" in [p for p, _ in _string_fields(pb.ClassifyRequest(index_id="i"))]
    assert "page_token" in [p for p, _ in _string_fields(pb.ClassifyRequest(page_token="t"))]


async def test_control_characters_never_reach_the_upstream(up: HostileUpstream) -> None:
    async with running_gateway(up.base_url, KEY) as gw:
        for path in STRING_PATHS:
            _, err = await collect(gw.stub.Classify(_inject(FULL, path, "\x1b\x00"), timeout=10))
            assert err is not None and err.code() == C.INVALID_ARGUMENT
            bad_request = error_details(err).bad_request
            assert bad_request is not None
            assert path in [v.field for v in bad_request.field_violations]
        page_err: grpc.aio.AioRpcError | None = None
        try:
            await gw.stub.GetClassifyPage(
                pb.GetClassifyPageRequest(page_token="tok\x1b"), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            page_err = exc
        assert page_err is not None and page_err.code() == C.INVALID_ARGUMENT
    assert up.requests == []


@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param((("x-api-key", "tlk_caller_1"), ("x-api-key", "")), id="second-empty"),
        pytest.param((("x-api-key", ""), ("x-api-key", "tlk_caller_1")), id="first-empty"),
        pytest.param((("x-api-key", "tlk_caller_1"), ("x-api-key", "tlk_caller_2")), id="two"),
        pytest.param((("x-api-key", ""),), id="empty"),
        pytest.param((("x-api-key", "tlk caller"),), id="space"),
    ],
)
async def test_repeated_or_empty_caller_key_is_refused(
    up: HostileUpstream, allow: bool, metadata: tuple[tuple[str, str], ...]
) -> None:
    async with running_gateway(up.base_url, KEY, allow_caller_api_key=allow) as gw:
        _, err = await collect(gw.stub.Classify(good(), metadata=metadata, timeout=10))
        assert err is not None
        assert err.code() in (C.INVALID_ARGUMENT, C.PERMISSION_DENIED), err
        if err.code() == C.INVALID_ARGUMENT:
            bad_request = error_details(err).bad_request
            assert bad_request is not None
            assert "x-api-key" in bad_request.field_violations[0].field
        for _, value in metadata:
            if value:
                assert value not in str(err.details()) + str(err.trailing_metadata())
        try:
            await gw.stub.GetClassifyPage(
                pb.GetClassifyPageRequest(page_token="tok"), metadata=metadata, timeout=10
            )
            raise AssertionError("GetClassifyPage accepted the key")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in (C.INVALID_ARGUMENT, C.PERMISSION_DENIED)
    # Never the configured key in its place: nothing was sent at all.
    assert up.requests == []
