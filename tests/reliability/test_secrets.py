"""The upstream API key never leaves the gateway, whatever goes wrong.

With known canary keys configured (the gateway's own, a caller's, and one the upstream
refuses), a selection of the scenarios above runs while everything the outside world can
see is captured: every log line of the "classify_gateway" logger (and httpx's), rendered by
the production JsonFormatter *without* its redaction, so a key that reached a log record
would show; every error message, debug string, trailing and initial metadata (with the
status details decoded); every metric (generate_latest); and, from a real
`classify-gateway serve` with the console trace exporter, every span and its attributes.
None may contain a canary.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from google.rpc import status_pb2
from prometheus_client import generate_latest

from classify_emulator.config import EmulatorConfig
from classify_emulator.testing import running_emulator
from classify_gateway.telemetry.observability import JsonFormatter
from tests.support.classify import classify_request
from tests.support.emulators import page_rule, reset_around
from tests.support.gateway import collect, no_cache_gateway, read_rest
from tests.support.logs import events
from tests.support.processes import drain_pipe, free_port, serve_process

CANARY = "tlk_SECRET_canary_5d1e9a7c3b20"  # the gateway's configured key
CALLER_CANARY = "tlk_SECRET_caller_canary_88f2e1"  # a caller's own key (allowed)
REFUSED_CANARY = "tlk_SECRET_refused_canary_41b0c9"  # a key the upstream refuses
CANARIES = (CANARY, CALLER_CANARY, REFUSED_CANARY)
TRACEPARENT = (("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),)


@pytest.fixture(scope="module")
def canary_emulator() -> Iterator[Any]:
    with running_emulator(EmulatorConfig(api_keys=(CANARY, CALLER_CANARY))) as emu:
        yield emu


@pytest.fixture
def emu(canary_emulator: Any) -> Iterator[Any]:
    yield from reset_around(canary_emulator)


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every record of the gateway's loggers (and httpx's), as the production JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())  # no secrets given: nothing is redacted
    saved = []
    for name, level in (("classify_gateway", logging.DEBUG), ("httpx", logging.INFO)):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(level)
        logger.addHandler(handler)
    try:
        yield out
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


class Seen:
    """Everything a caller or an operator could see, as text."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.errors = 0

    def add(self, text: str | bytes) -> None:
        self.parts.append(text.decode(errors="replace") if isinstance(text, bytes) else text)

    def call(self, pages: list[Any], err: grpc.aio.AioRpcError | None) -> None:
        for p in pages:
            self.add(str(p))
        if err is None:
            return
        self.errors += 1
        self.add(err.details() or "")
        self.add(err.debug_error_string() or "")
        for key, value in err.trailing_metadata() or ():
            self.add(key)
            self.add(value)
            if key == "grpc-status-details-bin":
                self.add(str(status_pb2.Status.FromString(value)))  # every detail, decoded
        for key, value in err.initial_metadata() or ():
            self.add(f"{key}={value!r}")

    def leaks(self) -> list[str]:
        text = "\n".join(self.parts)
        return [c for c in CANARIES if c in text]


async def _stream(seen: Seen, stub: Any, req: Any, **kw: Any) -> None:
    pages, err = await collect(stub.Classify(req, **kw))
    seen.call(pages, err)


