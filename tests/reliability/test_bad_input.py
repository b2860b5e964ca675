"""Bad input, generated: requests from callers and bodies from the upstream.

Requests (hypothesis, against a real gateway): random and unicode strings, huge and empty
lists, out-of-range numbers, NaN/inf thresholds, unknown enum numbers: every call is OK or
INVALID_ARGUMENT with a BadRequest whose field violations name real proto field paths of
that request, and an invalid request never reaches the upstream. Never INTERNAL, UNKNOWN or
a crash. A message over the configured receive limit is refused by grpc itself.

Upstream bodies (hypothesis on classify_gateway.translate.page_from_json, plus end to end through a
scripted upstream): extra fields are ignored; wrong types and missing fields are a clear
DATA_LOSS (UPSTREAM_SCHEMA_MISMATCH, or UNAVAILABLE for a body that is not JSON), never a
crash.

The gateway runs on an event loop in a thread of its own so that the hypothesis tests can
be plain functions calling it through a blocking channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from classify_gateway.config import from_env
from classify_gateway.errors import GatewayError
from classify_gateway.observability import Metrics
from classify_gateway.server import Gateway
from classify_gateway.translate import page_from_json
from classify_gateway.validation import classify_violations
from tests.support.gateway import FAST
from tests.support.scripted_upstream import ScriptedUpstream, serve

C = grpc.StatusCode
MAX_RECEIVE = 256 * 1024
MAX_SEND = 1024 * 1024
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NEVER = {C.INTERNAL, C.UNKNOWN}


def _video(i: int, clips: int = 1) -> dict[str, Any]:
    return {
        "video_id": f"v{i:05d}",
        "classes": [
            {
                "name": "Dance",
                "score": 81.25,
                "duration_ratio": 0.5,
                "clips": [
                    {"start": 1.5, "end": 4.0, "score": 77.0, "option": "visual", "prompt": "dance"}
                ]
                * clips,
                "detailed_scores": {
                    "max_score": 80.0,
                    "avg_score": 70.0,
                    "normalized_score": 100.0,
                },
            }
        ],
    }


def _page(first: int, n: int = 2) -> dict[str, Any]:
    return {
        "data": [_video(i) for i in range(first, first + n)],
        "page_info": {
            "limit_per_page": n,
            "total_results": 6,
            "page_expired_at": "2030-01-01T00:00:00Z",
        },
    }


PAGES = [_page(0), _page(2), _page(4)]


class RawUpstream(ScriptedUpstream):
    """ScriptedUpstream that also serves raw bytes for chosen pages, and the last page for
    any token it does not know (so that every valid resume gets an answer)."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        super().__init__(pages)
        self.raw: dict[int, bytes] = {}

    def _answer(self, index: int) -> Response:
        if index in self.raw:
            return Response(self.raw[index], media_type="application/json")
        return JSONResponse(self.pages[index])

    async def _post(self, request: Request) -> Response:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        return self._answer(0)

    async def _get(self, request: Request) -> Response:
        self.headers.append(dict(request.headers))
        token = request.path_params["token"]
        index = int(token[1:]) if re.fullmatch(r"p\d+", token) else len(self.pages) - 1
        return self._answer(min(index, len(self.pages) - 1))


@dataclass
class Served:
    upstream: RawUpstream
    gateway: Gateway
    stub: pb_grpc.ClassifyServiceStub

    def calls(self) -> int:
        return len(self.upstream.headers)


