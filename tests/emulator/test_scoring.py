"""The classification model: meaningful, deterministic scores and the result rules."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from classify_emulator.classifier import Classifier
from classify_emulator.corpus import Corpus
from classify_emulator.jobs import ClassifyJob, ClassSpec, Threshold
from classify_emulator.textsim import (
    MODIFIER_WEIGHT,
    UNKNOWN_WEIGHT,
    analyse_prompt,
    exact_score,
    features,
    stem,
)

from .conftest import COOK_CLASS, DANCE_CLASS, LOW_THRESHOLD, index_id, video_id

BOTH = ("visual", "conversation")
DANCE = ClassSpec("DanceTok", tuple(DANCE_CLASS["prompts"]), BOTH, "semantic")
COOK = ClassSpec("CookTok", tuple(COOK_CLASS["prompts"]), BOTH, "semantic")
LOW = Threshold(0, 0, 0.01)

DANCE_VIDEOS = (
    "street-dance-battle.mp4",
    "hip-hop-dance-tutorial.mp4",
    "ballet-rehearsal-backstage.mp4",
    "salsa-dance-group-class.mp4",
    "wedding-first-dance.mp4",
)
COOKING_VIDEOS = (
    "pasta-recipe-tutorial.mp4",
    "sourdough-bread-baking.mp4",
    "backyard-bbq-grilling-tips.mp4",
    "kitchen-utensils-review.mp4",
)


def scores(data: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {d["video_id"]: {c["name"]: c["score"] for c in d["classes"]} for d in data}


@pytest.fixture(scope="module")
def classifier(corpus: Corpus) -> Classifier:
    return Classifier(corpus)


def test_defaults_list_dance_videos_for_dance_and_not_cooking_videos(
    corpus: Corpus, classifier: Classifier
) -> None:
    ids = tuple(video_id(corpus, f) for f in DANCE_VIDEOS + COOKING_VIDEOS)
    data = classifier.classify(ClassifyJob(ids, (DANCE,)))
    listed = {d["video_id"] for d in data}
    assert listed == {video_id(corpus, f) for f in DANCE_VIDEOS}
    for d in data:
        (cls,) = d["classes"]
        assert cls["score"] >= 75 and cls["duration_ratio"] >= 0.5


@pytest.mark.parametrize(
    ("filename", "fits", "other"),
    [(f, "DanceTok", "CookTok") for f in DANCE_VIDEOS]
    + [(f, "CookTok", "DanceTok") for f in COOKING_VIDEOS],
)
def test_video_scores_higher_for_its_own_class(
    corpus: Corpus, classifier: Classifier, filename: str, fits: str, other: str
) -> None:
    vid = video_id(corpus, filename)
    (result,) = classifier.classify(ClassifyJob((vid,), (DANCE, COOK), LOW))
    s = scores([result])[vid]
    assert s[fits] > s[other] + 30


def test_scores_vary_and_are_deterministic(corpus: Corpus) -> None:
    request = ClassifyJob(tuple(corpus.videos), (DANCE, COOK), LOW, 50)
    first = Classifier(corpus).classify(request)
    second = Classifier(corpus).classify(request)
    assert first == second
    values = [c["score"] for d in first for c in d["classes"]]
    assert len(set(values)) > len(values) * 0.8  # not a handful of quantized values
    assert min(values) < 20 and max(values) > 90


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Soccer match", "soccer-match-highlights-derby.mp4"),
        ("Breaking news", "breaking-news-downtown-fire.mp4"),
        ("Film and Animation", "animated-short-film-fox.mp4"),
        ("Autos and Vehicles", "electric-suv-test-drive.mp4"),
        ("Amusement and Theme Parks", "theme-park-rollercoaster-pov.mp4"),
        ("Bars and Restaurants", "rooftop-bars-and-restaurants-guide.mp4"),
        ("Primary Education", "primary-school-science-experiment.mp4"),
        ("Wildlife documentary", "serengeti-lion-hunt-documentary.mp4"),
        ("Guitar lesson", "guitar-lesson-beginner-chords.mp4"),
    ],
)
def test_documented_taxonomy_prompts_find_their_videos(
    corpus: Corpus, classifier: Classifier, prompt: str, expected: str
) -> None:
    """The guide's taxonomy examples and other topics rank the fitting video in the top 3."""
    spec = ClassSpec(prompt, (prompt,), ("visual", "conversation", "text_in_video"), "semantic")
    data = classifier.classify(ClassifyJob(tuple(corpus.videos), (spec,), LOW, 50))
    top = [d["video_id"] for d in data[:3]]
    assert video_id(corpus, expected) in top


