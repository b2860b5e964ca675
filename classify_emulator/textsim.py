"""Deterministic relevance of a prompt to a video segment, from words and concepts.

Why this shape: the emulator must answer everyday wording the way a person
reads it ("people dancing" finds a ballet rehearsal and a salsa class, "a news
broadcast" finds the evening bulletin) with scores that are stable from run to
run, fast enough for benchmarks, and without an ML dependency or a download. So
meaning comes from a curated vocabulary (`vocabulary.toml`, loaded by
`lexicon`), and scoring is a small, explainable formula over it.

1. Analysis. A text becomes words (lowercased, stopwords out), each word or
   vocabulary phrase becomes a *feature*: a concept id ("@ballet") when the
   vocabulary knows it, else its stem. A corpus text's features are expanded
   with every broader concept (a ballet text is also "@dance"), so a general
   prompt matches specific texts.
2. Prompts. "X and Y", "X or Y", "X, Y" are alternatives (a category name like
   "Bars and Restaurants" means either); a prompt scores by its best
   alternative. Within one, generic words ("people", "someone") are dropped,
   modifiers ("tutorial", "highlights") weigh `MODIFIER_WEIGHT` (`ABSENT_FORM_WEIGHT`
   for a video that never shows, says or names that form: a dance battle's shots
   lack a lesson, and so does the whole video, so it is no "dance lesson"), words after a
   locative preposition ("in a kitchen", "with friends") weigh half (unless no
   topic comes before them: in "kids learning at school" the place is the topic),
   the words the vocabulary does not know weigh `UNKNOWN_WEIGHT` together beside
   a known topic (they are more likely wording than the subject: the vocabulary
   also knows the everyday topics the corpus lacks), and a concept implied by
   another one of the prompt ("food" in "cooking food") is dropped as redundant.
3. Per term, the segment's own credit `o` is 1 if the segment has the concept,
   else a partial credit when it names a broader concept (0.3, 0.15 one and
   two levels up) or a related one (the vocabulary's strength), but never from
   another term of the same alternative, which counts on its own.
   The video's title and filename are context: when they name the concept
   (`c` = 1), the term's credit rises to `o + (1 - o) · g · c`, where `g` is
   `CONTEXT_GAIN` on a segment that matches a topic of the prompt at least
   partly, and `CONTEXT_GAIN_OFF_TOPIC` otherwise (intros, sponsor reads): a
   wedding video's dance shots are wedding shots, its "like and subscribe"
   outro is not. For a modifier (what the title says of the video's form: a
   review, a tutorial) `g` is `CONTEXT_GAIN` also on a segment on the video's
   subject (`VideoContext.subject`: its topics covering a quarter of its
   shots): the kitchen-utensils review's cooking shots are review shots.
4. Score. token = Σ weight · credit / Σ weight (best alternative);
   sim = 0.85 · token + 0.15 · (share of the prompt's character trigrams in the
   segment: typos); score = calibrated(sim) · jitter, `CALIBRATION` a piecewise
   linear map and the jitter a deterministic hash of prompt and segment in
   [0.95, 1] so scores do not look quantized. A full match scores about 90 to 99,
   a match carried by the title 80 to 88, a topic missing a qualifier about 80,
   one of two topics or a broader/related-only match 25 to 60, unrelated text < 20.

Everything that depends only on the corpus is computed once, at load
(`TextFeatures`, `VideoContext`); per request only the prompt is analysed.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from classify_emulator import lexicon

_TOKEN = re.compile(r"[^\W_]+|[,;/&+|]")  # words (letters, digits, any script) and separators

_STOPWORDS_TEXT = """a an the and or but of to in on at for from by with without into onto
    over under up down out off is are was were be been being am it its it's this that these those
    there here then than so as if while when where who whom which what why how all any
    each every both few more most other some such no nor not only own same too very can
    will just don should now i me my we our you your he him his she her they them their
    let lets let's s t ll re ve d m o y get got go going gonna okay ok oh wow yes yeah
    about after before again against between through during above below one two
    inside outside near around beside behind across along among amongst amid amidst within
    beneath underneath upon via toward towards beyond throughout per"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORDS_TEXT.split())
COORDINATORS: frozenset[str] = frozenset({"and", "or", ",", ";", "/", "&", "+", "|"})
# Words after these qualify the head of a prompt ("preparing a meal | in a kitchen").
_LOCATIVES_TEXT = """in at on inside outside near around under over by beside behind across
    along with during into onto among amongst amid amidst within beneath underneath upon
    throughout through past toward towards up down"""
