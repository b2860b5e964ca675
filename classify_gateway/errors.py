"""One table from every failure to a gRPC status with google.rpc error details.

Go and Java callers branch on the status code and read the details from the
`grpc-status-details-bin` trailer, so both must be stable. `TABLE` is the single
declarative source, in the spirit of python-api-core's exception classes: each row
is a reason with its gRPC code, default message, whether the gateway retries it,
and the upstream HTTP statuses it stands for. Code never decides retryability or
a code on its own: it looks the row up (`row_for_reason`, `row_for_status`).
docs/errors.md renders the same table for people (tests/unit/test_docs_errors.py).

A `GatewayError` is raised, never returned, and frozen: context is added on the
way out with `dataclasses.replace` (the gateway's retries spent, a refused page
token, the resume token), so that no layer can change an error another layer holds.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "classify-gateway.v1"
RESUME_TOKEN_KEY = "resume_page_token"
PUSHBACK_KEY = "grpc-retry-pushback-ms"
_MAX_REASON = 63
C = grpc.StatusCode


@dataclass(frozen=True)
class ErrorRow:
    """One row of the error table.

    `http_statuses` are the upstream answers this row stands for: exact statuses, or
    a whole class (`range(400, 500)`) for the catch-all rows, which apply only when
    no exact row matches. Rows without statuses are failures of the gateway's own.
    """

    reason: str
    code: grpc.StatusCode
    message: str
    retryable: bool = False
    http_statuses: Sequence[int] = ()

    @property
    def catch_all(self) -> bool:
        return isinstance(self.http_statuses, range)


# Retryable rows are retried by the gateway (backoff, full jitter, never past the
# deadline) before the error reaches the caller; the others never are (AIP-194).
TABLE: tuple[ErrorRow, ...] = (
    # The upstream answered with an error status.
    ErrorRow("UPSTREAM_BAD_REQUEST", C.INVALID_ARGUMENT, "the upstream rejected the request",
             http_statuses=(400,)),
    ErrorRow("API_KEY_INVALID", C.UNAUTHENTICATED, "the upstream refused the gateway's credentials",
             http_statuses=(401,)),
    ErrorRow("UPSTREAM_PERMISSION_DENIED", C.PERMISSION_DENIED,
             "the upstream refused the gateway's credentials", http_statuses=(403,)),
    ErrorRow("RESOURCE_NOT_EXIST", C.NOT_FOUND, "the upstream does not know this resource",
             http_statuses=(404,)),
    ErrorRow("UPSTREAM_CONFLICT", C.ABORTED, "the upstream reported a conflict",
             http_statuses=(409,)),
    ErrorRow("UPSTREAM_REQUEST_TOO_LARGE", C.INVALID_ARGUMENT, "the request is too large",
             http_statuses=(413,)),
    ErrorRow("UPSTREAM_UNPROCESSABLE", C.INVALID_ARGUMENT, "the upstream cannot process it",
             http_statuses=(422,)),
    ErrorRow("TOO_MANY_REQUESTS", C.RESOURCE_EXHAUSTED, "the upstream rate limit was reached",
             retryable=True, http_statuses=(429,)),
    ErrorRow("UPSTREAM_INTERNAL_ERROR", C.UNAVAILABLE, "the upstream failed",
             http_statuses=(500,)),
    ErrorRow("UPSTREAM_NOT_IMPLEMENTED", C.UNIMPLEMENTED, "the upstream does not implement this",
             http_statuses=(501,)),
    ErrorRow("UPSTREAM_BAD_GATEWAY", C.UNAVAILABLE, "the upstream's gateway failed",
             retryable=True, http_statuses=(502,)),
    ErrorRow("UPSTREAM_UNAVAILABLE", C.UNAVAILABLE, "the upstream is unavailable",
             retryable=True, http_statuses=(503,)),
    ErrorRow("UPSTREAM_GATEWAY_TIMEOUT", C.UNAVAILABLE, "the upstream's gateway timed out",
             retryable=True, http_statuses=(504,)),
    ErrorRow("UPSTREAM_REJECTED", C.FAILED_PRECONDITION, "the upstream rejected the request",
             http_statuses=range(400, 500)),
    ErrorRow("UPSTREAM_SERVER_ERROR", C.UNAVAILABLE, "the upstream failed",
             http_statuses=range(500, 600)),
    # Failures without an upstream status: the gateway's own reasons.
    ErrorRow("INVALID_REQUEST", C.INVALID_ARGUMENT, "the request is invalid"),
    ErrorRow("UPSTREAM_UNREACHABLE", C.UNAVAILABLE,
             "the upstream could not be reached (connection failed or was reset)", retryable=True),
    ErrorRow("UPSTREAM_TIMEOUT", C.UNAVAILABLE,
             "the upstream did not answer within the per-attempt timeout", retryable=True),
    ErrorRow("UPSTREAM_MALFORMED_RESPONSE", C.UNAVAILABLE,
             "the upstream answered with a body that is not valid JSON", retryable=True),
    ErrorRow("UPSTREAM_SCHEMA_MISMATCH", C.DATA_LOSS,
             "the upstream answered with JSON that does not match the classify contract"),
    ErrorRow("DEADLINE_EXCEEDED", C.DEADLINE_EXCEEDED, "the call's deadline passed"),
    ErrorRow("GATEWAY_RATE_LIMITED", C.RESOURCE_EXHAUSTED,
             "the gateway's upstream rate limit cannot admit this call within its deadline"),
    ErrorRow("GATEWAY_OVERLOADED", C.RESOURCE_EXHAUSTED,
             "the gateway is at its limit of concurrent streams"),
    ErrorRow("PAGE_TOO_LARGE", C.RESOURCE_EXHAUSTED,
             "an upstream page is larger than the gateway may send "
             "(CLASSIFY_GATEWAY_MAX_SEND_MESSAGE_BYTES); ask for a smaller page_limit"),
    ErrorRow("GATEWAY_SHUTTING_DOWN", C.UNAVAILABLE,
             "the gateway is shutting down; retry on another instance"),
    ErrorRow("API_KEY_MISSING", C.UNAUTHENTICATED,
             "no upstream API key is configured and the call carried none"),
    ErrorRow("CALLER_API_KEY_NOT_ALLOWED", C.PERMISSION_DENIED,
             "this gateway does not accept API keys from callers"),
)  # fmt: skip

BY_REASON: Mapping[str, ErrorRow] = {row.reason: row for row in TABLE}
_BY_STATUS: Mapping[int, ErrorRow] = {
    status: row for row in TABLE if not row.catch_all for status in row.http_statuses
}
_OTHER_4XX = BY_REASON["UPSTREAM_REJECTED"]
_OTHER_5XX = BY_REASON["UPSTREAM_SERVER_ERROR"]


def row_for_reason(reason: str) -> ErrorRow:
    return BY_REASON[reason]


def row_for_status(http_status: int) -> ErrorRow:
    """The row of an upstream HTTP status: its own, else its class's catch-all."""
    row = _BY_STATUS.get(http_status)
    if row is not None:
        return row
    return _OTHER_4XX if http_status < 500 else _OTHER_5XX


