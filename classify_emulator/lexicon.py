"""The concept vocabulary (`vocabulary.toml`): the emulator's stand-in for understanding.

Upstream embeds prompts and video segments with a neural model, so "people
dancing" matches "a ballerina spins a pirouette". The emulator has no model;
instead a curated vocabulary, kept as data, says which words and phrases name
the same thing (a *concept*), which concepts are kinds of broader ones (ballet
is dancing, a derby is a soccer match is sport), and which are merely related
(politics and news). This module loads and checks that file once and answers
the lookups `textsim` needs; it holds no scoring rules itself.

File format (one TOML table per concept, keyed by its id):

    [ballet]
    terms = ["ballet", "ballerina", "pirouette", "ballet dancer"]
    broader = ["dance"]                 # optional: a ballet text is also a dance text
    related = { music = 0.3 }           # optional: partial credit, both directions
    kind = "topic"                      # optional: topic (default) | modifier | generic

Terms: a single word matches every word with the same stem (`textsim.stem`:
"dancers", "dancing", "dance"); a word written with a leading "=" matches only
that exact word ("=breaking", so "breaks" is not news); several words are a
phrase, matched word by word on stems (exactly, for a word written "=word"),
stopwords included ("first dance", "buzzer beater"), and a phrase wins over the
single words it contains ("hot dog" is food, not a dog). A term may belong to one
concept only; the loader refuses ambiguity instead of guessing.

Kinds: *topic* concepts name what a video is about and weigh fully in a
prompt; *modifier* concepts qualify a topic ("tutorial", "highlights",
"group") and weigh less; *generic* words ("people", "someone", "video") carry
no topic and are dropped from a prompt that has anything else.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_WORD = re.compile(r"[^\W_]+")  # letters and digits, any script, as textsim tokenizes
VOCABULARY_FILE = Path(__file__).resolve().parent / "vocabulary.toml"

KINDS: frozenset[str] = frozenset({"topic", "modifier", "generic"})
# Credit a prompt concept gets from a text that only names a broader concept
# ("ballet" vs. a text about dancing), by distance up the hierarchy.
PARENT_CREDITS: tuple[float, ...] = (0.3, 0.15)


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Lookup tables built from the vocabulary. Feature ids of concepts start with "@"."""

    exact: dict[str, str]  # surface word -> "@concept"
    by_stem: dict[str, str]  # stem -> "@concept"
    phrases: dict[str, tuple[tuple[tuple[str, ...], str], ...]]  # first stem -> (stems, id)
    kind: dict[str, str]  # "@concept" -> kind
    closure: dict[str, frozenset[str]]  # "@concept" -> itself and every broader concept
    partial: dict[str, tuple[tuple[str, float], ...]]  # "@concept" -> partial credits
    related: dict[str, tuple[tuple[str, float], ...]]  # "@concept" -> related concepts only

    def concept_of_word(self, word: str, stem: str) -> str | None:
        return self.exact.get(word) or self.by_stem.get(stem)

    def expand(self, features: Iterable[str]) -> frozenset[str]:
        """Features plus every broader concept of the concepts among them."""
        out: set[str] = set()
        for f in features:
            out |= self.closure.get(f, frozenset((f,)))
        return frozenset(out)


def _words(term: str) -> list[str]:
    return _WORD.findall(term.lower())


