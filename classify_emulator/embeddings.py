"""Marengo-3.0-shaped embeddings, built from the same relevance model as the v1.2 scores.

Why: the gateway's v1.3 backend computes classify's numbers as the cosine of a
prompt's text embedding (`POST /v1.3/embed-v2`) with a video's stored segment
embeddings (`GET /v1.3/indexes/{id}/videos/{id}?embedding_option=...`). For its
tests to mean something, the emulator's vectors must rank (video, prompt) pairs
the way its v1.2 classify scores do, be deterministic in every process, and
have cosines in a range that resembles a real text-to-video model (relevant
clearly above unrelated, never near 1). There is no neural model here, so the
vectors are built from the relevance model's own analysis (`textsim`):

* every feature (a vocabulary concept `@dance`, a word stem, a character
  trigram) has a fixed pseudo-random unit direction, derived from a hash of its
  name (SHAKE-256, not a PRNG whose stream could change between library
  versions); in 512 dimensions such directions are nearly orthogonal;
* a text (a prompt) is the weighted sum of its terms as `textsim.analyse_prompt`
  weighs them, each term leaning a little towards the concepts that give it
  partial credit (broader and related ones, with the vocabulary's credits),
  plus a small trigram part (typos), normalised;
* a segment is the sum of its text's features (`TextFeatures.features`), plus
  the video's title and filename features (`VideoContext`), each with more
  weight on a segment that is about it than on one that is not (as v1.2's
  title lift), plus a small per-segment noise, normalised;
* both share a common direction, as real embedding spaces are anisotropic: an
  unrelated pair is slightly positive, not zero.

Segments longer than `MAX_SEGMENT_SECONDS` are cut into equal pieces (Marengo
3.0 segments are 2 to 10 s), each piece with its own noise. The measured
distribution of cosines is in docs/emulator.md ("v1.3: the embedding model").
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from classify_emulator.corpus import Corpus, Segment, Video
from classify_emulator.textsim import (
    ABSENT_FORM_WEIGHT,
    CONTEXT_GAIN,
    CONTEXT_GAIN_OFF_TOPIC,
    MODIFIER_WEIGHT,
    analyse_prompt,
    features,
    vocabulary,
)

Vector = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]

DIMENSION = 512  # Marengo 3.0 (docs/emulator.md names the sources)
MODEL_NAME = "marengo3.0"
MAX_SEGMENT_SECONDS = 10.0
#: v1.3 embedding options and the corpus sources each is built from.
OPTIONS: tuple[str, ...] = ("visual", "audio", "transcription")
OPTION_SOURCES: dict[str, tuple[str, ...]] = {
    "visual": ("visual", "text_in_video"),
    "audio": ("visual",),  # the time grid of the shots; see `_audio_signal`
    "transcription": ("conversation",),
}

# Layout before the final rotation: a shared part where meaning lives, one common
# coordinate (anisotropy), and two private parts, one only texts use and one only
# segments use. The private parts give each vector its length budget without
# touching the dot product, so that the cosine is a fixed linear function of how
# much of the prompt a segment covers (v1.2's token score), not of how much else
# the segment shows.
SHARED = 448
COMMON_AXIS = SHARED
TEXT_PRIVATE = slice(SHARED + 1, SHARED + 33)
SEGMENT_PRIVATE = slice(SHARED + 33, DIMENSION)

# The shape of the space (docs/emulator.md has what they produce).
TEXT_SHARE = 0.85  # shared-part length of a text per unit of prompt weight
SEGMENT_SHARE = 0.9  # shared-part length of a segment with SEGMENT_FULL of features
SEGMENT_FULL = 4.0  # feature length above which a segment's own features dilute
TEXT_COMMON = 0.3
SEGMENT_COMMON = 0.3
STEM_WEIGHT = 0.6  # a plain word next to a vocabulary concept
TRIGRAM_WEIGHT = 0.08  # per shared character trigram (typos), relative to a concept
NOISE = 0.03  # a segment's own shared-part noise
# The title's weight on a segment that shares a concept with the title, and on one that
# does not (intros, sponsor reads): v1.2's title gains, so that both APIs read a title alike.
CONTEXT_ON_SUBJECT = CONTEXT_GAIN
CONTEXT_OFF_SUBJECT = CONTEXT_GAIN_OFF_TOPIC
AUDIO_TEXT_WEIGHT = 0.35  # how much of the shot an audio segment "hears"
# How far a prompt term leans towards each concept that gives it partial credit, per unit
# of that credit. Below 1 because a cosine adds the leans up where v1.2 takes the best
# one: a segment that has several of them (a dance shot is also "performing", near
# "music") would otherwise match a prompt about one of their siblings ("a live music
# concert") better than v1.2 lets it.
LEAN = 0.7
REFLECTIONS = 6  # Householder reflections that hide the layout
# v1.2 weighs a prompt's modifier more when nothing of the video shows, says or names it
# (`textsim.ABSENT_FORM_WEIGHT`). A prompt's vector cannot depend on the video, so the
# embedding turns it round: a prompt's modifiers weigh ABSENT_FORM_WEIGHT, and every
# segment of a video that does name one carries it at FORM_PRESENT, which gives a
# segment with the prompt's topic and not its form v1.2's share in both cases
# (1 / (1 + MODIFIER_WEIGHT) for a lone topic).
FORM_SCALE = ABSENT_FORM_WEIGHT / MODIFIER_WEIGHT
FORM_PRESENT = ((1.0 + ABSENT_FORM_WEIGHT) / (1.0 + MODIFIER_WEIGHT) - 1.0) / ABSENT_FORM_WEIGHT


def _hashed(name: str, size: int) -> Floats:
    """A fixed unit vector from a name: the same bytes in every process and version."""
    raw = np.frombuffer(hashlib.shake_256(name.encode()).digest(4 * size), dtype="<u4")
    v = raw.astype(np.float64) / 4294967296.0 - 0.5
    return v / np.linalg.norm(v)


@functools.cache
def _concepts() -> dict[str, Floats]:
    """Orthonormal directions for the vocabulary's concepts (they never blur together).

    Up to half the shared part; a vocabulary larger than that keeps hashed,
    nearly orthogonal directions for the rest.
    """
    names = sorted(vocabulary().kind)[: SHARED // 2]
    raw = np.stack([_hashed(n, SHARED) for n in names], axis=1)
    q, r = np.linalg.qr(raw)
    q *= np.sign(np.diag(r))  # the orthonormal vector nearest each name's own
    return {n: q[:, i].copy() for i, n in enumerate(names)}


@functools.cache
def _concept_basis() -> Floats:
    """The concepts' directions as the columns of one (SHARED, n) matrix."""
    return np.stack(list(_concepts().values()), axis=1)


