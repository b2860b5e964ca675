"""Request validation, auth and not-found answers, with the documented codes and messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from classify_emulator.config import EmulatorConfig
from classify_emulator.corpus import Corpus
from classify_emulator.testing import RunningEmulator, running_emulator

from .conftest import DANCE_CLASS, index_id, video_id

DANCE_VIDEO = "6656fa67d22b3a3c97befb0d"


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "video_ids": [DANCE_VIDEO],
        "options": ["visual"],
        "classes": [DANCE_CLASS],
    }
    for key, value in changes.items():
        if value is ...:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def invalid(name: str) -> dict[str, str]:
    return {"code": "parameter_invalid", "message": f"The {name} parameter is invalid."}


def not_provided(name: str) -> dict[str, str]:
    return {
        "code": "parameter_not_provided",
        "message": f"The {name} parameter is required but was not provided.",
    }


CASES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("missing video_ids", body(video_ids=...), not_provided("video_ids")),
    ("missing options", body(options=...), not_provided("options")),
    ("missing classes", body(classes=...), not_provided("classes")),
    ("null counts as missing", body(video_ids=None), not_provided("video_ids")),
    ("empty video_ids", body(video_ids=[]), invalid("video_ids")),
    ("video_ids not a list", body(video_ids=DANCE_VIDEO), invalid("video_ids")),
    ("empty options", body(options=[]), invalid("options")),
    ("unknown option", body(options=["visual", "logo"]), invalid("options")),
    ("bad conversation_option", body(conversation_option="fuzzy"), invalid("conversation_option")),
    ("empty classes", body(classes=[]), invalid("classes")),
    ("class without name", body(classes=[{"prompts": ["x"]}]), not_provided("classes[0].name")),
    ("class without prompts", body(classes=[{"name": "x"}]), not_provided("classes[0].prompts")),
    ("empty prompts", body(classes=[{"name": "x", "prompts": []}]), invalid("classes[0].prompts")),
    (
        "blank prompt",
        body(classes=[{"name": "x", "prompts": [" "]}]),
        invalid("classes[0].prompts"),
    ),
    (
        "bad class options",
        body(classes=[{"name": "x", "prompts": ["y"], "options": ["smell"]}]),
        invalid("classes[0].options"),
    ),
    (
        "too many prompts",
        body(classes=[{"name": "a", "prompts": ["p"] * 60}, {"name": "b", "prompts": ["q"] * 41}]),
        invalid("classes"),
    ),
    ("page_limit 0", body(page_limit=0), invalid("page_limit")),
    ("page_limit 51", body(page_limit=51), invalid("page_limit")),
    ("page_limit float", body(page_limit=10.5), invalid("page_limit")),
    ("page_limit string", body(page_limit="10"), invalid("page_limit")),
    ("include_clips string", body(include_clips="yes"), invalid("include_clips")),
    ("show_detailed_score int", body(show_detailed_score=1), invalid("show_detailed_score")),
    ("threshold number on /classify", body(threshold=75), invalid("threshold")),
    (
        "min_video_score > 100",
        body(threshold={"min_video_score": 101}),
        invalid("threshold.min_video_score"),
    ),
    (
        "min_clip_score < 0",
        body(threshold={"min_clip_score": -1}),
        invalid("threshold.min_clip_score"),
    ),
    (
        "min_duration_ratio < 0.01",
        body(threshold={"min_duration_ratio": 0}),
        invalid("threshold.min_duration_ratio"),
    ),
    (
        "min_duration_ratio > 1",
        body(threshold={"min_duration_ratio": 1.5}),
        invalid("threshold.min_duration_ratio"),
    ),
    (
        "unknown field",
        body(sort_option="score"),
        {"code": "parameter_unknown", "message": "The sort_option parameter is unknown."},
    ),
    (
        "index_id on /classify",
        body(index_id="6650701a27f0a43b740fd011"),
        {"code": "parameter_unknown", "message": "The index_id parameter is unknown."},
    ),
    (
        "unknown class field",
        body(classes=[{"name": "x", "prompts": ["y"], "weight": 2}]),
        {"code": "parameter_unknown", "message": "The classes[0].weight parameter is unknown."},
    ),
    (
        "unknown threshold field",
        body(threshold={"min_score": 2}),
        {"code": "parameter_unknown", "message": "The threshold.min_score parameter is unknown."},
    ),
]


@pytest.mark.parametrize(("case", "payload", "expected"), CASES, ids=[c[0] for c in CASES])
def test_invalid_classify_body(
    api: httpx.Client, case: str, payload: dict[str, Any], expected: dict[str, str]
) -> None:
    response = api.post("/classify", json=payload)
    assert response.status_code == 400, response.text
    assert response.json() == expected
    assert response.headers["content-type"] == "application/json"


def test_body_not_json(api: httpx.Client) -> None:
    response = api.post("/classify", content=b"{not json")
    assert response.status_code == 400
    assert response.json() == invalid("body")
    response = api.post("/classify", json=["a list"])
    assert response.json() == invalid("body")


def test_bulk_validation(api: httpx.Client, corpus: Corpus) -> None:
    bulk = {
        "index_id": index_id(corpus, "social-clips"),
        "options": ["visual"],
        "classes": [DANCE_CLASS],
    }
    assert api.post("/classify/bulk", json={**bulk, "index_id": None}).json() == not_provided(
        "index_id"
    )
    assert api.post("/classify/bulk", json={**bulk, "threshold": 101}).json() == invalid(
        "threshold"
    )
    assert api.post("/classify/bulk", json={**bulk, "video_ids": [DANCE_VIDEO]}).json() == {
        "code": "parameter_unknown",
        "message": "The video_ids parameter is unknown.",
    }
    response = api.post("/classify/bulk", json={**bulk, "index_id": "0" * 24})
    assert response.status_code == 404
    assert response.json() == {
        "code": "resource_not_exist",
        "message": f"Resource with id {'0' * 24} does not exist in indexes.",
    }


def test_unknown_video_is_404(api: httpx.Client) -> None:
    missing = "ffffffffffffffffffffffff"
    response = api.post("/classify", json=body(video_ids=[DANCE_VIDEO, missing]))
    assert response.status_code == 404
    assert response.json() == {
        "code": "resource_not_exist",
        "message": f"Resource with id {missing} does not exist in videos.",
    }


def test_more_than_ten_hours_is_invalid(api: httpx.Client, corpus: Corpus) -> None:
    long_ones = [
        video_id(corpus, f)
        for f in (
            "world-cup-final-full-broadcast.mp4",
            "city-marathon-full-coverage.mp4",
            "election-night-live-coverage.mp4",
        )
    ]
    assert sum(corpus.videos[v].duration for v in long_ones) > 36000
    assert sum(corpus.videos[v].duration for v in long_ones[:2]) <= 36000
    assert api.post("/classify", json=body(video_ids=long_ones[:2])).status_code == 200
    response = api.post("/classify", json=body(video_ids=long_ones))
    assert response.status_code == 400
    assert response.json() == invalid("video_ids")


def test_valid_edge_values_are_accepted(api: httpx.Client) -> None:
    ok = body(
        page_limit=50,
        threshold={"min_video_score": 0, "min_clip_score": 100, "min_duration_ratio": 1},
        conversation_option="exact_match",
        include_clips=False,
        show_detailed_score=False,
    )
    assert api.post("/classify", json=ok).status_code == 200
    ok = body(page_limit=1, threshold={"min_duration_ratio": 0.01}, video_ids=[DANCE_VIDEO] * 2)
    response = api.post("/classify", json=ok)
    assert response.status_code == 200
    assert len(response.json()["data"]) <= 1  # a repeated id is classified once
    prompts = body(
        classes=[{"name": "a", "prompts": ["p"] * 60}, {"name": "b", "prompts": ["q"] * 40}]
    )
    assert api.post("/classify", json=prompts).status_code == 200


@pytest.fixture(scope="module")
def strict() -> Iterator[RunningEmulator]:
    """An instance with a fixed key set: the session one accepts any non-empty key."""
    with running_emulator(EmulatorConfig(api_keys=("k1", "k2"))) as emu:
        yield emu


@pytest.mark.parametrize("key", [None, "", "wrong"])
def test_auth_is_checked_first(
    strict: RunningEmulator, _raw_client: httpx.Client, key: str | None
) -> None:
    headers = {} if key is None else {"x-api-key": key}
    for method, path in (("POST", "/classify"), ("GET", "/classify/x"), ("GET", "/nope")):
        response = _raw_client.request(
            method, f"{strict.base_url}/v1.2{path}", content=b"not even json", headers=headers
        )
        assert response.status_code == 401
        assert response.json()["code"] == "api_key_invalid"
        assert response.json()["message"].startswith("API Key is either invalid")
        assert response.headers["content-type"] == "application/json"
        assert "x-ratelimit-limit" in response.headers


def test_configured_keys_are_accepted(strict: RunningEmulator, _raw_client: httpx.Client) -> None:
    assert strict.api_key == "k1"
    for key in ("k1", "k2"):
        response = _raw_client.get(f"{strict.base_url}/v1.2/indexes", headers={"x-api-key": key})
        assert response.status_code == 200


def test_unknown_route_and_method(api: httpx.Client, raw: httpx.Client) -> None:
    response = api.get("/search")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    response = api.put("/classify")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert raw.get("/v9/indexes", headers={"x-api-key": "k"}).status_code == 404
