"""Each row of the error table, end to end, with details decoded as a client would."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_gateway.core.errors import DOMAIN
from classify_gateway.telemetry.observability import JsonFormatter
from tests.support.classify import classify_request, journal
from tests.support.gateway import collect, error_details, no_cache_gateway
from tests.support.logs import events

C = grpc.StatusCode


def gw_for(emu: Any, **kw: Any) -> Any:
    return no_cache_gateway(emu.base_url + "/v1.2", emu.api_key, **kw)


@pytest.mark.parametrize(
    "action,code,reason,http_status,attempts",
    [
        (
            {
                "type": "status",
                "status": 400,
                "code": "parameter_invalid",
                "message": "The video_ids parameter is invalid.",
            },
            C.INVALID_ARGUMENT,
            "PARAMETER_INVALID",
            "400",
            1,
        ),
        (
            {"type": "status", "status": 401, "code": "api_key_invalid", "message": "bad key"},
            C.UNAUTHENTICATED,
            "API_KEY_INVALID",
            "401",
            1,
        ),
        (
            {"type": "status", "status": 403, "code": "forbidden"},
            C.PERMISSION_DENIED,
            "FORBIDDEN",
            "403",
            1,
        ),
        (
            {
                "type": "status",
                "status": 404,
                "code": "resource_not_exist",
                "message": "Resource with id x does not exist in videos.",
            },
            C.NOT_FOUND,
            "RESOURCE_NOT_EXIST",
            "404",
            1,
        ),
        ({"type": "status", "status": 500}, C.UNAVAILABLE, None, "500", 1),
        ({"type": "status", "status": 502}, C.UNAVAILABLE, None, "502", 3),
        ({"type": "status", "status": 503}, C.UNAVAILABLE, None, "503", 3),
        ({"type": "status", "status": 504}, C.UNAVAILABLE, None, "504", 3),
        (
            {"type": "rate_limit", "retry_after": 0},
            C.RESOURCE_EXHAUSTED,
            "TOO_MANY_REQUESTS",
            "429",
            3,
        ),
        ({"type": "reset"}, C.UNAVAILABLE, "UPSTREAM_UNREACHABLE", None, 3),
        ({"type": "malformed"}, C.UNAVAILABLE, "UPSTREAM_MALFORMED_RESPONSE", None, 3),
        ({"type": "truncate"}, C.UNAVAILABLE, "UPSTREAM_MALFORMED_RESPONSE", None, 3),
        ({"type": "wrong_types"}, C.DATA_LOSS, "UPSTREAM_SCHEMA_MISMATCH", None, 1),
    ],
)
async def test_error_table_row(
    emulator: Any,
    action: dict[str, Any],
    code: grpc.StatusCode,
    reason: str | None,
    http_status: str | None,
    attempts: int,
) -> None:
    req = classify_request(emulator)
    emulator.admin.add_fault({"match": {"method": "POST"}, "times": -1, "action": action})
    async with gw_for(emulator, retry_max_attempts=3) as gw:
        pages, err = await collect(gw.stub.Classify(req, timeout=10))
    assert pages == []
    assert err is not None
    assert err.code() == code, err.details()
    d = error_details(err)
    assert d.info is not None
    assert d.info.domain == DOMAIN
    if reason:
        assert d.info.reason == reason
    assert d.info.metadata.get("http_status") == http_status
    assert "resume_page_token" not in d.info.metadata  # nothing to resume before page 1
    assert len(journal(emulator, "POST")) == attempts  # retried only where the table says
    if code == C.RESOURCE_EXHAUSTED:
        assert d.retry is not None
    if code == C.UNAUTHENTICATED:
        assert "gateway's credentials" in err.details()
    if code == C.NOT_FOUND:
        assert d.resource is not None and d.resource.resource_name == "x"


async def test_real_upstream_validation_error_maps_to_invalid_argument(emulator: Any) -> None:
    req = classify_request(emulator)
    req.video_ids[0] = "000000000000000000000000"  # well-formed, but no such video
    async with gw_for(emulator) as gw:
        _, err = await collect(gw.stub.Classify(req))
    assert err is not None and err.code() == C.NOT_FOUND
    d = error_details(err)
    assert d.info is not None and d.info.reason == "RESOURCE_NOT_EXIST"


async def test_wrong_gateway_key_is_unauthenticated(emulator: Any) -> None:
    req = classify_request(emulator)
    async with no_cache_gateway(emulator.base_url + "/v1.2", "not-the-key") as gw:
        _, err = await collect(gw.stub.Classify(req))
    if err is None:
        pytest.fail("the emulator accepted any key: run it with CLASSIFY_EMULATOR_API_KEYS set")
    assert err.code() == C.UNAUTHENTICATED
    assert "gateway's credentials" in err.details()
    assert "not-the-key" not in err.details()


async def test_retries_then_success(emulator: Any) -> None:
    req = classify_request(emulator, page_limit=50)
    emulator.admin.add_fault(
        {"match": {"method": "POST"}, "times": 2, "action": {"type": "status", "status": 503}}
    )
    async with gw_for(emulator) as gw:
        pages, err = await collect(gw.stub.Classify(req))
    assert err is None and len(pages) == 1
    assert [r["status"] for r in journal(emulator, "POST")] == [503, 503, 200]


async def test_retry_after_is_honoured(emulator: Any) -> None:
    req = classify_request(emulator, page_limit=50)
    emulator.admin.add_fault(
        {
            "match": {"method": "POST"},
            "times": 1,
            "action": {"type": "rate_limit", "retry_after": 1},
        }
    )
    async with gw_for(emulator) as gw:
        started = time.monotonic()
        pages, err = await collect(gw.stub.Classify(req))
    assert err is None and len(pages) == 1
    assert time.monotonic() - started >= 0.95
    posts = journal(emulator, "POST")
    assert [r["status"] for r in posts] == [429, 200]


async def test_retry_after_beyond_deadline_gives_retry_info_at_once(emulator: Any) -> None:
    req = classify_request(emulator)
    emulator.admin.add_fault(
        {
            "match": {"method": "POST"},
            "times": -1,
            "action": {"type": "rate_limit", "retry_after": 30},
        }
    )
    async with gw_for(emulator) as gw:
        started = time.monotonic()
        _, err = await collect(gw.stub.Classify(req, timeout=5))
    assert time.monotonic() - started < 1.0
    assert err is not None and err.code() == C.RESOURCE_EXHAUSTED
    d = error_details(err)
    assert d.retry is not None
    assert 29 <= d.retry.retry_delay.seconds <= 30
    assert len(journal(emulator, "POST")) == 1


async def test_transient_reset_mid_body_is_retried(emulator: Any) -> None:
    req = classify_request(emulator, page_limit=50)
    emulator.admin.add_fault({"match": {"method": "POST"}, "times": 1, "action": {"type": "reset"}})
    async with gw_for(emulator) as gw:
        pages, err = await collect(gw.stub.Classify(req))
    assert err is None and len(pages) == 1


async def test_gateway_rate_limit_queues_instead_of_failing(emulator: Any) -> None:
    req = classify_request(emulator, page_limit=50)
    async with gw_for(emulator, upstream_rps=10, upstream_burst=1) as gw:
        started = time.monotonic()
        results = await asyncio.gather(
            *(collect(gw.stub.Classify(req, timeout=5)) for _ in range(6))
        )
        elapsed = time.monotonic() - started
    assert all(err is None for _, err in results)
    assert elapsed >= 0.45  # six requests at 10/s: at least five intervals
    assert not [r for r in journal(emulator, "POST") if r["status"] == 429]


async def test_gateway_rate_limit_refuses_when_the_deadline_cannot_be_met(emulator: Any) -> None:
    req = classify_request(emulator, page_limit=50)
    async with gw_for(emulator, upstream_rps=1, upstream_burst=1) as gw:
        _, err = await collect(gw.stub.Classify(req, timeout=5))
        assert err is None
        started = time.monotonic()
        _, err = await collect(gw.stub.Classify(req, timeout=0.5))
    assert time.monotonic() - started < 0.3  # at once, not a timeout later
    assert err is not None and err.code() == C.RESOURCE_EXHAUSTED
    d = error_details(err)
    assert d.info is not None and d.info.reason == "GATEWAY_RATE_LIMITED"
    assert d.retry is not None


async def test_expired_token_mid_stream(emulator: Any) -> None:
    req = classify_request(emulator, count=12, page_limit=2)
    emulator.admin.add_fault(
        {
            "match": {"method": "GET", "path": "/classify/"},
            "after": 1,
            "times": 1,
            "action": {"type": "expire_token"},
        }
    )
    async with gw_for(emulator) as gw:
        pages, err = await collect(gw.stub.Classify(req))
    assert len(pages) == 2  # what arrived is kept
    assert err is not None and err.code() == C.INVALID_ARGUMENT
    d = error_details(err)
    # An expired token cannot be resumed from: no resume token, and BadRequest says why.
    assert d.info is not None and "resume_page_token" not in d.info.metadata
    assert d.bad_request is not None
    assert [v.field for v in d.bad_request.field_violations] == ["page_token"]
    assert "expired" in d.bad_request.field_violations[0].description
    assert "page_token" in err.details()


INVALID = [
    (pb.ClassifyRequest(), ["video_ids", "options", "classes"]),
    (
        pb.ClassifyRequest(
            video_ids=["a"],
            index_id="b",
            options=[pb.SEARCH_OPTION_VISUAL],
            classes=[pb.ClassDefinition(name="x", prompts=["y"])],
        ),
        ["video_ids"],
    ),
    (
        pb.ClassifyRequest(
            video_ids=["a"],
            options=[pb.SEARCH_OPTION_VISUAL],
            classes=[pb.ClassDefinition(name="x", prompts=[])],
            page_limit=99,
        ),
        ["classes[0].prompts", "page_limit"],
    ),
]


@pytest.mark.parametrize("req,fields", INVALID)
async def test_invalid_requests_never_reach_the_upstream(
    emulator: Any, req: pb.ClassifyRequest, fields: list[str]
) -> None:
    async with gw_for(emulator) as gw:
        _, err = await collect(gw.stub.Classify(req))
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await gw.stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token="bad/token"))
    assert err is not None and err.code() == C.INVALID_ARGUMENT
    d = error_details(err)
    assert d.bad_request is not None
    assert [v.field for v in d.bad_request.field_violations] == fields
    assert d.info is not None and d.info.reason == "INVALID_REQUEST"
    assert unary.value.code() == C.INVALID_ARGUMENT
    assert emulator.admin.requests() == []


async def test_caller_key_refused_unless_allowed(emulator: Any) -> None:
    req = classify_request(emulator, page_limit=50)
    md = (("x-api-key", emulator.api_key),)
    async with gw_for(emulator) as gw:
        _, err = await collect(gw.stub.Classify(req, metadata=md))
    assert err is not None and err.code() == C.PERMISSION_DENIED
    async with no_cache_gateway(emulator.base_url + "/v1.2", "", allow_caller_api_key=True) as gw:
        pages, err = await collect(gw.stub.Classify(req, metadata=md))
        assert err is None and pages
        _, err = await collect(gw.stub.Classify(req))
        assert err is not None and err.code() == C.UNAUTHENTICATED


async def test_the_key_is_absent_from_logs(emulator: Any) -> None:
    """Run the success and failure paths with a capturing JSON handler."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(
        JsonFormatter()
    )  # no redaction configured: the key must simply never be there
    logger = logging.getLogger("classify_gateway")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        req = classify_request(emulator, page_limit=2)
        async with gw_for(emulator) as gw:
            await collect(gw.stub.Classify(req))
            emulator.admin.add_fault(
                {"match": {}, "times": 2, "action": {"type": "status", "status": 503}}
            )
            await collect(gw.stub.Classify(req))
            emulator.admin.add_fault(
                {
                    "match": {},
                    "times": 1,
                    "action": {"type": "status", "status": 401, "code": "api_key_invalid"},
                }
            )
            await collect(gw.stub.Classify(req))
            await collect(gw.stub.Classify(pb.ClassifyRequest()))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    text = buf.getvalue()
    logged = events(text)
    assert logged["rpc"] >= 4 and logged["upstream_retry"] >= 1
    assert logged["startup"] >= 1
    assert emulator.api_key not in text


