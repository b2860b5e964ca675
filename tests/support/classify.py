"""Classification requests over the emulator's videos, and direct upstream calls to compare."""

from __future__ import annotations

from typing import Any

import httpx
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from google.protobuf import json_format

from classify_emulator.stack import catalogue

LOW = pb.Threshold(min_video_score=0, min_clip_score=0, min_duration_ratio=0.01)


def video_ids(emu: Any, count: int = 12) -> list[str]:
    """The first `count` videos the emulator lists (classify_emulator.stack.catalogue)."""
    ids = list(catalogue(emu.base_url, emu.api_key))
    assert len(ids) >= count
    return ids[:count]


def index_id(emu: Any) -> str:
    with httpx.Client(base_url=emu.base_url + "/v1.2", headers={"x-api-key": emu.api_key}) as c:
        return str(c.get("/indexes").json()["data"][0]["_id"])


def classify_request(
    emu: Any, count: int = 12, page_limit: int = 2, **kw: Any
) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        video_ids=video_ids(emu, count),
        options=[
            pb.SEARCH_OPTION_VISUAL,
            pb.SEARCH_OPTION_CONVERSATION,
            pb.SEARCH_OPTION_TEXT_IN_VIDEO,
        ],
        classes=[
            pb.ClassDefinition(name="Dance", prompts=["dance tutorial", "dance group"]),
            pb.ClassDefinition(name="Cooking", prompts=["cooking tutorial", "recipe"]),
            pb.ClassDefinition(name="Sports", prompts=["soccer match", "athletes"]),
        ],
        page_limit=page_limit,
        include_clips=True,
        show_detailed_score=True,
        threshold=LOW,
        **kw,
    )


def direct_pages(emu: Any, body: dict[str, Any], path: str = "/classify") -> list[dict[str, Any]]:
    """The emulator's own JSON answer to the same request, every page."""
    headers = {"x-api-key": emu.api_key}
    pages = []
    with httpx.Client(base_url=emu.base_url + "/v1.2", headers=headers) as c:
        r = c.post(path, json=body)
        r.raise_for_status()
        pages.append(r.json())
        while token := pages[-1]["page_info"].get("next_page_token"):
            r = c.get(f"/classify/{token}")
            r.raise_for_status()
            pages.append(r.json())
    return pages


def data_of(page: Any) -> list[pb.VideoClassification]:
    """The videos of a page, as proto messages (upstream JSON parsed by json_format, the oracle)."""
    if isinstance(page, dict):
        page = json_format.ParseDict(page, pb.GetClassifyPageResponse())
    return list(page.data)


def journal(emu: Any, method: str | None = None, contains: str = "") -> list[dict[str, Any]]:
    return [
        r
        for r in emu.admin.requests()
        if (method is None or r["method"] == method) and contains in r["path"]
    ]


def docs_request() -> pb.ClassifyRequest:
    """The contract's example request (tests/fixtures/docs/request_contract.json)."""
    return pb.ClassifyRequest(
        video_ids=["6656fa67d22b3a3c97befb0d", "6650712ad22b3a3c97bef51f"],
        options=[pb.SEARCH_OPTION_VISUAL, pb.SEARCH_OPTION_CONVERSATION],
        conversation_option=pb.CONVERSATION_OPTION_SEMANTIC,
        classes=[
            pb.ClassDefinition(name="DanceTok", prompts=["Dance tutorial", "Dance group"]),
            pb.ClassDefinition(name="CookTok", prompts=["Cooking tutorial"]),
        ],
        page_limit=10,
        include_clips=True,
        show_detailed_score=True,
        threshold=pb.Threshold(min_video_score=75, min_clip_score=65, min_duration_ratio=0.5),
    )