LOCATIVES: frozenset[str] = frozenset(_LOCATIVES_TEXT.split())
# Words whose object "A and B" can coordinate ("out for drinks and dinner").
PREPOSITIONS: frozenset[str] = LOCATIVES | frozenset({"for", "of", "to", "from", "about", "like"})

MODIFIER_WEIGHT = 0.4
UNKNOWN_WEIGHT = 0.4  # the words the vocabulary does not know, together, beside a known topic
LOCATIVE_FACTOR = 0.5
CONTEXT_GAIN = 0.8  # how far the title lifts a term of a segment that is on the prompt's topic
CONTEXT_GAIN_OFF_TOPIC = 0.25  # ... of a segment that is not (intros, sponsor reads)
SUBJECT_SHARE = 0.25  # a topic covering this share of a video's shots is its subject
ABSENT_FORM_WEIGHT = 1.0  # a prompt's modifier that nothing of the video shows, says or names
ACTION = "@action"  # the generic concept of everyday verbs (vocabulary.toml)
TOKEN_PART = 0.85  # the rest is the trigram part
# Calibration: similarity -> score, linear between these points. Chosen so that the
# upstream's default thresholds (clip 65, video 75) fall between "the prompt's topic
# with a qualifier missing" (sim ≈ 0.68 -> 80, listed) and "one of two topics
# matched, the other only broadly" (sim ≈ 0.58 -> 60, not a clip).
CALIBRATION: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.3, 25.0),
    (0.45, 45.0),
    (0.58, 60.0),
    (0.68, 80.0),
    (0.76, 87.0),
    (0.88, 95.0),
    (1.0, 100.0),
)

