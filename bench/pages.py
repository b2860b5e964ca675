"""Deterministic upstream page bodies for the benchmarks and the equivalence test.

`make_page(videos, classes, clips)` builds one page exactly as the upstream
(v1.2 classify) shapes it: `data[]` of videos with classes, optional clips and
detailed scores, and `page_info`. Numbers are varied (not all equal) so that a
translation that mixes up fields cannot pass the equality test by accident.
"""

from __future__ import annotations

from typing import Any

OPTIONS = ("visual", "conversation", "text_in_video")


def make_page(
    videos: int = 10,
    classes: int = 5,
    clips: int = 5,
    *,
    next_token: str = "",
    prev_token: str = "",
    detailed: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    data = []
    for v in range(videos):
        cls_list = []
        for c in range(classes):
            k = seed + v * 31 + c * 7
            cls: dict[str, Any] = {
                "name": f"class-{c}",
                "score": 50.0 + (k % 50) + 0.25,
                "duration_ratio": round(((k % 10) + 1) / 10, 2),
            }
            if clips:
                cls["clips"] = [
                    {
                        "start": float(10 * j + (k % 5)),
                        "end": float(10 * j + (k % 5) + 7.5),
                        "score": 60.0 + ((k + j) % 40) + 0.5,
                        "option": OPTIONS[(k + j) % 3],
                        "prompt": f"prompt {c}.{j}",
                        "thumbnail_url": f"https://thumbs.example.com/v{v}/c{c}/{j}.jpg",
                    }
                    for j in range(clips)
                ]
            if detailed:
                cls["detailed_scores"] = {
                    "max_score": 90.0 + (k % 10) * 0.5,
                    "avg_score": 70.0 + (k % 20) * 0.5,
                    "normalized_score": 40.0 + (k % 60),
                }
            cls_list.append(cls)
        data.append({"video_id": f"{seed:04x}{v:020x}", "classes": cls_list})
    return {
        "data": data,
        "page_info": {
            "limit_per_page": videos,
            "total_results": videos * 10,
            "page_expired_at": "2030-05-22T05:19:09Z",
            "next_page_token": next_token,
            "prev_page_token": prev_token,
        },
    }


def translation_page() -> dict[str, Any]:
    """The page of goal 7: 10 videos x 5 classes x 5 clips, with detailed scores."""
    return make_page(10, 5, 5, next_token="next-token", prev_token="prev-token")
