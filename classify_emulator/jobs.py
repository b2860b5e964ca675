"""A validated classification request, in the form the classifier uses.

It is immutable and hashable on purpose: the whole request is the key of the
classifier's result cache, so identical requests (benchmarks send many) are
classified once.
"""

from __future__ import annotations

from dataclasses import dataclass

OPTIONS: frozenset[str] = frozenset({"visual", "conversation", "text_in_video"})
CONVERSATION_OPTIONS: frozenset[str] = frozenset({"semantic", "exact_match"})

DEFAULT_PAGE_LIMIT = 10
MAX_PAGE_LIMIT = 50
MAX_PROMPTS = 100
MAX_TOTAL_DURATION_SECONDS = 10 * 3600


@dataclass(frozen=True, slots=True)
class Threshold:
    """Result filters, with upstream's documented defaults."""

    min_video_score: float = 75.0
    min_clip_score: float = 65.0
    min_duration_ratio: float = 0.5


@dataclass(frozen=True, slots=True)
class ClassSpec:
    """One class, with the per-class overrides already resolved."""

    name: str
    prompts: tuple[str, ...]
    options: tuple[str, ...]
    conversation_option: str


@dataclass(frozen=True, slots=True)
class ClassifyJob:
    """What to classify: for `/classify/bulk`, `video_ids` is the index's videos."""

    video_ids: tuple[str, ...]
    classes: tuple[ClassSpec, ...]
    threshold: Threshold = Threshold()
    page_limit: int = DEFAULT_PAGE_LIMIT
    include_clips: bool = False
    show_detailed_score: bool = False
