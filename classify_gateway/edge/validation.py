"""Request validation before any upstream call.

An invalid request must never reach the upstream: every upstream call spends
quota (20 to 1,200 classify calls a day). Each violation names the field by its
proto path (`classes[0].prompts`), so that a Go or Java caller can point at it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from classify_gateway_proto.v1 import classify_service_pb2 as pb
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from classify_gateway.config import valid_api_key
from classify_gateway.core.errors import GatewayError, invalid_request, own_error
from classify_gateway.core.tokens import token_problem

MessageT = TypeVar("MessageT", bound=Message)

MAX_PROMPTS = 100
MAX_VIDEO_IDS = 1000
MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 2000
PAGE_LIMIT_MAX = 50
_SEARCH_OPTIONS = frozenset(pb.SearchOption.values()) - {pb.SEARCH_OPTION_UNSPECIFIED}
_CONVERSATION_OPTIONS = frozenset(pb.ConversationOption.values())
_THRESHOLD_RANGES = {
    "min_video_score": (0.0, 100.0),
    "min_clip_score": (0.0, 100.0),
    "min_duration_ratio": (0.01, 1.0),
}

API_KEY_HEADER = "x-api-key"
# C0 and C1 controls, DEL, and the bidirectional overrides and isolates, which make text
# display as something other than what it is (Trojan Source, CVE-2021-42574).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

Violations = list[tuple[str, str]]


def _check_token(token: str, field: str, out: Violations) -> None:
    why = token_problem(token)
    if why is not None:
        out.append((field, why))


def _string_fields(msg: Message, prefix: str = "") -> Iterable[tuple[str, str]]:
    """(proto field path, value) of every string in a request, at any depth.

    Walks the descriptor rather than a list of fields, so that a string field added to
    the proto later is checked without anyone remembering to.
    """
    for fd, value in msg.ListFields():
        path = prefix + fd.name
        repeated = fd.is_repeated
        if fd.type == FieldDescriptor.TYPE_STRING:
            if repeated:
                yield from ((f"{path}[{i}]", v) for i, v in enumerate(value))
            else:
                yield path, value
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            if repeated:
                for i, m in enumerate(value):
                    yield from _string_fields(m, f"{path}[{i}].")
            else:
                yield from _string_fields(value, path + ".")


def _collect_strings(msg: Message, out: list[str]) -> None:
    """Every string of a message, at any depth, without their paths (the fast pass)."""
    for fd, value in msg.ListFields():
        kind = fd.type
        if kind == _STRING:
            if fd.is_repeated:
                out.extend(value)
            else:
                out.append(value)
        elif kind == _MESSAGE:
            if fd.is_repeated:
                for m in value:
                    _collect_strings(m, out)
            else:
                _collect_strings(value, out)


_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


def _check_controls(request: Message, out: Violations) -> None:
    # One search over all the strings first: building every field's path (below) is
    # most of the cost, and almost every request has nothing to report.
    strings: list[str] = []
    _collect_strings(request, strings)
    if not CONTROL.search("".join(strings)):
        return
    for path, value in _string_fields(request):
        if CONTROL.search(value):
            out.append((path, "must not contain control or bidirectional-override characters"))


# W3C Trace Context (https://www.w3.org/TR/trace-context/): what may be forwarded as is.
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_TRACESTATE_MAX = 512


def forwardable_trace_context(metadata: Iterable[tuple[str, str | bytes]]) -> dict[str, str]:
    """The caller's `traceparent` and `tracestate`, only when each is valid W3C trace context.

    Forwarded headers are the caller's text in our upstream request: one that is not
    valid (CR/LF, NUL, non-ASCII, garbage) is dropped, never fatal and never sent; a
    repeated one is dropped too (which of the two would be meant?). `tracestate` goes
    only with a valid `traceparent`, as the specification asks.
    """
    found: dict[str, list[str]] = {}
    for key, value in metadata:
        if key in ("traceparent", "tracestate") and isinstance(value, str):
            found.setdefault(key, []).append(value)
    out: dict[str, str] = {}
    parents = found.get("traceparent", [])
    if len(parents) == 1 and _TRACEPARENT.fullmatch(parents[0]):
        out["traceparent"] = parents[0]
        states = found.get("tracestate", [])
        if len(states) == 1 and _valid_tracestate(states[0]):
            out["tracestate"] = states[0]
    return out


def _valid_tracestate(value: str) -> bool:
    if len(value) > _TRACESTATE_MAX:
        return False
    members = [m.strip(" \t") for m in value.split(",")]
    return 0 < len(members) <= 32 and all(_TRACESTATE_MEMBER.fullmatch(m) for m in members)


def caller_api_key(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The caller's own API key from call metadata: None when it sent none.

    Every `x-api-key` entry counts: two entries (one of them empty) used to skip the
    refusal and fall back to the configured key. Raises INVALID_ARGUMENT naming
    `x-api-key` for a repeated, empty or unsendable key (never echoing it).
    """
    values = [v for k, v in metadata if k.lower() == API_KEY_HEADER]
    if not values:
        return None
    why = None
    if len(values) > 1:
        why = f"must be sent at most once ({len(values)} entries)"
    elif not isinstance(values[0], str) or not values[0]:
        why = "must not be empty"
    elif not valid_api_key(values[0]):
        why = "is not a valid API key (visible ASCII only, no spaces or control characters)"
    if why is not None:
        raise invalid_request([(f"metadata {API_KEY_HEADER}", why)])
    value = values[0]
    assert isinstance(value, str)
    return value


