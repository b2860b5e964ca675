"""Deterministic text similarity between a prompt and a piece of video text.

Why this shape: the emulator must give scores that behave like upstream's (a
dance video scores high for "Dance tutorial" and low for "Cooking tutorial",
scores are stable from run to run) without an ML dependency, and fast enough
for benchmarks. So a text becomes a set of *features* (word stems, or concept
ids from `lexicon.CONCEPTS` for words with a listed meaning) plus a set of
character trigrams. Similarity is how much of the prompt the text covers:

    token part   = IDF²-weighted share of the prompt's features present in the text
    trigram part = share of the prompt's trigrams present in the text (typos, inflections)
    sim          = 0.8 · token part + 0.2 · trigram part          (0..1)
    score        = 100 · (1 - (1 - sim)^1.6) · jitter             (0..100)

IDF is squared so that the distinctive word of a prompt outweighs a common
one, and modifier concepts ("tutorial", "group", see `lexicon.MODIFIERS`) weigh
less than topics, so that "Dance tutorial" is about dance first. The jitter (0.95..1.0, a hash
of prompt and segment) only makes scores look less quantized; it is
deterministic. Everything that depends only on the corpus is computed once, at
load (`TextFeatures`); per request only the prompt is analysed.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from classify_emulator.lexicon import CONCEPTS, MODIFIER_WEIGHT, MODIFIERS

_WORD = re.compile(r"[^\W_]+")  # letters and digits, any script

_STOPWORDS_TEXT = """a an the and or but of to in on at for from by with without into onto
    over under up down out off is are was were be been being am it its it's this that these those
    there here then than so as if while when where who whom which what why how all any
    each every both few more most other some such no nor not only own same too very can
    will just don should now i me my we our you your he him his she her they them their
    let lets let's s t ll re ve d m o y get got go going gonna okay ok oh wow yes yeah
    about after before again against between through during above below one two"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORDS_TEXT.split())

_SUFFIXES: tuple[str, ...] = ("ings", "ing", "ers", "er", "ies", "ied", "ed", "es", "s", "ly")


def stem(word: str) -> str:
    """Strip one common English suffix and a final 'e'.

    Crude on purpose (no Porter dependency): it only needs to make "dancers",
    "dancing" and "dance" meet, consistently for prompts and corpus alike.
    """
    if len(word) <= 3:
        return word
    for suffix in _SUFFIXES:
        if suffix == "s" and word.endswith(("ss", "us", "is")):
            break  # "class", "campus", "tennis"
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                base += "y"
            word = base
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # "running" -> "runn" -> "run"
    return word


def _build_concept_maps() -> tuple[dict[str, str], dict[str, str]]:
    by_exact: dict[str, str] = {}
    by_stem: dict[str, str] = {}
    for concept, words in CONCEPTS.items():
        for entry in words:
            if entry.startswith("="):
                by_exact[entry[1:]] = concept
            else:
                by_stem[stem(entry)] = concept
    return by_exact, by_stem


_CONCEPT_BY_EXACT, _CONCEPT_BY_STEM = _build_concept_maps()


def words(text: str) -> list[str]:
    """Lowercased alphanumeric words, stopwords removed."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def feature_of(word: str) -> str:
    """The matching unit of a word: its concept id ("@dance") or its stem."""
    concept = _CONCEPT_BY_EXACT.get(word)
    if concept is None:
        s = stem(word)
        concept = _CONCEPT_BY_STEM.get(s)
        if concept is None:
            return s
    return "@" + concept


def features(text: str) -> frozenset[str]:
    return frozenset(feature_of(w) for w in words(text))


def trigrams(text: str) -> frozenset[str]:
    """Character trigrams of each word, padded so that word starts count."""
    grams: set[str] = set()
    for w in words(text):
        padded = f" {w} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return frozenset(grams)


def normalize_phrase(text: str) -> str:
    """Lowercase words joined by single spaces, padded: for whole-phrase matching."""
    return " " + " ".join(_WORD.findall(text.lower())) + " "


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """What the scorer needs from one corpus text, computed once at load."""

    features: frozenset[str]
    trigrams: frozenset[str]
    phrase: str

    @classmethod
    def of(cls, text: str) -> TextFeatures:
        return cls(features(text), trigrams(text), normalize_phrase(text))


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt analysed once per request: weighted features and trigrams."""

    text: str
    weights: tuple[tuple[str, float], ...]
    total_weight: float
    trigrams: frozenset[str]
    phrase: str
    seed: int


class FeatureWeights:
    """IDF² weights of features over every text of the corpus."""

    def __init__(self, texts: Iterable[frozenset[str]]) -> None:
        df: dict[str, int] = {}
        n = 0
        for feats in texts:
            n += 1
            for f in feats:
                df[f] = df.get(f, 0) + 1
        self._weights = {
            f: (math.log((n + 1) / (c + 1)) + 1.0) ** 2
            * (MODIFIER_WEIGHT if f[1:] in MODIFIERS else 1.0)
            for f, c in df.items()
        }
        # A prompt word the corpus never uses cannot match; give it a middling weight
        # so that one unknown word lowers a score without zeroing it.
        self._unseen = 0.5 * max(self._weights.values(), default=1.0)

    def weight(self, feature: str) -> float:
        return self._weights.get(feature, self._unseen)

    def prompt(self, text: str) -> Prompt:
        feats = sorted(features(text))
        weights = tuple((f, self.weight(f)) for f in feats)
        return Prompt(
            text=text,
            weights=weights,
            total_weight=sum(w for _, w in weights),
            trigrams=trigrams(text),
            phrase=normalize_phrase(text),
            seed=zlib.crc32(text.encode()),
        )


def semantic_score(prompt: Prompt, text: TextFeatures, salt: int) -> float:
    """Similarity of a prompt to a text as a 0..100 score (unrounded)."""
    if prompt.total_weight <= 0.0:
        return 0.0
    feats = text.features
    matched = 0.0
    for f, w in prompt.weights:
        if f in feats:
            matched += w
    token_part = matched / prompt.total_weight
    grams = prompt.trigrams
    tri_part = len(grams & text.trigrams) / len(grams) if grams else 0.0
    sim = 0.8 * token_part + 0.2 * tri_part
    jitter = 0.95 + 0.05 * (((prompt.seed ^ salt) * 2654435761) % 1000) / 999.0
    return 100.0 * (1.0 - math.pow(1.0 - sim, 1.6)) * jitter


def exact_score(prompt: Prompt, text: TextFeatures) -> float:
    """Whole-phrase match (conversation_option=exact_match): 80..100 if present, else 0.

    The score grows with how much of the line the phrase fills, so a line that
    is just the phrase scores highest.
    """
    phrase = prompt.phrase
    if len(phrase) <= 2 or phrase not in text.phrase:
        return 0.0
    return 80.0 + 20.0 * (len(phrase) - 2) / max(len(text.phrase) - 2, 1)