@dataclass(frozen=True, eq=False)
class _ErrorFields(Exception):
    code: grpc.StatusCode
    reason: str
    message: str
    retryable: bool = False
    # The upstream's HTTP status when the failure is its answer (ErrorInfo `http_status`).
    http_status: int | None = None
    upstream_code: str | None = None
    violations: tuple[tuple[str, str], ...] = ()
    # Sent to the caller as RetryInfo.
    retry_delay: float | None = None
    # The upstream's own Retry-After hint: the gateway's next retry waits at least this
    # long; it becomes RetryInfo only when the deadline leaves no time to wait.
    retry_after: float | None = None
    resource: tuple[str, str] | None = None  # (type, name) for ResourceInfo
    # True once the gateway has spent its own retries on this failure: the status then
    # carries `grpc-retry-pushback-ms: -1` so that clients' retry policies (gRFC A6) do
    # not multiply the upstream calls, and the quota they spend, by their own attempts.
    pushback: bool = False
    # The upstream refused a page token (expired or unknown): resuming from it cannot work.
    token_refused: bool = False
    # Where the caller resumes the stream (ErrorInfo `resume_page_token`).
    resume_token: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)


class GatewayError(_ErrorFields):
    """A failure on its way to the caller as a gRPC status with details.

    The fields are frozen (use `dataclasses.replace`). The class itself is a plain
    subclass of the frozen dataclass so that Python may still set the exception's
    own dunder attributes (`contextlib` assigns `__traceback__` on the way out of a
    context manager, which a frozen dataclass would refuse).
    """

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"

    def replace(self, **changes: Any) -> GatewayError:
        """A copy with `changes` (dataclasses.replace, typed for this class)."""
        return dataclasses.replace(self, **changes)


