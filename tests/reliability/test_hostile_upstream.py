"""A hostile or broken upstream never costs the key, the memory or a clear status.

Issue 13 items 1, 2, 3, 4, 6 and 8, each against tests/support/hostile_upstream.py, which
answers whatever a test scripts: page tokens that leave /classify/, tokens that repeat,
bodies of any size, messages that echo the key, answers that never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import itertools
import json
import logging
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import psutil
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_gateway.telemetry.observability import JsonFormatter
from tests.support.gateway import collect, error_details, no_cache_gateway
from tests.support.hostile_upstream import (
    Reply,
    Seen,
    endless,
    hostile_upstream,
    hostile_upstream_thread,
    page,
    script,
    sized,
)
from tests.support.processes import start_gateway

C = grpc.StatusCode
KEY = "tlk_HOSTILE_canary_7c21e0"
CALLER_KEY = "tlk_HOSTILE_caller_canary_19ab"
REQUEST = pb.ClassifyRequest(
    video_ids=["v1"],
    options=[pb.SEARCH_OPTION_VISUAL],
    classes=[pb.ClassDefinition(name="Dance", prompts=["dance"])],
)
MiB = 1024 * 1024


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """The gateway's log lines as production JSON, without redaction (a key would show)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("classify_gateway")
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def rpc_lines(logs: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == "rpc"]


def reason(err: grpc.aio.AioRpcError) -> str:
    info = error_details(err).info
    assert info is not None
    return info.reason


def everything_the_caller_saw(pages: list[Any], err: grpc.aio.AioRpcError | None) -> str:
    parts = [str(p) for p in pages]
    if err is not None:
        parts += [str(err.details()), str(err.debug_error_string())]
        for k, v in err.trailing_metadata() or ():
            parts.append(f"{k}={v!r}")
        if dict(err.trailing_metadata() or ()).get("grpc-status-details-bin"):
            details = error_details(err)
            parts += [str(details.info), str(details.bad_request), str(details.resource)]
    return "\n".join(parts)


# -- item 1: upstream page tokens ------------------------------------------------------

ESCAPING_TOKENS = [
    "../../indexes?page_limit=1",
    "%2e%2e/%2e%2e/indexes",
    "a?x=1#frag",
    "..",
    ".",
    "a/b",
    "tok\n",
    "tok\r\nx-api-key: stolen",
    "tok\x00",
    "x" * 70_000,
    "a b",
    "a\\b",
    "#frag",
    "tok\u202e",
]


@pytest.mark.parametrize("token", ESCAPING_TOKENS, ids=lambda t: repr(t[:30]))
async def test_upstream_token_never_leaves_the_classify_path(token: str) -> None:
    handler = script(Reply.json(page(token)), Reply.json(page("")))
    async with hostile_upstream(handler) as up, no_cache_gateway(up.base_url, KEY) as gw:
        pages, err = await collect(gw.stub.Classify(REQUEST, timeout=10))
    assert len(pages) == 1  # the page already fetched still reaches the caller
    assert err is not None and err.code() == C.DATA_LOSS, err
    assert reason(err) == "UPSTREAM_BAD_TOKEN"
    assert up.targets == ["/v1.2/classify"]  # nothing else was asked for, with the key


@pytest.mark.parametrize("token", ESCAPING_TOKENS[:4], ids=lambda t: repr(t[:30]))
async def test_bad_token_in_a_single_page_is_refused(token: str) -> None:
    handler = script(Reply.json(page(token)))
    async with hostile_upstream(handler) as up, no_cache_gateway(up.base_url, KEY) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gw.stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token="p1"), timeout=10)
    assert info.value.code() == C.DATA_LOSS
    assert reason(info.value) == "UPSTREAM_BAD_TOKEN"


async def test_tokens_are_sent_as_one_percent_encoded_segment() -> None:
    token = "a:b@c!$&'()*+,;=~é.x-_"
    handler = script(Reply.json(page(token)), Reply.json(page("")))
    async with hostile_upstream(handler) as up, no_cache_gateway(up.base_url, KEY) as gw:
        pages, err = await collect(gw.stub.Classify(REQUEST, timeout=10))
    assert err is None and len(pages) == 2
    assert up.targets == ["/v1.2/classify", "/v1.2/classify/" + quote(token, safe="")]


# -- item 2: token loops ---------------------------------------------------------------


