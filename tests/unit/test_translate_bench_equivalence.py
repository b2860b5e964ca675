"""The benchmark's page (10 videos x 5 classes x 5 clips) translates to equal messages
whether built by hand (classify_gateway.backends.v1_2.translate.page_from_json) or by json_format.ParseDict,
so that docs/benchmarks.md compares two ways of computing the same thing."""

from __future__ import annotations

import copy

from classify_gateway_proto.v1 import classify_service_pb2 as pb
from google.protobuf import json_format

from classify_gateway.backends.v1_2.translate import page_from_json
from tests.support.pages import make_page, translation_page


def _parsedict(obj: object, message_type: type) -> object:
    return json_format.ParseDict(copy.deepcopy(obj), message_type(), ignore_unknown_fields=True)


def test_benchmark_page_shape() -> None:
    page = translation_page()
    assert len(page["data"]) == 10
    assert all(len(v["classes"]) == 5 for v in page["data"])
    assert all(len(c["clips"]) == 5 for v in page["data"] for c in v["classes"])


def test_handwritten_equals_parsedict_for_the_benchmark_page() -> None:
    page = translation_page()
    for message_type in (pb.ClassifyResponse, pb.GetClassifyPageResponse):
        hand = page_from_json(page, message_type)
        oracle = _parsedict(page, message_type)
        assert hand == oracle
        assert hand.SerializeToString(deterministic=True) == oracle.SerializeToString(  # type: ignore[attr-defined]
            deterministic=True
        )


def test_handwritten_equals_parsedict_for_other_bench_shapes() -> None:
    for shape in ((2, 2, 2), (10, 2, 2), (1, 1, 0), (3, 4, 1)):
        page = make_page(*shape, next_token="n", prev_token="p", seed=7)
        assert page_from_json(page, pb.ClassifyResponse) == _parsedict(page, pb.ClassifyResponse)
    bare = make_page(2, 2, 0, detailed=False)
    assert page_from_json(bare, pb.ClassifyResponse) == _parsedict(bare, pb.ClassifyResponse)
