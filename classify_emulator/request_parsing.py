"""Strict validation of classify request bodies (stripe-mock's lesson).

An emulator that accepts what upstream rejects hides client bugs, so every
rule of the contract is enforced, in a fixed order, and the first failure is
reported with the documented code and message pattern:

1. the body is a JSON object (else parameter_invalid naming `body`);
2. no unknown fields (parameter_unknown; nested fields as `threshold.x`,
   `classes[0].x`);
3. required fields present (parameter_not_provided), in the order
   video_ids / index_id, options, classes;
4. each field well-typed and in range (parameter_invalid);
5. referenced videos / index exist (404 resource_not_exist);
6. the videos total at most 10 hours (parameter_invalid naming `video_ids`).

A JSON `null` counts as "not provided" (the SDKs never send nulls; most JSON
APIs treat them as absent).
"""

from __future__ import annotations

from typing import Any

from classify_emulator import api_errors
from classify_emulator.corpus import Corpus
from classify_emulator.jobs import (
    CONVERSATION_OPTIONS,
    DEFAULT_PAGE_LIMIT,
    MAX_PAGE_LIMIT,
    MAX_PROMPTS,
    MAX_TOTAL_DURATION_SECONDS,
    OPTIONS,
    ClassifyJob,
    ClassSpec,
    Threshold,
)

_COMMON_FIELDS = (
    "options",
    "conversation_option",
    "classes",
    "page_limit",
    "include_clips",
    "show_detailed_score",
    "threshold",
)
CLASSIFY_FIELDS: tuple[str, ...] = ("video_ids", *_COMMON_FIELDS)
BULK_FIELDS: tuple[str, ...] = ("index_id", *_COMMON_FIELDS)
CLASS_FIELDS: tuple[str, ...] = ("name", "prompts", "options", "conversation_option")
THRESHOLD_FIELDS: tuple[str, ...] = ("min_video_score", "min_clip_score", "min_duration_ratio")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_unknown(body: dict[str, Any], allowed: tuple[str, ...], prefix: str = "") -> None:
    for key in body:
        if key not in allowed:
            raise api_errors.parameter_unknown(prefix + key)


