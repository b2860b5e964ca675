"""One table from every failure to a gRPC status with google.rpc error details.

Go and Java callers branch on the status code and read the details from the
`grpc-status-details-bin` trailer, so both must be stable: the code comes from
`UPSTREAM_STATUS_TABLE` (upstream HTTP status) or from the reason's own row in
`REASONS`, and every error carries an ErrorInfo (AIP-193) with a fixed domain.
docs/errors.md renders the same table for people.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "classify-gateway.v1"
RESUME_TOKEN_KEY = "resume_page_token"
_MAX_REASON = 63


@dataclass(frozen=True)
class UpstreamRow:
    """How one upstream HTTP status maps to gRPC."""

    code: grpc.StatusCode
    default_reason: str
    retryable: bool


# Upstream HTTP status -> gRPC code. Retryable rows are retried (backoff, jitter,
# deadline) before the error reaches the caller; the others never are (AIP-194).
UPSTREAM_STATUS_TABLE: Mapping[int, UpstreamRow] = {
    400: UpstreamRow(grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_BAD_REQUEST", False),
    401: UpstreamRow(grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID", False),
    403: UpstreamRow(grpc.StatusCode.PERMISSION_DENIED, "UPSTREAM_PERMISSION_DENIED", False),
    404: UpstreamRow(grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_EXIST", False),
    409: UpstreamRow(grpc.StatusCode.ABORTED, "UPSTREAM_CONFLICT", False),
    413: UpstreamRow(grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_REQUEST_TOO_LARGE", False),
    422: UpstreamRow(grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_UNPROCESSABLE", False),
    429: UpstreamRow(grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_REQUESTS", True),
    500: UpstreamRow(grpc.StatusCode.UNAVAILABLE, "UPSTREAM_INTERNAL_ERROR", False),
    501: UpstreamRow(grpc.StatusCode.UNIMPLEMENTED, "UPSTREAM_NOT_IMPLEMENTED", False),
    502: UpstreamRow(grpc.StatusCode.UNAVAILABLE, "UPSTREAM_BAD_GATEWAY", True),
    503: UpstreamRow(grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", True),
    504: UpstreamRow(grpc.StatusCode.UNAVAILABLE, "UPSTREAM_GATEWAY_TIMEOUT", True),
}
# Any other status: by class.
OTHER_4XX = UpstreamRow(grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_REJECTED", False)
OTHER_5XX = UpstreamRow(grpc.StatusCode.UNAVAILABLE, "UPSTREAM_SERVER_ERROR", False)

# Failures that do not come with an upstream HTTP status: our own reasons.
REASONS: Mapping[str, tuple[grpc.StatusCode, str]] = {
    "INVALID_REQUEST": (grpc.StatusCode.INVALID_ARGUMENT, "the request is invalid"),
    "UPSTREAM_UNREACHABLE": (
        grpc.StatusCode.UNAVAILABLE,
        "the upstream could not be reached (connection failed or was reset)",
    ),
    "UPSTREAM_TIMEOUT": (
        grpc.StatusCode.UNAVAILABLE,
        "the upstream did not answer within the per-attempt timeout",
    ),
    "UPSTREAM_MALFORMED_RESPONSE": (
        grpc.StatusCode.UNAVAILABLE,
        "the upstream answered with a body that is not valid JSON",
    ),
    "UPSTREAM_SCHEMA_MISMATCH": (
        grpc.StatusCode.DATA_LOSS,
        "the upstream answered with JSON that does not match the classify contract",
    ),
    "DEADLINE_EXCEEDED": (grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed"),
    "GATEWAY_RATE_LIMITED": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "the gateway's upstream rate limit cannot admit this call within its deadline",
    ),
    "GATEWAY_OVERLOADED": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "the gateway is at its limit of concurrent streams",
    ),
    "PAGE_TOO_LARGE": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "an upstream page is larger than the gateway may send "
        "(CLASSIFY_GATEWAY_MAX_SEND_MESSAGE_BYTES); ask for a smaller page_limit",
    ),
    "GATEWAY_SHUTTING_DOWN": (
        grpc.StatusCode.UNAVAILABLE,
        "the gateway is shutting down; retry on another instance",
    ),
    "API_KEY_MISSING": (
        grpc.StatusCode.UNAUTHENTICATED,
        "no upstream API key is configured and the call carried none",
    ),
    "CALLER_API_KEY_NOT_ALLOWED": (
        grpc.StatusCode.PERMISSION_DENIED,
        "this gateway does not accept API keys from callers",
    ),
}


@dataclass
class GatewayError(Exception):
    """A failure on its way to the caller as a gRPC status with details."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    violations: Sequence[tuple[str, str]] = ()
    retry_delay: float | None = None
    resource: tuple[str, str] | None = None  # (type, name) for ResourceInfo
    # True once the gateway has spent its own retries on this failure: the status then
    # carries `grpc-retry-pushback-ms: -1` so that clients' retry policies (gRFC A6) do
    # not multiply the upstream calls, and the quota they spend, by their own attempts.
    pushback: bool = False
    # The upstream refused a page token (expired or unknown): resuming from it cannot work.
    token_refused: bool = False

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"


