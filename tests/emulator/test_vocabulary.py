"""The concept vocabulary: the shipped file is consistent, and the loader refuses ambiguity."""

from __future__ import annotations

from typing import Any

import pytest

from classify_emulator.lexicon import build
from classify_emulator.textsim import stem, vocabulary


def test_shipped_vocabulary_loads_with_its_hierarchy() -> None:
    lex = vocabulary()
    assert len(lex.kind) >= 90
    assert {"@ballet", "@dance", "@performing"} <= lex.closure["@ballet"]
    assert "@sport" in lex.closure["@soccer"]
    assert lex.kind["@people"] == "generic" and lex.kind["@lesson"] == "modifier"
    # Related links hold both ways, and partial credits are best first.
    assert ("@news", 0.4) in lex.related["@politics"]
    assert ("@politics", 0.4) in lex.related["@news"]
    for credits in lex.partial.values():
        assert [c for _, c in credits] == sorted((c for _, c in credits), reverse=True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"a": {"terms": ["dance"]}, "b": {"terms": ["dancers"]}}, "already a term of a"),
        ({"a": {"terms": ["=news"]}, "b": {"terms": ["=news"]}}, "already a term of a"),
        ({"a": {"terms": ["hot dog"]}, "b": {"terms": ["hot dogs"]}}, "already a term of a"),
        ({"a": {"terms": ["x"], "broader": ["nope"]}}, "unknown concept 'nope'"),
        ({"a": {"terms": ["x"], "related": {"nope": 0.5}}}, "unknown concept 'nope'"),
        ({"a": {"terms": ["x"], "related": {"a": 1.5}}}, "must be in (0, 1)"),
        ({"a": {"terms": ["x"], "kind": "verb"}}, "kind must be one of"),
        ({"a": {"terms": []}}, "non-empty list"),
        ({"a": {"terms": ["x"], "weight": 2}}, "unknown keys ['weight']"),
        (
            {"a": {"terms": ["x"], "broader": ["b"]}, "b": {"terms": ["y"], "broader": ["a"]}},
            "broader cycle",
        ),
    ],
)
def test_loader_refuses_an_inconsistent_vocabulary(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="vocabulary: ") as caught:
        build(raw, stem)
    assert message in str(caught.value)


def test_a_small_vocabulary_builds_its_tables() -> None:
    lex = build(
        {
            "dance": {"terms": ["dance", "=moonwalk", "first dance"]},
            "ballet": {"terms": ["ballet"], "broader": ["dance"], "related": {"music": 0.3}},
            "music": {"terms": ["music"], "kind": "modifier"},
        },
        stem,
    )
    assert lex.by_stem[stem("dancers")] == "@dance"
    assert lex.exact == {"moonwalk": "@dance"}
    assert lex.phrases[stem("first")] == (((stem("first"), stem("dance")), "@dance"),)
    assert lex.closure["@ballet"] == {"@ballet", "@dance"}
    assert lex.partial["@ballet"] == (("@dance", 0.3), ("@music", 0.3))
    assert lex.kind["@music"] == "modifier"


def test_an_exact_word_in_a_phrase_does_not_match_its_stem() -> None:
    """The exercise "mountain climbers" is not "a mountain climb", though the stems agree."""
    from classify_emulator.textsim import analyse_prompt

    def topics(text: str) -> set[str]:
        return {t.feature for a in analyse_prompt(text).alternatives for t in a.terms}

    assert "@fitness" in topics("doing mountain climbers")
    assert "@fitness" not in topics("a mountain climb")
    assert "@hiking" in topics("a mountain climb")
