"""The error table: each upstream failure and own reason becomes the right status and details."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest

from classify_gateway.core.errors import (
    BY_REASON,
    DOMAIN,
    TABLE,
    GatewayError,
    from_upstream,
    invalid_request,
    own_error,
    row_for_status,
    to_grpc_status,
    to_status_proto,
)
from tests.support.gateway import unpack_details

C = grpc.StatusCode


@pytest.mark.parametrize(
    "status,body,code,reason",
    [
        (
            400,
            {"code": "parameter_invalid", "message": "The page_limit parameter is invalid."},
            C.INVALID_ARGUMENT,
            "PARAMETER_INVALID",
        ),
        (
            400,
            {"code": "parameter_not_provided", "message": "x"},
            C.INVALID_ARGUMENT,
            "PARAMETER_NOT_PROVIDED",
        ),
        (400, None, C.INVALID_ARGUMENT, "UPSTREAM_BAD_REQUEST"),
        (
            401,
            {"code": "api_key_invalid", "message": "bad key"},
            C.UNAUTHENTICATED,
            "API_KEY_INVALID",
        ),
        (403, {"message": "no"}, C.PERMISSION_DENIED, "UPSTREAM_PERMISSION_DENIED"),
        (
            404,
            {
                "code": "resource_not_exist",
                "message": "Resource with id abc does not exist in videos.",
            },
            C.NOT_FOUND,
            "RESOURCE_NOT_EXIST",
        ),
        (409, None, C.ABORTED, "UPSTREAM_CONFLICT"),
        (422, None, C.INVALID_ARGUMENT, "UPSTREAM_UNPROCESSABLE"),
        (
            429,
            {"code": "too_many_requests", "message": "slow down"},
            C.RESOURCE_EXHAUSTED,
            "TOO_MANY_REQUESTS",
        ),
        (418, None, C.FAILED_PRECONDITION, "UPSTREAM_REJECTED"),
        (500, {"code": "internal_error"}, C.UNAVAILABLE, "INTERNAL_ERROR"),
        (501, None, C.UNIMPLEMENTED, "UPSTREAM_NOT_IMPLEMENTED"),
        (502, None, C.UNAVAILABLE, "UPSTREAM_BAD_GATEWAY"),
        (503, None, C.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (504, None, C.UNAVAILABLE, "UPSTREAM_GATEWAY_TIMEOUT"),
        (599, None, C.UNAVAILABLE, "UPSTREAM_SERVER_ERROR"),
    ],
)
def test_upstream_rows(status: int, body: dict | None, code: grpc.StatusCode, reason: str) -> None:
    err = from_upstream(status, body, retry_after=3.5)
    assert err.code == code
    assert err.reason == reason
    assert err.http_status == status
    assert err.retryable == (status in (429, 502, 503, 504))
    d = unpack_details(to_status_proto(err))
    info = d.info
    assert info is not None
    assert info.domain == DOMAIN
    assert info.reason == reason
    assert info.metadata["http_status"] == str(status)
    if status == 429:
        assert d.retry is not None
        assert d.retry.retry_delay.ToNanoseconds() == 3_500_000_000
    else:
        assert d.retry is None  # Retry-After of other statuses only spaces the gateway's retries
    if status in (401, 403):
        assert "gateway's credentials" in err.message
    if status == 404:
        assert d.resource is not None
        assert d.resource.resource_type == "videos"
        assert d.resource.resource_name == "abc"


@pytest.mark.parametrize(
    "status,body,code,reason,retryable",
    [
        (400, {"code": "index_not_supported_for_search"}, C.FAILED_PRECONDITION,
         "INDEX_NOT_SUPPORTED_FOR_SEARCH", False),
        (400, {"code": "search_filter_invalid", "message": "Filter used in search is invalid."},
         C.INVALID_ARGUMENT, "SEARCH_FILTER_INVALID", False),
        (400, {"code": "resource_not_exist", "message": "Resource with id x does not exist in "
               "indexes."}, C.NOT_FOUND, "RESOURCE_NOT_EXIST", False),
        (408, {"code": "request_canceled_or_timed_out"}, C.UNAVAILABLE,
         "REQUEST_CANCELED_OR_TIMED_OUT", True),
        (403, {"code": "api_allowed_for_paid_plan"}, C.PERMISSION_DENIED,
         "API_ALLOWED_FOR_PAID_PLAN", False),
        (400, {"code": "api_not_allowed"}, C.PERMISSION_DENIED, "API_NOT_ALLOWED", False),
        (429, None, C.RESOURCE_EXHAUSTED, "TOO_MANY_REQUESTS", True),  # v1.3's empty 429 body
    ],
)  # fmt: skip
def test_v13_codes_map_to_their_rows(
    status: int, body: dict | None, code: grpc.StatusCode, reason: str, retryable: bool
) -> None:
    err = from_upstream(status, body)
    assert (err.code, err.reason, err.retryable, err.http_status) == (
        code, reason, retryable, status)  # fmt: skip


def test_reason_is_upper_snake_and_bounded() -> None:
    err = from_upstream(400, {"code": "weird-code.with spaces" + "x" * 100})
    assert err.reason.startswith("WEIRD_CODE_WITH_SPACES")
    assert len(err.reason) <= 63
    assert from_upstream(400, {"code": "123"}).reason == "UPSTREAM_BAD_REQUEST"


@pytest.mark.parametrize("reason", sorted(row.reason for row in TABLE if not row.http_statuses))
def test_own_reasons(reason: str) -> None:
    err = own_error(reason).replace(resume_token="tok-1")
    st = to_grpc_status(err)
    assert st.code == BY_REASON[reason].code
    assert err.retryable == BY_REASON[reason].retryable
    trailer = dict(st.trailing_metadata)
    assert "grpc-status-details-bin" in trailer
    # Clients (service config) retry UNAVAILABLE; only a refusal at the door may be retried.
    pushback = st.code == grpc.StatusCode.UNAVAILABLE and reason != "GATEWAY_SHUTTING_DOWN"
    assert (trailer.get("grpc-retry-pushback-ms") == "-1") == pushback
    d = unpack_details(to_status_proto(err))
    assert d.info is not None
    assert d.info.metadata["resume_page_token"] == "tok-1"
    assert d.info.reason == reason


def test_bad_request_lists_every_violation() -> None:
    err = invalid_request([("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")])
    assert "and 1 more" in err.message
    d = unpack_details(to_status_proto(err))
    assert d.bad_request is not None and d.info is not None
    assert [v.field for v in d.bad_request.field_violations] == ["a", "b", "c", "d"]
    assert "resume_page_token" not in d.info.metadata


def test_errors_are_frozen_and_replaced_with_context() -> None:
    err = from_upstream(503, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        err.pushback = True  # type: ignore[misc]
    spent = err.replace(pushback=True, resume_token="tok-2")
    assert isinstance(spent, GatewayError)
    assert not err.pushback and err.resume_token is None  # the original is unchanged
    assert (spent.code, spent.reason, spent.http_status) == (err.code, err.reason, 503)
    st = to_grpc_status(spent)
    assert dict(st.trailing_metadata)["grpc-retry-pushback-ms"] == "-1"
    d = unpack_details(to_status_proto(spent))
    assert d.info is not None and d.info.metadata["resume_page_token"] == "tok-2"


async def test_errors_pass_through_context_managers() -> None:
    """contextlib sets __traceback__ on the way out, which a frozen exception must allow."""

    @contextlib.asynccontextmanager
    async def scope() -> AsyncIterator[None]:
        yield

    with pytest.raises(GatewayError) as info:
        async with scope():
            raise own_error("DEADLINE_EXCEEDED")
    assert info.value.reason == "DEADLINE_EXCEEDED"


def test_catch_all_rows_apply_only_without_an_exact_row() -> None:
    assert row_for_status(418).reason == "UPSTREAM_REJECTED"
    assert row_for_status(599).reason == "UPSTREAM_SERVER_ERROR"
    assert row_for_status(404).reason == "RESOURCE_NOT_EXIST"
    assert row_for_status(302).reason == "UPSTREAM_REJECTED"
