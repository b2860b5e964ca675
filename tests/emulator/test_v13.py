"""The /v1.3 surface: what a v1.3 classify backend calls, answered from the same corpus.

Shapes follow the official SDK 1.3.6 (tests/sdk13 parses them with it); here
the emulator is driven over plain HTTP, as any client would, and checked for
what such a client relies on: paging that ends, vectors that are the same
every time and agree between endpoints, search ranks that follow those
vectors, v1.3 error codes, per-category quotas and the injectable faults.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from classify_emulator.config import EmulatorConfig
from classify_emulator.corpus import Corpus
from classify_emulator.embeddings import DIMENSION
from classify_emulator.testing import RunningEmulator, running_emulator
from tests.emulator.conftest import index_id, video_id

SOCIAL = "6650701a27f0a43b740fd011"  # social-clips
SALSA = "64428d88456b2dab381e7022"
STREET = "6656fa67d22b3a3c97befb0d"
PASTA = "6650712ad22b3a3c97bef51f"


def form(**fields: Any) -> list[tuple[str, tuple[None, str]]]:
    """multipart/form-data fields as the SDK sends them: lists become repeated fields."""
    out: list[tuple[str, tuple[None, str]]] = []
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            out.append((name, (None, str(item))))
    return out


@pytest.fixture(scope="module")
def _client(served: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{served.base_url}/v1.3", headers={"x-api-key": served.api_key}, timeout=30.0
    ) as client:
        yield client


@pytest.fixture
def v13(emu: RunningEmulator, _client: httpx.Client) -> httpx.Client:
    """A v1.3 client with a valid key (the emulator is reset)."""
    return _client


def embed(client: httpx.Client, text: str) -> np.ndarray:
    response = client.post(
        "/embed-v2",
        json={"input_type": "text", "model_name": "marengo3.0", "text": {"input_text": text}},
    )
    assert response.status_code == 200, response.text
    (item,) = response.json()["data"]
    return np.array(item["embedding"])


def search(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post("/search", files=form(**fields))


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["x-api-version"] == "1.3"
    body = response.json()
    assert body["code"] == code, body
    return str(body["message"])


# -- indexes and videos ------------------------------------------------------------


def test_indexes_are_marengo_3_indexes(v13: httpx.Client, corpus: Corpus) -> None:
    response = v13.get("/indexes", params={"page_limit": 50})
    assert response.status_code == 200
    assert response.headers["x-api-version"] == "1.3"
    body = response.json()
    assert body["page_info"] == {
        "limit_per_page": 50,
        "page": 1,
        "total_page": 1,
        "total_results": len(corpus.indexes),
    }
    social = next(i for i in body["data"] if i["_id"] == SOCIAL)
    assert social["index_name"] == "social-clips"
    assert {"model_name": "marengo3.0", "model_options": ["visual", "audio"]} in social["models"]
    assert social["video_count"] == len(corpus.indexes[SOCIAL].video_ids)
    assert v13.get(f"/indexes/{SOCIAL}").json() == social
    error(v13.get("/indexes/nope"), 404, "resource_not_exist")
    error(v13.get("/indexes", params={"engine_family": "marengo"}), 400, "parameter_unknown")


def test_videos_page_until_an_empty_page(v13: httpx.Client, corpus: Corpus) -> None:
    """SDK 1.3.6's pager asks for page + 1 until a page has no data."""
    index = index_id(corpus, "sports-and-news")
    seen: list[str] = []
    page = 1
    while True:
        response = v13.get(f"/indexes/{index}/videos", params={"page": page, "page_limit": 4})
        assert response.status_code == 200
        body = response.json()
        if not body["data"]:
            break
        assert body["page_info"]["page"] == page
        seen += [v["_id"] for v in body["data"]]
        page += 1
    assert sorted(seen) == sorted(corpus.indexes[index].video_ids)
    video = corpus.videos[seen[0]]
    first = v13.get(f"/indexes/{index}/videos", params={"page_limit": 1}).json()["data"][0]
    assert set(first) == {"_id", "asset_id", "created_at", "updated_at", "indexed_at"} | {
        "system_metadata"
    }
    assert first["system_metadata"]["duration"] == corpus.videos[first["_id"]].duration
    assert video.index_id == index
    error(v13.get(f"/indexes/{index}/videos", params={"page_limit": 51}), 400, "parameter_invalid")
    error(v13.get("/indexes/nope/videos"), 404, "resource_not_exist")