@contextlib.contextmanager
def threaded_gateway(upstream: RawUpstream, **overrides: Any) -> Iterator[Served]:
    """A gateway on its own event loop thread in front of `upstream`, with a blocking stub."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
    thread.start()
    with serve(upstream) as url:
        settings_ = from_env({}, upstream_url=url, api_key="bad-input-key", **{**FAST, **overrides})

        async def start() -> Gateway:
            gw = Gateway(settings_, Metrics(CollectorRegistry()))
            await gw.start(serve_metrics=False)
            return gw

        gateway = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
        try:
            yield Served(upstream, gateway, pb_grpc.ClassifyServiceStub(channel))
        finally:
            channel.close()
            asyncio.run_coroutine_threadsafe(gateway.stop(grace=1.0), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with threaded_gateway(
        RawUpstream(PAGES),
        max_receive_message_bytes=MAX_RECEIVE,
        max_send_message_bytes=MAX_SEND,
        retry_max_attempts=2,
    ) as s:
        yield s


def _details(err: grpc.RpcError) -> dict[str, Any]:
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    out: dict[str, Any] = {}
    if raw is None:
        return out
    for detail in status_pb2.Status.FromString(raw).details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if detail.Is(cls.DESCRIPTOR):
                msg = cls()
                detail.Unpack(msg)
                out[cls.__name__] = msg
    return out


_SEGMENT = re.compile(r"^([a-z_]+)(?:\[(\d+)\])?$")


def field_path_exists(message: Any, path: str) -> bool:
    """`classes[1].prompts[0]` names a field (and an element that exists) of `message`."""
    parts = path.split(".")
    for n, part in enumerate(parts):
        m = _SEGMENT.match(part)
        if m is None:
            return False
        name, index = m.group(1), m.group(2)
        fd = message.DESCRIPTOR.fields_by_name.get(name)
        if fd is None:
            return False
        value = getattr(message, name)
        if index is not None:
            if not fd.is_repeated or int(index) >= len(value):
                return False
            value = value[int(index)]
        if n == len(parts) - 1:
            return True
        if fd.message_type is None or (fd.is_repeated and index is None):
            return False
        message = value
    return True


def _call(served: Served, req: pb.ClassifyRequest) -> tuple[list[Any], grpc.RpcError | None]:
    pages: list[Any] = []
    try:
        for page in served.stub.Classify(req, timeout=10):
            pages.append(page)
    except grpc.RpcError as err:
        return pages, err
    return pages, None


def _check_refused(req: Any, err: grpc.RpcError) -> None:
    """INVALID_ARGUMENT naming real fields of `req`."""
    assert err.code() == C.INVALID_ARGUMENT, (err.code(), err.details())
    d = _details(err)
    assert d["ErrorInfo"].reason == "INVALID_REQUEST"
    violations = d["BadRequest"].field_violations
    assert violations
    for v in violations:
        assert field_path_exists(req, v.field), f"{v.field!r} is not a field of the request"
        assert v.description


# -- request strategies ------------------------------------------------------------------

# Unicode without lone surrogates (which protobuf strings cannot hold: the caller's own
# library refuses them before anything is sent).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
ODD_TEXT = st.sampled_from(
    ["", " ", "\t", "\x00", "\u200b", "é", "🎬" * 3, "a/b", "a?b", "%2F", "x" * 300, "x" * 2001]
)
ANY_TEXT = st.one_of(TEXT, ODD_TEXT)
INT32 = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([-1, 0, 1, 49, 50, 51, 10_000, 10_001, 2**31 - 1, -(2**31)]),
)
ENUM = st.one_of(st.integers(-3, 5), st.sampled_from([2**31 - 1, -(2**31), 1000]))
FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.005, 0.01, 1.0, 1.01, 100.0, 100.5, float("nan"), float("inf")]),
)
VALID_CLASSES = [pb.ClassDefinition(name="Dance", prompts=["dance tutorial"])]


def _ids(n: int, base: str) -> list[str]:
    return [f"{base}{i}" for i in range(n)]


VIDEO_IDS = st.one_of(
    st.just(["v1", "v2"]),
    st.lists(ANY_TEXT, max_size=5),
    st.builds(_ids, st.integers(995, 1005), st.sampled_from(["v", "é", " "])),  # huge lists
    st.builds(lambda a: [a, a], TEXT),  # duplicates
)
CLASS = st.builds(
    lambda name, prompts, options, conv: pb.ClassDefinition(
        name=name, prompts=prompts, options=options, conversation_option=conv
    ),
    st.one_of(st.just("Dance"), ANY_TEXT),
    st.one_of(
        st.just(["dance"]),
        st.lists(ANY_TEXT, max_size=4),
        st.builds(_ids, st.integers(95, 105), st.just("p")),
    ),
    st.one_of(st.just([]), st.lists(ENUM, max_size=4)),
    st.one_of(st.just(0), ENUM),
)
THRESHOLD = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={"min_video_score": FLOAT, "min_clip_score": FLOAT, "min_duration_ratio": FLOAT},
    ),
)


@st.composite
def classify_requests(draw: st.DrawFn) -> pb.ClassifyRequest:
    """Mostly-valid requests with some fields replaced by hostile values."""
    req = pb.ClassifyRequest()
    if draw(st.booleans()):
        req.video_ids.extend(draw(VIDEO_IDS))
    if draw(st.integers(0, 3)) == 0:
        req.index_id = draw(ANY_TEXT)
    if not req.video_ids and not req.index_id and draw(st.booleans()):
        req.video_ids.append("v1")
    req.options.extend(
        draw(st.one_of(st.just([1]), st.just([1, 2, 3]), st.lists(ENUM, max_size=5)))
    )
    req.conversation_option = draw(st.one_of(st.just(0), ENUM))
    req.classes.extend(draw(st.one_of(st.just(VALID_CLASSES), st.lists(CLASS, max_size=4))))
    req.include_clips = draw(st.booleans())
    req.show_detailed_score = draw(st.booleans())
    threshold = draw(THRESHOLD)
    if threshold is not None:
        req.threshold.SetInParent()
        for name, value in threshold.items():
            setattr(req.threshold, name, value)
    req.page_limit = draw(st.one_of(st.just(0), st.just(2), INT32))
    req.max_pages = draw(st.one_of(st.just(0), INT32))
    if draw(st.integers(0, 4)) == 0:
        req.page_token = draw(st.one_of(st.just("p1"), ANY_TEXT))
    return req


# -- requests ------------------------------------------------------------------------------


@PROPERTY
@given(req=classify_requests())
@example(req=pb.ClassifyRequest(video_ids=["v1"], options=[1], classes=VALID_CLASSES))
@example(
    req=pb.ClassifyRequest(video_ids=["v1"], options=[7], classes=VALID_CLASSES, page_limit=-1)
)
@example(
    req=pb.ClassifyRequest(
        video_ids=["v1"],
        options=[1],
        classes=VALID_CLASSES,
        threshold=pb.Threshold(min_video_score=float("nan"), min_clip_score=float("inf")),
    )
)
def test_random_classify_requests(served: Served, req: pb.ClassifyRequest) -> None:
    # Page tokens made only of dots are test_dot_segment_page_tokens_stay_in_the_page_path's.
    if req.page_token in (".", ".."):
        req.page_token = "p1"
    before = served.calls()
    pages, err = _call(served, req)
    invalid = classify_violations(req, served.gateway.settings.max_pages_cap)
    event("OK" if err is None else f"{err.code().name}")
    if err is None:
        assert not invalid, f"the gateway let an invalid request through: {invalid}"
        assert (pages and pages[-1].page_info.next_page_token == "") or req.max_pages
        return
    assert err.code() not in NEVER, err.details()
    _check_refused(req, err)
    assert served.calls() == before, "an invalid request reached the upstream"
    assert invalid, "the gateway refused a request its validator accepts"


@PROPERTY
@given(token=st.one_of(ANY_TEXT, st.just("p1"), st.just("p2")))
def test_random_page_tokens(served: Served, token: str) -> None:
    if token in (".", ".."):
        token = "p1"
    before = served.calls()
    req = pb.GetClassifyPageRequest(page_token=token)
    try:
        page = served.stub.GetClassifyPage(req, timeout=10)
    except grpc.RpcError as err:
        assert err.code() not in NEVER, err.details()
        _check_refused(req, err)
        assert served.calls() == before
        return
    assert page.data


@pytest.mark.parametrize("token", [".", ".."])
def test_dot_segment_page_tokens_stay_in_the_page_path(served: Served, token: str) -> None:
    before = served.calls()
    for req in (pb.ClassifyRequest(page_token=token), pb.GetClassifyPageRequest(page_token=token)):
        with pytest.raises(grpc.RpcError) as info:
            if isinstance(req, pb.ClassifyRequest):
                list(served.stub.Classify(req, timeout=10))
            else:
                served.stub.GetClassifyPage(req, timeout=10)
        _check_refused(req, info.value)
    assert served.calls() == before, "a dot-segment token reached the upstream"


def test_message_over_the_receive_limit(served: Served) -> None:
    """grpc refuses it (RESOURCE_EXHAUSTED) before the servicer: no upstream call, no crash."""
    before = served.calls()
    big = pb.ClassifyRequest(
        video_ids=["v1"],
        options=[1],
        classes=[pb.ClassDefinition(name="Big", prompts=["x" * (MAX_RECEIVE + 1)])],
    )
    _, err = _call(served, big)
    assert err is not None and err.code() == C.RESOURCE_EXHAUSTED, err
    assert served.calls() == before
    pages, err = _call(
        served, pb.ClassifyRequest(video_ids=["v1"], options=[1], classes=VALID_CLASSES)
    )
    assert err is None and len(pages) == len(PAGES)  # still serving


# -- upstream bodies: page_from_json ---------------------------------------------------------

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
NUM = st.one_of(st.floats(-1e6, 1e6), st.integers(-(2**40), 2**40))
TS = st.builds(
    lambda y, mo, d, h, off: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:00:00{off}",
    st.integers(2000, 2100),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", "+14:00"]),
)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, sometimes any JSON value at all."""
    return st.one_of(good, good, good, JSON)