@pytest.mark.parametrize(
    "chain",
    [["A", "A"], ["A", "B", "A"], ["A", "B", "C", "B"]],
    ids=["self", "two-cycle", "late-cycle"],
)
async def test_a_token_seen_before_ends_the_stream_at_once(chain: list[str]) -> None:
    # POST answers with chain[0]; GET /classify/chain[i] answers with chain[i + 1].
    nxt = dict(itertools.pairwise(chain))

    def handler(seen: Seen) -> Reply:
        if seen.method == "POST":
            return Reply.json(page(chain[0]))
        return Reply.json(page(nxt.get(seen.path.rsplit("/", 1)[1], "")))

    async with hostile_upstream(handler) as up, no_cache_gateway(up.base_url, KEY) as gw:
        started = time.monotonic()
        pages, err = await collect(gw.stub.Classify(REQUEST, timeout=30))
        elapsed = time.monotonic() - started
    assert err is not None and err.code() == C.DATA_LOSS, err
    assert reason(err) == "UPSTREAM_TOKEN_LOOP"
    distinct = len(set(chain))
    assert len(up.requests) == 1 + distinct  # each token fetched once, never again
    assert len(pages) <= 1 + distinct
    assert elapsed < 10


async def test_resume_from_a_caller_token_the_upstream_repeats() -> None:
    async with (
        hostile_upstream(lambda seen: Reply.json(page("T"))) as up,
        no_cache_gateway(up.base_url, KEY) as gw,
    ):
        _pages, err = await collect(
            gw.stub.Classify(pb.ClassifyRequest(page_token="T"), timeout=10)
        )
    assert err is not None and reason(err) == "UPSTREAM_TOKEN_LOOP"
    assert len(up.requests) == 1


# -- item 3: no call ever ends UNKNOWN -------------------------------------------------


async def test_an_unexpected_exception_is_internal_without_its_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        hostile_upstream(lambda seen: Reply.json(page())) as up,
        no_cache_gateway(up.base_url, KEY) as gw,
    ):

        async def broken(*args: Any, **kw: Any) -> Any:
            raise ValueError(f"boom with the key {KEY} in it")

        monkeypatch.setattr(gw.gateway.upstream._exchange, "send", broken)
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        with captured_logs() as logs:
            _pages, err = await collect(
                gw.stub.Classify(REQUEST, timeout=10, metadata=(("traceparent", traceparent),))
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await gw.stub.GetClassifyPage(
                    pb.GetClassifyPageRequest(page_token="p1"), timeout=10
                )
        registry = gw.gateway.metrics.registry
        for e in (err, info.value):
            assert e is not None and e.code() == C.INTERNAL, e
            assert reason(e) == "INTERNAL_ERROR"
            seen = everything_the_caller_saw([], e)
            assert "boom" not in seen and KEY not in seen
        for method in ("Classify", "GetClassifyPage"):
            count = registry.get_sample_value(
                "classify_gateway_rpcs_total", {"grpc_method": method, "grpc_code": "INTERNAL"}
            )
            assert count == 1, method
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) >= 2
    assert all("Traceback" in line.get("exc", "") for line in errors)
    assert "0af7651916cd43dd8448eb211c80319c" in [line.get("trace_id") for line in errors]
    assert {line["code"] for line in rpc_lines(logs)} == {"INTERNAL"}


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "00-xyz-abc-01",
        "00-" + "0" * 32 + "-" + "0" * 16 + "-01",  # all-zero ids are invalid
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" + "x" * 1000,
    ],
)
async def test_invalid_trace_context_is_dropped_not_fatal(traceparent: str) -> None:
    async with (
        hostile_upstream(lambda seen: Reply.json(page())) as up,
        no_cache_gateway(up.base_url, KEY) as gw,
    ):
        pages, err = await collect(
            gw.stub.Classify(
                REQUEST,
                timeout=10,
                metadata=(("traceparent", traceparent), ("tracestate", "=no key,,," + "x" * 600)),
            )
        )
    assert err is None and len(pages) == 1, err
    assert "traceparent" not in up.requests[0].headers
    assert "tracestate" not in up.requests[0].headers


async def test_valid_trace_context_is_forwarded() -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with (
        hostile_upstream(lambda seen: Reply.json(page())) as up,
        no_cache_gateway(up.base_url, KEY) as gw,
    ):
        _, err = await collect(
            gw.stub.Classify(
                REQUEST, timeout=10, metadata=(("traceparent", tp), ("tracestate", "vendor=1"))
            )
        )
    assert err is None
    assert up.requests[0].headers["traceparent"] == tp
    assert up.requests[0].headers["tracestate"] == "vendor=1"


