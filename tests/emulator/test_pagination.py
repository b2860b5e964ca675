"""Page tokens: walking, repeating, going back, expiry and unknown tokens."""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

import httpx
import pytest

from classify_emulator.corpus import Corpus
from classify_emulator.pages import PageStore
from classify_emulator.testing import RunningEmulator

from .conftest import COOK_CLASS, DANCE_CLASS, LOW_THRESHOLD

PAGE_TOKEN_INVALID = {
    "code": "parameter_invalid",
    "message": "The page_token parameter is invalid.",
}


def all_videos_body(corpus: Corpus, page_limit: int) -> dict[str, Any]:
    return {
        "video_ids": [v.id for v in corpus.videos.values() if v.duration < 1200],
        "options": ["visual", "conversation"],
        "classes": [DANCE_CLASS, COOK_CLASS],
        "threshold": LOW_THRESHOLD,
        "page_limit": page_limit,
    }


@pytest.mark.parametrize("page_limit", [1, 3, 7, 50])
def test_walk_to_the_end_without_duplicates_or_gaps(
    api: httpx.Client, corpus: Corpus, page_limit: int
) -> None:
    body = all_videos_body(corpus, page_limit)
    everything = api.post("/classify", json={**body, "page_limit": 50}).json()
    expected = [d["video_id"] for d in everything["data"]]
    assert len(expected) == everything["page_info"]["total_results"] > 10

    page = api.post("/classify", json=body).json()
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        info = page["page_info"]
        assert info["limit_per_page"] == page_limit
        assert info["total_results"] == len(expected)
        assert len(page["data"]) <= page_limit
        assert (info["prev_page_token"] == "") is (pages == 1)
        seen += [d["video_id"] for d in page["data"]]
        if not info["next_page_token"]:
            break
        page = api.get(f"/classify/{info['next_page_token']}").json()
    assert seen == expected
    assert pages == -(-len(expected) // page_limit)


def test_same_token_returns_the_same_page_and_prev_goes_back(
    api: httpx.Client, corpus: Corpus
) -> None:
    first = api.post("/classify", json=all_videos_body(corpus, 4))
    second_token = first.json()["page_info"]["next_page_token"]
    second = api.get(f"/classify/{second_token}")
    assert api.get(f"/classify/{second_token}").content == second.content
    back = api.get(f"/classify/{second.json()['page_info']['prev_page_token']}")
    assert back.json()["data"] == first.json()["data"]
    assert back.json()["page_info"] == first.json()["page_info"]


def test_page_expired_at_format_and_ttl(api: httpx.Client, corpus: Corpus) -> None:
    before = time.time()
    info = api.post("/classify", json=all_videos_body(corpus, 5)).json()["page_info"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["page_expired_at"])
    expires = calendar.timegm(time.strptime(info["page_expired_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert before + 300 - 2 <= expires <= time.time() + 300 + 1
    assert re.fullmatch(r"[0-9a-f]{32}", info["next_page_token"])


def test_expired_token_is_parameter_invalid(
    api: httpx.Client, emu: RunningEmulator, corpus: Corpus
) -> None:
    emu.admin.set_config(page_ttl_seconds=0.3)
    token = api.post("/classify", json=all_videos_body(corpus, 2)).json()["page_info"][
        "next_page_token"
    ]
    assert api.get(f"/classify/{token}").status_code == 200
    time.sleep(0.4)
    response = api.get(f"/classify/{token}")
    assert response.status_code == 400
    assert response.json() == PAGE_TOKEN_INVALID


def test_unknown_token_is_parameter_invalid(api: httpx.Client) -> None:
    response = api.get("/classify/0123456789abcdef0123456789abcdef")
    assert response.status_code == 400
    assert response.json() == PAGE_TOKEN_INVALID


def test_empty_result_is_one_page(api: httpx.Client, corpus: Corpus) -> None:
    body = {**all_videos_body(corpus, 5), "threshold": {"min_video_score": 100}}
    page = api.post("/classify", json=body).json()
    assert page["data"] == []
    assert page["page_info"]["total_results"] == 0
    assert page["page_info"]["next_page_token"] == page["page_info"]["prev_page_token"] == ""


def test_store_evicts_expired_results() -> None:
    store = PageStore()
    data = [{"video_id": str(i), "classes": []} for i in range(5)]
    store.create(data, 2, ttl=10, now=1000.0)
    store.create(data, 2, ttl=100, now=1000.0)
    assert len(store) == 2
    store.create(data, 2, ttl=10, now=1011.0)  # evicts the first
    assert len(store) == 2


def test_store_is_bounded() -> None:
    store = PageStore(max_results=3)
    for _ in range(5):
        store.create([], 10, ttl=100, now=0.0)
    assert len(store) == 3