def test_classes_and_videos_are_ordered_by_score(corpus: Corpus, classifier: Classifier) -> None:
    data = classifier.classify(ClassifyJob(tuple(corpus.videos), (DANCE, COOK), LOW, 50))
    best = [d["classes"][0]["score"] for d in data]
    assert best == sorted(best, reverse=True)
    for d in data:
        class_scores = [c["score"] for c in d["classes"]]
        assert class_scores == sorted(class_scores, reverse=True)


def test_thresholds_filter_classes_and_videos(corpus: Corpus, classifier: Classifier) -> None:
    ids = tuple(corpus.videos)
    for threshold in (Threshold(60, 50, 0.3), Threshold(90, 80, 0.6), Threshold(0, 70, 0.8)):
        data = classifier.classify(
            ClassifyJob(ids, (DANCE, COOK), threshold, 50, include_clips=True)
        )
        for d in data:
            assert d["classes"], "videos with no listed class are omitted"
            for c in d["classes"]:
                assert c["score"] >= threshold.min_video_score
                assert c["duration_ratio"] >= threshold.min_duration_ratio
                assert all(clip["score"] >= threshold.min_clip_score for clip in c["clips"])
    strict = classifier.classify(ClassifyJob(ids, (DANCE, COOK), Threshold(100, 100, 1), 50))
    assert strict == []


def test_duration_ratio_is_the_union_of_clips(corpus: Corpus, classifier: Classifier) -> None:
    vid = video_id(corpus, "street-dance-battle.mp4")
    (d,) = classifier.classify(ClassifyJob((vid,), (DANCE,), include_clips=True))
    (cls,) = d["classes"]
    spans = sorted((c["start"], c["end"]) for c in cls["clips"])
    covered, end = 0.0, -1.0
    for s, e in spans:
        if s > end:
            covered += e - s
            end = e
        elif e > end:
            covered += e - end
            end = e
    assert cls["duration_ratio"] == round(covered / corpus.videos[vid].duration, 2)


def test_clips_and_detailed_scores_only_when_asked(corpus: Corpus, classifier: Classifier) -> None:
    vid = video_id(corpus, "hip-hop-dance-tutorial.mp4")
    for clips in (False, True):
        for detailed in (False, True):
            request = ClassifyJob((vid,), (DANCE, COOK), LOW, 10, clips, detailed)
            for cls in classifier.classify(request)[0]["classes"]:
                assert ("clips" in cls) is clips
                assert ("detailed_scores" in cls) is detailed


def test_clip_fields(corpus: Corpus, classifier: Classifier) -> None:
    vid = video_id(corpus, "street-dance-battle.mp4")
    (d,) = classifier.classify(ClassifyJob((vid,), (DANCE,), include_clips=True))
    clips = d["classes"][0]["clips"]
    assert [c["score"] for c in clips] == sorted((c["score"] for c in clips), reverse=True)
    for clip in clips:
        assert 0 <= clip["start"] < clip["end"] <= corpus.videos[vid].duration
        assert clip["option"] in ("visual", "conversation")
        assert clip["prompt"] in DANCE_CLASS["prompts"]
        assert clip["score"] == round(clip["score"], 2)
        assert clip["thumbnail_url"].startswith(
            f"https://thumbnails.emulator.local/{vid}/{int(clip['start']) + 1}.jpeg?"
        )
        assert "X-Amz-Expires=604799" in clip["thumbnail_url"]