CLIP = st.fixed_dictionaries(
    {},
    optional={
        "start": maybe(NUM),
        "end": maybe(NUM),
        "score": maybe(NUM),
        "option": maybe(TEXT),
        "prompt": maybe(TEXT),
        "thumbnail_url": maybe(TEXT),
        "extra_clip_field": JSON,
    },
)
CLASS_RESULT = st.fixed_dictionaries(
    {},
    optional={
        "name": maybe(TEXT),
        "score": maybe(NUM),
        "duration_ratio": maybe(NUM),
        "clips": maybe(st.lists(CLIP, max_size=3)),
        "detailed_scores": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "max_score": maybe(NUM),
                    "avg_score": maybe(NUM),
                    "normalized_score": maybe(NUM),
                },
            )
        ),
        "extra_class_field": JSON,
    },
)
VIDEO = st.fixed_dictionaries(
    {},
    optional={
        "video_id": maybe(TEXT),
        "classes": maybe(st.lists(CLASS_RESULT, max_size=3)),
        "extra_video_field": JSON,
    },
)
PAGE_INFO = st.fixed_dictionaries(
    {},
    optional={
        "limit_per_page": maybe(st.integers(-(2**33), 2**33)),
        "total_results": maybe(st.integers(-(2**33), 2**33)),
        "page_expired_at": maybe(st.one_of(TS, TEXT)),
        "next_page_token": maybe(TEXT),
        "prev_page_token": maybe(TEXT),
        "extra_info_field": JSON,
    },
)
PAGE = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "data": maybe(st.lists(VIDEO, max_size=4)),
            "page_info": maybe(PAGE_INFO),
            "extra_page_field": JSON,
        },
    ),
    JSON,
)