SERVICE_CONFIG = (
    Path(__file__).resolve().parents[2] / "deploy" / "service-config.json"
).read_text()


async def test_client_retry_policy_and_gateway_pushback(emulator: Any) -> None:
    """The shipped service config never replays a call that reached the upstream: every
    UNAVAILABLE after an upstream request carries grpc-retry-pushback-ms: -1 (a 500 the
    gateway does not retry, a 503 it retried). Only a refusal at the door (a draining
    gateway, no upstream request) comes without it, and the client retries that."""
    req = classify_request(emulator, page_limit=50)
    options = [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
    async with gw_for(emulator, retry_max_attempts=3) as gw:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gw.gateway.port}", options=options)
        stub = pb_grpc.ClassifyServiceStub(channel)
        # A single 500: the gateway does not retry it, and neither does the client.
        emulator.admin.add_fault(
            {"match": {"method": "POST"}, "times": 1, "action": {"type": "status", "status": 500}}
        )
        _, err = await collect(stub.Classify(req, timeout=10))
        assert err is not None and err.code() == C.UNAVAILABLE
        assert dict(err.trailing_metadata())["grpc-retry-pushback-ms"] == "-1"
        assert [r["status"] for r in journal(emulator, "POST")] == [500]
        # A persistent 503: the gateway retries 3 times, then pushes back; no client retry.
        emulator.admin.reset()
        emulator.admin.add_fault(
            {"match": {"method": "POST"}, "times": -1, "action": {"type": "status", "status": 503}}
        )
        _, err = await collect(stub.Classify(req, timeout=10))
        assert err is not None and err.code() == C.UNAVAILABLE
        assert dict(err.trailing_metadata())["grpc-retry-pushback-ms"] == "-1"
        assert len(journal(emulator, "POST")) == 3
        # A draining gateway refuses at the door: no pushback, no upstream request, and
        # the client's policy tries again (here the same gateway refuses each attempt).
        emulator.admin.reset()
        gw.gateway.drain.draining = True
        _, err = await collect(stub.Classify(req, timeout=10))
        assert err is not None and err.code() == C.UNAVAILABLE
        assert "grpc-retry-pushback-ms" not in dict(err.trailing_metadata())
        assert journal(emulator, "POST") == []
        gw.gateway.drain.draining = False
        await channel.close()