def test_detailed_scores(corpus: Corpus, classifier: Classifier) -> None:
    ids = tuple(video_id(corpus, f) for f in DANCE_VIDEOS + COOKING_VIDEOS)
    data = classifier.classify(ClassifyJob(ids, (DANCE, COOK), LOW, 50, show_detailed_score=True))
    for d in data:
        total = sum(c["detailed_scores"]["normalized_score"] for c in d["classes"])
        assert math.isclose(total, 100.0, abs_tol=1e-9)
        for c in d["classes"]:
            ds = c["detailed_scores"]
            assert ds["avg_score"] <= ds["max_score"]
            assert ds["avg_score"] <= c["score"] <= ds["max_score"]
            assert ds["max_score"] == round(ds["max_score"], 2)
            assert ds["avg_score"] == round(ds["avg_score"], 2)
            assert c["score"] == round(c["score"], 2)
            assert c["duration_ratio"] == round(c["duration_ratio"], 2)


def test_per_class_options_override_the_request(corpus: Corpus, classifier: Classifier) -> None:
    vid = video_id(corpus, "street-dance-battle.mp4")
    only_text = ClassSpec("DanceText", DANCE.prompts, ("text_in_video",), "semantic")
    (d,) = classifier.classify(ClassifyJob((vid,), (DANCE, only_text), LOW, include_clips=True))
    by_name = {c["name"]: c for c in d["classes"]}
    assert {clip["option"] for clip in by_name["DanceText"]["clips"]} == {"text_in_video"}
    assert {clip["option"] for clip in by_name["DanceTok"]["clips"]} <= set(BOTH)


def test_exact_match_is_whole_phrase(corpus: Corpus, classifier: Classifier) -> None:
    vid = video_id(corpus, "hip-hop-dance-tutorial.mp4")
    lines = corpus.videos[vid].segments["conversation"]
    phrase = " ".join(lines[0].text.replace(",", "").split()[1:4])
    exact = ClassSpec("Exact", (phrase,), ("conversation",), "exact_match")
    (d,) = classifier.classify(ClassifyJob((vid,), (exact,), LOW, include_clips=True))
    clips = d["classes"][0]["clips"]
    expected = {seg.start for seg in lines if f" {phrase.lower()} " in seg.analysed.phrase}
    assert {clip["start"] for clip in clips} == expected
    assert all(clip["score"] >= 80 for clip in clips)
    scrambled = " ".join(reversed(phrase.split()))
    missing = ClassSpec("Exact", (scrambled,), ("conversation",), "exact_match")
    assert classifier.classify(ClassifyJob((vid,), (missing,), LOW)) == []
    semantic = ClassSpec("Semantic", (scrambled,), ("conversation",), "semantic")
    assert classifier.classify(ClassifyJob((vid,), (semantic,), LOW)) != []
    assert exact_score(analyse_prompt(scrambled), lines[0].analysed) == 0.0


def concepts(text: str) -> frozenset[str]:
    return frozenset(f for f in features(text) if f.startswith("@"))


def test_stemming_and_concepts() -> None:
    assert {stem(w) for w in ("dance", "dancer", "dancers", "dancing", "danced")} == {"danc"}
    assert stem("running") == stem("runner") == "run"
    assert stem("tennis") == "tennis"
    # A specific text is also about every broader concept: a crew of breakdancers is a
    # dance group, a ballerina is dancing, a derby is a sports match.
    assert concepts("Dance group") <= concepts("a crew of breakdancers")
    assert "@dance" in features("a ballerina spins a pirouette")
    assert "@sport" in features("soccer-match-highlights-derby")
    assert "@breaking_news" in features("breaking news") and "@news" not in features("breaks down")
    # A phrase wins over its words: a hot dog is food, not a dog.
    assert "@food" in features("a hot dog stand") and "@dog" not in features("a hot dog stand")


def terms(prompt: str) -> list[list[tuple[str, float]]]:
    return [
        [(t.feature, t.weight) for t in alt.terms] for alt in analyse_prompt(prompt).alternatives
    ]