def _over_the_wire(obj: Any) -> Any:
    """What the gateway would parse: JSON text (as any server might write it) read by orjson."""
    return orjson.loads(json.dumps(obj))


@PROPERTY
@given(obj=PAGE)
def test_page_from_json_never_crashes(obj: Any) -> None:
    try:
        body = _over_the_wire(obj)
    except orjson.JSONDecodeError:
        return  # not JSON to orjson: the gateway says UPSTREAM_MALFORMED_RESPONSE (retried)
    for kind in (pb.ClassifyResponse, pb.GetClassifyPageResponse):
        try:
            page = page_from_json(body, kind)
        except GatewayError as err:
            assert err.code == C.DATA_LOSS and err.reason == "UPSTREAM_SCHEMA_MISMATCH"
            assert "upstream field" in err.message
        else:
            assert isinstance(page, kind)


def _strip_extras(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_extras(v) for k, v in obj.items() if not k.startswith("extra_")}
    if isinstance(obj, list):
        return [_strip_extras(v) for v in obj]
    return obj


@PROPERTY
@given(obj=PAGE)
def test_extra_fields_are_ignored(obj: Any) -> None:
    try:
        body = _over_the_wire(obj)
    except orjson.JSONDecodeError:
        return
    outcomes = []
    for candidate in (body, _strip_extras(body)):
        try:
            outcomes.append(
                page_from_json(candidate, pb.ClassifyResponse).SerializeToString(deterministic=True)
            )
        except GatewayError as err:
            outcomes.append(err.message)
    assert outcomes[0] == outcomes[1]


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    when=st.datetimes(),
    offset=st.sampled_from(["Z", "+01:00", "-01:00", "+14:00", "-12:00"]),
)
@example(when=datetime.datetime(1, 1, 1), offset="+01:00")
@example(when=datetime.datetime(9999, 12, 31, 23, 59), offset="-01:00")
def test_any_page_expired_at_is_parsed_or_refused(when: Any, offset: str) -> None:
    body = {
        "page_info": {"page_expired_at": when.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + offset}
    }
    try:
        page_from_json(body, pb.ClassifyResponse)
    except GatewayError as err:
        assert err.code == C.DATA_LOSS


