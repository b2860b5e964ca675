"""The proto contract carries everything the upstream classify API offers, exactly.

The examples are the vendor docs page's and the upstream contract's own payloads,
copied verbatim into tests/fixtures/docs/ (test_fixtures_match_reference keeps
the copies honest while ../shared/reference is present).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from google.protobuf import descriptor, json_format

from classify_gateway.backends.v1_2.translate import request_to_json

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "docs"
REFERENCE = ROOT.parent / "shared" / "reference"
RESPONSES = sorted(FIXTURES.glob("response_*.json"))
PAGE_TYPES = [pb.GetClassifyPageResponse, pb.ClassifyResponse]


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def normalize_tokens(page: dict[str, Any]) -> dict[str, Any]:
    """The upstream sends an absent token as "" or omits it; in proto3 both are ""."""
    info = dict(page.get("page_info", {}))
    for key in ("next_page_token", "prev_page_token"):
        if info.get(key, "") == "":
            info.pop(key, None)
    return {**page, "page_info": info}


def test_fixtures_present() -> None:
    assert len(RESPONSES) == 5


@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.stem)
@pytest.mark.parametrize("message_type", PAGE_TYPES, ids=lambda t: t.__name__)
def test_example_response_round_trips(path: Path, message_type: type) -> None:
    original = load(path)
    # No unknown field may be ignored: every upstream field has a proto field.
    msg = json_format.ParseDict(original, message_type(), ignore_unknown_fields=False)
    back = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    # Value for value: == on Python floats is bit-exact (224 == 224.0 is the same double).
    assert back == normalize_tokens(original)


def test_unrounded_doubles_survive_exactly() -> None:
    page = json_format.ParseDict(load(FIXTURES / "response_4.json"), pb.GetClassifyPageResponse())
    assert page.data[0].classes[0].detailed_scores.normalized_score == 53.14695139084012
    assert page.data[1].classes[1].detailed_scores.normalized_score == 46.32363907531692
    clips = json_format.ParseDict(load(FIXTURES / "response_2.json"), pb.GetClassifyPageResponse())
    assert clips.data[1].classes[0].clips[0].end == 169.63541666666669
    # Wire round trip too.
    again = pb.GetClassifyPageResponse.FromString(clips.SerializeToString())
    assert again.data[1].classes[0].clips[0].end == 169.63541666666669


def _fields(message: descriptor.Descriptor) -> dict[str, descriptor.FieldDescriptor]:
    return {f.name: f for f in message.fields}


DOUBLE_FIELDS = {
    "ClassResult": ["score", "duration_ratio"],
    "Clip": ["start", "end", "score"],
    "DetailedScores": ["max_score", "avg_score", "normalized_score"],
    "Threshold": ["min_video_score", "min_clip_score", "min_duration_ratio"],
}


@pytest.mark.parametrize("message,fields", DOUBLE_FIELDS.items())
def test_scores_and_times_are_doubles(message: str, fields: list[str]) -> None:
    desc = pb.DESCRIPTOR.message_types_by_name[message]
    for name in fields:
        assert _fields(desc)[name].type == descriptor.FieldDescriptor.TYPE_DOUBLE, name


def test_thresholds_have_presence() -> None:
    desc = pb.DESCRIPTOR.message_types_by_name["Threshold"]
    for f in desc.fields:
        assert f.has_presence, f.name
    t = pb.Threshold(min_clip_score=0)
    assert t.HasField("min_clip_score")
    assert not t.HasField("min_video_score")


def test_page_expired_at_is_a_timestamp() -> None:
    field = _fields(pb.PageInfo.DESCRIPTOR)["page_expired_at"]
    assert field.message_type.full_name == "google.protobuf.Timestamp"


# Every request and response field of upstream-contract.md, as a dotted JSON path,
# and the proto message + field that carries it.
UPSTREAM_REQUEST_FIELDS = {
    "video_ids": ("ClassifyRequest", "video_ids"),
    "index_id": ("ClassifyRequest", "index_id"),
    "options": ("ClassifyRequest", "options"),
    "conversation_option": ("ClassifyRequest", "conversation_option"),
    "classes": ("ClassifyRequest", "classes"),
    "classes[].name": ("ClassDefinition", "name"),
    "classes[].prompts": ("ClassDefinition", "prompts"),
    "classes[].options": ("ClassDefinition", "options"),
    "classes[].conversation_option": ("ClassDefinition", "conversation_option"),
    "page_limit": ("ClassifyRequest", "page_limit"),
    "include_clips": ("ClassifyRequest", "include_clips"),
    "show_detailed_score": ("ClassifyRequest", "show_detailed_score"),
    "threshold": ("ClassifyRequest", "threshold"),
    "min_video_score": ("Threshold", "min_video_score"),
    "min_clip_score": ("Threshold", "min_clip_score"),
    "min_duration_ratio": ("Threshold", "min_duration_ratio"),
}
UPSTREAM_RESPONSE_FIELDS = {
    "data[]": ("GetClassifyPageResponse", "data"),
    "data[].video_id": ("VideoClassification", "video_id"),
    "data[].classes[]": ("VideoClassification", "classes"),
    ".name": ("ClassResult", "name"),
    ".score": ("ClassResult", "score"),
    ".duration_ratio": ("ClassResult", "duration_ratio"),
    ".clips[]": ("ClassResult", "clips"),
    ".clips[].start": ("Clip", "start"),
    ".end": ("Clip", "end"),
    ".clips[].score": ("Clip", "score"),
    ".clips[].option": ("Clip", "option"),
    ".clips[].prompt": ("Clip", "prompt"),
    ".clips[].thumbnail_url": ("Clip", "thumbnail_url"),
    ".detailed_scores": ("ClassResult", "detailed_scores"),
    ".detailed_scores.max_score": ("DetailedScores", "max_score"),
    ".avg_score": ("DetailedScores", "avg_score"),
    ".detailed_scores.normalized_score": ("DetailedScores", "normalized_score"),
    "page_info.limit_per_page": ("PageInfo", "limit_per_page"),
    "page_info.total_results": ("PageInfo", "total_results"),
    "page_info.page_expired_at": ("PageInfo", "page_expired_at"),
    "page_info.next_page_token": ("PageInfo", "next_page_token"),
    "page_info.prev_page_token": ("PageInfo", "prev_page_token"),
}


@pytest.mark.parametrize(
    "upstream,target", {**UPSTREAM_REQUEST_FIELDS, **UPSTREAM_RESPONSE_FIELDS}.items()
)
def test_every_upstream_field_has_a_proto_field(upstream: str, target: tuple[str, str]) -> None:
    message, field = target
    assert field in _fields(pb.DESCRIPTOR.message_types_by_name[message]), upstream
    # Names mirror the upstream JSON names.
    leaf = upstream.rstrip("[]").split(".")[-1].rstrip("[]")
    assert leaf == field


def _contract_table_fields(section: str) -> set[str]:
    text = (REFERENCE / "upstream-contract.md").read_text()
    part = text.split(section, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)`", part, re.M))


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference is not beside this clone")
def test_field_lists_cover_the_contract_tables() -> None:
    request_fields = _contract_table_fields("## 2. Request fields")
    response_fields = _contract_table_fields("## 3. Response")
    assert request_fields, "no request table found"
    assert response_fields, "no response table found"
    assert request_fields <= set(UPSTREAM_REQUEST_FIELDS)
    assert response_fields <= set(UPSTREAM_RESPONSE_FIELDS)


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference is not beside this clone")
def test_fixtures_match_reference() -> None:
    docs = (REFERENCE / "000_ca7b2671a8cad120.txt").read_text()
    blocks = re.findall(r"```json[^\n]*\n(?:Status code: 200\n)?(.*?)```", docs, re.S)
    pages = [json.loads(b) for b in blocks if '"data"' in b]
    assert pages == [load(FIXTURES / f"response_{i}.json") for i in range(1, 5)]


def _all_enums() -> list[descriptor.EnumDescriptor]:
    return list(pb.DESCRIPTOR.enum_types_by_name.values())


@pytest.mark.parametrize("enum", _all_enums(), ids=lambda e: e.name)
def test_enums_have_unspecified_zero(enum: descriptor.EnumDescriptor) -> None:
    zero = enum.values_by_number[0]
    assert zero.name.endswith("_UNSPECIFIED")


def test_contract_request_example_is_expressible() -> None:
    """The contract's example body comes out of the request that mirrors it, byte for byte."""
    body = load(FIXTURES / "request_contract.json")
    request = pb.ClassifyRequest(
        video_ids=body["video_ids"],
        options=[pb.SEARCH_OPTION_VISUAL, pb.SEARCH_OPTION_CONVERSATION],
        conversation_option=pb.CONVERSATION_OPTION_SEMANTIC,
        classes=[pb.ClassDefinition(name=c["name"], prompts=c["prompts"]) for c in body["classes"]],
        page_limit=10,
        include_clips=True,
        show_detailed_score=True,
        threshold=pb.Threshold(min_video_score=75, min_clip_score=65, min_duration_ratio=0.5),
    )
    assert request_to_json(request) == body


def test_every_rpc_message_and_field_is_commented() -> None:
    """buf's COMMENTS lint checks this too; this keeps it true without buf."""
    proto = (ROOT / "proto" / "classify" / "v1" / "classify_service.proto").read_text()
    lines = proto.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        is_decl = re.match(r"^(rpc|message|enum|service)\s", stripped) or re.match(
            r"^(optional |repeated )?[\w.]+ \w+ = \d+;$", stripped
        )
        if is_decl:
            assert lines[i - 1].strip().startswith("//"), f"line {i + 1} has no comment: {stripped}"