_SUFFIXES: tuple[str, ...] = ("ings", "ing", "ers", "er", "ies", "ied", "ed", "es", "s", "ly")


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """Strip one common English suffix and a final 'e'.

    Cached: a few thousand distinct words make up the corpus's many thousand, and
    every emulator process analyses the whole corpus at start-up.

    Crude on purpose (no Porter dependency): it only needs to make "dancers",
    "dancing" and "dance" meet, consistently for prompts, corpus and
    vocabulary alike; irregular forms are listed in the vocabulary.
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


def vocabulary() -> lexicon.Lexicon:
    return lexicon.load(stem)


def words(text: str) -> list[str]:
    """Lowercased alphanumeric words, stopwords removed."""
    return [w for w in _TOKEN.findall(text.lower()) if w[0].isalnum() and w not in STOPWORDS]


Unit = tuple[str, bool, tuple[str, ...]]  # feature, after a locative, the words' stems


def _analyse(text: str) -> list[list[Unit]]:
    """Alternatives of (feature, after-a-locative, stems) in text order, phrases first.

    "X for A and B" coordinates the objects of a preposition: an alternative that is a
    lone word after such an object shares what came before it ("where to go out for
    drinks and dinner" is also "where to go out for dinner", not "dinner"). So does
    "verb-ing A and B" when the verb opens the alternative, the objects of the verb
    ("planting flowers and vegetables" is also "planting vegetables", not "vegetables").
    Lists of nouns ("bars and restaurants", "a dog playing fetch and a cat") and other
    coordinations stay as they are.
    """
    lex = vocabulary()
    tokens = _TOKEN.findall(text.lower())
    stems = [stem(t) for t in tokens]
    alternatives: list[list[Unit]] = [[]]
    shared: list[list[Unit]] = [[]]  # per alternative: what a lone next one shares
    locative = False
    governed = False  # the next unit is the object of a preposition or of a verb
    last_governed = False  # the current alternative's last unit was
    i = 0

    def add(unit: Unit, verb: bool = False) -> None:
        nonlocal governed, last_governed
        alternatives[-1].append(unit)
        last_governed, governed = governed, verb

    def at(phrase: tuple[str, ...], k: int) -> bool:
        """Whether the phrase's words are at k: by stem, or exactly for an "=word"."""
        return len(tokens) - k >= len(phrase) and all(
            tokens[j] == p[1:] if p.startswith("=") else stems[j] == p
            for j, p in enumerate(phrase, start=k)
        )

    def own(k: int, n: int) -> tuple[str, ...]:
        return tuple(stems[j] for j in range(k, k + n) if tokens[j] not in STOPWORDS)

    while i < len(tokens):
        for phrase, concept in lex.phrases.get(stems[i], ()):
            if at(phrase, i):
                add((concept, locative, own(i, len(phrase))))
                end = i + len(phrase)
                # A phrase that starts inside this one and goes on past it counts too
                # ("where to go | out": a guide and a night out).
                k = i + 1
                while k < end:
                    for later, other in lex.phrases.get(stems[k], ()):
                        if k + len(later) > end and at(later, k):
                            add((other, locative, own(k, len(later))))
                            end = k + len(later)
                            break
                    k += 1
                i = end
                break
        else:
            token = tokens[i]
            i += 1
            if token in COORDINATORS:
                head = alternatives[-1][:-1] if last_governed else []
                alternatives.append([])
                shared.append(head)
                locative = governed = last_governed = False
            elif token in STOPWORDS or not token[0].isalnum():
                locative = locative or token in LOCATIVES
                governed = governed or token in PREPOSITIONS  # "for | the drinks" too
            else:
                concept = lex.concept_of_word(token, stems[i - 1])
                # A verb that opens the alternative ("planting flowers and vegetables"; not
                # "a dog playing fetch and a cat", where the dog and the cat are the list).
                verb = (
                    len(token) > 5
                    and token.endswith("ing")
                    and not any(lex.kind.get(f, "topic") == "topic" for f, _, _ in alternatives[-1])
                )
                add((concept or stems[i - 1], locative, (stems[i - 1],)), verb)
    return [
        [*head, *alt] if len(alt) == 1 and head else alt
        for alt, head in zip(alternatives, shared, strict=True)
    ]


def features(text: str) -> frozenset[str]:
    """A corpus text's features, expanded with every broader concept.

    The stems of every word are kept too, also those inside a vocabulary phrase,
    so that a prompt word the vocabulary does not know ("primary") still meets
    the same word in "primary school".
    """
    stems = (stem(w) for w in words(text))
    return vocabulary().expand(f for alt in _analyse(text) for f, _, _ in alt) | frozenset(stems)


def trigrams(text: str) -> frozenset[str]:
    """Character trigrams of each word, padded so that word starts count."""
    grams: set[str] = set()
    for w in words(text):
        padded = f" {w} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return frozenset(grams)


def normalize_phrase(text: str) -> str:
    """Lowercase words joined by single spaces, padded: for whole-phrase matching."""
    return " " + " ".join(t for t in _TOKEN.findall(text.lower()) if t[0].isalnum()) + " "


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
class VideoContext:
    """What a video as a whole says it is about.

    `features`: those of its title and filename. `subject`: its dominant topics,
    the topic concepts of the shots covering at least `SUBJECT_SHARE` of it (a
    wedding video's dance, a kitchen-utensils review's cooking): a shot on one of
    them shows what the video is about, so what the title says holds for it.
    `mentions`: every feature of its title and of all its texts (shots, lines,
    captions): a form (modifier) not among them is not the video's form.
    """

    features: frozenset[str]
    subject: frozenset[str] = frozenset()
    mentions: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        names: Iterable[str],
        shots: Iterable[tuple[float, TextFeatures]] = (),
        texts: Iterable[TextFeatures] = (),
    ) -> VideoContext:
        """From the title and filename, the (duration, text) of its shots, and all its texts."""
        lex = vocabulary()
        cover: dict[str, float] = {}
        total = 0.0
        for duration, text in shots:
            total += duration
            for f in text.features:
                if lex.kind.get(f) == "topic":
                    cover[f] = cover.get(f, 0.0) + duration
        subject = frozenset(f for f, d in cover.items() if total and d >= SUBJECT_SHARE * total)
        title = frozenset().union(*(features(n) for n in names))
        said = frozenset().union(*(t.features for t in texts))
        return cls(title, subject, title | said if said else frozenset())


@dataclass(frozen=True, slots=True)
class Term:
    """One feature of a prompt alternative, with what partially matches it."""

    feature: str
    weight: float
    topic: bool  # a topic (not a modifier): a partial match of it anchors the segment
    credits: tuple[tuple[str, float], ...]  # (feature, credit), best first: broader, related
    related: tuple[tuple[str, float], ...]  # (feature, credit), best first: related only