def test_prompt_analysis() -> None:
    # Generic words go, implied concepts go ("food" is implied by "cooking").
    assert terms("someone cooking food") == [[("@cooking", 1.0)]]
    assert terms("people dancing") == terms("dancers") == [[("@dance", 1.0)]]
    # Qualifiers weigh less; words after a locative preposition weigh half.
    assert terms("Dance tutorial") == [[("@dance", 1.0), ("@lesson", MODIFIER_WEIGHT)]]
    assert dict(terms("preparing a meal in a kitchen")[0]) == {"@cooking": 1.0, "@kitchen": 0.5}
    # "X and Y" is either; an alternative without a topic qualifies its neighbour.
    assert terms("Bars and Restaurants") == [[("@bar", 1.0)], [("@dining", 1.0)]]
    assert len(terms("dance tutorial, beginners")) == 1
    # Unknown words are matched as they are: as the topic when nothing else is, and
    # weighing less beside a known topic (more likely wording than the subject).
    assert terms("zymurgy") == [[("zymurgy", 1.0)]]
    assert dict(terms("dancing zymurgy")[0]) == {"@dance": 1.0, "zymurgy": UNKNOWN_WEIGHT}
    together = dict(terms("dancing zymurgy quuxes")[0])
    assert together == {"@dance": 1.0, "zymurgy": UNKNOWN_WEIGHT / 2, "quux": UNKNOWN_WEIGHT / 2}
    # A place with no topic before it is the topic, not a qualifier.
    assert dict(terms("kids at school")[0])["@school"] == 1.0
    # Topics the corpus does not hold are known as topics too.
    assert terms("knitting") == [[("@crafts", 1.0)]]
    # A prompt of generic words only asks for those words, not for their bag of a
    # concept ("funny" is not "new" or "big"; "relaxing" is not "running").
    assert terms("funny") == [[("funny", 1.0)]]
    assert terms("relaxing") == [[(stem("relaxing"), 1.0)]]
    # "for A and B" coordinates the objects of a preposition: a lone word after them
    # shares what came before; a list of nouns stays a list. A phrase that starts inside
    # another and goes on past it counts too ("where to go | out").
    assert terms("where to go out for drinks and dinner")[1] == [
        ("@bar", 1.0),
        ("@guide", MODIFIER_WEIGHT),
    ]
    assert terms("bars and restaurants") == [[("@bar", 1.0)], [("@dining", 1.0)]]
    assert terms("a dog playing fetch and a cat") == [[("@dog", 1.0)], [("@cat", 1.0)]]
    # So does a verb that opens the prompt: its objects share it.
    assert terms("planting flowers and vegetables")[1] == [("@food", 1.0), ("@gardening", 1.0)]
    # A city is a place of its own, in its country: not any city.
    assert terms("Paris") == terms("the Eiffel Tower") == [[("@paris", 1.0)]]
    assert {"@france", "@europe", "@city"} <= features("a walk through Paris")
    assert "@paris" not in features("a walk through Lisbon")


def test_a_generic_word_or_a_city_lists_only_what_names_it(
    corpus: Corpus, classifier: Classifier
) -> None:
    """A mood word or a city nobody filmed lists nothing, not every video with a verb or a city."""
    for prompt in ("relaxing", "funny", "Paris"):
        spec = ClassSpec(prompt, (prompt,), BOTH, "semantic")
        data = classifier.classify(ClassifyJob(tuple(corpus.videos), (spec,), page_limit=50))
        assert data == [], prompt


def test_broader_and_related_terms_find_the_fitting_videos(
    corpus: Corpus, classifier: Classifier
) -> None:
    """Plain classes with the default thresholds: each lists its videos and nothing else."""
    expectations = {
        ("people dancing",): set(DANCE_VIDEOS),
        ("someone cooking food",): {
            "pasta-recipe-tutorial.mp4",
            "sourdough-bread-baking.mp4",
            "backyard-bbq-grilling-tips.mp4",
            "kitchen-utensils-review.mp4",
        },
        ("an orchestra", "a rock festival"): {
            "symphony-orchestra-concert.mp4",
            "festival-rock-concert-live.mp4",
        },
    }
    ids = tuple(video_id(corpus, f) for f in DANCE_VIDEOS + COOKING_VIDEOS) + tuple(
        video_id(corpus, f) for f in expectations[("an orchestra", "a rock festival")]
    )
    names = {v.id: v.resource["metadata"]["filename"] for v in corpus.videos.values()}
    for prompts, expected in expectations.items():
        spec = ClassSpec(prompts[0], prompts, BOTH, "semantic")
        data = classifier.classify(ClassifyJob(ids, (spec,), page_limit=50))
        assert {names[d["video_id"]] for d in data} == expected, prompts


