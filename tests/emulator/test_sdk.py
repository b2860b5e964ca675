"""The official Python SDK (twelvelabs==0.3.2) against the emulator.

The SDK has no base-URL argument: it reads TWELVELABS_BASE_URL when a client
is constructed, and then calls `${TWELVELABS_BASE_URL}/v1.2/...`.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from classify_emulator.testing import RunningEmulator

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the SDK trips Pydantic and SyntaxWarning deprecations
    from twelvelabs import TwelveLabs
    from twelvelabs import exceptions as sdk_errors

CLASSES: list[dict[str, Any]] = [
    {"name": "DanceTok", "prompts": ["Dance tutorial", "Dance group", "Dance competition"]},
    {"name": "CookTok", "prompts": ["Cooking tutorial", "Cooking ustensils review"]},
]


@pytest.fixture
def client(emu: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> TwelveLabs:
    monkeypatch.setenv("TWELVELABS_BASE_URL", emu.base_url)
    return TwelveLabs(api_key=emu.api_key)


def test_lists_indexes_and_videos(client: TwelveLabs) -> None:
    indexes = client.index.list()
    assert len(indexes) >= 3
    names = {ix.name for ix in indexes}
    assert "social-clips" in names
    first = client.index.list_pagination(page_limit=2)
    pages = [first.data, *first]
    assert sum(len(p) for p in pages) == len(indexes)
    social = client.index.retrieve("6650701a27f0a43b740fd011")
    assert social.engines[0].name.startswith("marengo")
    videos = client.index.video.list(social.id, page_limit=50)
    assert len(videos) == social.video_count
    assert all(v.metadata.filename.endswith(".mp4") and v.metadata.duration > 0 for v in videos)
    paged = client.index.video.list_pagination(social.id, page_limit=4)
    assert sum(len(p) for p in [paged.data, *paged]) == social.video_count


def test_classifies_videos_and_pages_to_the_end(client: TwelveLabs) -> None:
    videos = client.index.video.list("6650701a27f0a43b740fd011", page_limit=50)
    result = client.classify.videos(
        [v.id for v in videos],
        ["visual", "conversation"],
        CLASSES,
        page_limit=2,
        include_clips=True,
        show_detailed_score=True,
        threshold={"min_video_score": 50, "min_clip_score": 50, "min_duration_ratio": 0.2},
    )
    total = result.page_info.total_results
    seen = [d.video_id for d in result.data]
    for page in result:  # next(result) fetches the following page until StopIteration
        seen += [d.video_id for d in page]
    assert len(seen) == len(set(seen)) == total > 2
    assert not result.page_info.next_page_token
    first_class = (
        client.classify.videos(
            ["6656fa67d22b3a3c97befb0d"],
            ["visual"],
            CLASSES,
            include_clips=True,
            show_detailed_score=True,
        )
        .data[0]
        .classes[0]
    )
    assert first_class.name == "DanceTok"
    assert first_class.clips is not None and first_class.clips[0].thumbnail_url
    assert first_class.detailed_scores is not None
    assert first_class.detailed_scores.normalized_score == pytest.approx(100.0)


def test_classifies_a_whole_index(client: TwelveLabs) -> None:
    result = client.classify.index(
        "6650701a27f0a43b740fd011",
        ["visual"],
        CLASSES,
        page_limit=3,
        threshold={"min_video_score": 80},
    )
    pages = [result.data, *result]
    classes = [c for page in pages for d in page for c in d.classes]
    assert classes and all(c.score >= 80 for c in classes)
    assert {c.name for c in classes} == {"DanceTok", "CookTok"}


def test_typed_errors(client: TwelveLabs, emu: RunningEmulator) -> None:
    with pytest.raises(sdk_errors.BadRequestError, match="page_token"):
        client.classify.by_page_token("no-such-token")
    with pytest.raises(sdk_errors.BadRequestError, match="parameter_invalid"):
        client.classify.videos(["6656fa67d22b3a3c97befb0d"], ["smell"], CLASSES)
    with pytest.raises(sdk_errors.NotFoundError, match="resource_not_exist"):
        client.index.retrieve("000000000000000000000000")
    with pytest.raises(sdk_errors.NotFoundError):
        client.classify.videos(["ffffffffffffffffffffffff"], ["visual"], CLASSES)
    with pytest.raises(sdk_errors.AuthenticationError, match="api_key_invalid"):
        TwelveLabs(api_key="").index.list()
    emu.admin.set_config(rate_limit=1)
    client.classify.videos(["6656fa67d22b3a3c97befb0d"], ["visual"], CLASSES)
    with pytest.raises(sdk_errors.RateLimitError, match="too_many_requests"):
        client.classify.videos(["6656fa67d22b3a3c97befb0d"], ["visual"], CLASSES)
    emu.admin.add_fault({"action": {"type": "status", "status": 503}})
    with pytest.raises(sdk_errors.InternalServerError):
        client.index.list()