@dataclass(frozen=True, slots=True)
class Alternative:
    terms: tuple[Term, ...]
    total_weight: float


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt analysed once: alternatives of weighted terms, trigrams, phrase, jitter seed."""

    text: str
    alternatives: tuple[Alternative, ...]
    vocabulary: frozenset[str]  # every feature that gives any of its terms credit
    trigrams: frozenset[str]
    phrase: str
    seed: int

    def context_credits(self, context: VideoContext) -> Context:
        """How much the video's title and filename say each term (see `Context`)."""
        names = context.features
        credits = tuple(
            tuple(_credit(t.feature, t.related, names) for t in alt.terms)
            for alt in self.alternatives
        )
        mentions = context.mentions
        totals = tuple(
            alt.total_weight
            + sum(
                ABSENT_FORM_WEIGHT - t.weight
                for t in alt.terms
                if not t.topic and mentions and _credit(t.feature, t.related, mentions) == 0.0
            )
            for alt in self.alternatives
        )

        def baseline(form_gain: float) -> float:
            return max(
                (
                    sum(
                        t.weight * (CONTEXT_GAIN_OFF_TOPIC if t.topic else form_gain) * c
                        for t, c in zip(alt.terms, cs, strict=True)
                    )
                    / total
                    for alt, cs, total in zip(self.alternatives, credits, totals, strict=True)
                ),
                default=0.0,
            )

        return Context(
            credits,
            baseline(CONTEXT_GAIN_OFF_TOPIC),
            context.subject,
            baseline(CONTEXT_GAIN) if context.subject else 0.0,
            totals,
        )


@dataclass(frozen=True, slots=True)
class Context:
    """A prompt's credits from one video's title and filename, per alternative and term.

    1.0 when they name the concept (or a narrower one), the vocabulary's
    strength when they name a related one; a broader one does not count (a
    title about sport says nothing about tennis). `baseline` is the token part
    of a segment that matches nothing of the prompt itself, `subject_baseline`
    that of such a segment on the video's subject (`VideoContext.subject`).
    """

    credits: tuple[tuple[float, ...], ...]
    baseline: float
    subject: frozenset[str] = frozenset()
    subject_baseline: float = 0.0
    totals: tuple[float, ...] = ()  # per alternative: its weight, with absent forms weighed more


NO_CONTEXT = Context((), 0.0)


def _credit(feature: str, partial: tuple[tuple[str, float], ...], feats: frozenset[str]) -> float:
    if feature in feats:
        return 1.0
    for other, credit in partial:  # best first: the first present is the best
        if other in feats:
            return credit
    return 0.0


def _kind(lex: lexicon.Lexicon, feature: str) -> str:
    """A concept's kind; "unknown" for a plain stem (a word the vocabulary does not know)."""
    return lex.kind.get(feature, "topic") if feature.startswith("@") else "unknown"


def _alternative(units: list[Unit]) -> Alternative | None:
    lex = vocabulary()
    if units and all(lex.kind.get(f) == "generic" for f, _, _ in units):
        # A prompt of generic words only ("funny", "relaxing", "POV") asks for those very
        # words: a generic concept is a bag of unrelated words (funny, new, big; relaxing,
        # running, fighting), so matching the concept would match nearly every segment.
        units = [(s, loc, (s,)) for _, loc, own in units for s in own]
    elif any(lex.kind.get(f) == "modifier" and loc for f, loc, _ in units) and not any(
        _kind(lex, f) in ("topic", "unknown") for f, _, _ in units
    ):
        # A prompt with no topic, only verbs and a setting ("walking around a city"), asks
        # for its verbs too: without them it would be the setting alone, and every video
        # with a street in it would be "walking around a city".
        units = [
            unit
            for f, loc, own in units
            for unit in ([(s, loc, (s,)) for s in own] if f == ACTION else [(f, loc, own)])
        ]
    kinds = {feature: _kind(lex, feature) for feature, _, _ in units}
    # A word the vocabulary does not know is a topic only when nothing else is: beside a
    # known topic it is more likely wording ("checking", "outdoors") than the subject,
    # since the vocabulary also knows the topics the corpus lacks (knitting, baseball),
    # and such words together weigh like one ("a liquid changing color in a beaker").
    n_unknown = len({f for f, k in kinds.items() if k == "unknown"})
    known_topic = any(k == "topic" for k in kinds.values())
    unknown = UNKNOWN_WEIGHT / n_unknown if known_topic and n_unknown else 1.0
    # A place qualifies a head topic ("cooking | in a kitchen"); with no topic before
    # it ("kids learning | at school") the place is what the prompt is about.
    head = any(kinds[f] == "topic" and not loc for f, loc, _ in units)
    weights: dict[str, float] = {}
    for feature, locative, _ in units:
        base = {"topic": 1.0, "modifier": MODIFIER_WEIGHT, "generic": 0.0, "unknown": unknown}
        weight = base[kinds[feature]] * (LOCATIVE_FACTOR if locative and head else 1.0)
        weights[feature] = max(weights.get(feature, 0.0), weight)
    # Drop what another term implies: "food" is redundant next to "cooking".
    kept = [
        f
        for f in weights
        if weights[f] > 0
        and not any(g != f and f in lex.closure.get(g, ()) for g in weights if weights[g] > 0)
    ]
    if not kept:
        return None
    # A term gets no partial credit from another term of the same alternative: that one
    # counts on its own, so "political news" is half matched by a news report (news, and
    # politics only as news' relative would count twice), not nearly fully.
    own = set(kept)
    terms = tuple(
        Term(
            f,
            weights[f],
            kinds[f] != "modifier",
            tuple((g, c) for g, c in lex.partial.get(f, ()) if g not in own),
            tuple((g, c) for g, c in lex.related.get(f, ()) if g not in own),
        )
        for f in sorted(kept)
    )
    return Alternative(terms, sum(t.weight for t in terms))