@functools.lru_cache(maxsize=65536)
def direction(feature: str) -> Floats:
    """A feature's unit direction in the shared part (concepts: orthonormal).

    A plain word's (or trigram's) hashed direction is kept off the concepts' subspace, so
    that it never adds to or takes from a concept match by accident.
    """
    concept = _concepts().get(feature)
    if concept is not None:
        return concept
    v = _hashed(feature, SHARED)
    basis = _concept_basis()
    v = v - basis @ (basis.T @ v)
    return v / np.linalg.norm(v)


@functools.cache
def _reflections() -> tuple[Floats, ...]:
    return tuple(_hashed(f"\x00reflection:{i}", DIMENSION) for i in range(REFLECTIONS))


def _place(shared: Floats, common: float, private: slice, private_seed: str) -> Vector:
    """Assemble a unit vector: shared part, common coordinate, private filler; rotate."""
    v = np.zeros(DIMENSION, dtype=np.float64)
    v[:SHARED] = shared
    v[COMMON_AXIS] = common
    rest = 1.0 - float(shared @ shared) - common * common
    if rest > 0:
        size = private.stop - private.start
        v[private] = math.sqrt(rest) * _hashed(private_seed, size)
    v /= np.linalg.norm(v)
    for h in _reflections():
        v -= 2.0 * float(h @ v) * h
    return v.astype(np.float32)


def _sum(weighted: Iterable[tuple[str, float]]) -> Floats:
    out = np.zeros(SHARED, dtype=np.float64)
    for name, weight in weighted:
        if weight:
            out += weight * direction(name)
    return out


def _trigrams(grams: Iterable[str]) -> Floats:
    return _sum((" tri:" + g, TRIGRAM_WEIGHT) for g in grams)


def _leans(credits: tuple[tuple[str, float], ...]) -> list[tuple[str, float]]:
    """A term's lean towards the concepts that give it partial credit (see `LEAN`).

    A segment that has a concept also has every broader one (`TextFeatures` are
    expanded), so a lean towards a concept and one towards a concept broader than it
    would both count on it: a computer shot matched "programming" by computer's credit
    plus technology's, where v1.2 takes the better of the two. So each concept leans by
    what its credit adds to the best credit of the broader concepts it implies: on a
    chain of them, a segment's dot product is then its best credit, as in v1.2.
    """
    closure = vocabulary().closure
    given = dict(credits)
    out: list[tuple[str, float]] = []
    for f, c in credits:
        implied = max((given[g] for g in closure.get(f, ()) if g != f and g in given), default=0.0)
        if c > implied:
            out.append((f, LEAN * (c - implied)))
    return out