def own_error(
    reason: str, message: str | None = None, *, retry_delay: float | None = None
) -> GatewayError:
    """A GatewayError for one of the table's rows, by reason."""
    row = BY_REASON[reason]
    return GatewayError(
        row.code, reason, message or row.message, row.retryable, retry_delay=retry_delay
    )


def invalid_request(violations: Sequence[tuple[str, str]]) -> GatewayError:
    """INVALID_ARGUMENT naming every bad field (BadRequest field violations)."""
    first = "; ".join(f"{f}: {d}" for f, d in violations[:3])
    more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
    return own_error("INVALID_REQUEST", f"invalid request: {first}{more}").replace(
        violations=tuple(violations)
    )


def _upper_snake(code: str) -> str:
    reason = re.sub(r"[^A-Za-z0-9]+", "_", code).strip("_").upper()
    if not reason or not reason[0].isalpha():
        return ""
    return reason[:_MAX_REASON]


def from_upstream(
    http_status: int,
    body: Mapping[str, object] | None,
    *,
    retry_after: float | None = None,
) -> GatewayError:
    """Map an upstream error response to a GatewayError.

    The reason is the upstream's own `code` in UPPER_SNAKE_CASE when it sends one, so
    callers see the upstream's vocabulary; code and retryability always come from the
    status's row. A 429's `retry_after` is also the caller's RetryInfo.
    """
    row = row_for_status(http_status)
    up_code = body.get("code") if body else None
    up_message = body.get("message") if body else None
    reason = _upper_snake(up_code) if isinstance(up_code, str) else ""
    detail = up_message if isinstance(up_message, str) and up_message else f"HTTP {http_status}"
    if http_status in (401, 403):
        message = f"{row.message} (HTTP {http_status}: {detail}); check the gateway's API key"
    elif http_status == 429:
        message = f"{row.message}: {detail}"
    elif http_status >= 500:
        message = f"the upstream failed (HTTP {http_status}): {detail}"
    else:
        message = f"the upstream rejected the request (HTTP {http_status}): {detail}"
    resource = None
    if http_status == 404 and isinstance(up_message, str):
        m = _RESOURCE_RE.search(up_message)
        if m:
            resource = (m.group("collection"), m.group("id"))
    return GatewayError(
        row.code,
        reason or row.reason,
        message,
        row.retryable,
        http_status=http_status,
        upstream_code=up_code[:200] if isinstance(up_code, str) and up_code else None,
        retry_delay=retry_after if http_status == 429 else None,
        retry_after=retry_after,
        resource=resource,
    )


# "Resource with id {id} does not exist in {collection}." (documented 404 message)
_RESOURCE_RE = re.compile(r"id (?P<id>\S+) does not exist in (?P<collection>[\w-]+)")


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(max(0, round(seconds * 1e9)))
    return d


def to_status_proto(err: GatewayError) -> status_pb2.Status:
    """The google.rpc.Status that goes into the trailer (each detail type at most once)."""
    meta: dict[str, str] = {}
    if err.http_status is not None:
        meta["http_status"] = str(err.http_status)
    if err.upstream_code:
        meta["upstream_code"] = err.upstream_code
    if err.resume_token:
        meta[RESUME_TOKEN_KEY] = err.resume_token
    details: list[Any] = [
        error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=meta)
    ]
    if err.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in err.violations
                ]
            )
        )
    if err.retry_delay is not None:
        details.append(error_details_pb2.RetryInfo(retry_delay=_duration(err.retry_delay)))
    if err.resource is not None:
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=err.resource[0], resource_name=err.resource[1]
            )
        )
    code: int = err.code.value[0]
    status = status_pb2.Status(code=code, message=err.message)
    for d in details:
        status.details.add().Pack(d)
    return status


def to_grpc_status(err: GatewayError) -> grpc.Status:
    status = rpc_status.to_status(to_status_proto(err))
    if not err.pushback:
        return status
    return _Status(status.code, status.details, (*status.trailing_metadata, (PUSHBACK_KEY, "-1")))


@dataclass(frozen=True)
class _Status(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]