def test_a_title_says_the_videos_form_for_the_shots_on_its_subject(
    corpus: Corpus, classifier: Classifier
) -> None:
    """A review's title makes its cooking shots review shots; a topic stays per shot."""
    review = corpus.videos[video_id(corpus, "kitchen-utensils-review.mp4")]
    assert "@cooking" in review.context.subject  # most of its shots
    assert "@technology" not in review.context.subject  # a few of them
    ids = tuple(
        video_id(corpus, f)
        for f in (
            "kitchen-utensils-review.mp4",
            "pasta-recipe-tutorial.mp4",
            "hiit-home-workout.mp4",
        )
    )
    names = {v.id: v.resource["metadata"]["filename"] for v in corpus.videos.values()}

    def listed(prompt: str) -> set[str]:
        spec = ClassSpec(prompt, (prompt,), BOTH, "semantic")
        return {names[d["video_id"]] for d in classifier.classify(ClassifyJob(ids, (spec,)))}

    assert listed("a product review") == {"kitchen-utensils-review.mp4"}
    # The dance and dinner compilation's cooking shots are not dance shots.
    mixed = corpus.videos[video_id(corpus, "tiktok-dance-and-dinner-compilation.mp4")]
    spec = ClassSpec("dancing", ("dancing",), ("visual",), "semantic")
    (d,) = classifier.classify(ClassifyJob((mixed.id,), (spec,), include_clips=True))
    shots = {seg.start: seg for seg in mixed.segments["visual"]}
    cooking = [s for s in shots.values() if "@cooking" in s.analysed.features]
    clipped = {c["start"] for c in d["classes"][0]["clips"]}
    assert cooking and not any(
        s.start in clipped for s in cooking if "@dance" not in s.analysed.features
    )


def test_clips_point_at_the_matching_segments(corpus: Corpus, classifier: Classifier) -> None:
    """The title lifts on-topic segments; intros and sponsor reads never become clips."""
    vid = video_id(corpus, "wedding-first-dance.mp4")
    spec = ClassSpec("wedding", ("a wedding",), BOTH, "semantic")
    (d,) = classifier.classify(ClassifyJob((vid,), (spec,), include_clips=True))
    clips = d["classes"][0]["clips"]
    by_start = {
        (seg.start, option): seg for option in BOTH for seg in corpus.videos[vid].segments[option]
    }
    texts = [by_start[(c["start"], c["option"])].text for c in clips]
    assert clips and all(
        {"@dance", "@music", "@wedding"} & by_start[(c["start"], c["option"])].analysed.features
        for c in clips
    ), texts
    # The best clip names the wedding itself; the title only lifts the others.
    best = by_start[(clips[0]["start"], clips[0]["option"])]
    assert "@wedding" in best.analysed.features, texts[0]


def test_bulk_over_an_index_through_http(api: httpx.Client, corpus: Corpus) -> None:
    social = index_id(corpus, "social-clips")
    body = {
        "index_id": social,
        "options": ["visual", "conversation"],
        "classes": [DANCE_CLASS, COOK_CLASS],
        "threshold": LOW_THRESHOLD,
        "page_limit": 50,
    }
    data = api.post("/classify/bulk", json=body).json()["data"]
    assert {d["video_id"] for d in data} <= set(corpus.indexes[social].video_ids)
    top = {d["video_id"]: d["classes"][0]["name"] for d in data}
    assert top[video_id(corpus, "street-dance-battle.mp4")] == "DanceTok"
    assert top[video_id(corpus, "pasta-recipe-tutorial.mp4")] == "CookTok"


def test_bulk_numeric_threshold_is_min_video_score(api: httpx.Client, corpus: Corpus) -> None:
    body = {
        "index_id": index_id(corpus, "social-clips"),
        "options": ["visual"],
        "classes": [DANCE_CLASS],
        "threshold": 95,
        "show_detailed_score": True,
    }
    response = api.post("/classify/bulk", json=body)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data and all(c["score"] >= 95 for d in data for c in d["classes"])


