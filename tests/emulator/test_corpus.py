"""The shipped corpus: generated output is fresh, varied and shaped like upstream's."""

from __future__ import annotations

import re

from classify_emulator import make_corpus
from classify_emulator.corpus import DEFAULT_CORPUS_DIR, SOURCES, Corpus


def test_committed_data_matches_the_generator() -> None:
    for name, text in make_corpus.build().items():
        assert (DEFAULT_CORPUS_DIR / name).read_text() == text, (
            f"classify_emulator/data/{name} is stale: run python -m classify_emulator.make_corpus"
        )


def test_corpus_size_and_variety(corpus: Corpus) -> None:
    assert len(corpus.indexes) >= 3
    assert len(corpus.videos) >= 40
    topics = {spec.primary.split("/")[0] for spec in make_corpus.VIDEOS}  # "dance/ballet": dance
    assert {
        "dance",
        "cooking",
        "soccer",
        "news",
        "travel",
        "technology",
        "music",
        "nature",
    } <= topics
    for video in corpus.videos.values():
        assert re.fullmatch(r"[0-9a-f]{24}", video.id)
        assert re.fullmatch(r"[a-z0-9-]+\.mp4", video.resource["metadata"]["filename"])
        for source in SOURCES:
            segments = video.segments[source]
            assert segments, (video.id, source)
            for seg in segments:
                assert 0 <= seg.start < seg.end <= video.duration + 1e-6
                assert seg.text.strip()
        visual = video.segments["visual"]
        assert visual[0].start == 0 and abs(visual[-1].end - video.duration) < 1e-6