def test_video_with_embeddings_and_transcription(v13: httpx.Client, corpus: Corpus) -> None:
    video = corpus.videos[STREET]
    response = v13.get(
        f"/indexes/{SOCIAL}/videos/{STREET}",
        params=[
            ("embedding_option", "visual"),
            ("embedding_option", "transcription"),
            ("transcription", "true"),
        ],
    )
    assert response.status_code == 200
    body = response.json()
    assert body["_id"] == STREET and len(body["asset_id"]) == 24
    assert body["system_metadata"]["filename"] == "street-dance-battle.mp4"
    assert body["embedding"]["model_name"] == "marengo3.0"
    segments = body["embedding"]["video_embedding"]["segments"]
    assert {s["embedding_option"] for s in segments} == {"visual", "transcription"}
    for s in segments:
        assert s["embedding_scope"] == "clip"
        assert len(s["float"]) == DIMENSION
        assert abs(np.linalg.norm(s["float"]) - 1.0) < 1e-3
        assert 0.0 <= s["start_offset_sec"] < s["end_offset_sec"] <= video.duration + 1e-6
        assert s["end_offset_sec"] - s["start_offset_sec"] <= 10.0 + 1e-6
    visual = [s for s in segments if s["embedding_option"] == "visual"]
    starts = [s["start_offset_sec"] for s in visual]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert [line["value"] for line in body["transcription"]] == [
        s.text for s in video.segments["conversation"]
    ]
    plain = v13.get(f"/indexes/{SOCIAL}/videos/{STREET}").json()
    assert "embedding" not in plain and "transcription" not in plain
    again = v13.get(f"/indexes/{SOCIAL}/videos/{STREET}", params={"embedding_option": "visual"})
    assert again.json()["embedding"]["video_embedding"]["segments"] == visual
    audio = v13.get(f"/indexes/{SOCIAL}/videos/{STREET}", params={"embedding_option": "audio"})
    assert {
        s["embedding_option"] for s in audio.json()["embedding"]["video_embedding"]["segments"]
    } == {"audio"}
    bad = v13.get(f"/indexes/{SOCIAL}/videos/{STREET}", params={"embedding_option": "visual-text"})
    error(bad, 400, "parameter_invalid")
    message = error(v13.get(f"/indexes/{SOCIAL}/videos/nope"), 404, "resource_not_exist")
    assert message == "Resource with id nope does not exist in videos."
    other = index_id(corpus, "sports-and-news")
    error(v13.get(f"/indexes/{other}/videos/{STREET}"), 404, "resource_not_exist")


# -- embeddings ----------------------------------------------------------------------