def test_a_form_the_video_never_names_is_not_its_form(
    corpus: Corpus, classifier: Classifier
) -> None:
    """A dance battle's dance shots lack a lesson, and so does all of it: no "dance lesson"."""
    ids = tuple(video_id(corpus, f) for f in DANCE_VIDEOS)
    names = {v.id: v.resource["metadata"]["filename"] for v in corpus.videos.values()}
    battle = corpus.videos[video_id(corpus, "street-dance-battle.mp4")]
    assert "@lesson" not in battle.context.mentions
    spec = ClassSpec("lesson", ("learn to dance",), BOTH, "semantic")
    listed = {names[d["video_id"]] for d in classifier.classify(ClassifyJob(ids, (spec,)))}
    assert listed == {"hip-hop-dance-tutorial.mp4", "salsa-dance-group-class.mp4"}


def listed_for(corpus: Corpus, classifier: Classifier, prompt: str) -> set[str]:
    """Filenames of every video listed for one prompt at the default thresholds."""
    names = {v.id: v.resource["metadata"]["filename"] for v in corpus.videos.values()}
    spec = ClassSpec(prompt, (prompt,), BOTH, "semantic")
    data = classifier.classify(ClassifyJob(tuple(corpus.videos), (spec,), page_limit=50))
    return {names[d["video_id"]] for d in data}


def test_a_term_gets_no_credit_from_another_term_of_the_prompt(
    corpus: Corpus, classifier: Classifier
) -> None:
    """ "political news" is half matched by a fire report: news counts once, not again as
    politics' relative."""
    (alt,) = analyse_prompt("political news").alternatives
    politics = next(t for t in alt.terms if t.feature == "@politics")
    assert "@news" not in dict(politics.credits)
    assert "breaking-news-downtown-fire.mp4" not in listed_for(corpus, classifier, "political news")
    assert "@news" in dict(analyse_prompt("politics").alternatives[0].terms[0].credits)


def test_kinds_of_trip_time_of_day_and_compilations(corpus: Corpus, classifier: Classifier) -> None:
    """A boat trip is no walking tour, a sunrise no morning in general, a compilation no
    match highlights: each is a concept of its own, not its broader class's word."""
    assert terms("boat trip") == [[("@boat_trip", 1.0)]]
    assert terms("a walking tour") == [[("@walking_tour", 1.0)]]
    assert listed_for(corpus, classifier, "a boat trip") == {"amalfi-coast-boat-trip.mp4"}
    assert "amalfi-coast-boat-trip.mp4" not in listed_for(corpus, classifier, "walking tour")
    assert "animated-short-film-fox.mp4" not in listed_for(corpus, classifier, "dawn scenery")
    assert listed_for(corpus, classifier, "sunrise") >= {
        "alpine-summit-hike-sunrise.mp4",
        "sunrise-yoga-flow.mp4",
    }
    assert listed_for(corpus, classifier, "compilation") == {
        "tiktok-dance-and-dinner-compilation.mp4"
    }


def test_verbs_with_only_a_setting_and_filming_are_not_the_setting_or_cinema(
    corpus: Corpus, classifier: Classifier
) -> None:
    """ "walking around a city" asks for walking, not for any street (the fire report's
    downtown); "filmed in Africa" is recorded there, not a film."""
    assert terms("walking around a city") == [[("@city", 0.4), ("walk", 1.0)]]
    assert terms("watching tiktok") == [[("@social_media", 0.4)]]  # the viewer's verb
    assert "breaking-news-downtown-fire.mp4" not in listed_for(
        corpus, classifier, "walking around a city"
    )
    assert terms("filmed somewhere in Africa")[0][0] == ("@africa", 1.0)
    assert terms("a short film") == [[("@film", 1.0)]]


def test_professional_matches_have_no_youth_players_and_a_full_replay_is_the_whole_match(
    corpus: Corpus, classifier: Classifier
) -> None:
    """The cup final, the derby and the World Cup broadcast show professionals, not a youth
    match; a full match replay is the match aired again, not its highlights."""
    for video in ("penalty-shootout-cup-final.mp4", "world-cup-final-full-broadcast.mp4"):
        texts = [s.text for s in corpus.videos[video_id(corpus, video)].segments["visual"]]
        assert not any("youth" in t or "young" in t for t in texts), video
    assert listed_for(corpus, classifier, "kids playing soccer") == {
        "youth-soccer-training-drills.mp4"
    }
    assert terms("full match replay") == [[("@full_length", 0.4)]]
    assert "soccer-match-highlights-derby.mp4" not in listed_for(
        corpus, classifier, "a full match replay"
    )