@functools.lru_cache(maxsize=8192)
def text_embedding(text: str) -> Vector:
    """A text query's embedding (`embed-v2`, input_type text): deterministic, unit length.

    Each alternative of the prompt ("bars and restaurants" has two) contributes
    its terms divided by its total weight, so a segment that covers a whole
    alternative gets the same dot product whatever the prompt's length, as
    v1.2 scores a prompt by the share of it a segment covers.
    """
    prompt = analyse_prompt(text)
    shared = np.zeros(SHARED, dtype=np.float64)
    for alt in prompt.alternatives:
        part = np.zeros(SHARED, dtype=np.float64)
        total = 0.0
        for term in alt.terms:
            weight = term.weight * (1.0 if term.topic else FORM_SCALE)
            part += weight * _sum(((term.feature, 1.0), *_leans(term.credits)))
            total += weight
        shared += part / total
    if not prompt.alternatives:  # nothing but stopwords: the words themselves
        shared = _sum((f, 1.0) for f in features(text))
    grams = prompt.trigrams
    shared += _trigrams(grams) / max(len(grams), 1) * 6.0
    shared *= TEXT_SHARE
    limit = 1.0 - TEXT_COMMON**2 - 0.01
    length = float(np.linalg.norm(shared))
    if length * length > limit:
        shared *= math.sqrt(limit) / length
    out = _place(shared, TEXT_COMMON, TEXT_PRIVATE, "\x00text:" + text)
    out.flags.writeable = False
    return out


def _feature_weights(feats: Iterable[str], scale: float = 1.0) -> dict[str, float]:
    return {f: scale * (1.0 if f.startswith("@") else STEM_WEIGHT) for f in feats}


def _segment_signal(segment: Segment, video: Video) -> Floats:
    """The segment's own features plus its video's title, weighted as v1.2's title gains.

    A title concept weighs `CONTEXT_ON_SUBJECT` on a segment that is itself about it at
    least partly (has it, or a concept that gives it partial credit: a wedding video's
    dance shots are wedding shots) and `CONTEXT_OFF_SUBJECT` on one that is not (the
    dance-and-dinner compilation's cooking shots are not dance shots); what the title
    says of the video's form (a modifier: review, tutorial) weighs `CONTEXT_ON_SUBJECT`
    on every shot on the video's subject, as v1.2 spreads it. The title's plain words
    follow its concepts: `CONTEXT_ON_SUBJECT` when the segment shares any of them.
    """
    own = segment.analysed.features
    weights = _feature_weights(own)
    context = video.context
    title = context.features
    lex = vocabulary()
    shares = any(f.startswith("@") and f in title for f in own)
    on_subject = not context.subject.isdisjoint(own)
    for f in title - own:
        if not f.startswith("@"):
            near = shares
        elif lex.kind.get(f) == "modifier":
            near = on_subject or any(g in own for g, _ in lex.partial.get(f, ()))
        else:
            near = any(g in own for g, _ in lex.partial.get(f, ()))
        gain = CONTEXT_ON_SUBJECT if near else CONTEXT_OFF_SUBJECT
        weight = gain * (1.0 if f.startswith("@") else STEM_WEIGHT)
        weights[f] = weights.get(f, 0.0) + weight
    _unlean(weights, own)
    return _sum(weights.items()) + _trigrams(segment.analysed.trigrams)


def _unlean(weights: dict[str, float], own: frozenset[str]) -> None:
    """Undo what a title concept adds, by its relation, to a related concept of the shot.

    A prompt term leans towards its related concepts (`_leans`), so a shot that has a
    concept, and carries a related one from its video's title, would match a prompt about
    the first by its own weight plus the title concept's lean, where v1.2 lifts a term by
    its title only as far as the shot lacks it (a youth soccer drill's push ups, under a
    title about sport, matched "a workout" above the workout video's own shots). Each
    such pair is reweighed so that a prompt about either gets v1.2's credit: the larger
    of its own weight and the lean from the other.
    """
    related = vocabulary().related
    for f in sorted(w for w in weights if w.startswith("@") and w in own):
        for g, strength in related.get(f, ()):
            if g in own or g not in weights:
                continue
            k = LEAN * strength
            wf, wg = weights[f], weights[g]
            tf, tg = max(wf, k * wg), max(wg, k * wf)
            weights[f] = max(0.0, (tf - k * tg) / (1.0 - k * k))
            weights[g] = max(0.0, (tg - k * tf) / (1.0 - k * k))