def build(raw: dict[str, Any], stem: Callable[[str], str]) -> Lexicon:
    """Validate the parsed vocabulary and build the lookup tables.

    Raises ValueError naming the concept and term on any inconsistency: an
    unknown kind or broader/related concept, a term claimed twice, a cycle.
    """
    concepts: dict[str, dict[str, Any]] = {}
    for cid, body in raw.items():
        if not isinstance(body, dict):
            raise ValueError(f"vocabulary: {cid!r} is not a table")
        unknown = set(body) - {"terms", "broader", "related", "kind"}
        if unknown:
            raise ValueError(f"vocabulary: {cid}: unknown keys {sorted(unknown)}")
        if body.get("kind", "topic") not in KINDS:
            raise ValueError(f"vocabulary: {cid}: kind must be one of {sorted(KINDS)}")
        concepts[cid] = body

    exact: dict[str, str] = {}
    by_stem: dict[str, str] = {}
    phrase_list: dict[tuple[str, ...], str] = {}
    claimed: dict[str, str] = {}

    def claim(key: str, table: dict[Any, str], k: Any, cid: str, term: str) -> None:
        owner = table.get(k)
        if owner is not None and owner != "@" + cid:
            raise ValueError(
                f"vocabulary: term {term!r} of {cid} is already a term of {claimed[key]}"
            )
        table[k] = "@" + cid
        claimed[key] = cid

    for cid, body in concepts.items():
        terms = body.get("terms", [])
        if not terms or not all(isinstance(t, str) and t.strip() for t in terms):
            raise ValueError(f"vocabulary: {cid}: terms must be a non-empty list of strings")
        for term in terms:
            if term.startswith("="):
                word = term[1:].lower()
                claim("=" + word, exact, word, cid, term)
                continue
            words = _words(term)
            if not words:
                raise ValueError(f"vocabulary: {cid}: term {term!r} has no words")
            if len(words) == 1:
                claim("~" + stem(words[0]), by_stem, stem(words[0]), cid, term)
            else:
                # "=word" inside a phrase matches that exact word ("mountain =climbers", the
                # exercise, is not "a mountain climb").
                exact_words = {w[1:].lower() for w in term.split() if w.startswith("=")}
                stems = tuple("=" + w if w in exact_words else stem(w) for w in words)
                claim(" ".join(stems), phrase_list, stems, cid, term)

    for cid, body in concepts.items():
        for other in [*body.get("broader", []), *body.get("related", {})]:
            if other not in concepts:
                raise ValueError(f"vocabulary: {cid} names unknown concept {other!r}")
        for other, strength in body.get("related", {}).items():
            if not isinstance(strength, int | float) or not 0 < strength < 1:
                raise ValueError(f"vocabulary: {cid}: related {other} must be in (0, 1)")

    parents = {cid: tuple(body.get("broader", [])) for cid, body in concepts.items()}

    def ancestors(cid: str, path: tuple[str, ...] = ()) -> dict[str, int]:
        """Every broader concept with its distance (shortest path)."""
        if cid in path:
            raise ValueError(f"vocabulary: broader cycle {' -> '.join((*path, cid))}")
        out: dict[str, int] = {cid: 0}
        for p in parents[cid]:
            for a, d in ancestors(p, (*path, cid)).items():
                if d + 1 < out.get(a, 1 << 30):
                    out[a] = d + 1
        return out

    distances = {cid: ancestors(cid) for cid in concepts}
    closure = {"@" + cid: frozenset("@" + a for a in d) for cid, d in distances.items()}

    related: dict[str, dict[str, float]] = {cid: {} for cid in concepts}
    for cid, body in concepts.items():
        for other, strength in body.get("related", {}).items():
            related[cid][other] = max(related[cid].get(other, 0.0), float(strength))
            related[other][cid] = max(related[other].get(cid, 0.0), float(strength))

    def best_first(credits: dict[str, float]) -> tuple[tuple[str, float], ...]:
        return tuple(
            sorted((("@" + k, v) for k, v in credits.items()), key=lambda kv: (-kv[1], kv[0]))
        )

    partial: dict[str, tuple[tuple[str, float], ...]] = {}
    for cid in concepts:
        credits: dict[str, float] = {}
        for a, d in distances[cid].items():
            if 1 <= d <= len(PARENT_CREDITS):
                credits[a] = max(credits.get(a, 0.0), PARENT_CREDITS[d - 1])
        for other, strength in related[cid].items():
            credits[other] = max(credits.get(other, 0.0), strength)
        partial["@" + cid] = best_first(credits)

    phrases: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for stems, concept in phrase_list.items():
        phrases.setdefault(stem(stems[0][1:]) if stems[0].startswith("=") else stems[0], []).append(
            (stems, concept)
        )
    return Lexicon(
        exact=exact,
        by_stem=by_stem,
        phrases={k: tuple(sorted(v, key=lambda p: -len(p[0]))) for k, v in phrases.items()},
        kind={"@" + cid: body.get("kind", "topic") for cid, body in concepts.items()},
        closure=closure,
        partial=partial,
        related={"@" + cid: best_first(r) for cid, r in related.items()},
    )


@functools.cache
def load(stem: Callable[[str], str], path: Path = VOCABULARY_FILE) -> Lexicon:
    """The vocabulary, parsed and checked once per process (per stemmer and file)."""
    with path.open("rb") as f:
        return build(tomllib.load(f), stem)
