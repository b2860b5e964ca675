"""Upstream text made safe to pass on; caller trace context forwarded only when valid."""

from __future__ import annotations

import gzip

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2

from classify_gateway.backends.v1_2.translate import page_path
from classify_gateway.backends.v1_2.transport import ResponseTooLarge, _decode
from classify_gateway.core.errors import (
    TRAILER_BUDGET,
    GatewayError,
    to_grpc_status,
    to_status_proto,
    trailer_size,
)
from classify_gateway.core.redact import redact, redact_json, safe_text, strip_controls
from classify_gateway.core.tokens import token_problem
from classify_gateway.edge.validation import forwardable_trace_context

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_redact_and_strip() -> None:
    assert redact("key k3y! and k3y!", ["k3y!", ""]) == "key <redacted> and <redacted>"
    raw = b'{"m": ["the key tlk_12345678", {"tlk_12345678": 1}], "page_token": "k"}'
    assert redact_json(
        raw, {"m": ["the key tlk_12345678", {"tlk_12345678": 1}], "n": 2}, ["tlk_12345678", "k"]
    ) == {
        "m": ["the key <redacted>", {"<redacted>": 1}],
        "n": 2,
    }
    assert strip_controls("a\x1b[31mb\u202ec\r\nd\x00") == "a [31mb c  d "
    assert safe_text("x" * 50, [], 10) == "x" * 9 + "…"


@pytest.mark.parametrize(
    "md,expected",
    [
        ([("traceparent", TP)], {"traceparent": TP}),
        (
            [("traceparent", TP), ("tracestate", "a=1,b@v=2")],
            {"traceparent": TP, "tracestate": "a=1,b@v=2"},
        ),
        ([("traceparent", TP), ("traceparent", TP)], {}),
        ([("traceparent", TP + "\r\n")], {}),
        ([("traceparent", "garbage"), ("tracestate", "a=1")], {}),
        ([("traceparent", TP), ("tracestate", "a=1\x00")], {"traceparent": TP}),
        ([("traceparent", TP), ("tracestate", "x=" + "y" * 600)], {"traceparent": TP}),
        ([("tracestate", "a=1")], {}),
    ],
)
def test_forwardable_trace_context(md: list[tuple[str, str]], expected: dict[str, str]) -> None:
    assert forwardable_trace_context(md) == expected


@pytest.mark.parametrize("token", ["abc", "a:b@c!", "é", "x-_.~"])
def test_page_path_is_one_segment(token: str) -> None:
    assert token_problem(token) is None
    path = page_path(token)
    assert path.count("/") == 2 and "?" not in path and "#" not in path


def test_every_status_fits_the_trailer_budget() -> None:
    """Whatever an error carries, its trailer stays under grpc's 8 KiB metadata limit,
    and the code and ErrorInfo's reason always arrive."""
    err = GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        "é" * 5000,
        violations=tuple((f"classes[{i}].name" + "x" * 300, "d" * 3000) for i in range(500)),
        resource=("videos", "v" * 5000),
        resume_token="t" * 4096,
        upstream_code="c" * 5000,
    )
    status = to_status_proto(err)
    assert trailer_size(status) <= TRAILER_BUDGET < 8 * 1024
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "INVALID_REQUEST"
    grpc_status = to_grpc_status(err)
    total = sum(len(k) + len(v) for k, v in grpc_status.trailing_metadata)
    assert total + len(grpc_status.details.encode()) * 3 < 8 * 1024


@pytest.mark.parametrize("size", [1023, 1024, 1025, 4096])
def test_a_decoded_body_never_passes_the_cap(size: int) -> None:
    """However the inflater splits its output (up to max_length, the rest on flush), a body
    that decodes to more than the cap is refused, and one at the cap is kept whole."""
    request = httpx.Request("GET", "http://upstream.test/classify/t")
    body = gzip.compress(b"x" * size)
    if size > 1024:
        with pytest.raises(ResponseTooLarge):
            _decode(body, "gzip", 1024, request)
    else:
        assert _decode(body, "gzip", 1024, request) == b"x" * size
