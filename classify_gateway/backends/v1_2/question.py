"""The canonical form of a v1.2 classification: which requests are the same question.

Two requests are the same question if the gateway would send the upstream the same
JSON (`translate.request_to_json`), with every field in a fixed order and every upstream
default written out, so that `page_limit: 0` (omitted, upstream default 10) and
`page_limit: 10` are one request, and so are a class without `options` and the same
class with the request's options spelled out. Options are sets upstream (validation
refuses duplicates), so they are sorted; everything else keeps its order, because the
upstream may answer a reordered list of videos or classes in another order.
"""

from __future__ import annotations

from typing import Any

import orjson
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.v1_2.translate import request_to_json

# Upstream defaults (upstream-contract.md): written out so that "unset" and "the
# default, set explicitly" are the same request.
DEFAULT_PAGE_LIMIT = 10
DEFAULT_CONVERSATION_OPTION = "semantic"
DEFAULT_THRESHOLD = {"min_video_score": 75.0, "min_clip_score": 65.0, "min_duration_ratio": 0.5}


def canonical_body(
    request: pb.ClassifyRequest, sent: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The upstream body of a (validated) request in canonical form: defaults explicit.

    `sent`: `request_to_json(request)` when the caller has it already (it is sent too)."""
    if sent is None:
        sent = request_to_json(request)
    options = sorted(sent["options"])
    conversation = sent.get("conversation_option", DEFAULT_CONVERSATION_OPTION)
    classes = []
    for c in sent["classes"]:
        classes.append(
            {
                "name": c["name"],
                "prompts": c["prompts"],
                "options": sorted(c.get("options", options)),
                "conversation_option": c.get("conversation_option", conversation),
            }
        )
    threshold = {**DEFAULT_THRESHOLD, **sent.get("threshold", {})}
    body: dict[str, Any] = {}
    if "index_id" in sent:
        body["index_id"] = sent["index_id"]
    else:
        body["video_ids"] = sent["video_ids"]
    body["options"] = options
    body["conversation_option"] = conversation
    body["classes"] = classes
    body["page_limit"] = sent.get("page_limit", DEFAULT_PAGE_LIMIT)
    body["include_clips"] = sent.get("include_clips", False)
    body["show_detailed_score"] = sent.get("show_detailed_score", False)
    body["threshold"] = {k: float(threshold[k]) for k in sorted(threshold)}
    return body


def canonical_json(request: pb.ClassifyRequest, sent: dict[str, Any] | None = None) -> bytes:
    """`canonical_body` as bytes: the fields in the order above, no whitespace.

    In a bytes object of its own size (as `translate.request_body`): the key lives in the
    call's `Question` as long as its chain is read, and orjson's output keeps the 4 KiB
    buffer it was written to."""
    return bytes(memoryview(orjson.dumps(canonical_body(request, sent))))
