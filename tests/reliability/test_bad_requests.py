"""Bad requests from callers, generated, against a real gateway.

Random and unicode strings, huge and empty lists, out-of-range numbers, NaN/inf thresholds,
unknown enum numbers: every call is OK or INVALID_ARGUMENT with a BadRequest whose field
violations name real proto field paths of that request, and an invalid request never
reaches the upstream. Never INTERNAL, UNKNOWN or a crash. A message over the configured
receive limit is refused by grpc itself.

The `served` fixture (conftest.py) is a gateway on a loop thread of its own in front of the
fake upstream, so that the hypothesis tests can be plain functions with a blocking stub.
"""

from __future__ import annotations

import re
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from hypothesis import event, example, given
from hypothesis import strategies as st

from classify_gateway.edge.validation import classify_violations
from tests.reliability.strategies import ANY_TEXT, ENUM, FLOAT, INT32, PROPERTY, TEXT
from tests.support.gateway import Fronted, call_blocking, error_details
from tests.support.pages import SMALL_PAGES

C = grpc.StatusCode
NEVER = {C.INTERNAL, C.UNKNOWN}
MAX_RECEIVE = 256 * 1024  # the `served` fixture's max_receive_message_bytes

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


def _check_refused(req: Any, err: grpc.RpcError) -> None:
    """INVALID_ARGUMENT naming real fields of `req`."""
    assert err.code() == C.INVALID_ARGUMENT, (err.code(), err.details())
    d = error_details(err)
    assert d.info is not None and d.info.reason == "INVALID_REQUEST"
    assert d.bad_request is not None
    violations = d.bad_request.field_violations
    assert violations
    for v in violations:
        assert field_path_exists(req, v.field), f"{v.field!r} is not a field of the request"
        assert v.description


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
def test_random_classify_requests(served: Fronted, req: pb.ClassifyRequest) -> None:
    # Page tokens made only of dots are test_dot_segment_page_tokens_stay_in_the_page_path's.
    if req.page_token in (".", ".."):
        req.page_token = "p1"
    before = served.calls()
    pages, err = call_blocking(served.stub, req)
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
def test_random_page_tokens(served: Fronted, token: str) -> None:
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
def test_dot_segment_page_tokens_stay_in_the_page_path(served: Fronted, token: str) -> None:
    before = served.calls()
    for req in (pb.ClassifyRequest(page_token=token), pb.GetClassifyPageRequest(page_token=token)):
        with pytest.raises(grpc.RpcError) as info:
            if isinstance(req, pb.ClassifyRequest):
                list(served.stub.Classify(req, timeout=10))
            else:
                served.stub.GetClassifyPage(req, timeout=10)
        _check_refused(req, info.value)
    assert served.calls() == before, "a dot-segment token reached the upstream"


def test_message_over_the_receive_limit(served: Fronted) -> None:
    """grpc refuses it (RESOURCE_EXHAUSTED) before the servicer: no upstream call, no crash."""
    before = served.calls()
    big = pb.ClassifyRequest(
        video_ids=["v1"],
        options=[1],
        classes=[pb.ClassDefinition(name="Big", prompts=["x" * (MAX_RECEIVE + 1)])],
    )
    _, err = call_blocking(served.stub, big)
    assert err is not None and err.code() == C.RESOURCE_EXHAUSTED, err
    assert served.calls() == before
    pages, err = call_blocking(
        served.stub, pb.ClassifyRequest(video_ids=["v1"], options=[1], classes=VALID_CLASSES)
    )
    assert err is None and len(pages) == len(SMALL_PAGES)  # still serving