def own_error(
    reason: str, message: str | None = None, *, retry_delay: float | None = None, **meta: str
) -> GatewayError:
    """A GatewayError for one of our own reasons in REASONS."""
    code, default = REASONS[reason]
    return GatewayError(code, reason, message or default, dict(meta), retry_delay=retry_delay)


def invalid_request(violations: Sequence[tuple[str, str]]) -> GatewayError:
    """INVALID_ARGUMENT naming every bad field (BadRequest field violations)."""
    first = "; ".join(f"{f}: {d}" for f, d in violations[:3])
    more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        f"invalid request: {first}{more}",
        violations=tuple(violations),
    )


def _upper_snake(code: str) -> str:
    reason = re.sub(r"[^A-Za-z0-9]+", "_", code).strip("_").upper()
    if not reason or not reason[0].isalpha():
        return ""
    return reason[:_MAX_REASON]


def row_for_status(http_status: int) -> UpstreamRow:
    row = UPSTREAM_STATUS_TABLE.get(http_status)
    if row is not None:
        return row
    return OTHER_4XX if http_status < 500 else OTHER_5XX


def from_upstream(
    http_status: int,
    body: Mapping[str, object] | None,
    *,
    retry_delay: float | None = None,
) -> GatewayError:
    """Map an upstream error response to a GatewayError (after any retries)."""
    row = row_for_status(http_status)
    up_code = body.get("code") if body else None
    up_message = body.get("message") if body else None
    reason = _upper_snake(up_code) if isinstance(up_code, str) else ""
    reason = reason or row.default_reason
    detail = up_message if isinstance(up_message, str) and up_message else f"HTTP {http_status}"
    if http_status in (401, 403):
        message = (
            "the upstream refused the gateway's credentials "
            f"(HTTP {http_status}: {detail}); check the gateway's API key"
        )
    elif http_status == 429:
        message = f"the upstream rate limit was reached: {detail}"
    elif http_status >= 500:
        message = f"the upstream failed (HTTP {http_status}): {detail}"
    else:
        message = f"the upstream rejected the request (HTTP {http_status}): {detail}"
    meta = {"http_status": str(http_status)}
    if isinstance(up_code, str) and up_code:
        meta["upstream_code"] = up_code[:200]
    resource = None
    if http_status == 404 and isinstance(up_message, str):
        m = _RESOURCE_RE.search(up_message)
        if m:
            resource = (m.group("collection"), m.group("id"))
    return GatewayError(row.code, reason, message, meta, retry_delay=retry_delay, resource=resource)


# "Resource with id {id} does not exist in {collection}." (documented 404 message)
_RESOURCE_RE = re.compile(r"id (?P<id>\S+) does not exist in (?P<collection>[\w-]+)")


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(max(0, round(seconds * 1e9)))
    return d


def to_status_proto(err: GatewayError, resume_token: str | None = None) -> status_pb2.Status:
    """The google.rpc.Status that goes into the trailer (each detail type at most once)."""
    meta = dict(err.metadata)
    if resume_token:
        meta[RESUME_TOKEN_KEY] = resume_token
    details = [error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=meta)]
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


PUSHBACK_KEY = "grpc-retry-pushback-ms"


def to_grpc_status(err: GatewayError, resume_token: str | None = None) -> grpc.Status:
    status = rpc_status.to_status(to_status_proto(err, resume_token))
    if not err.pushback:
        return status
    return _Status(status.code, status.details, (*status.trailing_metadata, (PUSHBACK_KEY, "-1")))


@dataclass(frozen=True)
class _Status(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]