def _text_problem(value: str, what: str) -> str | None:
    """What is wrong with a name or prompt, or None. The caller builds the field's path
    only for a problem: most requests have none, and a path per prompt was measurable."""
    if not value.strip():
        return f"{what} must not be empty"
    if len(value) > MAX_TEXT_LENGTH:
        return f"{what} must be at most {MAX_TEXT_LENGTH} characters"
    return None


def _check_options(options: list[int], field: str, out: Violations, *, required: bool) -> None:
    if required and not options:
        out.append((field, "at least one option is required (visual, conversation, text_in_video)"))
    seen: set[int] = set()
    for i, o in enumerate(options):
        if o not in _SEARCH_OPTIONS:
            out.append((f"{field}[{i}]", f"must be VISUAL, CONVERSATION or TEXT_IN_VIDEO, not {o}"))
        elif o in seen:
            out.append((f"{field}[{i}]", "is a duplicate"))
        seen.add(o)


def _check_conversation_option(value: int, field: str, out: Violations) -> None:
    if value not in _CONVERSATION_OPTIONS:
        out.append((field, f"must be SEMANTIC or EXACT_MATCH, not {value}"))


def classify_violations(request: pb.ClassifyRequest, max_pages_cap: int = 10000) -> Violations:
    """Every problem of a ClassifyRequest, as (field path, description) pairs."""
    out: Violations = []
    _check_controls(request, out)
    if request.max_pages < 0 or request.max_pages > max_pages_cap:
        out.append(("max_pages", f"must be between 0 (no cap) and {max_pages_cap}"))
    if request.page_token:
        # Resuming: the token names the classification; the other fields are not sent.
        _check_token(request.page_token, "page_token", out)
        return out

    has_videos = len(request.video_ids) > 0
    has_index = bool(request.index_id)
    if has_videos == has_index:
        what = "both are set" if has_videos else "neither is set"
        out.append(("video_ids", f"exactly one of video_ids and index_id must be set ({what})"))
    if len(request.video_ids) > MAX_VIDEO_IDS:
        out.append(("video_ids", f"must have at most {MAX_VIDEO_IDS} ids"))
    else:
        seen: set[str] = set()
        for i, vid in enumerate(request.video_ids):
            if not vid.strip() or len(vid) > MAX_ID_LENGTH or not vid.isprintable():
                out.append((f"video_ids[{i}]", "must be a non-empty video id"))
            elif vid in seen:
                out.append((f"video_ids[{i}]", "is a duplicate"))
            seen.add(vid)
    if has_index and (len(request.index_id) > MAX_ID_LENGTH or not request.index_id.isprintable()):
        out.append(("index_id", "must be an index id"))

    _check_options(list(request.options), "options", out, required=True)
    _check_conversation_option(request.conversation_option, "conversation_option", out)

    if not request.classes:
        out.append(("classes", "at least one class is required"))
    total_prompts = 0
    names: set[str] = set()
    for i, c in enumerate(request.classes):
        path = f"classes[{i}]"
        if (problem := _text_problem(c.name, "the class name")) is not None:
            out.append((f"{path}.name", problem))
        if c.name in names:
            out.append((f"{path}.name", "duplicates the name of another class"))
        names.add(c.name)
        if not c.prompts:
            out.append((f"{path}.prompts", "at least one prompt is required"))
        for j, prompt in enumerate(c.prompts):
            if (problem := _text_problem(prompt, "a prompt")) is not None:
                out.append((f"{path}.prompts[{j}]", problem))
        total_prompts += len(c.prompts)
        _check_options(list(c.options), f"{path}.options", out, required=False)
        _check_conversation_option(c.conversation_option, f"{path}.conversation_option", out)
    if total_prompts > MAX_PROMPTS:
        out.append(("classes", f"at most {MAX_PROMPTS} prompts in total ({total_prompts} given)"))

    if request.page_limit != 0 and not 1 <= request.page_limit <= PAGE_LIMIT_MAX:
        out.append(("page_limit", f"must be between 1 and {PAGE_LIMIT_MAX} (0: default 10)"))
    if request.HasField("threshold"):
        t = request.threshold
        present = {f.name for f, _ in t.ListFields()}
        for name, (low, high) in _THRESHOLD_RANGES.items():
            value = getattr(t, name)
            if name in present and not low <= value <= high:  # also rejects NaN
                out.append((f"threshold.{name}", f"must be between {low:g} and {high:g}"))
    return out