async def test_a_request_that_does_not_decode_is_invalid_argument() -> None:
    async with (
        hostile_upstream(lambda seen: Reply.json(page())) as up,
        no_cache_gateway(up.base_url, KEY) as gw,
    ):
        raw = gw.channel.unary_stream(
            "/classify.v1.ClassifyService/Classify",
            request_serializer=lambda b: b,
            response_deserializer=pb.ClassifyResponse.FromString,
        )
        # Field 1 (video_ids) as a string with invalid UTF-8.
        _pages, err = await collect(raw(b"\x0a\x02\xff\xfe", timeout=10))
        assert err is not None and err.code() == C.INVALID_ARGUMENT, err
        unary = gw.channel.unary_unary(
            "/classify.v1.ClassifyService/GetClassifyPage",
            request_serializer=lambda b: b,
            response_deserializer=pb.GetClassifyPageResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await unary(b"\xff\xff\xff", timeout=10)
        assert info.value.code() == C.INVALID_ARGUMENT
    assert up.requests == []


# -- item 4: bodies of any size --------------------------------------------------------


def _big_replies() -> dict[str, Any]:
    return {
        "96MiB-content-length": lambda: Reply(stream_body=sized(96 * MiB), content_length=96 * MiB),
        "96MiB-chunked": lambda: Reply(chunks=sized(96 * MiB)),
        "endless-chunked": lambda: Reply(chunks=endless()),
    }


@pytest.mark.parametrize("kind", list(_big_replies()))
@pytest.mark.parametrize("where", ["first", "second"])
async def test_an_oversized_body_is_refused_and_its_connection_closed(
    kind: str, where: str
) -> None:
    make = _big_replies()[kind]
    if where == "first":
        handler = script(lambda seen: make())
    else:
        handler = script(Reply.json(page("p2")), lambda seen: make())
    async with hostile_upstream(handler) as up, no_cache_gateway(up.base_url, KEY) as gw:
        pages, err = await collect(gw.stub.Classify(REQUEST, timeout=30))
        assert err is not None and err.code() == C.DATA_LOSS, err
        assert reason(err) == "PAGE_TOO_LARGE"
        assert len(pages) == (0 if where == "first" else 1)
        assert len(up.requests) == (1 if where == "first" else 2)  # never retried
        # The gateway stopped reading long before the end and dropped the connection.
        for _ in range(100):
            if up.aborted_by_peer or up.open_connections == 0:
                break
            await asyncio.sleep(0.05)
        assert up.bytes_sent < 64 * MiB
        assert up.open_connections == 0


def _compressed(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=9)
    return zlib.compress(data, 9)  # HTTP's "deflate" is the zlib format


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_page_is_decoded(encoding: str) -> None:
    """The gateway asks for gzip and deflate (Accept-Encoding): what it asked for works."""
    body = _compressed(json.dumps(page()).encode(), encoding)
    reply = Reply(body=body, headers=[(b"content-encoding", encoding.encode())])
    async with hostile_upstream(script(reply)) as up, no_cache_gateway(up.base_url, KEY) as gw:
        pages, err = await collect(gw.stub.Classify(REQUEST, timeout=30))
    assert err is None, err
    assert [p.data[0].video_id for p in pages] == ["v0"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compression_bomb_is_capped_by_its_decoded_size(encoding: str) -> None:
    """A 32 KiB body that inflates to 32 MiB of valid JSON, against a 1 MiB cap: the cap
    bounds what is decoded, not only what is read off the wire, so the page is refused
    as too large instead of being inflated into memory and served."""
    pad = b"a" * (32 * MiB)
    body = _compressed(b'{"data": [], "pad": "' + pad + b'"}', encoding)
    assert len(body) < 64 * 1024
    reply = Reply(body=body, headers=[(b"content-encoding", encoding.encode())])
    async with (
        hostile_upstream(script(reply)) as up,
        no_cache_gateway(up.base_url, KEY, max_upstream_body_bytes=MiB) as gw,
    ):
        pages, err = await collect(gw.stub.Classify(REQUEST, timeout=30))
    assert err is not None and err.code() == C.DATA_LOSS, err
    assert reason(err) == "PAGE_TOO_LARGE"
    assert pages == []
    assert len(up.requests) == 1  # never retried


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"\x1f\x8b\x08\x00garbage that is not deflate data"),
        ("gzip", gzip.compress(json.dumps(page()).encode())[:-12]),  # cut off mid-stream
        ("deflate", b"not zlib at all"),
        ("br", b"\x0b\x02\x80{}\x03"),  # never asked for, and not decodable here
        ("gzip, gzip", gzip.compress(gzip.compress(b"{}"))),
    ],
    ids=["gzip-garbage", "gzip-truncated", "deflate-garbage", "br", "stacked"],
)
async def test_a_body_that_does_not_decode_is_malformed_not_internal(
    encoding: str, body: bytes
) -> None:
    reply = Reply(body=body, headers=[(b"content-encoding", encoding.encode())])
    async with hostile_upstream(script(reply)) as up, no_cache_gateway(up.base_url, KEY) as gw:
        pages, err = await collect(gw.stub.Classify(REQUEST, timeout=30))
    assert err is not None and err.code() == C.UNAVAILABLE, err
    assert reason(err) == "UPSTREAM_MALFORMED_RESPONSE"
    assert pages == []


