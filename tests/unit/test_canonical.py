"""Canonical request keys: defaults explicit, option order irrelevant, keys kept apart."""

from __future__ import annotations

import tracemalloc

import orjson
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.v1_2.question import canonical_json
from classify_gateway.core.call import api_key_hash
from classify_gateway.pages.canonical import request_key, token_chain_key, token_key

BASE = "http://upstream/v1.2"


def req(**kw: object) -> pb.ClassifyRequest:
    r = pb.ClassifyRequest(
        video_ids=["a", "b"],
        options=[pb.SEARCH_OPTION_VISUAL, pb.SEARCH_OPTION_CONVERSATION],
        classes=[pb.ClassDefinition(name="Dance", prompts=["dancing"])],
    )
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def key(r: pb.ClassifyRequest, api_key: str = "key-1") -> str:
    return request_key(api_key_hash(api_key), BASE, canonical_json(r))


def test_defaults_made_explicit_give_the_same_key() -> None:
    explicit = req(page_limit=10, conversation_option=pb.CONVERSATION_OPTION_SEMANTIC)
    explicit.threshold.min_video_score = 75
    explicit.classes[0].options.extend([pb.SEARCH_OPTION_CONVERSATION, pb.SEARCH_OPTION_VISUAL])
    assert key(req()) == key(explicit)
    body = orjson.loads(canonical_json(req()))
    assert list(body) == [
        "video_ids",
        "options",
        "conversation_option",
        "classes",
        "page_limit",
        "include_clips",
        "show_detailed_score",
        "threshold",
    ]
    assert body["threshold"] == {
        "min_clip_score": 65.0,
        "min_duration_ratio": 0.5,
        "min_video_score": 75.0,
    }


def test_option_order_does_not_matter_but_video_order_does() -> None:
    swapped = req()
    del swapped.options[:]
    swapped.options.extend([pb.SEARCH_OPTION_CONVERSATION, pb.SEARCH_OPTION_VISUAL])
    assert key(req()) == key(swapped)
    reordered = req()
    del reordered.video_ids[:]
    reordered.video_ids.extend(["b", "a"])
    assert key(req()) != key(reordered)


def test_any_difference_in_the_question_is_another_key() -> None:
    base = key(req())
    assert key(req(page_limit=5)) != base
    assert key(req(include_clips=True)) != base
    assert key(req(show_detailed_score=True)) != base
    t = req()
    t.threshold.min_clip_score = 50
    assert key(t) != base


def test_another_api_key_is_another_key() -> None:
    assert key(req(), "key-1") != key(req(), "key-2")
    assert token_key(api_key_hash("key-1"), "tok") != token_key(api_key_hash("key-2"), "tok")
    assert token_chain_key(api_key_hash("key-1"), BASE, "tok") != token_chain_key(
        api_key_hash("key-2"), BASE, "tok"
    )


def test_the_api_key_is_not_in_any_key() -> None:
    secret = "sk-very-secret"
    h = api_key_hash(secret)
    assert secret not in h and secret not in key(req(), secret)


def test_the_key_is_kept_in_a_buffer_of_its_own_size() -> None:
    """The canonical bytes live in the call's Question while its chain is read: they must
    not keep orjson's 4 KiB write buffer (10,000 waiting streams would hold 40 MB of it)."""
    r = req()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keys = [canonical_json(r) for _ in range(100)]
        per_key = (tracemalloc.get_traced_memory()[0] - before) / len(keys)
    finally:
        tracemalloc.stop()
    assert per_key < 4 * len(keys[0]) + 100, per_key