def test_text_embedding_is_deterministic_across_processes(v13: httpx.Client) -> None:
    served = embed(v13, "people dancing")
    assert served.shape == (DIMENSION,)
    assert abs(np.linalg.norm(served) - 1.0) < 1e-4
    code = (
        "import json; from classify_emulator.embeddings import text_embedding;"
        "print(json.dumps(text_embedding('people dancing').tolist()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    fresh = np.array(json.loads(out.stdout), dtype=np.float32)
    assert np.array_equal(fresh, served.astype(np.float32))  # served as float32
    assert not np.allclose(embed(v13, "people cooking"), served)


def test_related_text_is_closer_than_unrelated_text(v13: httpx.Client) -> None:
    dancing = embed(v13, "people dancing")
    assert dancing @ embed(v13, "a salsa dance class") > dancing @ embed(v13, "a rocket launch")


def test_embed_errors(v13: httpx.Client) -> None:
    text = {"input_text": "people dancing"}

    def post(body: Any) -> httpx.Response:
        return v13.post("/embed-v2", json=body)

    error(post({"model_name": "marengo3.0", "text": text}), 400, "parameter_not_provided")
    error(post({"input_type": "text", "text": text}), 400, "parameter_not_provided")
    error(post({"input_type": "text", "model_name": "marengo3.0"}), 400, "parameter_not_provided")
    base = {"input_type": "text", "model_name": "marengo3.0", "text": text}
    error(post({**base, "colour": 1}), 400, "parameter_unknown")
    error(post({**base, "text": {"input_text": "x", "lang": "en"}}), 400, "parameter_unknown")
    error(post({**base, "model_name": "marengo2.7"}), 400, "parameter_invalid")
    error(post({**base, "embedding_dimension": 256}), 400, "parameter_invalid")
    error(post({**base, "input_type": "image"}), 400, "parameter_invalid")
    error(post({**base, "text": {"input_text": " "}}), 400, "parameter_invalid")
    error(post({**base, "text": {"input_text": "word " * 501}}), 400, "parameter_invalid")
    error(v13.post("/embed-v2", content=b"{"), 400, "parameter_invalid")


# -- search ------------------------------------------------------------------------


def test_search_pages_through_every_clip_in_rank_order(v13: httpx.Client) -> None:
    first = search(
        v13,
        index_id=SOCIAL,
        search_options=["visual", "transcription"],
        query_text="people dancing",
        page_limit=5,
    )
    assert first.status_code == 200, first.text
    body = first.json()
    info = body["page_info"]
    assert info["limit_per_page"] == 5 and info["total_results"] > 10
    assert "prev_page_token" not in info
    assert body["search_pool"]["index_id"] == SOCIAL
    items = list(body["data"])
    while "next_page_token" in info:
        page = v13.get(f"/search/{info['next_page_token']}")
        assert page.status_code == 200
        info = page.json()["page_info"]
        assert "prev_page_token" in info
        items += page.json()["data"]
    assert [i["rank"] for i in items] == list(range(1, info["total_results"] + 1))
    assert all("score" not in i and i["end"] > i["start"] for i in items)
    assert items[0]["thumbnail_url"].startswith("https://")
    assert any("transcription" in i for i in items)


def test_search_ranks_follow_the_served_embeddings(v13: httpx.Client) -> None:
    """A client computing cosines itself sees the order search gives.

    Transcription clips are spoken lines, which never overlap, so the segments
    inside a clip's span are exactly the clip's own.
    """
    query = embed(v13, "cooking pasta")
    body = search(
        v13,
        index_id=SOCIAL,
        search_options="transcription",
        query_text="cooking pasta",
        page_limit=50,
    ).json()
    segments: dict[str, list[dict[str, Any]]] = {}
    best: list[float] = []
    for item in body["data"]:
        vid = item["video_id"]
        if vid not in segments:
            video = v13.get(
                f"/indexes/{SOCIAL}/videos/{vid}",
                params={"embedding_option": "transcription"},
            )
            segments[vid] = video.json()["embedding"]["video_embedding"]["segments"]
        inside = [
            float(np.array(s["float"]) @ query)
            for s in segments[vid]
            if item["start"] - 1e-3 <= s["start_offset_sec"] < item["end"]
        ]
        best.append(max(inside))
    assert len(best) >= 3
    assert best == sorted(best, reverse=True)
    assert PASTA in segments  # the pasta recipe talks about cooking


def test_search_filter_by_ids_and_group_by_video(v13: httpx.Client) -> None:
    response = search(
        v13,
        index_id=SOCIAL,
        search_options="visual",
        query_text="people dancing",
        group_by="video",
        page_limit=1,
        filter=json.dumps({"id": [SALSA, STREET, PASTA]}),
    )
    assert response.status_code == 200
    body = response.json()
    info = body["page_info"]
    assert info["total_results"] == 2  # the pasta video has no dancing
    assert info["total_inner_matches"] >= 2
    (item,) = body["data"]
    assert item["rank"] == 1 and item["id"] in (SALSA, STREET)
    assert all(c["video_id"] == item["id"] for c in item["clips"])
    second = v13.get(f"/search/{info['next_page_token']}").json()
    assert [i["rank"] for i in second["data"]] == [2]
    assert "next_page_token" not in second["page_info"]


def test_search_errors(v13: httpx.Client, emu: RunningEmulator) -> None:
    ok = {"index_id": SOCIAL, "search_options": "visual", "query_text": "people dancing"}
    message = error(v13.post("/search", json=ok), 400, "parameter_invalid")
    assert "multipart/form-data" in message
    error(search(v13, **{**ok, "colour": "red"}), 400, "parameter_unknown")
    error(search(v13, search_options="visual", query_text="x"), 400, "parameter_not_provided")
    error(search(v13, index_id=SOCIAL, query_text="x"), 400, "parameter_not_provided")
    error(search(v13, index_id=SOCIAL, search_options="visual"), 400, "parameter_not_provided")
    error(search(v13, **{**ok, "search_options": "conversation"}), 400, "parameter_invalid")
    error(search(v13, **{**ok, "page_limit": 51}), 400, "parameter_invalid")
    error(search(v13, **{**ok, "group_by": "index"}), 400, "parameter_invalid")
    error(search(v13, **{**ok, "transcription_options": "lexical"}), 400, "parameter_invalid")
    error(search(v13, **{**ok, "index_id": "nope"}), 404, "resource_not_exist")
    for bad in ("{", "[]", '{"id": "x"}', '{"duration": "long"}', '{"duration": {"gt": 1}}'):
        error(search(v13, **{**ok, "filter": bad}), 400, "search_filter_invalid")
    assert search(v13, **{**ok, "threshold": "high"}).status_code == 200  # deprecated, ignored
    message = error(v13.get("/search/nope"), 400, "search_page_token_expired")
    assert message.endswith("Token: nope.")


def test_search_needs_a_marengo_index(tmp_path: Path) -> None:
    (tmp_path / "indexes.json").write_text(
        '[{"_id": "aaaaaaaaaaaaaaaaaaaaaaaa", "index_name": "pegasus-only",'
        ' "engines": [{"engine_name": "pegasus1.1", "engine_options": ["visual"]}],'
        ' "created_at": "2024-01-01T00:00:00Z"}]'
    )
    (tmp_path / "videos.json").write_text("[]")
    with running_emulator(EmulatorConfig(corpus=tmp_path)) as emu:
        response = httpx.post(
            f"{emu.base_url}/v1.3/search",
            headers={"x-api-key": emu.api_key},
            files=form(index_id="a" * 24, search_options="visual", query_text="people dancing"),
        )
    error(response, 400, "index_not_supported_for_search")


def test_a_video_without_speech(tmp_path: Path) -> None:
    """An option with no segments is absent from the answer, and a search of it is empty."""
    (tmp_path / "indexes.json").write_text(
        '[{"_id": "bbbbbbbbbbbbbbbbbbbbbbbb", "index_name": "silent",'
        ' "engines": [{"engine_name": "marengo2.6", "engine_options": ["visual"]}],'
        ' "created_at": "2024-01-01T00:00:00Z"}]'
    )
    video = {
        "_id": "c" * 24,
        "index_id": "b" * 24,
        "created_at": "2024-01-01T00:00:00Z",
        "metadata": {"filename": "silent-ballet.mp4", "video_title": "silent-ballet"}
        | {"duration": 24.0, "fps": 25.0, "width": 640, "height": 360, "size": 1000},
        "segments": {"visual": [{"start": 0.0, "end": 24.0, "text": "a ballerina spins"}]},
    }
    (tmp_path / "videos.json").write_text(json.dumps([video]))
    with running_emulator(EmulatorConfig(corpus=tmp_path)) as emu:
        headers = {"x-api-key": emu.api_key}
        got = httpx.get(
            f"{emu.base_url}/v1.3/indexes/{'b' * 24}/videos/{'c' * 24}",
            params=[("embedding_option", "visual"), ("embedding_option", "transcription")],
            headers=headers,
        )
        found = httpx.post(
            f"{emu.base_url}/v1.3/search",
            headers=headers,
            files=form(index_id="b" * 24, search_options="transcription", query_text="ballet"),
        )
    assert got.status_code == 200
    segments = got.json()["embedding"]["video_embedding"]["segments"]
    assert [(s["start_offset_sec"], s["end_offset_sec"]) for s in segments] == [
        (0.0, 8.0),
        (8.0, 16.0),
        (16.0, 24.0),
    ]
    assert {s["embedding_option"] for s in segments} == {"visual"}
    assert found.status_code == 200
    assert found.json()["data"] == [] and "next_page_token" not in found.json()["page_info"]


def test_search_tokens_expire(v13: httpx.Client, emu: RunningEmulator) -> None:
    emu.admin.set_config(page_ttl_seconds=0)
    body = search(
        v13, index_id=SOCIAL, search_options="visual", query_text="people dancing", page_limit=1
    ).json()
    error(
        v13.get(f"/search/{body['page_info']['next_page_token']}"), 400, "search_page_token_expired"
    )


# -- auth, quotas, faults -------------------------------------------------------------


def test_auth_comes_first(raw: httpx.Client) -> None:
    error(raw.get("/v1.3/indexes"), 401, "api_key_invalid")
    error(raw.post("/v1.3/search", headers={"x-api-key": ""}), 401, "api_key_invalid")


def test_each_category_has_its_own_limit(v13: httpx.Client, emu: RunningEmulator) -> None:
    emu.admin.set_config(rate_limit_embed=2, rate_limit_search=1)
    for _ in range(2):
        embed(v13, "people dancing")
    limited = v13.post(
        "/embed-v2",
        json={"input_type": "text", "model_name": "marengo3.0", "text": {"input_text": "x"}},
    )
    message = error(limited, 429, "too_many_requests")
    assert message.startswith("You have exceeded the rate limit (2 requests per 86400 seconds).")
    assert limited.headers["x-ratelimit-limit"] == "2"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    ok = {"index_id": SOCIAL, "search_options": "visual", "query_text": "people dancing"}
    searched = search(v13, **ok)
    assert searched.status_code == 200 and searched.headers["x-ratelimit-remaining"] == "0"
    error(search(v13, **ok), 429, "too_many_requests")
    listed = v13.get("/indexes")  # videos and indexes: no limit set
    assert listed.status_code == 200 and listed.headers["x-ratelimit-limit"] == "1000000"


def test_faults_apply_to_v13(v13: httpx.Client, emu: RunningEmulator) -> None:
    emu.admin.set_config(rate_limit_videos=40)
    empty = v13.get("/indexes", headers={"x-emulator-fault": "rate_limit;empty=true"})
    assert empty.status_code == 429 and empty.content == b""
    assert "content-type" not in empty.headers
    assert empty.headers["x-ratelimit-limit"] == "40"  # the category's limit
    error(v13.get("/indexes", headers={"x-emulator-fault": "status=503"}), 503, "internal_error")
    emu.admin.add_fault({"match": {"path": "/v1.3/search/"}, "action": {"type": "expire_token"}})
    body = search(
        v13, index_id=SOCIAL, search_options="visual", query_text="people dancing", page_limit=1
    ).json()
    token = body["page_info"]["next_page_token"]
    message = error(v13.get(f"/search/{token}"), 400, "search_page_token_expired")
    assert token in message
    assert v13.get(f"/search/{token}").status_code == 200  # the rule was used up
    journal = emu.admin.requests()
    assert [e["fault"] for e in journal if e["path"].startswith("/v1.3/search/")] == [
        "expire_token",
        None,
    ]


def test_video_ids_of_the_guide_exist_under_v13(v13: httpx.Client, corpus: Corpus) -> None:
    for name in ("street-dance-battle.mp4", "pasta-recipe-tutorial.mp4"):
        vid = video_id(corpus, name)
        assert v13.get(f"/indexes/{SOCIAL}/videos/{vid}").status_code == 200