def _options(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise api_errors.parameter_invalid(name)
    for item in value:
        if not isinstance(item, str) or item not in OPTIONS:
            raise api_errors.parameter_invalid(name)
    return tuple(dict.fromkeys(value))  # duplicates are harmless: keep the first


def _conversation_option(value: Any, name: str) -> str:
    if not isinstance(value, str) or value not in CONVERSATION_OPTIONS:
        raise api_errors.parameter_invalid(name)
    return value


def _classes(value: Any, options: tuple[str, ...], conversation: str) -> tuple[ClassSpec, ...]:
    if not isinstance(value, list) or not value:
        raise api_errors.parameter_invalid("classes")
    specs: list[ClassSpec] = []
    prompt_count = 0
    for i, item in enumerate(value):
        where = f"classes[{i}]"
        if not isinstance(item, dict):
            raise api_errors.parameter_invalid(where)
        _check_unknown(item, CLASS_FIELDS, where + ".")
        name = item.get("name")
        prompts = item.get("prompts")
        if name is None:
            raise api_errors.parameter_not_provided(where + ".name")
        if prompts is None:
            raise api_errors.parameter_not_provided(where + ".prompts")
        if not isinstance(name, str) or not name.strip():
            raise api_errors.parameter_invalid(where + ".name")
        if not isinstance(prompts, list) or not prompts:
            raise api_errors.parameter_invalid(where + ".prompts")
        for prompt in prompts:
            if not isinstance(prompt, str) or not prompt.strip():
                raise api_errors.parameter_invalid(where + ".prompts")
        prompt_count += len(prompts)
        class_options = options
        if item.get("options") is not None:
            class_options = _options(item["options"], where + ".options")
        class_conversation = conversation
        if item.get("conversation_option") is not None:
            class_conversation = _conversation_option(
                item["conversation_option"], where + ".conversation_option"
            )
        specs.append(ClassSpec(name, tuple(prompts), class_options, class_conversation))
    if prompt_count > MAX_PROMPTS:
        raise api_errors.parameter_invalid("classes")
    return tuple(specs)


def _score_bound(value: Any, name: str, low: float, high: float) -> float:
    if not _is_number(value) or not low <= value <= high:
        raise api_errors.parameter_invalid(name)
    return float(value)


def _threshold(value: Any, bulk: bool) -> Threshold:
    if value is None:
        return Threshold()
    if bulk and _is_number(value):
        # v1.2 documents bulk's threshold as one integer (the video-score floor);
        # the SDKs send an object. Accept both.
        return Threshold(min_video_score=_score_bound(value, "threshold", 0, 100))
    if not isinstance(value, dict):
        raise api_errors.parameter_invalid("threshold")
    _check_unknown(value, THRESHOLD_FIELDS, "threshold.")
    defaults = Threshold()
    video = value.get("min_video_score")
    clip = value.get("min_clip_score")
    ratio = value.get("min_duration_ratio")
    return Threshold(
        min_video_score=defaults.min_video_score
        if video is None
        else _score_bound(video, "threshold.min_video_score", 0, 100),
        min_clip_score=defaults.min_clip_score
        if clip is None
        else _score_bound(clip, "threshold.min_clip_score", 0, 100),
        min_duration_ratio=defaults.min_duration_ratio
        if ratio is None
        else _score_bound(ratio, "threshold.min_duration_ratio", 0.01, 1),
    )


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise api_errors.parameter_invalid(name)
    return value


def parse_classify(body: Any, corpus: Corpus, *, bulk: bool) -> ClassifyJob:
    """Validate a `/classify` (bulk=False) or `/classify/bulk` body."""
    if not isinstance(body, dict):
        raise api_errors.parameter_invalid("body")
    _check_unknown(body, BULK_FIELDS if bulk else CLASSIFY_FIELDS)
    target = "index_id" if bulk else "video_ids"
    for field in (target, "options", "classes"):
        if body.get(field) is None:
            raise api_errors.parameter_not_provided(field)

    if bulk:
        index_id = body["index_id"]
        if not isinstance(index_id, str) or not index_id:
            raise api_errors.parameter_invalid("index_id")
    else:
        ids = body["video_ids"]
        if not isinstance(ids, list) or not ids or not all(isinstance(v, str) and v for v in ids):
            raise api_errors.parameter_invalid("video_ids")
    options = _options(body["options"], "options")
    conversation = "semantic"
    if body.get("conversation_option") is not None:
        conversation = _conversation_option(body["conversation_option"], "conversation_option")
    classes = _classes(body["classes"], options, conversation)
    page_limit = body.get("page_limit")
    if page_limit is None:
        page_limit = DEFAULT_PAGE_LIMIT
    elif (
        not isinstance(page_limit, int)
        or isinstance(page_limit, bool)
        or not 1 <= page_limit <= MAX_PAGE_LIMIT
    ):
        raise api_errors.parameter_invalid("page_limit")
    include_clips = _flag(body, "include_clips")
    show_detailed_score = _flag(body, "show_detailed_score")
    threshold = _threshold(body.get("threshold"), bulk)

    if bulk:
        index = corpus.indexes.get(index_id)
        if index is None:
            raise api_errors.resource_not_exist(index_id, "indexes")
        video_ids = index.video_ids
    else:
        video_ids = tuple(dict.fromkeys(ids))  # a repeated id is classified once
        for video_id in video_ids:
            if video_id not in corpus.videos:
                raise api_errors.resource_not_exist(video_id, "videos")
        total = sum(corpus.videos[v].duration for v in video_ids)
        if total > MAX_TOTAL_DURATION_SECONDS:
            raise api_errors.parameter_invalid("video_ids")
    return ClassifyJob(
        video_ids=video_ids,
        classes=classes,
        threshold=threshold,
        page_limit=page_limit,
        include_clips=include_clips,
        show_detailed_score=show_detailed_score,
    )
