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
    signed_urls: bool = False,
) -> dict[str, Any]:
    # The real API's thumbnail URLs are signed S3 URLs; `signed_urls` adds a signature
    # of the same length, which is most of a page's bytes.
    signature = "?X-Amz-Signature=" + "3a7eacdd" * 8 if signed_urls else ""
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
                        "thumbnail_url": f"https://thumbs.example.com/v{v}/c{c}/{j}.jpg{signature}",
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


def large_page(seed: int = 0) -> dict[str, Any]:
    """10 videos x 5 classes x 5 clips with detailed scores and signed URLs: about 60 KB."""
    return make_page(10, 5, 5, seed=seed, signed_urls=True)


def translation_page() -> dict[str, Any]:
    """The page of goal 7: 10 videos x 5 classes x 5 clips, with detailed scores."""
    return make_page(10, 5, 5, next_token="next-token", prev_token="prev-token")


def small_video(i: int, clips: int = 1) -> dict[str, Any]:
    """One video, one class, `clips` equal clips: a small, valid upstream video."""
    return {
        "video_id": f"v{i:05d}",
        "classes": [
            {
                "name": "Dance",
                "score": 81.25,
                "duration_ratio": 0.5,
                "clips": [
                    {"start": 1.5, "end": 4.0, "score": 77.0, "option": "visual", "prompt": "dance"}
                ]
                * clips,
                "detailed_scores": {
                    "max_score": 80.0,
                    "avg_score": 70.0,
                    "normalized_score": 100.0,
                },
            }
        ],
    }


def small_page(first: int, n: int = 2) -> dict[str, Any]:
    return {
        "data": [small_video(i) for i in range(first, first + n)],
        "page_info": {
            "limit_per_page": n,
            "total_results": 6,
            "page_expired_at": "2030-01-01T00:00:00Z",
        },
    }


SMALL_PAGES = [small_page(0), small_page(2), small_page(4)]  # a 3-page stream, 2 videos a page
