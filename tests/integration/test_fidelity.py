"""Every field of the vendor's documented payloads survives the gateway end to end."""

from __future__ import annotations

import json
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from google.protobuf import json_format

from tests.support.classify import docs_request
from tests.support.gateway import collect, running_gateway
from tests.support.upstream import FIXTURES, FakeUpstream, docs_pages, serving

KEY = "tlk_FIDELITY_SECRET"


def as_upstream_json(page: pb.ClassifyResponse) -> dict[str, Any]:
    d = json_format.MessageToDict(page, preserving_proto_field_name=True)
    d.pop("page_number", None)
    # Not upstream fields: which backend scored the page (the upstream's own numbers here).
    assert d.pop("scoring") == "SCORING_CLASSIFY_V1_2"
    return d


def without_empty_tokens(page: dict[str, Any]) -> dict[str, Any]:
    info = {k: v for k, v in page["page_info"].items() if not (k.endswith("_token") and v == "")}
    return {**page, "page_info": info}


async def test_docs_payloads_survive_end_to_end() -> None:
    upstream = FakeUpstream(docs_pages())
    with serving(upstream) as url:
        async with running_gateway(url, KEY) as gw:
            pages, err = await collect(gw.stub.Classify(docs_request()))
    assert err is None
    assert [p.page_number for p in pages] == [1, 2, 3, 4, 5]
    for got, want in zip(pages, upstream.pages, strict=True):
        assert as_upstream_json(got) == without_empty_tokens(want)
    # Doubles exact, as sent: no rounding anywhere on the way.
    assert pages[3].data[0].classes[0].detailed_scores.normalized_score == 53.14695139084012
    assert pages[1].data[1].classes[0].clips[0].end == 169.63541666666669
    # The request went upstream exactly as the contract's example body.
    assert upstream.bodies == [json.loads((FIXTURES / "request_contract.json").read_text())]
    # The key went in the header, once per upstream call.
    assert all(h.get("x-api-key") == KEY for h in upstream.headers)
    assert len(upstream.headers) == 5


async def test_unary_page_is_the_upstream_page() -> None:
    upstream = FakeUpstream(docs_pages())
    with serving(upstream) as url:
        async with running_gateway(url, KEY) as gw:
            page = await gw.stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token="p3"))
            try:
                await gw.stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token="p99"))
                raise AssertionError("unknown token accepted")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    got = as_upstream_json(page)
    assert got == without_empty_tokens(upstream.pages[3])


async def test_trace_context_is_forwarded_upstream() -> None:
    upstream = FakeUpstream(docs_pages()[:1])
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with serving(upstream) as url:
        async with running_gateway(url, KEY) as gw:
            pages, err = await collect(
                gw.stub.Classify(docs_request(), metadata=(("traceparent", traceparent),))
            )
    assert err is None and len(pages) == 1
    assert upstream.headers[0]["traceparent"] == traceparent
