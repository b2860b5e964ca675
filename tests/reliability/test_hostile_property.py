"""Property: whatever the upstream answers and whatever the caller sends, every call ends
with a status the caller can read, the log says the same code, and no key gets out.

Hypothesis draws the upstream's answer (status, body, headers, page tokens, messages that
echo the key or hold control characters) and the caller's request and metadata (strings
with control characters, page tokens, repeated or empty `x-api-key`, broken
`traceparent`). For every call: the code is never UNKNOWN; the gateway's `rpc` log line
has the code the caller received; nothing the caller receives (pages, message, trailers,
decoded details) contains the configured key or the caller's key. Examples are bounded
so that the whole test takes well under a minute.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classify_gateway.telemetry.observability import JsonFormatter
from tests.support.gateway import threaded_gateway, unpack_details
from tests.support.hostile_upstream import Reply, Seen, hostile_upstream_thread, page

C = grpc.StatusCode
KEY = "tlk_PROPERTY_canary_a41f0c"
CALLER_KEY = "tlk_PROPERTY_caller_d93e"
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- the upstream's side ---------------------------------------------------------------

NASTY = ["\n", "\r\n", "\x00", "\x1b[31m", "\u202e", "/", "..", "?", "#", "%2e", " ", "\\", "é"]
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=6).map(
    "".join
)
token = st.one_of(
    st.just(""),
    st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True),
    nasty_text,
    st.sampled_from(["SAME", "../../indexes?page_limit=1", "%2e%2e/x", "a?x=1#f", "x" * 5000]),
)
echo = st.sampled_from(["", "{key}", "{caller}", "{sent}"])


@dataclass
class Upstream:
    """What the fake upstream answers this example: the POST gets the first reply, a page
    GET the reply its token picks (not the next in line: whether a prefetch reached the
    upstream before its stream ended is a matter of timing, and examples must replay)."""

    replies: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, seen: Seen) -> Reply:
        index = 0 if seen.method == "POST" else zlib.crc32(seen.target.encode()) % len(self.replies)
        spec = self.replies[index]
        message = spec["message"].format(
            key=KEY, caller=CALLER_KEY, sent=seen.headers.get("x-api-key", "")
        )
        headers = [(k.encode(), v.encode("latin-1", "replace")) for k, v in spec["headers"]]
        kind = spec["kind"]
        if kind == "page":
            return Reply.json(page(spec["token"], name=message or "cls"), headers=headers)
        if kind == "error":
            body = {"code": spec["code"], "message": message}
            return Reply.json(body, status=spec["status"], headers=headers)
        if kind == "json":
            return Reply(status=spec["status"], body=orjson.dumps(spec["json"]), headers=headers)
        return Reply(status=spec["status"], body=spec["raw"], headers=headers)


reply = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["page", "page", "error", "json", "raw"]),
        "status": st.sampled_from([200, 400, 401, 403, 404, 418, 429, 500, 502, 503, 599]),
        "token": token,
        "message": st.one_of(
            echo, nasty_text, st.builds(lambda a, b: a + "{key}" + b, nasty_text, nasty_text)
        ),
        "code": st.one_of(st.just("parameter_invalid"), nasty_text),
        "json": st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda kids: (
                st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
            ),
            max_leaves=8,
        ),
        "raw": st.binary(max_size=64),
        "headers": st.lists(
            st.tuples(
                st.sampled_from(["retry-after", "x-ratelimit-reset", "x-extra"]),
                # Hostile, but never a wait the gateway would honour for long.
                st.sampled_from(
                    [
                        "0",
                        "0.01",
                        "-1",
                        "1e9",
                        "inf",
                        "nan",
                        "abc",
                        "",
                        "Wed, 21 Oct 2015 07:28:00 GMT",
                    ]
                ),
            ),
            max_size=2,
        ),
    }
)

# -- the caller's side -----------------------------------------------------------------

caller_text = st.one_of(st.from_regex(r"[a-z]{1,8}", fullmatch=True), nasty_text)
request = st.one_of(
    st.builds(
        lambda vids, name, prompt, tok: pb.ClassifyRequest(
            video_ids=vids,
            options=[pb.SEARCH_OPTION_VISUAL],
            classes=[pb.ClassDefinition(name=name, prompts=[prompt])],
            page_token=tok,
        ),
        st.lists(caller_text, min_size=1, max_size=3),
        caller_text,
        caller_text,
        st.one_of(st.just(""), token),
    ),
)
metadata = st.lists(
    st.one_of(
        st.tuples(st.just("x-api-key"), st.sampled_from([CALLER_KEY, "", "tlk other"])),
        st.tuples(
            st.sampled_from(["traceparent", "tracestate"]),
            st.from_regex(r"[ -~]{0,60}", fullmatch=True),
        ),
    ),
    max_size=3,
)


# -- one gateway for every example -----------------------------------------------------


@dataclass
class Served:
    upstream: Upstream
    stub: pb_grpc.ClassifyServiceStub
    logs: io.StringIO


@contextlib.contextmanager
def served() -> Iterator[Served]:
    upstream = Upstream()
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(JsonFormatter())  # no redaction: a key in a log line would show
    logger = logging.getLogger("classify_gateway")
    saved = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        with (
            hostile_upstream_thread(upstream) as up,
            threaded_gateway(
                up.base_url,
                KEY,
                allow_caller_api_key=True,
                retry_max_attempts=2,
                max_send_message_bytes=256 * 1024,
            ) as gw,
        ):
            yield Served(upstream, gw.stub, logs)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


@pytest.fixture(scope="module")
def gateway() -> Iterator[Served]:
    with served() as s:
        yield s


def _seen_by_caller(pages: list[Any], err: grpc.RpcError | None) -> str:
    parts = [str(p) for p in pages]
    if err is not None:
        parts.append(str(err.details()))  # type: ignore[attr-defined]
        for k, v in err.trailing_metadata() or ():  # type: ignore[attr-defined]
            parts.append(f"{k}={v!r}")
        status = rpc_status.from_call(err)
        if status is not None:
            details = unpack_details(status)
            parts += [str(details.info), str(details.bad_request), str(details.resource)]
    return "\n".join(parts)


def _logged_codes(logs: io.StringIO, since: int) -> list[str]:
    out = []
    for line in logs.getvalue()[since:].splitlines():
        record = json.loads(line)
        if record.get("event") == "rpc":
            out.append(record["code"])
    return out


def _call(served: Served, req: pb.ClassifyRequest, md: list[tuple[str, str]]) -> list[Any]:
    outcomes = []
    pages: list[Any] = []
    err: grpc.RpcError | None = None
    try:
        for p in served.stub.Classify(req, timeout=10, metadata=md):
            pages.append(p)
    except grpc.RpcError as exc:
        err = exc
    outcomes.append((C.OK if err is None else err.code(), pages, err))  # type: ignore[attr-defined]
    page_req = pb.GetClassifyPageRequest(page_token=req.page_token or "p1")
    try:
        got = served.stub.GetClassifyPage(page_req, timeout=10, metadata=md)
        outcomes.append((C.OK, [got], None))
    except grpc.RpcError as exc:
        outcomes.append((exc.code(), [], exc))  # type: ignore[attr-defined]
    return outcomes


@PROPERTY
@given(replies=st.lists(reply, min_size=1, max_size=3), req=request, md=metadata)
def test_no_unknown_same_code_logged_no_key_out(
    gateway: Served,
    replies: list[dict[str, Any]],
    req: pb.ClassifyRequest,
    md: list[tuple[str, str]],
) -> None:
    gateway.upstream.replies = replies
    mark = len(gateway.logs.getvalue())
    outcomes = _call(gateway, req, md)
    codes = [code for code, _, _ in outcomes]
    assert C.UNKNOWN not in codes, outcomes
    for _, pages, err in outcomes:
        seen = _seen_by_caller(pages, err)
        assert KEY not in seen
        if ("x-api-key", CALLER_KEY) in md:  # else it is only text the upstream made up
            assert CALLER_KEY not in seen
    # The log line of each call carries the code its caller received.
    assert sorted(_logged_codes(gateway.logs, mark)) == sorted(c.name for c in codes)