# -- upstream bodies, end to end -------------------------------------------------------------


def _raw_stream(served: Served, page2: bytes) -> tuple[list[Any], grpc.RpcError | None]:
    """Serve `page2` as the stream's second page; return what the caller got."""
    served.upstream.raw = {1: page2}
    try:
        return _call(
            served, pb.ClassifyRequest(video_ids=["v1"], options=[1], classes=VALID_CLASSES)
        )
    finally:
        served.upstream.raw = {}


def _chained(index: int, page: Any) -> bytes:
    """`page` with the tokens the scripted upstream gives page `index` (if it is an object)."""
    if isinstance(page, dict):
        page = copy.deepcopy(page)
        info = page.get("page_info")
        if isinstance(info, dict):
            info.update(served_tokens(index))
    return json.dumps(page).encode()


def served_tokens(index: int) -> dict[str, str]:
    return {
        "next_page_token": f"p{index + 1}" if index + 1 < len(PAGES) else "",
        "prev_page_token": f"p{index - 1}" if index > 0 else "",
    }


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(obj=PAGE)
def test_random_upstream_page_end_to_end(served: Served, obj: Any) -> None:
    try:
        body = _chained(1, obj)
        _over_the_wire(json.loads(body))
    except orjson.JSONDecodeError:
        return
    pages, err = _raw_stream(served, body)
    assert len(pages) >= 1
    if err is None:
        return
    assert err.code() in {C.DATA_LOSS, C.UNAVAILABLE}, (err.code(), err.details())
    info = _details(err)["ErrorInfo"]
    assert info.reason in {"UPSTREAM_SCHEMA_MISMATCH", "UPSTREAM_MALFORMED_RESPONSE"}
    assert info.metadata["resume_page_token"] == "p1"  # the page that failed


def _e2e_page(index: int, **changes: Any) -> dict[str, Any]:
    page = copy.deepcopy(PAGES[index])
    page["page_info"].update(served_tokens(index))
    page.update(changes)
    return page


def test_extra_fields_end_to_end(served: Served) -> None:
    page = _e2e_page(1, surprise={"a": [1, 2]})
    page["page_info"]["cursor_v2"] = "abc"
    page["data"][0]["new_field"] = None
    page["data"][0]["classes"][0]["clips"][0]["embedding"] = [0.1] * 100
    pages, err = _raw_stream(served, json.dumps(page).encode())
    _, clean_err = plain = _call(
        served, pb.ClassifyRequest(video_ids=["v1"], options=[1], classes=VALID_CLASSES)
    )
    assert err is None and clean_err is None
    assert [p.SerializeToString() for p in pages] == [p.SerializeToString() for p in plain[0]]