class Undecodable:
    """What the server's deserializer hands a handler for bytes that are not a message
    (invalid UTF-8 in a string field, a truncated field): grpc would otherwise end the
    call UNKNOWN with the parser's exception text."""

    def __init__(self, message_type: type[Message]) -> None:
        self.message_type = message_type


def lenient(message_type: type[MessageT]) -> Callable[[bytes], MessageT | Undecodable]:
    """A request deserializer that never raises (see Undecodable)."""

    def parse(data: bytes) -> MessageT | Undecodable:
        try:
            return message_type.FromString(data)
        except DecodeError:
            return Undecodable(message_type)

    return parse


def _decoded(request: object, message_type: type[Message]) -> None:
    if not isinstance(request, message_type):
        name = message_type.DESCRIPTOR.name
        raise own_error(
            "INVALID_REQUEST",
            f"the request is not a valid {name} (it does not decode: a string field that is "
            "not UTF-8, or a truncated field)",
        )


def validate_classify(request: pb.ClassifyRequest, max_pages_cap: int = 10000) -> None:
    """Raise INVALID_ARGUMENT with every violation, or return."""
    _decoded(request, pb.ClassifyRequest)
    violations = classify_violations(request, max_pages_cap)
    if violations:
        raise invalid_request(violations)


def validate_page_request(request: pb.GetClassifyPageRequest) -> None:
    _decoded(request, pb.GetClassifyPageRequest)
    out: Violations = []
    _check_controls(request, out)
    if not request.page_token:
        out.append(("page_token", "is required"))
    else:
        _check_token(request.page_token, "page_token", out)
    if out:
        raise invalid_request(out)


__all__ = [
    "GatewayError",
    "caller_api_key",
    "classify_violations",
    "forwardable_trace_context",
    "lenient",
    "validate_classify",
    "validate_page_request",
]
