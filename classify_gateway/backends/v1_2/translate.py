"""Pure functions between the proto contract and the upstream JSON.

Hand-written rather than json_format because this is the gateway's hot path:
building the messages directly is several times faster than ParseDict (see
docs/benchmarks.md), and it lets us check types as we go so that a body that
does not match the contract becomes a clear DATA_LOSS error instead of a crash.
json_format stays the oracle in the tests: both must give equal messages.

Rules: only fields that are set go upstream; enums go as the upstream strings;
unknown upstream fields are ignored; missing optional fields stay unset; doubles
are copied as they are (a JSON number becomes a Python float, which is an IEEE
double, exactly what a proto `double` holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import orjson
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from google.protobuf import timestamp_pb2

from classify_gateway.core.errors import GatewayError, own_error

SEARCH_OPTION_TO_UPSTREAM: Mapping[int, str] = {
    pb.SEARCH_OPTION_VISUAL: "visual",
    pb.SEARCH_OPTION_CONVERSATION: "conversation",
    pb.SEARCH_OPTION_TEXT_IN_VIDEO: "text_in_video",
}
CONVERSATION_OPTION_TO_UPSTREAM: Mapping[int, str] = {
    pb.CONVERSATION_OPTION_SEMANTIC: "semantic",
    pb.CONVERSATION_OPTION_EXACT_MATCH: "exact_match",
}

PageT = TypeVar("PageT", pb.ClassifyResponse, pb.GetClassifyPageResponse)


def classify_path(request: pb.ClassifyRequest) -> str:
    """The upstream path that starts this classification (relative to the base URL)."""
    return "/classify/bulk" if request.index_id else "/classify"


def page_path(page_token: str) -> str:
    """The upstream path of one page: the token percent-encoded as one path segment.

    Tokens are opaque and come from callers and from the upstream alike; both pass
    `validation.token_problem` first, and encoding every byte outside the unreserved set
    means that even a token that slipped through could not name another path, add a
    query or a fragment, or be decoded into either on the way.
    """
    return "/classify/" + quote(page_token, safe="")


def request_body(sent: dict[str, Any]) -> bytes:
    """The POST body of `request_to_json(request)`, in a bytes object of its own size.

    orjson returns its output in the buffer it wrote it to, at least 4 KiB, and a request
    body lives as long as the upstream takes to answer: 4 KiB per waiting stream for 300
    bytes of JSON (tracemalloc, bench/NOTES.md). One copy keeps only the bytes."""
    return bytes(memoryview(orjson.dumps(sent)))


def request_to_json(request: pb.ClassifyRequest) -> dict[str, Any]:
    """The exact upstream body for a (validated) ClassifyRequest."""
    body: dict[str, Any] = {}
    if request.index_id:
        body["index_id"] = request.index_id
    else:
        body["video_ids"] = list(request.video_ids)
    body["options"] = [SEARCH_OPTION_TO_UPSTREAM[o] for o in request.options]
    if request.conversation_option:
        body["conversation_option"] = CONVERSATION_OPTION_TO_UPSTREAM[request.conversation_option]
    classes = []
    for c in request.classes:
        cls: dict[str, Any] = {"name": c.name, "prompts": list(c.prompts)}
        if c.options:
            cls["options"] = [SEARCH_OPTION_TO_UPSTREAM[o] for o in c.options]
        if c.conversation_option:
            cls["conversation_option"] = CONVERSATION_OPTION_TO_UPSTREAM[c.conversation_option]
        classes.append(cls)
    body["classes"] = classes
    if request.page_limit:
        body["page_limit"] = request.page_limit
    if request.include_clips:
        body["include_clips"] = True
    if request.show_detailed_score:
        body["show_detailed_score"] = True
    if request.HasField("threshold"):
        t = request.threshold
        threshold: dict[str, float] = {f.name: v for f, v in t.ListFields()}
        if threshold:
            body["threshold"] = threshold
    return body


class _Schema(Exception):
    """A value that does not fit the contract, with its JSON path.

    The path is built only when this is raised: each container level adds its own
    component on the way out (`under`), so the common case, a page that fits, builds
    no path strings at all (they used to cost about half of the translation time).
    """

    def __init__(self, path: str, expected: str) -> None:
        super().__init__(path, expected)
        self.path = path
        self.expected = expected

    def under(self, parent: str) -> _Schema:
        self.path = (
            f"{parent}.{self.path}" if self.path and self.path[0] != "[" else parent + self.path
        )
        return self


def _num(value: Any, key: str) -> float:
    # bool is an int in Python; the upstream never sends booleans for numbers.
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise _Schema(key, "present" if value is _MISSING else "a number")


def _int(value: Any, key: str) -> int:
    if type(value) is int and -(2**31) <= value < 2**31:
        return value
    if type(value) is float and value.is_integer() and -(2**31) <= value < 2**31:
        return int(value)
    raise _Schema(key, "an integer")


def _str(value: Any, key: str) -> str:
    if type(value) is str:
        return value
    raise _Schema(key, "present" if value is _MISSING else "a string")


def _opt_str(value: Any, key: str) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value
    raise _Schema(key, "a string")


def _list(value: Any, key: str) -> list[Any]:
    if type(value) is list:
        return value
    raise _Schema(key, "an array")


def _obj(value: Any, key: str) -> dict[str, Any]:
    if type(value) is dict:
        return value
    raise _Schema(key, "an object")


_MISSING: Any = object()


def parse_timestamp(value: str) -> timestamp_pb2.Timestamp:
    """RFC 3339 (the upstream sends `2023-05-22T05:19:09Z`) to a Timestamp, exact to the ns."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt)
    return ts