async def test_no_key_in_logs_errors_metadata_or_metrics(emu: Any) -> None:
    req = classify_request(emu, count=12, page_limit=2)
    seen = Seen()
    with captured_logs() as logs:
        async with no_cache_gateway(
            emu.base_url + "/v1.2", CANARY, retry_max_attempts=2, allow_caller_api_key=True
        ) as gw:
            stub = gw.stub
            await _stream(seen, stub, req, timeout=10, metadata=TRACEPARENT)  # success
            for action in (
                {"type": "status", "status": 503},
                {"type": "rate_limit", "retry_after": 0},
                {"type": "reset", "after_bytes": 20},
                {"type": "malformed"},
                {"type": "wrong_types"},
                {"type": "expire_token"},
            ):
                emu.admin.add_fault(page_rule(action, after=1))
                await _stream(seen, stub, req, timeout=10)
                emu.admin.clear_faults()
            # The deadline passes while a page is in flight upstream.
            emu.admin.add_fault(page_rule({"type": "latency", "ms": 5000}, after=1))
            await _stream(seen, stub, req, timeout=1)
            # A caller cancels mid-stream.
            call = stub.Classify(req, timeout=10)
            await call.read()
            call.cancel()
            emu.admin.clear_faults()
            # A caller's own key: accepted, then one the upstream refuses (401).
            await _stream(seen, stub, req, timeout=10, metadata=(("x-api-key", CALLER_CANARY),))
            await _stream(seen, stub, req, timeout=10, metadata=(("x-api-key", REFUSED_CANARY),))
            # The unary RPC, failing.
            try:
                await stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token="nope"), timeout=5)
            except grpc.aio.AioRpcError as err:
                seen.call([], err)
            seen.add(generate_latest(gw.gateway.metrics.registry))
            # The drain: a stream cut at the end of the grace.
            emu.admin.add_fault(page_rule({"type": "latency", "ms": 5000}, after=0))
            cut = stub.Classify(req, timeout=10)
            await cut.read()
            stopping = asyncio.ensure_future(gw.gateway.stop(grace=0.5))
            rest, cut_err = await read_rest(cut)
            seen.call(rest, cut_err)
            assert cut_err is not None and cut_err.code() == grpc.StatusCode.UNAVAILABLE
            await stopping
            emu.admin.clear_faults()
            seen.add(generate_latest(gw.gateway.metrics.registry))
        # The gateway's own key refused by the upstream; and the upstream down.
        async with no_cache_gateway(emu.base_url + "/v1.2", REFUSED_CANARY) as gw:
            await _stream(seen, gw.stub, req, timeout=10)
            seen.add(generate_latest(gw.gateway.metrics.registry))
        closed = f"http://127.0.0.1:{free_port()}/v1.2"
        async with no_cache_gateway(closed, CANARY, retry_max_attempts=2) as gw:
            await _stream(seen, gw.stub, req, timeout=5)
            seen.add(generate_latest(gw.gateway.metrics.registry))
        # Overload.
        async with no_cache_gateway(emu.base_url + "/v1.2", CANARY, max_concurrent_streams=1) as gw:
            emu.admin.add_fault(
                {"match": {"method": "POST"}, "times": 1, "action": {"type": "latency", "ms": 500}}
            )
            first = asyncio.ensure_future(_stream(seen, gw.stub, req, timeout=10))
            await asyncio.sleep(0.2)
            await _stream(seen, gw.stub, req, timeout=10)
            await first
            seen.add(generate_latest(gw.gateway.metrics.registry))
    seen.add(logs.getvalue())

    # Not vacuous: the scenarios ran and were logged, the failures reached the caller.
    assert seen.errors >= 12
    logged = events(logs.getvalue())
    assert logged["rpc"] >= 15
    assert logged["upstream_retry"] >= 1
    assert logged["startup"] >= 1  # includes the settings
    assert logged["shutdown_complete"] >= 1
    assert any("GATEWAY_OVERLOADED" in p for p in seen.parts)
    assert any("API_KEY_INVALID" in p for p in seen.parts)
    assert not seen.leaks(), f"a key leaked: {seen.leaks()}"


def test_no_key_in_traces(canary_emulator: Any) -> None:
    """A real `serve` with the console span exporter: no span, attribute or log holds a key."""
    emu = canary_emulator
    emu.admin.reset()
    req = classify_request(emu, count=12, page_limit=4)
    proc = serve_process(
        emu.base_url + "/v1.2",
        CANARY,
        allow_caller_api_key="true",
        tracing_exporter="console",
        retry_max_attempts=2,
        retry_initial_backoff=0.01,
        log_level="DEBUG",
        drain_grace=1,
    )
    out: list[bytes] = []
    err_out: list[bytes] = []
    readers = [drain_pipe(proc.stdout, out), drain_pipe(proc.stderr, err_out)]
    try:
        with grpc.insecure_channel(proc.address) as channel:
            stub = pb_grpc.ClassifyServiceStub(channel)
            assert len(list(stub.Classify(req, timeout=10, metadata=TRACEPARENT))) == 3
            caller = (*TRACEPARENT, ("x-api-key", CALLER_CANARY))
            assert len(list(stub.Classify(req, timeout=10, metadata=caller))) == 3
            with pytest.raises(grpc.RpcError):
                list(stub.Classify(req, timeout=10, metadata=(("x-api-key", REFUSED_CANARY),)))
            emu.admin.add_fault(page_rule({"type": "status", "status": 503}, after=0))
            with pytest.raises(grpc.RpcError):  # no-cache: the pages are stored by now
                fresh = (*TRACEPARENT, ("cache-control", "no-cache"))
                list(stub.Classify(req, timeout=10, metadata=fresh))
            emu.admin.clear_faults()
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(15) == 0
    finally:
        proc.stop()
        for r in readers:
            r.join(5)
        emu.admin.reset()
    spans = b"".join(out).decode(errors="replace")
    logs = b"".join(err_out).decode(errors="replace")
    # Not vacuous: server and upstream-client spans were exported, with the caller's trace id.
    assert spans.count('"span_id"') >= 8, spans[:2000]
    assert "0af7651916cd43dd8448eb211c80319c" in spans
    assert "/classify" in spans  # the httpx client spans
    for canary in CANARIES:
        assert canary not in spans, "a key is in a span"
        assert canary not in logs, "a key is in the process's log"
    # The log formatter's defensive redaction never had to act: no key reached a record.
    assert "<redacted>" not in logs
