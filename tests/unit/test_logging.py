"""Every line on stderr is one JSON object: the gateway's, grpc's, asyncio's, warnings;
with a span active, each carries its trace_id and span_id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata

import pytest
from opentelemetry.sdk.trace import TracerProvider

from classify_gateway.telemetry.observability import setup_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    ours = logging.getLogger("classify_gateway")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    out = io.StringIO()
    setup_logging("INFO", secrets=["tlk_SECRET_123"], stream=out)
    try:
        yield out
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = saved[0], saved[1]
        ours.handlers[:], ours.level, ours.propagate = saved[2], saved[3], saved[4]


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line parses


def test_every_library_logs_json_lines(stream: io.StringIO) -> None:
    logging.getLogger("classify_gateway.edge.server").info("ours", extra={"event": "startup"})
    logging.getLogger("classify_gateway.backends.v1_2.client").debug("below the gateway's level")
    logging.getLogger("grpc._cython.cygrpc").error("grpc says no")
    logging.getLogger("aiohttp.client").warning("aiohttp warns")
    logging.getLogger("grpc").info("library INFO is not logged")

    loop = asyncio.new_event_loop()
    try:
        loop.call_exception_handler({"message": "asyncio trouble", "exception": RuntimeError("x")})
    finally:
        loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
    logging.getLogger("classify_gateway.x").error("key tlk_SECRET_123 leaked?")

    got = lines(stream)
    by_logger = {(r["logger"], r["message"]) for r in got}
    assert ("classify_gateway.edge.server", "ours") in by_logger
    assert ("grpc._cython.cygrpc", "grpc says no") in by_logger
    assert ("aiohttp.client", "aiohttp warns") in by_logger
    assert any(r["logger"] == "asyncio" and "asyncio trouble" in str(r["message"]) for r in got)
    assert any(r["logger"] == "py.warnings" and "a deprecation" in str(r["message"]) for r in got)
    assert not any(
        r["message"] in ("below the gateway's level", "library INFO is not logged") for r in got
    )
    assert all(
        {"time", "level", "message", "logger", "service.name", "service.version"} <= r.keys()
        for r in got
    )
    assert "tlk_SECRET_123" not in stream.getvalue()
    assert not any("trace_id" in r or "span_id" in r for r in got), "no span, no ids"


def test_lines_inside_a_span_carry_its_ids(stream: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("rpc") as span:
        logging.getLogger("classify_gateway.edge.rpc").info("inside")
        logging.getLogger("aiohttp.client").warning("library, inside")
        ctx = span.get_span_context()
    logging.getLogger("classify_gateway.edge.rpc").info("outside")
    inside, library, outside = lines(stream)
    for r in (inside, library):
        assert r["trace_id"] == f"{ctx.trace_id:032x}"
        assert r["span_id"] == f"{ctx.span_id:016x}"
    assert "trace_id" not in outside and "span_id" not in outside


def test_a_callers_trace_id_in_extra_wins(stream: io.StringIO) -> None:
    logging.getLogger("classify_gateway.edge.rpc").info("rpc", extra={"trace_id": "ab" * 16})
    logging.getLogger("classify_gateway.edge.rpc").info("rpc", extra={"trace_id": ""})
    first, second = lines(stream)
    assert first["trace_id"] == "ab" * 16
    assert "trace_id" not in second


def test_time_is_rfc3339_utc_and_the_version_is_the_installed_one(stream: io.StringIO) -> None:
    """Log pipelines (Loki, Cloud Logging, Datadog) parse `time` without a pattern and
    group by service version during a rollout."""
    before = datetime.now(UTC)
    logging.getLogger("classify_gateway.edge.server").warning("ours")
    (record,) = lines(stream)
    when = datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((when - before).total_seconds()) < 5
    assert record["time"].endswith("Z") and len(record["time"]) == len("2026-01-01T00:00:00.000Z")
    assert record["level"] == "warning" and record["message"] == "ours"
    assert record["service.name"] == "classify-gateway"
    assert record["service.version"] == metadata.version("classify-gateway")