def analyse_prompt(text: str) -> Prompt:
    """Analyse a prompt (pure: the same text always gives the same Prompt)."""
    lex = vocabulary()
    groups = [g for g in _analyse(text) if g]
    # An alternative without a topic of its own ("dance tutorial, beginner") qualifies
    # its neighbour rather than standing alone.
    merged: list[list[Unit]] = []

    def has_topic(units: list[Unit]) -> bool:
        return any(lex.kind.get(f, "topic") == "topic" for f, _, _ in units)

    for group in groups:
        if merged and not (has_topic(group) and has_topic(merged[-1])):
            merged[-1].extend(group)
        else:
            merged.append(list(group))
    alternatives = tuple(a for a in (_alternative(g) for g in merged) if a is not None)
    return Prompt(
        text=text,
        alternatives=alternatives,
        vocabulary=frozenset(
            f
            for alt in alternatives
            for t in alt.terms
            for f in (t.feature, *(other for other, _ in t.credits))
        ),
        trigrams=trigrams(text),
        phrase=normalize_phrase(text),
        seed=zlib.crc32(text.encode()),
    )


def semantic_score(
    prompt: Prompt, text: TextFeatures, salt: int, context: Context = NO_CONTEXT
) -> float:
    """Relevance of a prompt to one segment as a 0..100 score (unrounded).

    `context` is `prompt.context_credits(...)` for the segment's video.
    """
    feats = text.features
    on_subject = bool(context.subject) and not context.subject.isdisjoint(feats)
    if prompt.vocabulary.isdisjoint(feats):
        # Most segments: nothing of the prompt, only the title.
        best = context.subject_baseline if on_subject else context.baseline
    else:
        best = 0.0
        for n, alt in enumerate(prompt.alternatives):
            owns = [_credit(t.feature, t.credits, feats) for t in alt.terms]
            matched = 0.0
            anchored = False
            for t, own in zip(alt.terms, owns, strict=True):
                matched += t.weight * own
                anchored = anchored or (t.topic and own > 0.0)
            if context.credits:
                # The title lifts every term, fully only on a segment that is itself on
                # the prompt's topic; what it says of the video's form (a review, a
                # tutorial) also holds for every shot on the video's subject.
                for t, own, c in zip(alt.terms, owns, context.credits[n], strict=True):
                    full = anchored or (on_subject and not t.topic)
                    gain = CONTEXT_GAIN if full else CONTEXT_GAIN_OFF_TOPIC
                    matched += t.weight * (1.0 - own) * gain * c
            total = context.totals[n] if context.totals else alt.total_weight
            best = max(best, matched / total)
    grams = prompt.trigrams
    tri_part = len(grams & text.trigrams) / len(grams) if grams else 0.0
    sim = TOKEN_PART * best + (1.0 - TOKEN_PART) * tri_part
    if sim <= 0.0:
        return 0.0
    jitter = 0.95 + 0.05 * (((prompt.seed ^ salt) * 2654435761) % 1000) / 999.0
    return calibrated(sim) * jitter


def calibrated(sim: float) -> float:
    """The 0..100 score of a 0..1 similarity (piecewise linear, `CALIBRATION`)."""
    x0, y0 = CALIBRATION[0]
    for x1, y1 in CALIBRATION[1:]:
        if sim <= x1:
            return y0 + (y1 - y0) * (sim - x0) / (x1 - x0)
        x0, y0 = x1, y1
    return y0


def exact_score(prompt: Prompt, text: TextFeatures) -> float:
    """Whole-phrase match (conversation_option=exact_match): 80..100 if present, else 0.

    The score grows with how much of the line the phrase fills, so a line that
    is just the phrase scores highest.
    """
    phrase = prompt.phrase
    if len(phrase) <= 2 or phrase not in text.phrase:
        return 0.0
    return 80.0 + 20.0 * (len(phrase) - 2) / max(len(text.phrase) - 2, 1)