def _form_signal(segment: Segment, video: Video, signal: Floats) -> Floats:
    """The forms (modifiers) the video names somewhere and the segment does not carry yet.

    Each at `FORM_PRESENT`, less what the segment's signal already has of it (the title's
    form spread over the video's subject). Kept apart from the segment's own signal when
    that is scaled, so that naming a form somewhere does not dilute the shot's own content.
    """
    lex = vocabulary()
    out = np.zeros(SHARED, dtype=np.float64)
    for f in video.context.mentions - segment.analysed.features:
        if lex.kind.get(f) == "modifier":
            has = float(signal @ direction(f))
            if has < FORM_PRESENT:
                out += (FORM_PRESENT - has) * direction(f)
    return out


def _audio_signal(segment: Segment, video: Video) -> Floats:
    """What the soundtrack of a shot says: mostly the video's subject, a little of the shot.

    The corpus has no sound; an emulator choice (docs/emulator.md).
    """
    weights = _feature_weights(video.context.features)
    for f, w in _feature_weights(segment.analysed.features, AUDIO_TEXT_WEIGHT).items():
        weights[f] = weights.get(f, 0.0) + w
    return _sum(weights.items())


def _segment_vector(signal: Floats, seed: str, forms: Floats | None = None) -> Vector:
    """Scale so that a segment's own extra features do not dilute it (up to SEGMENT_FULL)."""
    length = float(np.linalg.norm(signal))
    if forms is not None:
        signal = signal + forms
    shared = signal * (SEGMENT_SHARE / max(length, SEGMENT_FULL))
    shared = shared + NOISE * _hashed("\x00noise:" + seed, SHARED)
    limit = 1.0 - SEGMENT_COMMON**2 - 0.01
    size = float(np.linalg.norm(shared))
    if size * size > limit:
        shared *= math.sqrt(limit) / size
    return _place(shared, SEGMENT_COMMON, SEGMENT_PRIVATE, "\x00segment:" + seed)


def pieces(start: float, end: float) -> list[tuple[float, float]]:
    """A segment cut into equal pieces of at most MAX_SEGMENT_SECONDS."""
    n = max(1, math.ceil((end - start) / MAX_SEGMENT_SECONDS - 1e-9))
    step = (end - start) / n
    return [(start + i * step, end if i == n - 1 else start + (i + 1) * step) for i in range(n)]


@dataclass(frozen=True, slots=True)
class OptionEmbeddings:
    """One option's segments of one video, in time order: bounds and a (n, 512) matrix.

    `sources[i]` numbers the corpus segment row i was cut from (search merges the
    pieces of one shot or line back into one clip).
    """

    option: str
    starts: tuple[float, ...]
    ends: tuple[float, ...]
    sources: tuple[int, ...]
    matrix: Vector  # float32, rows of unit length


@dataclass(frozen=True, slots=True)
class VideoEmbeddings:
    video_id: str
    options: dict[str, OptionEmbeddings]


def _option(video: Video, option: str) -> OptionEmbeddings:
    rows: list[tuple[float, float, int, Vector]] = []
    origin = 0
    for source in OPTION_SOURCES[option]:
        for n, seg in enumerate(video.segments[source]):
            if option == "audio":
                signal, forms = _audio_signal(seg, video), None
            else:
                signal = _segment_signal(seg, video)
                forms = _form_signal(seg, video, signal)
            for k, (start, end) in enumerate(pieces(seg.start, seg.end)):
                seed = f"{video.id}:{option}:{source}:{n}:{k}"
                rows.append((start, end, origin, _segment_vector(signal, seed, forms)))
            origin += 1
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    matrix = np.vstack([r[3] for r in rows]) if rows else np.zeros((0, DIMENSION), dtype=np.float32)
    matrix.flags.writeable = False
    return OptionEmbeddings(
        option,
        tuple(r[0] for r in rows),
        tuple(r[1] for r in rows),
        tuple(r[2] for r in rows),
        matrix,
    )


class EmbeddingSpace:
    """Segment embeddings of a corpus, computed on first use per video and kept."""

    def __init__(self, corpus: Corpus) -> None:
        self._corpus = corpus
        self._videos: dict[str, VideoEmbeddings] = {}
        self._lock = threading.Lock()

    def video(self, video_id: str) -> VideoEmbeddings:
        cached = self._videos.get(video_id)
        if cached is not None:
            return cached
        video = self._corpus.videos[video_id]
        built = VideoEmbeddings(video_id, {o: _option(video, o) for o in OPTIONS})
        with self._lock:
            return self._videos.setdefault(video_id, built)
