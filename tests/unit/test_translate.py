"""JSON <-> proto translation: hand-written construction equals json_format's."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from google.protobuf import json_format

from classify_gateway.backends.v1_2.translate import (
    classify_path,
    next_token_of,
    page_from_json,
    page_path,
    parse_timestamp,
    request_body,
    request_to_json,
)
from classify_gateway.core.errors import GatewayError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docs"


def synthetic_page(videos: int, classes: int, clips: int, seed: int = 1) -> dict[str, Any]:
    """A page shaped like the upstream's, with unrounded doubles."""
    rng = random.Random(seed)
    return {
        "data": [
            {
                "video_id": f"{rng.getrandbits(96):024x}",
                "classes": [
                    {
                        "name": f"class-{c}",
                        "score": rng.uniform(0, 100),
                        "duration_ratio": rng.random(),
                        "clips": [
                            {
                                "start": rng.uniform(0, 500),
                                "end": rng.uniform(500, 900),
                                "score": rng.uniform(0, 100),
                                "option": rng.choice(["visual", "conversation", "text_in_video"]),
                                "prompt": f"prompt {k}",
                                "thumbnail_url": f"https://thumbs.example/{v}/{k}.jpeg?X-Amz-Expires=604799",
                            }
                            for k in range(clips)
                        ],
                        "detailed_scores": {
                            "max_score": rng.uniform(0, 100),
                            "avg_score": rng.uniform(0, 100),
                            "normalized_score": rng.uniform(0, 100),
                        },
                    }
                    for c in range(classes)
                ],
            }
            for v in range(videos)
        ],
        "page_info": {
            "limit_per_page": videos,
            "total_results": 1000,
            "page_expired_at": "2026-11-25T12:05:00Z",
            "next_page_token": "tok-next",
            "prev_page_token": "tok-prev",
        },
    }


PAGES = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("response_*.json"))] + [
    synthetic_page(10, 5, 5),
    synthetic_page(3, 1, 0, seed=7),
    {"data": [], "page_info": {"limit_per_page": 10, "total_results": 0}},
]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("message_type", [pb.ClassifyResponse, pb.GetClassifyPageResponse])
def test_hand_written_equals_parsedict(page: dict[str, Any], message_type: type) -> None:
    oracle = json_format.ParseDict(page, message_type())
    assert page_from_json(page, message_type) == oracle


def test_unknown_fields_are_ignored_and_missing_optionals_stay_unset() -> None:
    page = {
        "data": [
            {
                "video_id": "v1",
                "future_field": {"x": 1},
                "classes": [{"name": "A", "score": 1.5, "duration_ratio": 0.25, "new": True}],
            }
        ],
        "page_info": {"limit_per_page": 1, "total_results": 1, "something": "else"},
        "extra": [1, 2, 3],
    }
    msg = page_from_json(page, pb.ClassifyResponse)
    cls = msg.data[0].classes[0]
    assert not cls.HasField("detailed_scores")
    assert list(cls.clips) == []
    assert not msg.page_info.HasField("page_expired_at")
    assert msg.page_info.next_page_token == ""


