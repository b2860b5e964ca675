"""Canonical request keys: which calls may share one upstream page chain or cached page.

Two calls may share pages only if they carry the same upstream API key and ask the
upstream the same question. "The same question" is the JSON the gateway would send
(`translate.request_to_json`), with every field in a fixed order and every upstream
default written out, so that `page_limit: 0` (omitted, upstream default 10) and
`page_limit: 10` are one request, and so are a class without `options` and the same
class with the request's options spelled out. Options are sets upstream (validation
refuses duplicates), so they are sorted; everything else keeps its order, because the
upstream may answer a reordered list of videos or classes in another order.

The API key itself never enters a key, a log line or Redis: only a SHA-256 of it,
which is part of every key, so nothing fetched under one key is served under another.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import orjson
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_gateway.backends.v1_2.translate import request_to_json

# Upstream defaults (upstream-contract.md): written out so that "unset" and "the
# default, set explicitly" are the same request.
DEFAULT_PAGE_LIMIT = 10
DEFAULT_CONVERSATION_OPTION = "semantic"
DEFAULT_THRESHOLD = {"min_video_score": 75.0, "min_clip_score": 65.0, "min_duration_ratio": 0.5}
KEY_VERSION = "v1"  # bump when the canonical form changes, so old cache entries are not read


@functools.lru_cache(maxsize=1024)
def api_key_hash(api_key: str) -> str:
    """A stable, non-reversible name for an upstream API key (hex SHA-256).

    Memoised: a gateway sees a handful of keys, and hashing one per call cost about 1 %
    of a 1-page call (the keys are in this process's memory anyway)."""
    return hashlib.sha256(b"classify-gateway api key\0" + api_key.encode()).hexdigest()


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
    """`canonical_body` as bytes: the fields in the order above, no whitespace."""
    return orjson.dumps(canonical_body(request, sent))


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def request_key(
    key_hash: str,
    upstream_base: str,
    request: pb.ClassifyRequest,
    sent: dict[str, Any] | None = None,
) -> str:
    """The key of a new classification: API key hash + upstream + canonical request."""
    return _digest(
        KEY_VERSION.encode(),
        key_hash.encode(),
        upstream_base.encode(),
        b"classify",
        canonical_json(request, sent),
    )


def token_chain_key(key_hash: str, upstream_base: str, page_token: str) -> str:
    """The key of a chain that starts at a page token nobody here has seen."""
    return _digest(
        KEY_VERSION.encode(),
        key_hash.encode(),
        upstream_base.encode(),
        b"token",
        page_token.encode(),
    )


def token_key(key_hash: str, page_token: str) -> str:
    """Where a page token is indexed: scoped to the API key that was given it."""
    return _digest(KEY_VERSION.encode(), key_hash.encode(), b"page token", page_token.encode())
