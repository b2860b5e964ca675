"""OTLP export on a real process: a real OTLP receiver (the opentelemetry-proto collector
service, served over gRPC, and its HTTP/protobuf endpoint) gets the spans of one Classify,
configured only through the standard OTEL_* environment."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from classify_emulator.stack import EXE, gateway_settings, spawn
from tests.support.classify import docs_request
from tests.support.processes import free_port, stop
from tests.support.upstream import FakeUpstream, docs_pages, serving

KEY = "tlk_OTLP_CANARY_0123456789"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
UNSAMPLED_TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4736"
CLASSIFY = "classify.v1.ClassifyService/Classify"


class Received:
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    def add(self, req: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            self.requests.append(req)

    def spans(self) -> list[tuple[dict[str, str], trace_pb2.Span]]:
        """(resource attributes, span) for every span received."""
        out = []
        with self.lock:
            for req in self.requests:
                for rs in req.resource_spans:
                    attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                    out.extend((attrs, s) for ss in rs.scope_spans for s in ss.spans)
        return out


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:
        self.received.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@contextlib.contextmanager
def grpc_receiver() -> Iterator[tuple[dict[str, str], Received]]:
    received = Received()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            },
            received,
        )
    finally:
        server.stop(0)


@contextlib.contextmanager
def http_receiver() -> Iterator[tuple[dict[str, str], Received]]:
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = (
                self.path == "/v1/traces"
                and self.headers["Content-Type"] == "application/x-protobuf"
            )
            if ok:
                received.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # The base endpoint: the exporter appends /v1/traces itself, as the spec says.
        yield (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            },
            received,
        )
    finally:
        server.shutdown()
        server.server_close()


RECEIVERS = {"grpc": grpc_receiver, "http/protobuf": http_receiver}


def run_classify(env: dict[str, str]) -> tuple[FakeUpstream, bytes, bytes]:
    """Two Classify calls through a real gateway: one in a sampled caller trace, one in
    an unsampled one. SIGTERM then flushes the batch processor."""
    upstream = FakeUpstream(docs_pages()[:2])
    port = free_port()
    with serving(upstream) as url:
        settings = gateway_settings(url, KEY, port)
        proc = spawn("gateway", [EXE, "serve"], port, {**settings, **env}, subprocess.PIPE).popen
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ClassifyServiceStub(channel)
                for trace_id, flags in ((TRACE_ID, "01"), (UNSAMPLED_TRACE_ID, "00")):
                    md = (("traceparent", f"00-{trace_id}-{PARENT}-{flags}"),)
                    pages = list(stub.Classify(docs_request(), metadata=md, timeout=10))
                    assert [p.page_number for p in pages] == [1, 2]
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            stop(proc)
    assert proc.returncode == 0, err.decode()
    return upstream, out, err


@pytest.mark.parametrize("protocol", list(RECEIVERS))
def test_otlp_export_of_one_classify(protocol: str) -> None:
    with RECEIVERS[protocol]() as (otlp_env, received):
        env = {
            **otlp_env,
            # The standard switch (CLASSIFY_GATEWAY_TRACING_EXPORTER stays at none) for
            # gRPC, the gateway's own setting for HTTP: both turn OTLP on.
            **(
                {"OTEL_TRACES_EXPORTER": "otlp"}
                if protocol == "grpc"
                else {"CLASSIFY_GATEWAY_TRACING_EXPORTER": "otlp"}
            ),
            "OTEL_SERVICE_NAME": "video-classify-gw",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=otlp-test,service.namespace=media",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        upstream, _, err = run_classify(env)
        spans = received.spans()

    assert spans, f"the receiver got no spans; gateway stderr: {err.decode()[-2000:]}"
    # The resource is the standard environment's, not overridden by the gateway.
    for attrs, _ in spans:
        assert attrs["service.name"] == "video-classify-gw"
        assert attrs["deployment.environment"] == "otlp-test"
        assert attrs["service.namespace"] == "media"
        assert attrs["service.version"]

    ours = [s for _, s in spans if s.trace_id.hex() == TRACE_ID]
    servers = [s for s in ours if s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
    assert [s.name for s in servers] == [CLASSIFY], [(s.name, s.kind) for s in ours]
    (server,) = servers
    # The caller's traceparent is the server span's parent.
    assert server.parent_span_id.hex() == PARENT
    # One client span per upstream request of that call, each a child of the server span,
    # and each the span the upstream saw in its traceparent.
    clients = [s for s in ours if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT]
    first_call = [h["traceparent"] for h in upstream.headers if TRACE_ID in h["traceparent"]]
    assert len(first_call) == 2
    assert len(clients) == len(first_call)
    assert all(c.parent_span_id == server.span_id for c in clients)
    assert {c.span_id.hex() for c in clients} == {tp.split("-")[2] for tp in first_call}
    # parentbased sampling (the default OTEL_TRACES_SAMPLER): the unsampled caller's
    # trace is continued (the upstream still gets its trace id) but nothing is exported.
    assert any(UNSAMPLED_TRACE_ID in h["traceparent"] for h in upstream.headers)
    assert not [s for _, s in spans if s.trace_id.hex() == UNSAMPLED_TRACE_ID]
    assert KEY not in err.decode()
    # Every stderr line is one JSON object; the RPC's own line names its span.
    logs = [json.loads(line) for line in err.decode().splitlines()]
    rpc_lines = [r for r in logs if r.get("event") == "rpc" and r.get("trace_id") == TRACE_ID]
    assert rpc_lines, logs
    assert rpc_lines[0]["span_id"] == server.span_id.hex()


def test_otel_traces_sampler_is_honoured() -> None:
    with grpc_receiver() as (otlp_env, received):
        env = {
            **otlp_env,
            "CLASSIFY_GATEWAY_TRACING_EXPORTER": "otlp",
            "OTEL_TRACES_SAMPLER": "always_off",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        upstream, _, _ = run_classify(env)
        assert len(upstream.headers) == 4
        assert received.spans() == []


def test_an_unsupported_otlp_protocol_is_one_configuration_error() -> None:
    done = subprocess.run(
        [EXE, "serve"],
        env={
            "PATH": "/usr/bin:/bin",
            "CLASSIFY_GATEWAY_API_KEY": KEY,
            "CLASSIFY_GATEWAY_TRACING_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "classify-gateway: configuration error: OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not "
        "supported (one of grpc, http/protobuf)"
    ]