def _clip(raw: Any) -> pb.Clip:
    c = _obj(raw, "")
    get = c.get
    return pb.Clip(
        start=_num(get("start", _MISSING), "start"),
        end=_num(get("end", _MISSING), "end"),
        score=_num(get("score", _MISSING), "score"),
        option=_opt_str(get("option"), "option"),
        prompt=_opt_str(get("prompt"), "prompt"),
        thumbnail_url=_opt_str(get("thumbnail_url"), "thumbnail_url"),
    )


def _each(items: list[Any], build: Any, key: str) -> list[Any]:
    """build(item) for every item; a failure names its index under `key`."""
    try:
        return [build(x) for x in items]
    except _Schema as exc:
        index = next(i for i, x in enumerate(items) if _fails(build, x))
        raise exc.under(f"{key}[{index}]") from None


def _fails(build: Any, item: Any) -> bool:
    try:
        build(item)
    except _Schema:
        return True
    return False


def _class(raw: Any) -> pb.ClassResult:
    c = _obj(raw, "")
    get = c.get
    result = pb.ClassResult(
        name=_str(get("name", _MISSING), "name"),
        score=_num(get("score", _MISSING), "score"),
        duration_ratio=_num(get("duration_ratio", _MISSING), "duration_ratio"),
    )
    clips = get("clips")
    if clips is not None:
        result.clips.extend(_each(_list(clips, "clips"), _clip, "clips"))
    detailed = get("detailed_scores")
    if detailed is not None:
        try:
            d = _obj(detailed, "")
            ds = result.detailed_scores
            ds.SetInParent()
            if (v := d.get("max_score")) is not None:
                ds.max_score = _num(v, "max_score")
            if (v := d.get("avg_score")) is not None:
                ds.avg_score = _num(v, "avg_score")
            if (v := d.get("normalized_score")) is not None:
                ds.normalized_score = _num(v, "normalized_score")
        except _Schema as exc:
            raise exc.under("detailed_scores") from None
    return result


def _video(raw: Any) -> pb.VideoClassification:
    v = _obj(raw, "")
    video = pb.VideoClassification(video_id=_str(v.get("video_id", _MISSING), "video_id"))
    classes = v.get("classes")
    if classes is not None:
        video.classes.extend(_each(_list(classes, "classes"), _class, "classes"))
    return video


def _page_info(raw: Any, target: pb.PageInfo) -> None:
    p = _obj(raw, "")
    if (v := p.get("limit_per_page")) is not None:
        target.limit_per_page = _int(v, "limit_per_page")
    if (v := p.get("total_results")) is not None:
        target.total_results = _int(v, "total_results")
    if (v := p.get("page_expired_at")) is not None:
        try:
            target.page_expired_at.CopyFrom(parse_timestamp(_str(v, "page_expired_at")))
        except (ValueError, OverflowError):  # OverflowError: out of range once made UTC
            raise _Schema("page_expired_at", "an RFC 3339 timestamp") from None
    target.next_page_token = _opt_str(p.get("next_page_token"), "next_page_token")
    target.prev_page_token = _opt_str(p.get("prev_page_token"), "prev_page_token")


def page_from_json(obj: Any, message_type: type[PageT]) -> PageT:
    """One upstream page (parsed JSON) as a ClassifyResponse or GetClassifyPageResponse.

    Raises GatewayError(DATA_LOSS, UPSTREAM_SCHEMA_MISMATCH) naming the JSON path
    of the first value that does not match the contract.
    """
    try:
        body = _obj(obj, "$")
        page = message_type()
        data = body.get("data")
        if data is not None:
            page.data.extend(_each(_list(data, "data"), _video, "data"))
        info = body.get("page_info")
        if info is not None:
            try:
                _page_info(info, page.page_info)
            except _Schema as exc:
                raise exc.under("page_info") from None
        return page
    except _Schema as exc:
        raise schema_error(f"upstream field {exc.path or '$'} is not {exc.expected}") from None


def schema_error(message: str) -> GatewayError:
    return own_error("UPSTREAM_SCHEMA_MISMATCH", f"the upstream answer is not usable: {message}")


def next_token_of(obj: Any) -> str:
    """The next page token of a parsed upstream page, without translating the page.

    Used to start fetching page N+1 before page N is translated and sent.
    """
    if type(obj) is dict:
        info = obj.get("page_info")
        if type(info) is dict:
            token = info.get("next_page_token")
            if type(token) is str:
                return token
    return ""
