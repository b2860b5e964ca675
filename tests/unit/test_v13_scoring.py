"""The v1.3 backend's classify numbers: v1.2's rules applied to calibrated cosines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.v1_3.scoring import (
    Calibration,
    Segments,
    VideoVectors,
    covered,
    query_of,
    rank,
    score_video,
    unit_rows,
)

DIM = 8
IDENTITY = Calibration(((0.0, 0.0), (1.0, 100.0)))  # score = 100 x cosine (>= 0)


def axis(i: int, scale: float = 1.0) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = scale
    return v


def mixed(i: int, j: int, cos: float) -> np.ndarray:
    """A unit vector whose cosine with axis(i) is `cos` (the rest along axis j)."""
    return axis(i, cos) + axis(j, math.sqrt(1 - cos * cos))


def video(
    rows: list[np.ndarray],
    seconds: float = 10.0,
    option: str = "visual",
    video_id: str = "v1",
    duration: float | None = None,
) -> VideoVectors:
    n = len(rows)
    segs = Segments(
        np.arange(n, dtype=np.float64) * seconds,
        np.arange(1, n + 1, dtype=np.float64) * seconds,
        unit_rows(np.stack(rows)),
    )
    return VideoVectors(video_id, n * seconds if duration is None else duration, {option: segs})


def request(**kw: object) -> pb.ClassifyRequest:
    base = {
        "video_ids": ["v1"],
        "options": [pb.SEARCH_OPTION_VISUAL],
        "classes": [pb.ClassDefinition(name="dance", prompts=["people dancing"])],
        "include_clips": True,
        "show_detailed_score": True,
    }
    base.update(kw)
    return pb.ClassifyRequest(**base)  # type: ignore[arg-type]


def prompts_of(*vectors: np.ndarray) -> np.ndarray:
    return unit_rows(np.stack(vectors))


def test_calibration_interpolates_and_clamps() -> None:
    cal = Calibration.parse("0.1:0, 0.3:65, 0.5:100")
    got = cal.scores(np.array([-0.5, 0.1, 0.2, 0.3, 0.4, 0.9]))
    assert got.tolist() == pytest.approx([0, 0, 32.5, 65, 82.5, 100])
    assert str(cal) == "0.1:0,0.3:65,0.5:100"


@pytest.mark.parametrize("text", ["0.1:0", "0.3:0,0.1:50", "0.1:50,0.3:10", "0.1:0,2:100", "x"])
def test_calibration_refuses_what_is_not_a_monotone_map(text: str) -> None:
    with pytest.raises(ValueError):
        Calibration.parse(text)


def test_a_video_on_topic_for_most_of_its_length_is_listed_with_v12_numbers() -> None:
    # 6 of 10 segments match at cosine 0.9 (score 90), 4 are unrelated (score 0).
    rows = [mixed(0, 1, 0.9)] * 6 + [axis(2)] * 4
    got = score_video(query_of(request()), prompts_of(axis(0)), video(rows), IDENTITY)
    assert got is not None
    best, result = got
    cls = result.classes[0]
    # 0.7 x max + 0.3 x mean of the best quarter (ceil(10 / 4) = 3 segments).
    assert cls.score == pytest.approx(90.0) and best == cls.score
    assert cls.duration_ratio == 0.6
    assert [(c.start, c.end, c.option, c.prompt) for c in cls.clips][:2] == [
        (0.0, 10.0, "visual", "people dancing"),
        (10.0, 20.0, "visual", "people dancing"),
    ]
    assert len(cls.clips) == 6 and all(c.score == pytest.approx(90.0) for c in cls.clips)
    assert not cls.clips[0].thumbnail_url
    assert cls.detailed_scores.max_score == pytest.approx(90.0)
    assert cls.detailed_scores.normalized_score == pytest.approx(100.0)


def test_each_threshold_filters_as_v12_does() -> None:
    rows = [mixed(0, 1, 0.9)] * 4 + [mixed(0, 1, 0.6)] * 6
    q = query_of(request())
    # Clips need 65: only 4 of 10 segments are clips, ratio 0.4 < 0.5 -> not listed.
    assert score_video(q, prompts_of(axis(0)), video(rows), IDENTITY) is None
    low_ratio = query_of(request(threshold=pb.Threshold(min_duration_ratio=0.4)))
    got = score_video(low_ratio, prompts_of(axis(0)), video(rows), IDENTITY)
    assert got is not None and got[1].classes[0].duration_ratio == 0.4
    low_clip = query_of(request(threshold=pb.Threshold(min_clip_score=60)))
    got = score_video(low_clip, prompts_of(axis(0)), video(rows), IDENTITY)
    assert got is not None and got[1].classes[0].duration_ratio == 1.0
    high_video = query_of(request(threshold=pb.Threshold(min_video_score=95, min_clip_score=60)))
    assert score_video(high_video, prompts_of(axis(0)), video(rows), IDENTITY) is None


def test_the_clip_names_the_prompt_that_matched_it_best() -> None:
    q = query_of(request(classes=[pb.ClassDefinition(name="x", prompts=["a", "b"])]))
    rows = [mixed(0, 2, 0.8), mixed(1, 2, 0.95)]
    got = score_video(q, prompts_of(axis(0), axis(1)), video(rows), IDENTITY)
    assert got is not None
    assert [(c.start, c.prompt) for c in got[1].classes[0].clips] == [(10.0, "b"), (0.0, "a")]


def test_classes_best_first_and_normalized_scores_sum_to_100() -> None:
    q = query_of(
        request(
            classes=[
                pb.ClassDefinition(name="weak", prompts=["a"]),
                pb.ClassDefinition(name="strong", prompts=["b"]),
            ],
            threshold=pb.Threshold(min_video_score=50, min_clip_score=50),
        )
    )
    a, b = axis(0), axis(1)
    rows = [(0.7 * a + 0.9 * b), (0.7 * a + 0.9 * b)]
    got = score_video(q, prompts_of(a, b), video(rows), IDENTITY)
    assert got is not None
    names = [c.name for c in got[1].classes]
    assert names == ["strong", "weak"]
    assert sum(c.detailed_scores.normalized_score for c in got[1].classes) == pytest.approx(100)


def test_option_mapping_text_in_video_is_visual_and_conversation_is_transcription() -> None:
    q = query_of(
        request(
            options=[
                pb.SEARCH_OPTION_TEXT_IN_VIDEO,
                pb.SEARCH_OPTION_VISUAL,
                pb.SEARCH_OPTION_CONVERSATION,
            ]
        )
    )
    assert q.embedding_options == ("transcription", "visual")
    vis = video([mixed(0, 1, 0.9)] * 2)
    talk = video([mixed(0, 1, 0.8)], seconds=20.0, option="transcription")
    both = VideoVectors("v1", 20.0, {**vis.options, **talk.options})
    got = score_video(q, prompts_of(axis(0)), both, IDENTITY)
    assert got is not None
    clips = got[1].classes[0].clips
    # visual and text_in_video share the visual segments: counted once, labelled visual.
    assert sorted((c.option, c.start) for c in clips) == [
        ("conversation", 0.0),
        ("visual", 0.0),
        ("visual", 10.0),
    ]
    only_text = query_of(request(options=[pb.SEARCH_OPTION_TEXT_IN_VIDEO]))
    got = score_video(only_text, prompts_of(axis(0)), both, IDENTITY)
    assert got is not None and {c.option for c in got[1].classes[0].clips} == {"text_in_video"}


def test_a_video_without_the_option_it_is_asked_for_is_not_listed() -> None:
    q = query_of(request(options=[pb.SEARCH_OPTION_CONVERSATION]))
    assert score_video(q, prompts_of(axis(0)), video([axis(0)] * 3), IDENTITY) is None


def test_duration_ratio_uses_the_videos_duration_and_the_union_of_clips() -> None:
    assert covered([(0, 10), (5, 12), (20, 30)]) == 22
    q, p = query_of(request()), prompts_of(axis(0))
    rows = [axis(0)] * 6  # 60 s of matching segments
    got = score_video(q, p, video(rows, duration=100.0), IDENTITY)
    assert got is not None and got[1].classes[0].duration_ratio == 0.6
    assert score_video(q, p, video(rows, duration=200.0), IDENTITY) is None  # 0.3 < 0.5


def test_rank_orders_by_best_score_then_position() -> None:
    a, b, c = (pb.VideoClassification(video_id=x) for x in "abc")
    assert [v.video_id for v in rank([(80.0, 2, c), (90.0, 1, b), (80.0, 0, a)])] == ["b", "a", "c"]
