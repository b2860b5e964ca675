"""SIGTERM to a real `classify-gateway serve` while 200 streams are open.

Every stream either completes with all its pages, or ends with UNAVAILABLE /
GATEWAY_SHUTTING_DOWN and a `resume_page_token` equal to the `next_page_token` of the last
page it received; none is cut silently (no CANCELLED, no OK with pages missing). Resuming
every cut stream elsewhere gives exactly the missing pages. The process exits 0 within the
grace period (plus a margin).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from tests.support.classify import classify_request
from tests.support.emulators import PAGES
from tests.support.gateway import (
    collect,
    error_details,
    gateway_for,
    page_keys,
    read_rest,
    resume_request,
)
from tests.support.logs import events
from tests.support.processes import drain_pipe, free_port, serve_process, stop

# Times what it measures under load: run with nothing else running (make test-python).
pytestmark = pytest.mark.alone

GRACE = 3.0
EXIT_MARGIN = 2.0
LONG = 100  # 12 pages, 400 ms each upstream: they outlive the grace
SHORT = 100  # max_pages=3: they finish inside it
CHANNELS = 4


async def test_sigterm_during_200_streams(
    emulator_proc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator_proc
    long_req = classify_request(emu, count=12, page_limit=1)
    short_req = pb.ClassifyRequest()
    short_req.CopyFrom(long_req)
    short_req.max_pages = 3
    async with gateway_for(emu) as gw:
        expected, err = await collect(gw.stub.Classify(long_req, timeout=10))
    assert err is None and len(expected) == 12
    want = page_keys(expected)

    emu.admin.add_fault(
        {
            "match": {"method": "GET", "path": PAGES},
            "times": -1,
            "action": {"type": "latency", "ms": 400},
        }
    )
    # Every stream keeps one page request upstream: let them all through at once.
    monkeypatch.setenv("CLASSIFY_GATEWAY_UPSTREAM_MAX_CONCURRENCY", str(LONG + SHORT))
    port = free_port()
    proc = serve_process(emu.base_url + "/v1.2", emu.api_key, port, drain_grace=GRACE).popen
    out: list[bytes] = []
    err_lines: list[bytes] = []
    readers = [drain_pipe(proc.stdout, out), drain_pipe(proc.stderr, err_lines)]
    try:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(CHANNELS)]
        try:
            stubs = [pb_grpc.ClassifyServiceStub(c) for c in channels]
            calls = [stubs[i % CHANNELS].Classify(long_req, timeout=30) for i in range(LONG)] + [
                stubs[i % CHANNELS].Classify(short_req, timeout=30) for i in range(SHORT)
            ]
            firsts = await asyncio.gather(*(c.read() for c in calls))
            assert all(f.page_number == 1 for f in firsts)

            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            results = await asyncio.gather(*(read_rest(c) for c in calls))
            ended = time.monotonic() - signalled
            exit_code = await asyncio.to_thread(proc.wait, GRACE + EXIT_MARGIN + 5)
            took = time.monotonic() - signalled
        finally:
            for c in channels:
                await c.close()
    finally:
        stop(proc)
        for r in readers:
            r.join(5)

    completed = cut = 0
    to_resume: list[tuple[list[Any], str]] = []
    for i, ((rest, err), first) in enumerate(zip(results, firsts, strict=True)):
        received = [first, *rest]
        short = i >= LONG
        assert [p.page_number for p in received] == list(range(1, len(received) + 1))
        if err is None:
            # OK means every page: all 12, or the 3 asked for.
            assert len(received) == (3 if short else 12), (
                f"stream {i}: OK after {len(received)} pages"
            )
            completed += 1
            continue
        assert err.code() == grpc.StatusCode.UNAVAILABLE, (
            f"stream {i}: {err.code()} {err.details()}"
        )
        info = error_details(err).info
        assert info is not None and info.reason == "GATEWAY_SHUTTING_DOWN"
        token = info.metadata.get("resume_page_token")
        assert token and token == received[-1].page_info.next_page_token
        cut += 1
        if not short:
            to_resume.append((received, token))

    print(
        f"\ndrain: {LONG + SHORT} streams, SIGTERM with grace {GRACE}s: {completed} completed, "
        f"{cut} cut with a resume token; streams ended {ended:.2f}s and the process {took:.2f}s "
        f"after the signal, exit {exit_code}"
    )
    assert exit_code == 0
    assert took < GRACE + EXIT_MARGIN
    assert completed >= SHORT * 0.9, "the short streams should finish inside the grace"
    assert cut >= LONG * 0.9, "the long streams should outlive the grace: the test lost its point"
    log = b"".join(err_lines + out).decode(errors="replace")
    assert events(log)["shutdown_complete"] >= 1

    # Resuming every cut stream elsewhere yields exactly the pages it had not received.
    emu.admin.clear_faults()
    async with gateway_for(emu) as gw:
        tails = await asyncio.gather(
            *(collect(gw.stub.Classify(resume_request(t), timeout=20)) for _, t in to_resume)
        )
    for (received, _), (tail, err) in zip(to_resume, tails, strict=True):
        assert err is None
        assert page_keys(received + tail) == want