@pytest.mark.parametrize(
    "page,path",
    [
        ("not an object", "$"),
        ({"data": "x"}, "data"),
        ({"data": [{"classes": []}]}, "data[0].video_id"),
        ({"data": [{"video_id": 5}]}, "data[0].video_id"),
        (
            {
                "data": [
                    {
                        "video_id": "v",
                        "classes": [{"name": "a", "score": "high", "duration_ratio": 1}],
                    }
                ]
            },
            "data[0].classes[0].score",
        ),
        (
            {
                "data": [
                    {
                        "video_id": "v",
                        "classes": [{"name": "a", "score": True, "duration_ratio": 1}],
                    }
                ]
            },
            "data[0].classes[0].score",
        ),
        (
            {"data": [{"video_id": "v", "classes": [{"name": "a", "score": 1}]}]},
            "data[0].classes[0].duration_ratio",
        ),
        (
            {
                "data": [
                    {
                        "video_id": "v",
                        "classes": [
                            {"name": "a", "score": 1, "duration_ratio": 1, "clips": [{"start": 1}]}
                        ],
                    }
                ]
            },
            "data[0].classes[0].clips[0].end",
        ),
        ({"page_info": {"total_results": 1.5}}, "page_info.total_results"),
        ({"page_info": {"total_results": 2**40}}, "page_info.total_results"),
        ({"page_info": {"page_expired_at": "yesterday"}}, "page_info.page_expired_at"),
        ({"page_info": {"next_page_token": 7}}, "page_info.next_page_token"),
    ],
)
def test_schema_mismatch_is_a_clear_data_loss(page: Any, path: str) -> None:
    with pytest.raises(GatewayError) as info:
        page_from_json(page, pb.ClassifyResponse)
    assert info.value.code.name == "DATA_LOSS"
    assert info.value.reason == "UPSTREAM_SCHEMA_MISMATCH"
    assert path in info.value.message


def test_timestamp_exact() -> None:
    ts = parse_timestamp("2023-05-22T05:19:09Z")
    assert ts.ToJsonString() == "2023-05-22T05:19:09Z"
    assert (
        parse_timestamp("2023-05-22T05:19:09.123456+02:00").ToJsonString()
        == "2023-05-22T03:19:09.123456Z"
    )
    with pytest.raises(ValueError):
        parse_timestamp("2023-05-22T05:19:09")


def test_request_only_set_fields_enums_as_strings() -> None:
    req = pb.ClassifyRequest(
        index_id="idx",
        options=[pb.SEARCH_OPTION_TEXT_IN_VIDEO],
        classes=[
            pb.ClassDefinition(
                name="News",
                prompts=["breaking news"],
                options=[pb.SEARCH_OPTION_CONVERSATION],
                conversation_option=pb.CONVERSATION_OPTION_EXACT_MATCH,
            )
        ],
        threshold=pb.Threshold(min_clip_score=0),
    )
    assert request_to_json(req) == {
        "index_id": "idx",
        "options": ["text_in_video"],
        "classes": [
            {
                "name": "News",
                "prompts": ["breaking news"],
                "options": ["conversation"],
                "conversation_option": "exact_match",
            }
        ],
        "threshold": {"min_clip_score": 0.0},
    }
    assert classify_path(req) == "/classify/bulk"
    assert classify_path(pb.ClassifyRequest(video_ids=["a"])) == "/classify"
    assert page_path("abc") == "/classify/abc"


def test_empty_threshold_is_not_sent() -> None:
    req = pb.ClassifyRequest(
        video_ids=["a"], options=[1], classes=[pb.ClassDefinition(name="a", prompts=["b"])]
    )
    req.threshold.SetInParent()
    assert "threshold" not in request_to_json(req)


def test_next_token_of() -> None:
    assert next_token_of({"page_info": {"next_page_token": "t"}}) == "t"
    assert next_token_of({"page_info": {"next_page_token": None}}) == ""
    assert next_token_of({"page_info": {}}) == ""
    assert next_token_of([]) == ""


def test_request_body_is_the_json_in_a_buffer_of_its_own_size() -> None:
    """The POST body lives while the upstream thinks: it must not keep orjson's 4 KiB
    write buffer (10,000 waiting streams would hold 40 MB of it)."""
    sent = {
        "video_ids": ["v1"],
        "options": ["visual"],
        "classes": [{"name": "a", "prompts": ["b"]}],
    }
    assert json.loads(request_body(sent)) == sent
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        bodies = [request_body(sent) for _ in range(100)]
        per_body = (tracemalloc.get_traced_memory()[0] - before) / len(bodies)
    finally:
        tracemalloc.stop()
    assert per_body < 4 * len(bodies[0]) + 100, per_body
