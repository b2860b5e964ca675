"""The index and video listing endpoints, in their v1.2 shapes.

They exist so that clients (and the official SDK) can discover ids to
classify. Page-number pagination (`page`, `page_limit` 1..50, default 10),
`sort_by`/`sort_option`, and the common filters are implemented; query
parameters the SDK may send but that the emulator does not model (e.g.
`metadata`) are accepted and ignored; anything else is `parameter_unknown`.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from starlette.datastructures import QueryParams

from classify_emulator import api_errors
from classify_emulator.corpus import Corpus

_COMPARISONS = ("gte", "lte", "gt", "lt")
_INDEX_PARAMS = {"_id", "index_name", "engine_options", "engine_family", "created_at", "updated_at"}
_VIDEO_PARAMS = {
    "_id",
    "filename",
    "size",
    "width",
    "height",
    "duration",
    "fps",
    "metadata",
    "created_at",
    "updated_at",
    "indexed_at",
}
_PAGING_PARAMS = {"page", "page_limit", "sort_by", "sort_option"}
_NUMERIC_VIDEO_FIELDS = ("size", "width", "height", "duration", "fps")
_DATE_FIELDS = ("created_at", "updated_at", "indexed_at")


def _check_params(params: QueryParams, allowed: set[str]) -> None:
    for key in params:
        base, _, op = key.partition("[")
        if op and (op.rstrip("]") not in _COMPARISONS or not key.endswith("]")):
            raise api_errors.parameter_unknown(key)
        if base not in allowed and base not in _PAGING_PARAMS:
            raise api_errors.parameter_unknown(key)


def _positive_int(params: QueryParams, name: str, default: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise api_errors.parameter_invalid(name) from None
    if value < 1 or (high is not None and value > high):
        raise api_errors.parameter_invalid(name)
    return value


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "gte": operator.ge,
    "lte": operator.le,
    "gt": operator.gt,
    "lt": operator.lt,
}


def _prefix(value: Any, target: Any) -> bool:
    return str(value).startswith(str(target))


def _holds(compare: Callable[[Any, Any], Any], target: Any, value: Any) -> bool:
    return value is not None and bool(compare(value, target))


def _compare(
    params: QueryParams, field: str, parse: Callable[[str], Any]
) -> list[Callable[[Any], bool]]:
    """Predicates for `field`, `field[gte]`, ... query parameters.

    Plain `field=value` is equality, except for dates, where it is a prefix
    match (`created_at=2024-05-20` matches that day).
    """
    tests: list[Callable[[Any], bool]] = []
    for key, raw in params.multi_items():
        base, _, op = key.partition("[")
        if base != field:
            continue
        try:
            target = parse(raw)
        except ValueError:
            raise api_errors.parameter_invalid(key) from None
        compare = _OPERATORS.get(op.rstrip("]")) or (
            _prefix if field in _DATE_FIELDS else operator.eq
        )
        tests.append(functools.partial(_holds, compare, target))
    return tests


def _page(
    items: list[dict[str, Any]], params: QueryParams, extra: dict[str, Any] | None = None
) -> bytes:
    page = _positive_int(params, "page", 1, None)
    limit = _positive_int(params, "page_limit", 10, 50)
    sort_by = params.get("sort_by") or "created_at"
    if sort_by not in ("created_at", "updated_at"):
        raise api_errors.parameter_invalid("sort_by")
    sort_option = params.get("sort_option") or "desc"
    if sort_option not in ("asc", "desc"):
        raise api_errors.parameter_invalid("sort_option")
    ordered = sorted(
        items, key=lambda item: str(item.get(sort_by, "")), reverse=sort_option == "desc"
    )
    page_info: dict[str, Any] = {
        "limit_per_page": limit,
        "page": page,
        "total_page": max(1, math.ceil(len(ordered) / limit)),
        "total_results": len(ordered),
        **(extra or {}),
    }
    data = ordered[(page - 1) * limit : page * limit]
    return orjson.dumps({"data": data, "page_info": page_info})


def _select(
    items: Iterable[dict[str, Any]], tests: dict[str, list[Callable[[Any], bool]]]
) -> Iterator[dict[str, Any]]:
    for item in items:
        if all(test(_lookup(item, field)) for field, preds in tests.items() for test in preds):
            yield item


def _lookup(item: dict[str, Any], field: str) -> Any:
    if field in item:
        return item[field]
    return item.get("metadata", {}).get(field)


def list_indexes(corpus: Corpus, params: QueryParams) -> bytes:
    _check_params(params, _INDEX_PARAMS)
    indexes = [ix.resource for ix in corpus.indexes.values()]
    wanted_options = set(params.getlist("engine_options"))
    family = params.get("engine_family")

    def engines_ok(ix: dict[str, Any]) -> bool:
        engines = ix.get("engines", [])
        if family and not any(e["engine_name"].startswith(family) for e in engines):
            return False
        offered = {opt for e in engines for opt in e.get("engine_options", [])}
        return wanted_options <= offered

    tests = {
        "_id": _compare(params, "_id", str),
        "index_name": _compare(params, "index_name", str),
        "created_at": _compare(params, "created_at", str),
        "updated_at": _compare(params, "updated_at", str),
    }
    selected = [ix for ix in _select(indexes, tests) if engines_ok(ix)]
    return _page(selected, params)


def get_index(corpus: Corpus, index_id: str) -> bytes:
    index = corpus.indexes.get(index_id)
    if index is None:
        raise api_errors.resource_not_exist(index_id, "indexes")
    return orjson.dumps(index.resource)


def select_videos(videos: Iterable[dict[str, Any]], params: QueryParams) -> list[dict[str, Any]]:
    """The v1.2 video objects that pass the query's filters (also used by /v1.3)."""
    tests: dict[str, list[Callable[[Any], bool]]] = {
        "_id": _compare(params, "_id", str),
        "filename": _compare(params, "filename", str),
    }
    for field in _NUMERIC_VIDEO_FIELDS:
        tests[field] = _compare(params, field, float)
    for field in _DATE_FIELDS:
        tests[field] = _compare(params, field, str)
    return list(_select(videos, tests))


def page_of(items: list[dict[str, Any]], params: QueryParams) -> bytes:
    """One page of a listing, v1.2's page-number paging (also used by /v1.3)."""
    return _page(items, params)


def list_videos(corpus: Corpus, index_id: str, params: QueryParams) -> bytes:
    index = corpus.indexes.get(index_id)
    if index is None:
        raise api_errors.resource_not_exist(index_id, "indexes")
    _check_params(params, _VIDEO_PARAMS)
    selected = select_videos((corpus.videos[v].resource for v in index.video_ids), params)
    total_duration = round(sum(v["metadata"]["duration"] for v in selected), 3)
    return _page(selected, params, {"total_duration": total_duration})


def get_video(corpus: Corpus, index_id: str, video_id: str) -> bytes:
    if index_id not in corpus.indexes:
        raise api_errors.resource_not_exist(index_id, "indexes")
    video = corpus.videos.get(video_id)
    if video is None or video.index_id != index_id:
        raise api_errors.resource_not_exist(video_id, "videos")
    return orjson.dumps(video.resource)