@pytest.mark.parametrize(
    "page2,code,reason",
    [
        (
            json.dumps(_e2e_page(1, data="not-a-list")).encode(),
            C.DATA_LOSS,
            "UPSTREAM_SCHEMA_MISMATCH",
        ),
        (
            json.dumps(_e2e_page(1, data=[{"classes": []}])).encode(),  # no video_id
            C.DATA_LOSS,
            "UPSTREAM_SCHEMA_MISMATCH",
        ),
        (
            json.dumps(
                _e2e_page(
                    1,
                    data=[
                        {
                            "video_id": "v",
                            "classes": [{"name": "x", "score": "high", "duration_ratio": 1}],
                        }
                    ],
                )
            ).encode(),
            C.DATA_LOSS,
            "UPSTREAM_SCHEMA_MISMATCH",
        ),
        (b"[]", C.DATA_LOSS, "UPSTREAM_SCHEMA_MISMATCH"),
        (b"null", C.UNAVAILABLE, "UPSTREAM_MALFORMED_RESPONSE"),
        (b'{"data": [', C.UNAVAILABLE, "UPSTREAM_MALFORMED_RESPONSE"),
        (b'{"data": [{"video_id": "\\ud800"}]}', C.UNAVAILABLE, "UPSTREAM_MALFORMED_RESPONSE"),
    ],
    ids=[
        "data_not_a_list",
        "missing_video_id",
        "score_is_a_string",
        "top_level_array",
        "null",
        "truncated",
        "lone_surrogate",
    ],
)
def test_bad_upstream_page_end_to_end(
    served: Served, page2: bytes, code: grpc.StatusCode, reason: str
) -> None:
    pages, err = _raw_stream(served, page2)
    assert len(pages) == 1
    assert err is not None and err.code() == code, err and (err.code(), err.details())
    info = _details(err)["ErrorInfo"]
    assert info.reason == reason
    assert info.metadata["resume_page_token"] == "p1"


def test_huge_upstream_page_end_to_end(served: Served) -> None:
    """A page of 5,000 videos (about 0.9 MB as protobuf, under MAX_SEND) streams whole."""
    page = _e2e_page(1)
    page["data"] = [
        {
            "video_id": f"v{i:05d}",
            "classes": [{"name": "Dance", "score": 80.0, "duration_ratio": 0.5}],
        }
        for i in range(5000)
    ]
    pages, err = _raw_stream(served, json.dumps(page).encode())
    assert err is None and len(pages) == len(PAGES)
    assert len(pages[1].data) == 5000


def _oversized_page() -> dict[str, Any]:
    """Page 2 of the scripted stream, larger than MAX_SEND once translated."""
    page = _e2e_page(1)
    page["data"] = [_video(i, clips=40) for i in range(1200)]
    return page


def test_oversized_page_is_over_the_send_limit() -> None:
    """The precondition of the next test (so that it cannot fail for another reason)."""
    size = page_from_json(_oversized_page(), pb.ClassifyResponse).ByteSize()
    assert size > 1.5 * MAX_SEND


def test_page_over_the_send_limit_end_to_end(served: Served) -> None:
    pages, err = _raw_stream(served, json.dumps(_oversized_page()).encode())
    assert len(pages) == 1 and err is not None
    assert err.code() == C.RESOURCE_EXHAUSTED
    info = _details(err).get("ErrorInfo")
    assert info is not None, f"no ErrorInfo: {err.details()}"
    assert info.metadata["resume_page_token"] == "p1"


def test_out_of_range_timestamp_end_to_end(served: Served) -> None:
    page = _e2e_page(1)
    page["page_info"]["page_expired_at"] = "0001-01-01T00:00:00+01:00"
    pages, err = _raw_stream(served, json.dumps(page).encode())
    assert len(pages) == 1 and err is not None
    assert err.code() == C.DATA_LOSS, (err.code(), err.details())
    assert _details(err)["ErrorInfo"].metadata["resume_page_token"] == "p1"
