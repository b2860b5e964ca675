"""v1.2 scores against v1.3 cosines, over the relevance cases: the figures docs/emulator.md quotes.

For every prompt of `relevance_cases.toml` and every demo video, two numbers
for the same question "how much is this video about this prompt":

* v1.2: the emulator's classify score of a one-prompt class, options visual,
  conversation and text_in_video (the same segments as v1.3's visual +
  transcription);
* v1.3: the cosine of the prompt's text embedding with each of the video's
  visual and transcription segment embeddings, aggregated the way classify
  aggregates segment scores (0.7 · max + 0.3 · mean of the best quarter),
  which is what a v1.3 classify backend would compute.

Run `python -m tests.emulator.embedding_parity [CASES.toml]` to print the report
(default: relevance_cases.toml).
"""

from __future__ import annotations

import math
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classify_emulator.classifier import Classifier
from classify_emulator.corpus import Corpus
from classify_emulator.embeddings import EmbeddingSpace, text_embedding
from classify_emulator.jobs import ClassSpec
from classify_emulator.state import load_corpus

CASES_FILE = Path(__file__).with_name("relevance_cases.toml")
V12_OPTIONS = ("visual", "conversation", "text_in_video")
V13_OPTIONS = ("visual", "transcription")
# v1.2 multiplies every segment score by a hash of (prompt, segment) in [0.95, 1]:
# two videos within that band are ordered by the hash, not by relevance.
JITTER_BAND = 0.95


@dataclass(frozen=True)
class Pair:
    prompt: str
    video: str  # title
    v12: float  # class score
    v13: float  # aggregated cosine
    max_cosine: float
    kind: str  # "expected" | "either" | "unrelated" (from the relevance cases)


def aggregate(values: list[float]) -> float:
    """classify's aggregation: 0.7 · max + 0.3 · mean of the best quarter."""
    ordered = sorted(values, reverse=True)
    top = ordered[: max(1, math.ceil(len(ordered) / 4))]
    return 0.7 * ordered[0] + 0.3 * sum(top) / len(top)


def pairs(corpus: Corpus | None = None, cases_file: Path = CASES_FILE) -> list[Pair]:
    corpus = corpus or load_corpus(None)
    classifier = Classifier(corpus)
    space = EmbeddingSpace(corpus)
    cases = tomllib.loads(cases_file.read_text())["class"]
    out: list[Pair] = []
    for case in cases:
        for prompt in case["prompts"]:
            spec = ClassSpec(prompt, (prompt,), V12_OPTIONS, "semantic")
            q = text_embedding(prompt)
            for video in corpus.videos.values():
                title = video.resource["metadata"]["video_title"]
                v12 = classifier._score_class(video, spec, 65.0)[0]
                emb = space.video(video.id)
                cosines = np.concatenate([emb.options[o].matrix @ q for o in V13_OPTIONS])
                kind = (
                    "expected"
                    if title in case["expected"]
                    else "either"
                    if title in case["either"]
                    else "unrelated"
                )
                out.append(
                    Pair(
                        prompt,
                        title,
                        v12,
                        aggregate(cosines.tolist()),
                        float(cosines.max()),
                        kind,
                    )
                )
    return out


def _ranks(values: np.ndarray) -> np.ndarray:
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    return float(np.corrcoef(_ranks(np.array(a)), _ranks(np.array(b)))[0, 1])


def concordance(found: list[Pair], gap: float) -> float:
    """Share of pairs of (prompt, video) pairs, v1.2 scores `gap` apart, that v1.3 orders alike."""
    v12 = np.array([p.v12 for p in found])
    v13 = np.array([p.v13 for p in found])
    apart = (v12[:, None] - v12[None, :]) >= gap
    agree = (v13[:, None] - v13[None, :]) > 0
    return float(agree[apart].mean())


@dataclass(frozen=True)
class Top:
    prompt: str
    v12_top: str
    v13_top: str
    v12_best: float
    v12_of_v13_top: float  # the v1.2 score of v1.3's top video


def tops(found: list[Pair]) -> list[Top]:
    """Per prompt that lists a video under v1.2's default threshold (75): both top videos."""
    out: list[Top] = []
    for prompt in dict.fromkeys(p.prompt for p in found):
        mine = [p for p in found if p.prompt == prompt]
        best12 = max(mine, key=lambda p: p.v12)
        best13 = max(mine, key=lambda p: p.v13)
        if best12.v12 >= 75.0:
            out.append(Top(prompt, best12.video, best13.video, best12.v12, best13.v12))
    return out


def percentiles(values: list[float]) -> str:
    marks = np.percentile(np.array(values), [0, 5, 25, 50, 75, 95, 100])
    return " ".join(f"{m:.3f}" for m in marks)


def main() -> None:
    found = pairs(cases_file=Path(sys.argv[1]) if len(sys.argv) > 1 else CASES_FILE)
    print(f"{len(found)} (prompt, video) pairs")
    print("cosine distribution (per pair, best segment), min p5 p25 median p75 p95 max:")
    for kind in ("expected", "either", "unrelated"):
        values = [p.max_cosine for p in found if p.kind == kind]
        print(f"  {kind:10} n={len(values):5}  {percentiles(values)}")
    print("aggregated cosine (0.7 max + 0.3 best-quarter mean) by v1.2 score band:")
    for low, high in ((0, 25), (25, 50), (50, 75), (75, 90), (90, 101)):
        values = [p.v13 for p in found if low <= p.v12 < high]
        print(f"  v1.2 [{low:3}, {high:3}) n={len(values):5}  {percentiles(values)}")
    for gap in (10, 20, 30):
        print(f"concordance, v1.2 scores >= {gap} apart: {concordance(found, gap):.4f}")
    shared = [p for p in found if p.v12 >= 25.0]
    rho = spearman([p.v12 for p in shared], [p.v13 for p in shared])
    print(f"Spearman over the {len(shared)} pairs with a v1.2 score >= 25: {rho:.3f}")
    per_prompt = tops(found)
    same = sum(t.v12_top == t.v13_top for t in per_prompt)
    print(f"top video identical for {same} of {len(per_prompt)} prompts; the others:")
    for t in per_prompt:
        if t.v12_top != t.v13_top:
            print(
                f"  {t.prompt!r}: v1.2 {t.v12_top} ({t.v12_best:.1f}),"
                f" v1.3 {t.v13_top} (v1.2 score {t.v12_of_v13_top:.1f})"
            )


if __name__ == "__main__":
    main()
