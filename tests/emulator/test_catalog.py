"""GET /indexes, /indexes/{id}, /indexes/{id}/videos in their v1.2 shapes."""

from __future__ import annotations

import httpx
import pytest

from classify_emulator.corpus import Corpus

from .conftest import index_id


def test_list_indexes(api: httpx.Client, corpus: Corpus) -> None:
    body = api.get("/indexes").json()
    assert body["page_info"] == {
        "limit_per_page": 10,
        "page": 1,
        "total_page": 1,
        "total_results": len(corpus.indexes),
    }
    assert len(corpus.indexes) >= 3
    created = [ix["created_at"] for ix in body["data"]]
    assert created == sorted(created, reverse=True)  # newest first by default
    for ix in body["data"]:
        assert len(ix["_id"]) == 24 and int(ix["_id"], 16) >= 0
        assert {"index_name", "engines", "video_count", "total_duration", "created_at"} <= set(ix)
        assert ix["engines"][0]["engine_name"].startswith("marengo")
        assert ix["video_count"] == len(corpus.indexes[ix["_id"]].video_ids)


def test_index_paging_and_filters(api: httpx.Client) -> None:
    page2 = api.get("/indexes", params={"page": 2, "page_limit": 3, "sort_option": "asc"}).json()
    assert page2["page_info"]["total_page"] == 2 and len(page2["data"]) == 1
    named = api.get("/indexes", params={"index_name": "social-clips"}).json()["data"]
    assert [ix["_id"] for ix in named] == ["6650701a27f0a43b740fd011"]
    assert api.get("/indexes", params={"engine_family": "pegasus"}).json()["data"]
    assert api.get("/indexes", params={"engine_options": ["visual", "logo"]}).json()["data"]
    assert api.get("/indexes", params={"page": 9}).json()["data"] == []


@pytest.mark.parametrize(
    ("params", "code", "name"),
    [
        ({"page_limit": 51}, "parameter_invalid", "page_limit"),
        ({"page": 0}, "parameter_invalid", "page"),
        ({"page": "x"}, "parameter_invalid", "page"),
        ({"sort_by": "name"}, "parameter_invalid", "sort_by"),
        ({"colour": "red"}, "parameter_unknown", "colour"),
    ],
)
def test_index_list_validation(
    api: httpx.Client, params: dict[str, object], code: str, name: str
) -> None:
    response = api.get("/indexes", params=params)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert f"The {name} parameter" in response.json()["message"]


def test_get_index(api: httpx.Client) -> None:
    ix = api.get("/indexes/6650701a27f0a43b740fd011").json()
    assert ix["index_name"] == "social-clips"
    response = api.get("/indexes/000000000000000000000000")
    assert response.status_code == 404
    assert response.json() == {
        "code": "resource_not_exist",
        "message": "Resource with id 000000000000000000000000 does not exist in indexes.",
    }


def test_list_videos(api: httpx.Client, corpus: Corpus) -> None:
    social = index_id(corpus, "social-clips")
    first = api.get(f"/indexes/{social}/videos", params={"page_limit": 5}).json()
    info = first["page_info"]
    assert info["limit_per_page"] == 5 and info["page"] == 1
    assert info["total_results"] == len(corpus.indexes[social].video_ids)
    seen = [v["_id"] for v in first["data"]]
    for page in range(2, info["total_page"] + 1):
        seen += [
            v["_id"]
            for v in api.get(
                f"/indexes/{social}/videos", params={"page_limit": 5, "page": page}
            ).json()["data"]
        ]
    assert sorted(seen) == sorted(corpus.indexes[social].video_ids)
    video = first["data"][0]
    assert {"_id", "created_at", "metadata"} <= set(video)
    assert {"filename", "duration", "fps", "width", "height", "size"} <= set(video["metadata"])
    assert video["metadata"]["filename"].endswith(".mp4")


def test_video_filters(api: httpx.Client, corpus: Corpus) -> None:
    social = index_id(corpus, "social-clips")
    url = f"/indexes/{social}/videos"
    found = api.get(url, params={"filename": "pasta-recipe-tutorial.mp4"}).json()["data"]
    assert [v["_id"] for v in found] == ["6650712ad22b3a3c97bef51f"]
    short = api.get(url, params={"duration[lte]": 200, "page_limit": 50}).json()["data"]
    assert short and all(v["metadata"]["duration"] <= 200 for v in short)
    assert api.get(url, params={"duration[gte]": "x"}).status_code == 400


def test_videos_of_unknown_index(api: httpx.Client) -> None:
    response = api.get("/indexes/000000000000000000000000/videos")
    assert response.status_code == 404
    assert "does not exist in indexes." in response.json()["message"]


def test_get_video(api: httpx.Client) -> None:
    video = api.get("/indexes/6650701a27f0a43b740fd011/videos/6650712ad22b3a3c97bef51f").json()
    assert video["metadata"]["filename"] == "pasta-recipe-tutorial.mp4"
    response = api.get("/indexes/6650701a27f0a43b740fd011/videos/ffffffffffffffffffffffff")
    assert response.status_code == 404
    assert response.json()["message"].endswith("does not exist in videos.")
