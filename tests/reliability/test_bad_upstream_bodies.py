"""Bad bodies from the upstream, generated: hypothesis on
classify_gateway.backends.v1_2.translate.page_from_json, plus end to end through the fake upstream.

Extra fields are ignored; wrong types and missing fields are a clear DATA_LOSS
(UPSTREAM_SCHEMA_MISMATCH, or UNAVAILABLE for a body that is not JSON), never a crash.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import grpc
import orjson
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from classify_gateway.backends.v1_2.translate import page_from_json
from classify_gateway.core.errors import GatewayError
from tests.reliability.strategies import PROPERTY, TEXT
from tests.support.gateway import Fronted, Result, call_blocking, error_details
from tests.support.pages import SMALL_PAGES, small_video
from tests.support.upstream import tokens_of

C = grpc.StatusCode
MAX_SEND = 1024 * 1024  # the `served` fixture's max_send_message_bytes
PLAIN = pb.ClassifyRequest(
    video_ids=["v1"],
    options=[1],
    classes=[pb.ClassDefinition(name="Dance", prompts=["dance tutorial"])],
)

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


def _raw_stream(served: Fronted, page2: bytes) -> Result:
    """Serve `page2` as the stream's second page; return what the caller got."""
    served.upstream.raw = {1: page2}
    try:
        return call_blocking(served.stub, PLAIN)
    finally:
        served.upstream.raw = {}


def _chained(index: int, page: Any) -> bytes:
    """`page` with the tokens the scripted upstream gives page `index` (if it is an object)."""
    if isinstance(page, dict):
        page = copy.deepcopy(page)
        info = page.get("page_info")
        if isinstance(info, dict):
            info.update(tokens_of(index, len(SMALL_PAGES)))
    return json.dumps(page).encode()


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(obj=PAGE)
def test_random_upstream_page_end_to_end(served: Fronted, obj: Any) -> None:
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
    info = error_details(err).info
    assert info is not None and info.reason in {
        "UPSTREAM_SCHEMA_MISMATCH",
        "UPSTREAM_MALFORMED_RESPONSE",
    }
    assert info.metadata["resume_page_token"] == "p1"  # the page that failed


def _e2e_page(index: int, **changes: Any) -> dict[str, Any]:
    page = copy.deepcopy(SMALL_PAGES[index])
    page["page_info"].update(tokens_of(index, len(SMALL_PAGES)))
    page.update(changes)
    return page


def test_extra_fields_end_to_end(served: Fronted) -> None:
    page = _e2e_page(1, surprise={"a": [1, 2]})
    page["page_info"]["cursor_v2"] = "abc"
    page["data"][0]["new_field"] = None
    page["data"][0]["classes"][0]["clips"][0]["embedding"] = [0.1] * 100
    pages, err = _raw_stream(served, json.dumps(page).encode())
    _, clean_err = plain = call_blocking(served.stub, PLAIN)
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
    served: Fronted, page2: bytes, code: grpc.StatusCode, reason: str
) -> None:
    pages, err = _raw_stream(served, page2)
    assert len(pages) == 1
    assert err is not None and err.code() == code, err and (err.code(), err.details())
    info = error_details(err).info
    assert info is not None and info.reason == reason
    assert info.metadata["resume_page_token"] == "p1"


def test_huge_upstream_page_end_to_end(served: Fronted) -> None:
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
    assert err is None and len(pages) == len(SMALL_PAGES)
    assert len(pages[1].data) == 5000


def _oversized_page() -> dict[str, Any]:
    """Page 2 of the scripted stream, larger than MAX_SEND once translated."""
    page = _e2e_page(1)
    page["data"] = [small_video(i, clips=40) for i in range(1200)]
    return page


def test_oversized_page_is_over_the_send_limit() -> None:
    """The precondition of the next test (so that it cannot fail for another reason)."""
    size = page_from_json(_oversized_page(), pb.ClassifyResponse).ByteSize()
    assert size > 1.5 * MAX_SEND


def test_page_over_the_send_limit_end_to_end(served: Fronted) -> None:
    pages, err = _raw_stream(served, json.dumps(_oversized_page()).encode())
    assert len(pages) == 1 and err is not None
    # Over the body cap (twice MAX_SEND plus 1 MiB) or over MAX_SEND once translated:
    # either way the same status, and the caller resumes at that page.
    assert err.code() == C.DATA_LOSS
    info = error_details(err).info
    assert info is not None, f"no ErrorInfo: {err.details()}"
    assert info.reason == "PAGE_TOO_LARGE"
    assert info.metadata["resume_page_token"] == "p1"


def test_out_of_range_timestamp_end_to_end(served: Fronted) -> None:
    page = _e2e_page(1)
    page["page_info"]["page_expired_at"] = "0001-01-01T00:00:00+01:00"
    pages, err = _raw_stream(served, json.dumps(page).encode())
    assert len(pages) == 1 and err is not None
    assert err.code() == C.DATA_LOSS, (err.code(), err.details())
    info = error_details(err).info
    assert info is not None and info.metadata["resume_page_token"] == "p1"
