"""All mutable state of one emulator app instance, in one place.

One `EmulatorState` per `create_app()` call: two apps in one process (tests
do that) never share faults, journal, tokens or quotas. The corpus is
immutable and loaded once per directory per process, because parsing and
analysing it is the slowest part of starting an app.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from classify_emulator.classifier import Classifier
from classify_emulator.config import EmulatorConfig
from classify_emulator.corpus import Corpus
from classify_emulator.embeddings import EmbeddingSpace
from classify_emulator.faults import FaultRegistry
from classify_emulator.journal import Journal
from classify_emulator.pages import PageStore
from classify_emulator.quotas import QuotaWindows
from classify_emulator.search import SearchStore


@functools.lru_cache(maxsize=8)
def load_corpus(directory: Path | None) -> Corpus:
    return Corpus.load(directory)


@functools.lru_cache(maxsize=8)
def embedding_space(corpus: Corpus) -> EmbeddingSpace:
    """One per corpus and process: segment vectors are computed once, on first use."""
    return EmbeddingSpace(corpus)


class EmulatorState:
    def __init__(self, config: EmulatorConfig) -> None:
        self.base_config = config
        self.config = config  # base plus runtime overrides
        self._overrides: dict[str, Any] = {}
        self._keys = frozenset(config.api_keys)
        self.loaded = load_corpus(config.corpus.resolve() if config.corpus else None)
        # Which index each video is in may change at runtime (`move_video`); what the
        # videos are does not, so scoring and embeddings keep the loaded corpus.
        self.corpus = self.loaded
        self.classifier = Classifier(self.loaded)
        self.pages = PageStore()
        self.embeddings = embedding_space(self.loaded)
        self.searches = SearchStore()
        self.faults = FaultRegistry()
        self.journal = Journal(config.journal_limit)
        self.rate = QuotaWindows()

    def key_accepted(self, key: str) -> bool:
        """Configured keys only; with none configured, any non-empty key."""
        if not key:
            return False
        return key in self._keys if self._keys else True

    def an_accepted_key(self) -> str:
        return self.base_config.api_keys[0] if self.base_config.api_keys else "emulator-test-key"

    def override(self, overrides: dict[str, Any]) -> EmulatorConfig:
        """Apply runtime overrides (validated by the caller). Quota changes restart windows."""
        merged = {**self._overrides, **overrides}
        config = self.base_config.with_overrides(merged)  # raises ValueError when out of range
        if any(name.startswith("rate_") for name in overrides):
            self.rate.clear()
        self._overrides = merged
        self.config = config
        return config

    def move_video(self, video_id: str, index_id: str) -> str:
        """Put a video in another index (out of its own); return the index it was in.
        KeyError names an unknown video or index."""
        was = self.corpus.videos[video_id].index_id
        self.corpus = self.corpus.with_video_in(video_id, index_id)
        return was

    def reset(self) -> None:
        """Back to a fresh start: no faults, journal, tokens, results, quotas or overrides,
        every video in the index it was loaded in."""
        self.faults.clear()
        self.journal.clear()
        self.pages.clear()
        self.searches.clear()
        self.classifier.clear()
        self.rate.clear()
        self._overrides = {}
        self.config = self.base_config
        self.corpus = self.loaded
