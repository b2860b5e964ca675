"""Turns a ClassifyJob (a parsed request) into the ordered, filtered per-video results.

The model (see docs/emulator.md, "Scoring model"):

* segment score: for each requested source of a video, each segment gets the
  best score over the class's prompts (`textsim`); conversation with
  `exact_match` uses whole-phrase matching instead.
* clips: segments scoring at least `min_clip_score` (and above 0: a segment
  with no similarity at all is never a clip).
* class score: 0.7 · max segment score + 0.3 · mean of the best quarter of the
  segment scores (independent of the thresholds), rounded to 2 decimals.
* duration_ratio: length of the union of the clips / video duration (2 decimals).
* a class is listed when score ≥ min_video_score and duration_ratio ≥
  min_duration_ratio; classes highest score first; videos without a listed
  class are left out; videos by best class score, then request order.
* detailed_scores: max and best-quarter mean (2 decimals) and normalized_score
  = 100 · score / sum of the listed classes' scores (not rounded, sums to 100).

Two caches keep per-request work small: segment scores per (prompt, source,
mode, video), and whole results per request (the request is hashable).
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from typing import Any

from classify_emulator.corpus import Corpus, Segment, Video
from classify_emulator.jobs import ClassifyJob, ClassSpec
from classify_emulator.textsim import Prompt, analyse_prompt, exact_score, semantic_score

Clip = tuple[float, Segment, str, str]  # score, segment, option, prompt


class Classifier:
    def __init__(self, corpus: Corpus, *, result_cache_size: int = 512) -> None:
        self._corpus = corpus
        self._prompt = functools.lru_cache(maxsize=8192)(analyse_prompt)
        self._segment_scores = functools.lru_cache(maxsize=131072)(self._compute_segment_scores)
        self._results: OrderedDict[ClassifyJob, list[dict[str, Any]]] = OrderedDict()
        self._result_cache_size = result_cache_size
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget cached results (admin reset); segment scores stay valid forever."""
        with self._lock:
            self._results.clear()

    def classify(self, request: ClassifyJob) -> list[dict[str, Any]]:
        """The full result list (every page), as JSON-ready dicts. Do not mutate it."""
        with self._lock:
            cached = self._results.get(request)
            if cached is not None:
                self._results.move_to_end(request)
                return cached
        data = self._classify(request)
        with self._lock:
            self._results[request] = data
            if len(self._results) > self._result_cache_size:
                self._results.popitem(last=False)
        return data

    def _compute_segment_scores(
        self, prompt_text: str, source: str, mode: str, video_id: str
    ) -> tuple[float, ...]:
        prompt: Prompt = self._prompt(prompt_text)
        video = self._corpus.videos[video_id]
        segments = video.segments[source]
        if mode == "exact_match":
            return tuple(exact_score(prompt, seg.analysed) for seg in segments)
        context = prompt.context_credits(video.context)
        return tuple(semantic_score(prompt, seg.analysed, seg.salt, context) for seg in segments)

    def _classify(self, request: ClassifyJob) -> list[dict[str, Any]]:
        threshold = request.threshold
        rows: list[tuple[float, int, dict[str, Any]]] = []
        for order, video_id in enumerate(request.video_ids):
            video = self._corpus.videos[video_id]
            listed: list[tuple[float, float, float, float, ClassSpec, list[Clip]]] = []
            for spec in request.classes:
                score, ratio, max_score, avg_score, clips = self._score_class(
                    video, spec, threshold.min_clip_score
                )
                if score >= threshold.min_video_score and ratio >= threshold.min_duration_ratio:
                    listed.append((score, ratio, max_score, avg_score, spec, clips))
            if not listed:
                continue
            listed.sort(key=lambda item: -item[0])
            total = sum(item[0] for item in listed)
            classes: list[dict[str, Any]] = []
            for score, ratio, max_score, avg_score, spec, clips in listed:
                entry: dict[str, Any] = {"name": spec.name, "score": score, "duration_ratio": ratio}
                if request.include_clips:
                    entry["clips"] = [
                        {
                            "start": seg.start,
                            "end": seg.end,
                            "score": round(clip_score, 2),
                            "option": option,
                            "prompt": prompt,
                            "thumbnail_url": seg.thumbnail_url,
                        }
                        for clip_score, seg, option, prompt in clips
                    ]
                if request.show_detailed_score:
                    normalized = 100.0 * score / total if total > 0 else 100.0 / len(listed)
                    entry["detailed_scores"] = {
                        "max_score": max_score,
                        "avg_score": avg_score,
                        "normalized_score": normalized,
                    }
                classes.append(entry)
            rows.append((listed[0][0], order, {"video_id": video_id, "classes": classes}))
        rows.sort(key=lambda row: (-row[0], row[1]))
        return [row[2] for row in rows]

    def _score_class(
        self, video: Video, spec: ClassSpec, min_clip_score: float
    ) -> tuple[float, float, float, float, list[Clip]]:
        """score, duration_ratio, max_score, avg_score (rounded) and the clips, best first."""
        all_scores: list[float] = []
        clips: list[Clip] = []
        prompts = spec.prompts
        for option in spec.options:
            segments = video.segments[option]
            if not segments:
                continue
            mode = spec.conversation_option if option == "conversation" else "semantic"
            per_prompt = [self._segment_scores(p, option, mode, video.id) for p in prompts]
            for i, seg in enumerate(segments):
                best_j = 0
                best = per_prompt[0][i]
                for j in range(1, len(per_prompt)):
                    s = per_prompt[j][i]
                    if s > best:
                        best, best_j = s, j
                all_scores.append(best)
                if best > 0.0 and best >= min_clip_score:  # no similarity: never a clip
                    clips.append((best, seg, option, prompts[best_j]))
        if not all_scores:
            return 0.0, 0.0, 0.0, 0.0, []
        all_scores.sort(reverse=True)
        max_score = all_scores[0]
        top = all_scores[: max(1, math.ceil(len(all_scores) / 4))]
        avg_score = sum(top) / len(top)
        score = round(0.7 * max_score + 0.3 * avg_score, 2)
        clips.sort(key=lambda c: (-c[0], c[1].start))
        ratio = round(min(_covered(clips) / video.duration, 1.0), 2) if video.duration else 0.0
        return score, ratio, round(max_score, 2), round(avg_score, 2), clips


def _covered(clips: list[Clip]) -> float:
    """Total length of the union of the clips' intervals."""
    if not clips:
        return 0.0
    spans = sorted((c[1].start, c[1].end) for c in clips)
    total = 0.0
    cur_start, cur_end = spans[0]
    for start, end in spans[1:]:
        if start > cur_end:
            total += cur_end - cur_start
            cur_start, cur_end = start, end
        elif end > cur_end:
            cur_end = end
    return total + (cur_end - cur_start)
