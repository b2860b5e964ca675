"""The official SDK 1.3.6, unchanged, against the emulator's /v1.3: what a v1.3 backend calls.

Each test is what the gateway's v1.3 backend (or anyone holding the SDK) does:
walk indexes and videos with the SDK's pagers, read a video's segment
embeddings, embed a prompt, search with a filter and page through the
results, and tell the SDK's error classes apart, including the 429 with an
empty body that the vendor's OpenAPI documents (a plain ApiError, not
TooManyRequestsError).
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
from conftest import Emulator

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from twelvelabs import TwelveLabs
    from twelvelabs.core.api_error import ApiError
    from twelvelabs.errors import BadRequestError, NotFoundError, TooManyRequestsError
    from twelvelabs.types import TextInputRequest

SOCIAL = "6650701a27f0a43b740fd011"  # social-clips
STREET = "6656fa67d22b3a3c97befb0d"  # street dance battle
SALSA = "64428d88456b2dab381e7022"  # salsa group class
PASTA = "6650712ad22b3a3c97bef51f"  # pasta recipe


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def embed(client: TwelveLabs, text: str) -> list[float]:
    response = client.embed.v_2.create(
        input_type="text", model_name="marengo3.0", text=TextInputRequest(input_text=text)
    )
    (item,) = response.data
    return list(item.embedding)


def test_indexes_list(client: TwelveLabs) -> None:
    indexes = list(client.indexes.list(page_limit=2))  # the pager walks every page
    assert {i.index_name for i in indexes} == {
        "social-clips",
        "sports-and-news",
        "travel-and-nature",
        "tech-and-culture",
    }
    social = client.indexes.retrieve(SOCIAL)
    assert social.id == SOCIAL
    assert social.models is not None
    assert "marengo3.0" in {m.model_name for m in social.models}


def test_videos_list_pages(client: TwelveLabs, emu: Emulator) -> None:
    count = client.indexes.retrieve(SOCIAL).video_count
    videos = list(client.indexes.videos.list(SOCIAL, page_limit=4))
    assert len(videos) == count and len({v.id for v in videos}) == count
    assert all(v.system_metadata is not None and v.system_metadata.duration for v in videos)
    pages = [e for e in emu.requests() if e["path"] == f"/v1.3/indexes/{SOCIAL}/videos"]
    assert len(pages) == math.ceil(count / 4) + 1  # the pager stops on an empty page


def test_video_retrieve_with_embeddings(client: TwelveLabs) -> None:
    video = client.indexes.videos.retrieve(
        SOCIAL, STREET, embedding_option=["visual", "transcription"], transcription=True
    )
    assert video.id == STREET and video.asset_id
    assert video.system_metadata is not None
    assert video.system_metadata.filename == "street-dance-battle.mp4"
    duration = video.system_metadata.duration
    assert duration is not None
    assert video.embedding is not None and video.embedding.model_name == "marengo3.0"
    segments = video.embedding.video_embedding.segments  # type: ignore[union-attr]
    assert segments
    assert {s.embedding_option for s in segments} == {"visual", "transcription"}
    for s in segments:
        assert s.float_ is not None and len(s.float_) == 512
        assert 0 <= s.start_offset_sec < s.end_offset_sec <= duration  # type: ignore[operator]
        assert s.embedding_scope == "clip"
    assert video.transcription and video.transcription[0].value


def test_embed_text_ranks_the_dance_video_above_the_recipe(client: TwelveLabs) -> None:
    query = embed(client, "people dancing")
    assert len(query) == 512
    assert embed(client, "people dancing") == query  # deterministic

    def best(video_id: str) -> float:
        video = client.indexes.videos.retrieve(SOCIAL, video_id, embedding_option="visual")
        segments = video.embedding.video_embedding.segments  # type: ignore[union-attr]
        return max(cosine(query, s.float_) for s in segments)  # type: ignore[arg-type]

    assert best(STREET) > best(PASTA) + 0.1


def test_search_with_filter_pages_through_the_sync_pager(client: TwelveLabs, emu: Emulator) -> None:
    pager = client.search.query(
        index_id=SOCIAL,
        search_options=["visual", "transcription"],
        query_text="people dancing",
        page_limit=3,
        filter=json.dumps({"id": [STREET, SALSA, PASTA]}),
    )
    items = list(pager)
    assert len(items) > 3  # more than one page
    assert [i.rank for i in items] == list(range(1, len(items) + 1))
    assert {i.video_id for i in items} == {STREET, SALSA}
    gets = [e for e in emu.requests() if e["path"].startswith("/v1.3/search/")]
    assert len(gets) == math.ceil(len(items) / 3) - 1
    assert all(e["status"] == 200 for e in gets)

    by_video = list(
        client.search.query(
            index_id=SOCIAL,
            search_options=["visual"],
            query_text="people dancing",
            group_by="video",
            filter=json.dumps({"id": [STREET, SALSA]}),
        )
    )
    assert sorted(i.id for i in by_video) == sorted([STREET, SALSA])  # type: ignore[type-var]
    assert all(i.clips for i in by_video)


def test_bad_requests_raise_bad_request_error(client: TwelveLabs) -> None:
    with pytest.raises(BadRequestError) as caught:
        client.search.create(
            index_id=SOCIAL, search_options=["visual"], query_text="x", page_limit=51
        )
    assert caught.value.body["code"] == "parameter_invalid"
    with pytest.raises(BadRequestError) as caught:
        client.search.create(
            index_id=SOCIAL, search_options=["visual"], query_text="x", filter="{not json"
        )
    assert caught.value.body["code"] == "search_filter_invalid"
    with pytest.raises(BadRequestError) as caught:
        client.embed.v_2.create(
            input_type="text",
            model_name="marengo3.0",
            embedding_dimension=256,
            text=TextInputRequest(input_text="x"),
        )
    assert caught.value.body["code"] == "parameter_invalid"
    with pytest.raises(BadRequestError) as caught:
        client.search.retrieve("no-such-token")
    assert caught.value.body["code"] == "search_page_token_expired"


def test_unknown_video_is_not_found(client: TwelveLabs) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.indexes.videos.retrieve(SOCIAL, "000000000000000000000000")
    assert caught.value.body["code"] == "resource_not_exist"


def test_wrong_key_is_401(emu: Emulator) -> None:
    wrong = TwelveLabs(api_key="not-the-key", base_url=f"{emu.url}/v1.3")
    with pytest.raises(ApiError) as caught:
        wrong.indexes.retrieve(SOCIAL)
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "api_key_invalid"


def test_429_with_a_body_is_too_many_requests_error(client: TwelveLabs, emu: Emulator) -> None:
    emu.configure(rate_limit_search=1)
    client.search.create(index_id=SOCIAL, search_options=["visual"], query_text="dance")
    with pytest.raises(TooManyRequestsError) as caught:
        client.search.create(index_id=SOCIAL, search_options=["visual"], query_text="dance")
    assert caught.value.body["code"] == "too_many_requests"
    assert caught.value.headers is not None
    assert caught.value.headers["x-ratelimit-remaining"] == "0"
    embedded = embed(client, "dance")  # another category, its own quota
    assert len(embedded) == 512


def test_429_with_an_empty_body_is_a_plain_api_error(client: TwelveLabs) -> None:
    with pytest.raises(ApiError) as caught:
        client.search.create(
            index_id=SOCIAL,
            search_options=["visual"],
            query_text="dance",
            request_options={"additional_headers": {"x-emulator-fault": "rate_limit;empty=true"}},
        )
    assert type(caught.value) is ApiError
    assert caught.value.status_code == 429
    assert caught.value.body == ""