def _peak_rss(pid: int) -> int:
    """VmHWM: the process's peak resident set size, in bytes (no sample can miss it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return int(psutil.Process(pid).memory_info().rss)


@pytest.mark.slow
def test_peak_rss_refusing_a_96_mib_body_stays_under_200_mib(tmp_path: Path) -> None:
    big = 96 * MiB
    handler = script(
        lambda seen: Reply(stream_body=sized(big), content_length=big),
        lambda seen: Reply(chunks=sized(big)),
        lambda seen: Reply(chunks=endless()),
    )
    with hostile_upstream_thread(handler) as up:
        proc = start_gateway(up.base_url, KEY, retry_initial_backoff=0.01, retry_max_backoff=0.05)
        try:
            peak_before = _peak_rss(proc.pid)
            with grpc.insecure_channel(proc.address) as channel:
                stub = pb_grpc.ClassifyServiceStub(channel)
                codes = []
                for _ in range(3):
                    try:
                        list(stub.Classify(REQUEST, timeout=60))
                        codes.append(C.OK)
                    except grpc.RpcError as exc:
                        codes.append(exc.code())  # type: ignore[attr-defined]
            peak = _peak_rss(proc.pid)
            rss_after = psutil.Process(proc.pid).memory_info().rss
        finally:
            proc.stop(grace=10)
    print(
        f"peak RSS before {peak_before / MiB:.0f} MiB, while refusing 96 MiB bodies "
        f"{peak / MiB:.0f} MiB, after {rss_after / MiB:.0f} MiB"
    )
    assert codes == [C.DATA_LOSS] * 3
    assert peak < 200 * MiB


# -- items 5 and 6: what the upstream says, capped and redacted ------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503, 418])
async def test_upstream_error_text_is_redacted_stripped_and_capped(status: str) -> None:
    message = (
        f"bad key {KEY} and {CALLER_KEY} \x1b[31mred\x1b[0m \u202egnp.exe\u202c "
        f"Resource with id {'x' * 5000}{KEY} does not exist in videos. " + "y" * 100_000
    )
    body = {"code": f"code_{KEY}\x1b", "message": message}
    async with (
        hostile_upstream(lambda seen: Reply.json(body, status=status)) as up,
        no_cache_gateway(up.base_url, KEY, allow_caller_api_key=True, retry_max_attempts=1) as gw,
    ):
        for metadata in ((), (("x-api-key", CALLER_KEY),)):
            pages, err = await collect(gw.stub.Classify(REQUEST, timeout=10, metadata=metadata))
            assert err is not None and err.code() not in (C.UNKNOWN, C.INTERNAL, C.OK), err
            seen = everything_the_caller_saw(pages, err)
            assert KEY not in seen
            if metadata:  # (without it, the caller's key is just text the upstream sent)
                assert CALLER_KEY not in seen
            assert "\x1b" not in seen and "\u202e" not in seen and "\u202c" not in seen
            assert sum(len(k) + len(v) for k, v in err.trailing_metadata() or ()) < 8 * 1024
            assert error_details(err).info is not None


async def test_upstream_message_with_caller_key_never_returns_it() -> None:
    async def echo(seen: Seen) -> Reply:
        return Reply.json(
            {"code": "api_key_invalid", "message": f"key {seen.headers['x-api-key']} refused"},
            status=401,
        )

    async with (
        hostile_upstream(echo) as up,
        no_cache_gateway(up.base_url, KEY, allow_caller_api_key=True) as gw,
    ):
        for key in (CALLER_KEY, "tlk_other_caller_key"):
            pages, err = await collect(
                gw.stub.Classify(REQUEST, timeout=10, metadata=(("x-api-key", key),))
            )
            assert err is not None and err.code() == C.UNAUTHENTICATED
            assert key not in everything_the_caller_saw(pages, err)


# -- item 8: counting --------------------------------------------------------------------


async def test_a_cancelled_page_call_is_counted_and_logged() -> None:
    async def slow(seen: Seen) -> Reply:
        await asyncio.sleep(5)
        return Reply.json(page())

    async with hostile_upstream(slow) as up, no_cache_gateway(up.base_url, KEY) as gw:
        with captured_logs() as logs:
            call = gw.stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token="p1"), timeout=10)
            await asyncio.sleep(0.3)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            registry = gw.gateway.metrics.registry
            for _ in range(50):
                if registry.get_sample_value(
                    "classify_gateway_rpcs_total",
                    {"grpc_method": "GetClassifyPage", "grpc_code": "CANCELLED"},
                ):
                    break
                await asyncio.sleep(0.05)
        assert (
            registry.get_sample_value(
                "classify_gateway_rpcs_total",
                {"grpc_method": "GetClassifyPage", "grpc_code": "CANCELLED"},
            )
            == 1
        )
    assert [line["code"] for line in rpc_lines(logs)] == ["CANCELLED"]


# It times the gateway's answer against a 0.1 s margin before 40 deadlines that fall at
# once, with the gateway and its 40 callers on this process's one event loop: run with
# nothing else running (make test-python-alone), as a loaded machine delays the loop more.
@pytest.mark.alone
async def test_waiting_for_an_upstream_slot_ends_before_the_callers_deadline() -> None:
    release = asyncio.Event()

    async def hold(seen: Seen) -> Reply:
        await asyncio.wait_for(release.wait(), 10)
        return Reply.json(page())

    async with (
        hostile_upstream(hold) as up,
        no_cache_gateway(up.base_url, KEY, upstream_max_concurrency=1) as gw,
    ):
        with captured_logs() as logs:
            holder = asyncio.ensure_future(collect(gw.stub.Classify(REQUEST, timeout=20)))
            for _ in range(500):
                if up.requests:
                    break
                await asyncio.sleep(0.01)
            calls = [
                gw.stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token="p1"), timeout=0.5)
                for _ in range(20)
            ] + [collect(gw.stub.Classify(REQUEST, timeout=0.5)) for _ in range(20)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            release.set()
            await holder
        codes = []
        for r in results:
            e = r[1] if isinstance(r, tuple) else r
            assert isinstance(e, grpc.aio.AioRpcError), e
            codes.append(e.code())
    assert set(codes) == {C.RESOURCE_EXHAUSTED}
    logged = sorted(line["code"] for line in rpc_lines(logs))
    assert logged.count("RESOURCE_EXHAUSTED") == 40


async def test_a_call_cut_by_its_deadline_is_logged_as_the_caller_saw_it() -> None:
    """A stream whose caller does not read: the write waits on flow control until the
    deadline, grpc cancels the handler; the caller sees DEADLINE_EXCEEDED, and so must
    the log and the metrics (not CANCELLED)."""

    def pages_of_700_kb(seen: Seen) -> Reply:
        n = len(up.requests)  # 60 pages of about 700 KB: far more than any buffer holds
        return Reply.json(page(f"p{n}" if n < 60 else "", videos=3000, name="n" * 200))

    async with (
        hostile_upstream(pages_of_700_kb) as up,
        no_cache_gateway(up.base_url, KEY) as gw,
    ):
        with captured_logs() as logs:
            call = gw.stub.Classify(REQUEST, timeout=1.0)
            await asyncio.sleep(2.0)  # read nothing until the deadline has passed
            _, err = await collect(call)
            for _ in range(50):
                if rpc_lines(logs):
                    break
                await asyncio.sleep(0.05)
        assert err is not None and err.code() == C.DEADLINE_EXCEEDED
        registry = gw.gateway.metrics.registry
        assert (
            registry.get_sample_value(
                "classify_gateway_rpcs_total",
                {"grpc_method": "Classify", "grpc_code": "DEADLINE_EXCEEDED"},
            )
            == 1
        )
    assert [line["code"] for line in rpc_lines(logs)] == ["DEADLINE_EXCEEDED"]
