"""One table from every failure to a gRPC status with google.rpc error details.

Go and Java callers branch on the status code and read the details from the
`grpc-status-details-bin` trailer, so both must be stable. `TABLE` is the single
declarative source, in the spirit of python-api-core's exception classes: each row
is a reason with its gRPC code, default message, whether the gateway retries it,
and the upstream HTTP statuses it stands for. Code never decides retryability or
a code on its own: it looks the row up (`BY_REASON`, `row_for_status`).
docs/errors.md renders the same table for people (tests/unit/test_docs_errors.py).

A `GatewayError` is raised, never returned, and frozen: context is added on the
way out with `dataclasses.replace` (the gateway's retries spent, a refused page
token, the resume token), so that no layer can change an error another layer holds.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from classify_gateway.core.redact import MIN_SECRET, redact, safe_text

DOMAIN = "classify-gateway.v1"
# What one status may hold. The trailer must stay under grpc's default metadata limit
# (8 KiB, counting the details base64-encoded and the message percent-encoded): past it
# the caller gets a bare RESOURCE_EXHAUSTED instead of this status.
TRAILER_BUDGET = 6 * 1024
MAX_VIOLATIONS = 20
MAX_DESCRIPTION = 200
MAX_MESSAGE = 1024
MAX_UPSTREAM_TEXT = 500  # the upstream's own message, as quoted in ours
MAX_RESOURCE_TEXT = 200  # the upstream's code, a resource id or collection
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
    ErrorRow("PAGE_TOO_LARGE", C.DATA_LOSS,
             "an upstream page is larger than the gateway may read or send "
             "(CLASSIFY_GATEWAY_MAX_UPSTREAM_BODY_BYTES, CLASSIFY_GATEWAY_MAX_SEND_MESSAGE_BYTES); "
             "ask for a smaller page_limit"),
    ErrorRow("UPSTREAM_BAD_TOKEN", C.DATA_LOSS,
             "the upstream answered with a page token that is not one (it would leave the "
             "page path, or is too long); the pages before it were sent"),
    ErrorRow("UPSTREAM_TOKEN_LOOP", C.DATA_LOSS,
             "the upstream answered with a page token this stream has already fetched: "
             "following it would fetch the same pages again, forever"),
    ErrorRow("INTERNAL_ERROR", C.INTERNAL,
             "the gateway failed unexpectedly; the failure is logged with this call's trace id"),
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


# Upstream codes (API v1.3, upstream-v13.md section 1.7) that stand for a row whatever
# status they came with: the status alone would say something else (a 400 for an index
# without Marengo is not the caller's bad argument; a timed-out request is worth a retry).
# The reason the caller sees stays the upstream's code; the gRPC code and retryability
# are the row's. Codes not listed map by their HTTP status (`row_for_status`), as
# parameter_invalid (400), search_filter_invalid (400), api_key_invalid (401) do.
BY_UPSTREAM_CODE: Mapping[str, str] = {
    "resource_not_exist": "RESOURCE_NOT_EXIST",
    "too_many_requests": "TOO_MANY_REQUESTS",
    "index_not_supported_for_search": "UPSTREAM_REJECTED",
    "index_not_supported_for_generate": "UPSTREAM_REJECTED",
    "search_option_not_supported": "UPSTREAM_REJECTED",
    "api_allowed_for_paid_plan": "UPSTREAM_PERMISSION_DENIED",
    "api_not_allowed": "UPSTREAM_PERMISSION_DENIED",
    "region_not_allowed": "UPSTREAM_PERMISSION_DENIED",
    "api_upgrade_required": "UPSTREAM_REJECTED",
    "request_canceled_or_timed_out": "UPSTREAM_TIMEOUT",
}


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
    # (Every UNAVAILABLE but a refusal at the door carries it anyway: see to_grpc_status.)
    pushback: bool = False
    # The upstream refused a page token (expired or unknown): resuming from it cannot work.
    token_refused: bool = False
    # Where the caller resumes the stream (ErrorInfo `resume_page_token`).
    resume_token: str | None = None
    # What the wire saw, in words a person can act on (ErrorInfo `cause`, the log line):
    # "TLS certificate of api.example not trusted: self-signed certificate", "connection
    # to host:443 refused", "DNS lookup of host failed: ...", "response head over ...".
    cause: str | None = None

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
    """INVALID_ARGUMENT naming the bad fields (BadRequest field violations).

    At most MAX_VIOLATIONS go into BadRequest, each description at most
    MAX_DESCRIPTION characters; the message says how many there were in all. 1,000
    copies of one video id used to make a 1.8 MB trailer that no client could receive.
    """
    listed = tuple((f, _shorten(d, MAX_DESCRIPTION)) for f, d in violations[:MAX_VIOLATIONS])
    first = "; ".join(f"{f}: {d}" for f, d in listed[:3])
    more = ""
    if len(violations) > 3:
        more = f" (and {len(violations) - 3} more"
        if len(violations) > MAX_VIOLATIONS:
            more += f"; {len(violations)} in all, the first {MAX_VIOLATIONS} listed in BadRequest"
        more += ")"
    return own_error("INVALID_REQUEST", f"invalid request: {first}{more}").replace(
        violations=listed
    )


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub(err: GatewayError, secrets: Sequence[str]) -> GatewayError:
    """`err` with every secret (the configured key, the caller's) replaced in every text
    it carries: the last step before a status leaves the gateway, whatever built it."""
    secrets = [s for s in secrets if len(s) >= MIN_SECRET]
    if not secrets:
        return err

    def clean(text: str) -> str:
        return redact(text, secrets)

    return err.replace(
        message=clean(err.message),
        upstream_code=clean(err.upstream_code) if err.upstream_code else err.upstream_code,
        violations=tuple((clean(f), clean(d)) for f, d in err.violations),
        resource=(clean(err.resource[0]), clean(err.resource[1])) if err.resource else None,
        resume_token=clean(err.resume_token) if err.resume_token else err.resume_token,
        cause=clean(err.cause) if err.cause else err.cause,
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
    callers see the upstream's vocabulary; code and retryability come from the status's
    row, or from the row `BY_UPSTREAM_CODE` names for a code whose meaning the status
    alone does not carry. A 429's `retry_after` is also the caller's RetryInfo.
    """
    up_code = body.get("code") if body else None
    by_code = BY_UPSTREAM_CODE.get(up_code) if isinstance(up_code, str) else None
    row = BY_REASON[by_code] if by_code else row_for_status(http_status)
    up_message = body.get("message") if body else None
    reason = _upper_snake(up_code) if isinstance(up_code, str) else ""
    # The upstream's text goes to the caller: no control or bidi-override characters,
    # and short (the body itself was redacted of keys before it was parsed).
    if isinstance(up_message, str) and up_message:
        detail = safe_text(up_message, (), MAX_UPSTREAM_TEXT)
    else:
        detail = f"HTTP {http_status}"
    # The row's message, then what the upstream said: one table decides every message.
    message = f"{row.message} (HTTP {http_status}: {detail})"
    resource = None
    if http_status == 404 and isinstance(up_message, str):
        m = _RESOURCE_RE.search(up_message)
        if m:
            resource = (
                safe_text(m.group("collection"), (), MAX_RESOURCE_TEXT),
                safe_text(m.group("id"), (), MAX_RESOURCE_TEXT),
            )
    return GatewayError(
        row.code,
        reason or row.reason,
        message,
        row.retryable,
        http_status=http_status,
        upstream_code=(
            safe_text(up_code, (), MAX_RESOURCE_TEXT)
            if isinstance(up_code, str) and up_code
            else None
        ),
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
    if err.cause:
        meta["cause"] = _shorten(err.cause, MAX_RESOURCE_TEXT)
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
    status = status_pb2.Status(code=code, message=_shorten(err.message, MAX_MESSAGE))
    for d in details:
        status.details.add().Pack(d)
    return _fit(status, details)


def trailer_size(status: status_pb2.Status) -> int:
    """Bytes the status takes in the trailer: details base64-encoded, the message
    percent-encoded (at worst three bytes for each of its UTF-8 bytes)."""
    details = len(base64.b64encode(status.SerializeToString()))
    message = len(status.message.encode()) * 3
    return details + message + 64


def _fit(status: status_pb2.Status, details: list[Any]) -> status_pb2.Status:
    """The status, trimmed until its trailer fits TRAILER_BUDGET.

    Whatever a status carries (violations, upstream text, a long resume token), grpc
    refuses to deliver trailers past its metadata limit (8 KiB by default) and the
    caller then sees a bare RESOURCE_EXHAUSTED with no details. Field violations go
    first (from the end, keeping one), then the message is shortened, then ResourceInfo
    and last the resume token go: the code and ErrorInfo's reason always arrive.
    """
    if trailer_size(status) <= TRAILER_BUDGET:
        return status
    info = details[0]
    bad = next((d for d in details if isinstance(d, error_details_pb2.BadRequest)), None)

    def rebuild() -> status_pb2.Status:
        out = status_pb2.Status(code=status.code, message=status.message)
        for d in details:
            out.details.add().Pack(d)
        return out

    current = status
    while bad is not None and len(bad.field_violations) > 1:
        del bad.field_violations[len(bad.field_violations) // 2 :]
        current = rebuild()
        if trailer_size(current) <= TRAILER_BUDGET:
            return current
    status.message = _shorten(status.message, 200)
    for d in list(details):
        if isinstance(d, error_details_pb2.ResourceInfo):
            details.remove(d)
    current = rebuild()
    if trailer_size(current) > TRAILER_BUDGET:
        info.metadata.pop(RESUME_TOKEN_KEY, None)
        info.metadata.pop("upstream_code", None)
        info.metadata.pop("cause", None)
        if bad is not None:
            for v in bad.field_violations:
                v.field, v.description = _shorten(v.field, 200), _shorten(v.description, 200)
        current = rebuild()
    return current


# UNAVAILABLE reasons that clients' retry policies may retry: refusals before any
# upstream request (a draining pod turns a call away at the door; another pod serves
# the retry). deploy/service-config.json retries UNAVAILABLE, the only code it retries.
CLIENT_RETRYABLE = frozenset({"GATEWAY_SHUTTING_DOWN"})


def client_may_retry(err: GatewayError) -> bool:
    """Whether a gRPC client's retry policy may send this call again.

    Only a refusal that cost no upstream request: every other UNAVAILABLE follows an
    upstream request (a POST /classify starts a billed classification) that the
    gateway already retried as far as its policy allows, or chose not to (a 500).
    """
    return err.reason in CLIENT_RETRYABLE and not err.pushback


def to_grpc_status(err: GatewayError) -> grpc.Status:
    """The status for `err`; with `grpc-retry-pushback-ms: -1` unless a client may retry it
    (gRFC A6: a negative pushback ends the client's retries; Envoy ignores it)."""
    status = rpc_status.to_status(to_status_proto(err))
    if not err.pushback and (err.code != grpc.StatusCode.UNAVAILABLE or client_may_retry(err)):
        return status
    return _Status(status.code, status.details, (*status.trailing_metadata, (PUSHBACK_KEY, "-1")))


@dataclass(frozen=True)
class _Status(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]
