"""Every invalid request is named by field; valid ones pass untouched."""

from __future__ import annotations

import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.core.errors import GatewayError
from classify_gateway.edge.validation import (
    classify_violations,
    validate_classify,
    validate_page_request,
)


def valid(**kw: object) -> pb.ClassifyRequest:
    base = pb.ClassifyRequest(
        video_ids=["6656fa67d22b3a3c97befb0d"],
        options=[pb.SEARCH_OPTION_VISUAL],
        classes=[pb.ClassDefinition(name="Dance", prompts=["dance tutorial"])],
    )
    for key, value in kw.items():
        field = getattr(base, key)
        if hasattr(field, "extend") and not isinstance(value, str):
            del field[:]
            field.extend(value)  # type: ignore[arg-type]
        elif hasattr(field, "CopyFrom"):
            field.CopyFrom(value)
        else:
            setattr(base, key, value)
    return base


def fields_of(req: pb.ClassifyRequest) -> list[str]:
    return [f for f, _ in classify_violations(req)]


def test_valid_requests_pass() -> None:
    validate_classify(valid())
    validate_classify(valid(video_ids=[], index_id="idx"))
    validate_classify(valid(page_limit=50, threshold=pb.Threshold(min_duration_ratio=0.01)))
    validate_classify(pb.ClassifyRequest(page_token="abc123"))  # resume: token only


@pytest.mark.parametrize(
    "request_kw,field",
    [
        ({"video_ids": []}, "video_ids"),
        ({"index_id": "idx"}, "video_ids"),
        ({"video_ids": [""]}, "video_ids[0]"),
        ({"video_ids": ["a", "a"]}, "video_ids[1]"),
        ({"options": []}, "options"),
        ({"options": [0]}, "options[0]"),
        ({"options": [99]}, "options[0]"),
        ({"options": [1, 1]}, "options[1]"),
        ({"conversation_option": 7}, "conversation_option"),
        ({"classes": []}, "classes"),
        ({"classes": [pb.ClassDefinition(name="", prompts=["x"])]}, "classes[0].name"),
        ({"classes": [pb.ClassDefinition(name="a", prompts=[])]}, "classes[0].prompts"),
        ({"classes": [pb.ClassDefinition(name="a", prompts=["  "])]}, "classes[0].prompts[0]"),
        (
            {"classes": [pb.ClassDefinition(name="a", prompts=["x"], options=[0])]},
            "classes[0].options[0]",
        ),
        (
            {"classes": [pb.ClassDefinition(name="a", prompts=["x"], conversation_option=9)]},
            "classes[0].conversation_option",
        ),
        (
            {
                "classes": [
                    pb.ClassDefinition(name="a", prompts=["x"]),
                    pb.ClassDefinition(name="a", prompts=["y"]),
                ]
            },
            "classes[1].name",
        ),
        ({"classes": [pb.ClassDefinition(name="a", prompts=["p"] * 101)]}, "classes"),
        ({"page_limit": 51}, "page_limit"),
        ({"page_limit": -1}, "page_limit"),
        ({"max_pages": -1}, "max_pages"),
        ({"threshold": pb.Threshold(min_video_score=101)}, "threshold.min_video_score"),
        ({"threshold": pb.Threshold(min_clip_score=-0.5)}, "threshold.min_clip_score"),
        ({"threshold": pb.Threshold(min_duration_ratio=0)}, "threshold.min_duration_ratio"),
        (
            {"threshold": pb.Threshold(min_duration_ratio=float("nan"))},
            "threshold.min_duration_ratio",
        ),
    ],
)
def test_each_rule_names_its_field(request_kw: dict[str, object], field: str) -> None:
    req = valid(**request_kw)
    assert field in fields_of(req)
    with pytest.raises(GatewayError) as info:
        validate_classify(req)
    assert info.value.code.name == "INVALID_ARGUMENT"
    assert field in [f for f, _ in info.value.violations]


def test_prompt_total_across_classes() -> None:
    classes = [pb.ClassDefinition(name=f"c{i}", prompts=["p"] * 25) for i in range(4)]
    assert fields_of(valid(classes=classes)) == []
    classes.append(pb.ClassDefinition(name="c5", prompts=["p"]))
    assert fields_of(valid(classes=classes)) == ["classes"]


def test_bad_page_tokens() -> None:
    for token in ["../etc", "a/b", "a?b", "a b", "x" * 5000, "tab\t"]:
        assert "page_token" in fields_of(pb.ClassifyRequest(page_token=token)), token
    with pytest.raises(GatewayError) as info:
        validate_page_request(pb.GetClassifyPageRequest())
    assert info.value.violations[0][0] == "page_token"


def test_max_pages_cap_is_configurable() -> None:
    assert "max_pages" in [f for f, _ in classify_violations(valid(max_pages=11), max_pages_cap=10)]
