"""Classify's numbers from Marengo embeddings: the v1.2 semantics, computed by the gateway.

v1.3 has no classify endpoint, but it hands out what classify's numbers are made of:
a text embedding per prompt (`POST /embed-v2`) and the stored embedding of every
segment of a video (`GET /indexes/{id}/videos/{id}?embedding_option=...`). This module
turns those into exactly the fields a v1.2 classify page carries, applying the three
thresholds the way v1.2 applies them (upstream-contract.md; the emulator's
classifier.py copies the same rules), so that callers keep one contract:

* segment score: per embedding option, the best calibrated cosine over the class's
  prompts (the prompt that gave it is the clip's prompt);
* clips: segments scoring at least `min_clip_score` and above 0;
* class score: 0.7 x max segment score + 0.3 x mean of the best quarter of the
  segment scores, rounded to 2 decimals (the max alone would let one lucky segment
  list a video; the mean of all would punish long videos that are partly on topic);
* duration_ratio: length of the union of the clips / the video's duration
  (`system_metadata.duration`), 2 decimals;
* a class is listed when score >= min_video_score and duration_ratio >=
  min_duration_ratio; classes best first; a video with no listed class is left out;
* detailed_scores: max, best-quarter mean, and normalized = 100 x score / sum of the
  listed classes' scores (sums to 100 within a video, as v1.2's examples do).

Cosine similarity is not on classify's 0-100 scale; `Calibration` maps it there
(docs/design.md, "v1.3: calibration", gives the formula and why).

Option mapping (v1.3 folded `text_in_video` into `visual` and has no `conversation`):
visual -> visual embeddings, text_in_video -> visual embeddings, conversation ->
transcription embeddings. A class asking for both visual and text_in_video scores the
visual segments once, labelled `visual`.

Everything here is synchronous and pure; the matrix work is a handful of numpy calls
per video (one matmul per embedding option for all prompts of all classes at once),
so the backend can run it off the event loop in short pieces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.config import check_anchors, parse_anchors

Matrix = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]

#: Request option (v1.2 string) -> the v1.3 embedding option that stands for it.
EMBEDDING_OPTION: Mapping[str, str] = {
    "visual": "visual",
    "text_in_video": "visual",
    "conversation": "transcription",
}
#: When two requested options share one embedding option, the label its clips carry.
_LABEL_PREFERENCE = ("visual", "conversation", "text_in_video")

DEFAULT_MIN_VIDEO_SCORE = 75.0
DEFAULT_MIN_CLIP_SCORE = 65.0
DEFAULT_MIN_DURATION_RATIO = 0.5
MAX_WEIGHT = 0.7  # of the class score; the rest is the best quarter's mean


@dataclass(frozen=True)
class Calibration:
    """A monotone piecewise-linear map from cosine similarity to classify's 0-100 scale.

    `anchors` are (cosine, score) points with both coordinates increasing; below the
    first anchor the score is the first anchor's, above the last the last's. Why a
    piecewise-linear map and not a formula: the only thing known offline is where a
    few cosines should land (an unrelated pair near 0, a clip that "matches" at
    v1.2's default clip floor 65, a clear match near the video floor 75 and above);
    anchors say exactly that, can be read from a calibration study of real Marengo
    pairs, and are configured without code (CLASSIFY_GATEWAY_V13_CALIBRATION).
    """

    anchors: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        check_anchors(self.anchors)

    @classmethod
    def parse(cls, text: str) -> Calibration:
        """`"0.10:0,0.25:65,0.40:100"` -> anchors (the setting's form)."""
        return cls(parse_anchors(text))

    def __str__(self) -> str:
        return ",".join(f"{c:g}:{s:g}" for c, s in self.anchors)

    def scores(self, cosines: npt.NDArray[np.floating]) -> Scores:
        xs = np.fromiter((c for c, _ in self.anchors), dtype=np.float64)
        ys = np.fromiter((s for _, s in self.anchors), dtype=np.float64)
        out: Scores = np.interp(cosines, xs, ys)
        return out


@dataclass(frozen=True)
class Thresholds:
    """The request's filters with v1.2's defaults written out."""

    min_video_score: float = DEFAULT_MIN_VIDEO_SCORE
    min_clip_score: float = DEFAULT_MIN_CLIP_SCORE
    min_duration_ratio: float = DEFAULT_MIN_DURATION_RATIO

    @classmethod
    def of(cls, threshold: pb.Threshold) -> Thresholds:
        return cls(
            threshold.min_video_score
            if threshold.HasField("min_video_score")
            else DEFAULT_MIN_VIDEO_SCORE,
            threshold.min_clip_score
            if threshold.HasField("min_clip_score")
            else DEFAULT_MIN_CLIP_SCORE,
            threshold.min_duration_ratio
            if threshold.HasField("min_duration_ratio")
            else DEFAULT_MIN_DURATION_RATIO,
        )


@dataclass(frozen=True)
class ClassQuery:
    """One class: its name, its prompts (rows of the prompt matrix) and its options."""

    name: str
    prompt_rows: tuple[int, ...]
    options: tuple[str, ...]  # request option strings (visual, conversation, text_in_video)


@dataclass(frozen=True)
class Query:
    """What is scored: the classes, the distinct prompt texts, the filters and extras."""

    classes: tuple[ClassQuery, ...]
    prompts: tuple[str, ...]  # distinct texts; ClassQuery.prompt_rows index into them
    thresholds: Thresholds
    include_clips: bool
    show_detailed_score: bool

    @property
    def embedding_options(self) -> tuple[str, ...]:
        """The v1.3 embedding options the classes need, in a fixed order."""
        wanted = {EMBEDDING_OPTION[o] for c in self.classes for o in c.options}
        return tuple(sorted(wanted))


def query_of(request: pb.ClassifyRequest) -> Query:
    """The scoring question of a validated ClassifyRequest (v1.2 defaults applied)."""
    request_options = tuple(pb.SearchOption.Name(o) for o in request.options)
    prompts: dict[str, int] = {}
    classes = []
    for spec in request.classes:
        rows = tuple(prompts.setdefault(p, len(prompts)) for p in spec.prompts)
        names = tuple(pb.SearchOption.Name(o) for o in spec.options) or request_options
        options = tuple(n.removeprefix("SEARCH_OPTION_").lower() for n in names)
        classes.append(ClassQuery(spec.name, rows, options))
    return Query(
        tuple(classes),
        tuple(prompts),
        Thresholds.of(request.threshold),
        request.include_clips,
        request.show_detailed_score,
    )


@dataclass(frozen=True)
class Segments:
    """One embedding option of one video: segment bounds and unit-length rows."""

    starts: npt.NDArray[np.float64]
    ends: npt.NDArray[np.float64]
    vectors: Matrix  # (segments, dimension)


@dataclass(frozen=True)
class VideoVectors:
    """What one video contributes: its id, duration and segments per embedding option."""

    video_id: str
    duration: float
    options: Mapping[str, Segments]


def unit_rows(matrix: npt.ArrayLike) -> Matrix:
    """Rows scaled to length 1 (a zero row stays zero): cosine becomes a dot product."""
    m = np.asarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError("expected a matrix")
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Matrix = m / norms
    return out


@dataclass(frozen=True)
class _OptionScores:
    label_of: Mapping[int, str]  # class index -> clip option label for this embedding option
    best: Scores  # (classes, segments): best calibrated prompt score per class
    which: npt.NDArray[np.intp]  # (classes, segments): the prompt row that gave it
    segments: Segments


def _labels(query: Query, embedding_option: str) -> dict[int, str]:
    """Class index -> label of its clips from `embedding_option` (classes using it only)."""
    out: dict[int, str] = {}
    for i, cls in enumerate(query.classes):
        mapped = [o for o in cls.options if EMBEDDING_OPTION[o] == embedding_option]
        if mapped:
            out[i] = min(mapped, key=_LABEL_PREFERENCE.index)
    return out


def _option_scores(
    query: Query,
    prompts: Matrix,
    segments: Segments,
    labels: Mapping[int, str],
    calibration: Calibration,
) -> _OptionScores:
    n_classes, n_segments = len(query.classes), len(segments.starts)
    best = np.zeros((n_classes, n_segments), dtype=np.float64)
    which = np.zeros((n_classes, n_segments), dtype=np.intp)
    if n_segments:
        # One matmul for every prompt of every class, then calibration once.
        scores = calibration.scores(prompts @ segments.vectors.T)
        for i in labels:
            rows = np.asarray(query.classes[i].prompt_rows, dtype=np.intp)
            block = scores[rows]
            arg = block.argmax(axis=0)  # the first prompt wins a tie, as v1.2's loop does
            which[i] = rows[arg]
            best[i] = block[arg, np.arange(n_segments)]
    return _OptionScores(labels, best, which, segments)


def covered(spans: Sequence[tuple[float, float]]) -> float:
    """Total length of the union of intervals."""
    total = 0.0
    cur_start = cur_end = -math.inf
    for start, end in sorted(spans):
        if start > cur_end:
            if cur_end > cur_start:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        elif end > cur_end:
            cur_end = end
    if cur_end > cur_start:
        total += cur_end - cur_start
    return total


def score_video(
    query: Query,
    prompts: Matrix,
    video: VideoVectors,
    calibration: Calibration,
) -> tuple[float, pb.VideoClassification] | None:
    """The video's result (its best class score first, for ordering), or None when no
    class passes the thresholds. `prompts`: unit rows, one per `query.prompts`."""
    per_option = [
        _option_scores(query, prompts, video.options[opt], labels, calibration)
        for opt in query.embedding_options
        if opt in video.options and (labels := _labels(query, opt))
    ]
    th = query.thresholds
    listed: list[tuple[float, float, float, float, int]] = []
    for i in range(len(query.classes)):
        parts = [o.best[i] for o in per_option if i in o.label_of]
        if not parts:
            continue
        every = np.concatenate(parts)
        if every.size == 0:
            continue
        ordered = np.sort(every)[::-1]
        max_score = float(ordered[0])
        avg_score = float(ordered[: max(1, math.ceil(ordered.size / 4))].mean())
        score = round(MAX_WEIGHT * max_score + (1 - MAX_WEIGHT) * avg_score, 2)
        if score < th.min_video_score:
            continue
        ratio = _duration_ratio(per_option, i, th.min_clip_score, video.duration)
        if ratio < th.min_duration_ratio:
            continue
        listed.append((score, ratio, round(max_score, 2), round(avg_score, 2), i))
    if not listed:
        return None
    listed.sort(key=lambda item: -item[0])
    total = sum(item[0] for item in listed)
    result = pb.VideoClassification(video_id=video.video_id)
    for score, ratio, max_score, avg_score, i in listed:
        cls = result.classes.add(name=query.classes[i].name, score=score, duration_ratio=ratio)
        if query.include_clips:
            cls.clips.extend(_clips(query, per_option, i))
        if query.show_detailed_score:
            normalized = 100.0 * score / total if total > 0 else 100.0 / len(listed)
            cls.detailed_scores.max_score = max_score
            cls.detailed_scores.avg_score = avg_score
            cls.detailed_scores.normalized_score = normalized
    return listed[0][0], result


def _clip_mask(scores: Scores, min_clip_score: float) -> npt.NDArray[np.bool_]:
    mask: npt.NDArray[np.bool_] = (scores > 0.0) & (scores >= min_clip_score)
    return mask


def _duration_ratio(
    per_option: Sequence[_OptionScores], i: int, min_clip_score: float, duration: float
) -> float:
    if duration <= 0:
        return 0.0
    spans: list[tuple[float, float]] = []
    for o in per_option:
        if i in o.label_of:
            mask = _clip_mask(o.best[i], min_clip_score)
            spans.extend(
                zip(o.segments.starts[mask].tolist(), o.segments.ends[mask].tolist(), strict=True)
            )
    return round(min(covered(spans) / duration, 1.0), 2)


def _clips(query: Query, per_option: Sequence[_OptionScores], i: int) -> list[pb.Clip]:
    """The class's clips, best first, then by start (no thumbnail: v1.3 has none here)."""
    found: list[tuple[float, float, float, str, str]] = []
    min_clip = query.thresholds.min_clip_score
    for o in per_option:
        label = o.label_of.get(i)
        if label is None:
            continue
        for k in np.flatnonzero(_clip_mask(o.best[i], min_clip)).tolist():
            found.append(
                (
                    float(o.best[i, k]),
                    float(o.segments.starts[k]),
                    float(o.segments.ends[k]),
                    label,
                    query.prompts[int(o.which[i, k])],
                )
            )
    found.sort(key=lambda c: (-c[0], c[1]))
    return [
        pb.Clip(start=start, end=end, score=round(score, 2), option=label, prompt=prompt)
        for score, start, end, label, prompt in found
    ]


def rank(
    results: Sequence[tuple[float, int, pb.VideoClassification]],
) -> list[pb.VideoClassification]:
    """Videos by best class score, then by their position in the request or index."""
    return [r[2] for r in sorted(results, key=lambda r: (-r[0], r[1]))]
