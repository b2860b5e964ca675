"""Tracing on a real process: W3C context from gRPC metadata to the upstream call, spans exported."""

from __future__ import annotations

import json
import re
import signal

import grpc
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from tests.support.classify import docs_request
from tests.support.processes import free_port, serve_process, stop
from tests.support.upstream import FakeUpstream, docs_pages, serving

KEY = "tlk_TRACE_CANARY_0123456789"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def test_trace_context_flows_to_upstream_and_spans_are_exported() -> None:
    upstream = FakeUpstream(docs_pages()[:2])
    port = free_port()
    with serving(upstream) as url:
        proc = serve_process(url, KEY, port, tracing_exporter="console").popen
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ClassifyServiceStub(channel)
                md = (("traceparent", f"00-{TRACE_ID}-{PARENT}-01"),)
                pages = list(stub.Classify(docs_request(), metadata=md, timeout=10))
            assert [p.page_number for p in pages] == [1, 2]
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            stop(proc)
    assert proc.returncode == 0
    # The upstream calls continue the caller's trace, each as a new child span.
    sent = [h["traceparent"] for h in upstream.headers]
    assert len(sent) == 2
    for tp in sent:
        _, trace_id, span_id, _ = tp.split("-")
        assert trace_id == TRACE_ID
        assert span_id != PARENT
    # Spans were exported: the RPC span and one client span per upstream request.
    text = out.decode()
    spans = [json.loads(m) for m in re.findall(r"^\{\n.*?^\}$", text, re.S | re.M)]
    ours = [s for s in spans if s["context"]["trace_id"] == "0x" + TRACE_ID]
    kinds = sorted(s["kind"] for s in ours)
    assert kinds.count("SpanKind.CLIENT") == 2, kinds
    assert kinds.count("SpanKind.SERVER") == 1, kinds
    assert KEY not in text and KEY not in err.decode()
