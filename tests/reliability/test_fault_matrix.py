"""Fault matrix: each upstream fault, injected mid-stream, and what the caller gets.

For every row: the gRPC code and ErrorInfo the caller sees, how many pages it got before
the failure, that the call never outlives its deadline, and that resuming from the
reported `resume_page_token` yields exactly the missing pages (no duplicate, no gap)
compared with a fault-free run of the same request.

Faults hit page GETs after the first one (`after: 1`): the POST (page 1) and the first GET
(page 2) succeed, then every later page GET gets the fault `times` times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from tests.support.classify import classify_request
from tests.support.emulators import PAGES, page_rule
from tests.support.gateway import (
    collect,
    error_details,
    no_cache_gateway,
    no_cache_gateway_for,
    page_keys,
    resume_request,
    resume_token,
)
from tests.support.processes import emulator_process, free_port

C = grpc.StatusCode
ATTEMPTS = 3  # retry_max_attempts for every gateway here
MARGIN = 0.5  # how far past its deadline a call may end (scheduling on a loaded 2-core box)
PAGES_BEFORE_FAULT = 2  # page 1 from the POST, page 2 from the first (unfaulted) GET


@dataclass(frozen=True)
class Case:
    action: dict[str, Any]
    times: int  # -1: a storm that outlasts every retry
    code: grpc.StatusCode  # OK: the gateway absorbed the fault
    reason: str = ""
    http_status: str | None = None
    faulted: int | None = None  # upstream requests that got the fault
    timeout: float = 8.0
    min_elapsed: float = 0.0
    max_elapsed: float | None = None
    retry_delay: tuple[float, float] | None = None  # RetryInfo bounds, seconds
    settings: dict[str, Any] = field(default_factory=dict)
    # False: the error offers no resume token (resuming could only fail again); the caller
    # starts the classification over, and that run must equal the fault-free one.
    resumable: bool = True
    # The 429 said when the upstream's quota comes back: every replica waits for it
    # (quota.SharedLimiter.learn), so a resume before then is refused without a request.
    learned_reset: bool = False


TRICKLE_SLOW = {"type": "trickle", "chunk_bytes": 256, "interval_ms": 100}  # ~30 s a page

CASES: dict[str, Case] = {
    # Latency spikes: absorbed while they fit the deadline, DEADLINE_EXCEEDED when not.
    "latency_spike_absorbed": Case(
        {"type": "latency", "ms": 300}, 2, C.OK, faulted=2, min_elapsed=0.6
    ),
    "latency_past_deadline": Case(
        {"type": "latency", "ms": 30_000},
        -1,
        C.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        faulted=1,
        timeout=1.5,
    ),
    # N x 503 then success (N < attempts), and a 503 storm.
    "503_twice_then_ok": Case({"type": "status", "status": 503}, 2, C.OK, faulted=2),
    "503_storm": Case(
        {"type": "status", "status": 503}, -1, C.UNAVAILABLE, "INTERNAL_ERROR", "503", ATTEMPTS
    ),
    "502_storm": Case(
        {"type": "status", "status": 502, "code": "bad_gateway"},
        -1,
        C.UNAVAILABLE,
        "BAD_GATEWAY",
        "502",
        ATTEMPTS,
    ),
    # 429 storms: with Retry-After 0 (retried, then RESOURCE_EXHAUSTED), with Retry-After 1
    # once (waited for, then success), and without Retry-After (X-Ratelimit-Reset 60 s away:
    # longer than the deadline, so no wait is started and RetryInfo says when).
    "429_storm_retry_after_0": Case(
        {"type": "rate_limit", "retry_after": 0},
        -1,
        C.RESOURCE_EXHAUSTED,
        "TOO_MANY_REQUESTS",
        "429",
        ATTEMPTS,
        retry_delay=(0, 1),
    ),
    "429_retry_after_1_once": Case(
        {"type": "rate_limit", "retry_after": 1}, 1, C.OK, faulted=1, min_elapsed=0.95
    ),
    "429_storm_no_retry_after": Case(
        {"type": "rate_limit"},
        -1,
        C.RESOURCE_EXHAUSTED,
        "TOO_MANY_REQUESTS",
        "429",
        1,
        max_elapsed=1.0,
        retry_delay=(55, 61),
        learned_reset=True,
    ),
    # A connection reset after 20 bytes of the body.
    "reset_once": Case({"type": "reset", "after_bytes": 20}, 1, C.OK, faulted=1),
    "reset_storm": Case(
        {"type": "reset", "after_bytes": 20}, -1, C.UNAVAILABLE, "UPSTREAM_UNREACHABLE", None, 3
    ),
    # Truncated JSON (half the body) and a body that is not JSON at all.
    "truncate_once": Case({"type": "truncate"}, 1, C.OK, faulted=1),
    "truncate_storm": Case(
        {"type": "truncate"}, -1, C.UNAVAILABLE, "UPSTREAM_MALFORMED_RESPONSE", None, ATTEMPTS
    ),
    "malformed_storm": Case(
        {"type": "malformed"}, -1, C.UNAVAILABLE, "UPSTREAM_MALFORMED_RESPONSE", None, ATTEMPTS
    ),
    # A slowly trickled body: slow but whole; longer than the deadline (the hard per-attempt
    # cap, not httpx's per-read timeout, ends it); longer than the per-attempt timeout.
    "trickle_slow_but_complete": Case(
        {"type": "trickle", "chunk_bytes": 16384, "interval_ms": 20}, -1, C.OK, faulted=4
    ),
    "trickle_past_deadline": Case(
        TRICKLE_SLOW, -1, C.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", faulted=1, timeout=2.0
    ),
    "trickle_past_attempt_timeout": Case(
        TRICKLE_SLOW,
        -1,
        C.UNAVAILABLE,
        "UPSTREAM_TIMEOUT",
        None,
        ATTEMPTS,
        min_elapsed=3 * 0.4,
        settings={"upstream_timeout": 0.4},
    ),
    # An expired page token (the upstream's 400 parameter_invalid on page_token): not
    # retried, BadRequest on page_token, no resume token: start over.
    "expired_token": Case(
        {"type": "expire_token"},
        -1,
        C.INVALID_ARGUMENT,
        "PARAMETER_INVALID",
        "400",
        1,
        resumable=False,
    ),
    # Valid JSON with every value of the wrong type: not retried, DATA_LOSS.
    "wrong_types": Case(
        {"type": "wrong_types"}, -1, C.DATA_LOSS, "UPSTREAM_SCHEMA_MISMATCH", None, 1
    ),
}


async def _baseline(stub: Any, req: pb.ClassifyRequest) -> list[pb.ClassifyResponse]:
    pages, err = await collect(stub.Classify(req, timeout=10))
    assert err is None, err
    assert len(pages) >= 5, "the request should give a stream of several pages"
    return pages


@pytest.mark.parametrize("name", list(CASES))
async def test_fault_mid_stream(emulator: Any, name: str) -> None:
    case = CASES[name]
    req = classify_request(emulator, count=12, page_limit=2)
    settings = {"retry_max_attempts": ATTEMPTS, **case.settings}
    async with no_cache_gateway_for(emulator, **settings) as gw:
        expected = page_keys(await _baseline(gw.stub, req))

        emulator.admin.add_fault(page_rule(case.action, after=1, times=case.times))
        started = time.monotonic()
        pages, err = await collect(gw.stub.Classify(req, timeout=case.timeout))
        elapsed = time.monotonic() - started
        faulted = [r for r in emulator.admin.requests() if r["fault"] == case.action["type"]]
        emulator.admin.clear_faults()

        # Never past the deadline, and never faster than the fault allows.
        assert elapsed < case.timeout + MARGIN, f"{name}: ran {elapsed:.2f}s"
        assert elapsed >= case.min_elapsed
        if case.max_elapsed is not None:
            assert elapsed < case.max_elapsed, f"{name}: answered after {elapsed:.2f}s"
        if case.faulted is not None:
            assert len(faulted) == case.faulted, [r["status"] for r in faulted]

        if case.code == C.OK:
            assert err is None, f"{name}: {err}"
            assert page_keys(pages) == expected
            return

        assert err is not None, f"{name}: the stream ended OK"
        assert err.code() == case.code, err.details()
        assert len(pages) == PAGES_BEFORE_FAULT
        last_token = pages[-1].page_info.next_page_token
        token = resume_token(err)
        if not case.resumable:
            d = error_details(err)
            assert d.info is not None and d.info.reason == case.reason, d.info
            assert d.info.metadata.get("http_status") == case.http_status
            assert token is None, "a refused token must not be offered for resume"
            assert d.bad_request is not None
            assert [v.field for v in d.bad_request.field_violations] == ["page_token"]
            again, err = await collect(gw.stub.Classify(req, timeout=10))
            assert err is None and page_keys(again) == expected  # started over
            return
        if case.code == C.DEADLINE_EXCEEDED and token is None:
            # The caller's own deadline fired first: no trailer. The last page still says
            # where to resume (see test_deadline_error_carries_the_resume_token).
            token = last_token
        else:
            d = error_details(err)
            assert d.info is not None and d.info.reason == case.reason, d.info
            assert d.info.metadata.get("http_status") == case.http_status
            if case.retry_delay is not None:
                assert d.retry is not None
                low, high = case.retry_delay
                assert low <= d.retry.retry_delay.ToTimedelta().total_seconds() <= high
        # The token names exactly the first page not received.
        assert token == last_token != ""

        if case.learned_reset:
            spent = len(emulator.admin.requests())
            _, err = await collect(gw.stub.Classify(resume_request(token), timeout=10))
            assert err is not None and err.code() == C.RESOURCE_EXHAUSTED, err
            d = error_details(err)
            assert d.info is not None and d.info.reason == "GATEWAY_RATE_LIMITED"
            assert d.retry is not None and d.retry.retry_delay.ToTimedelta().total_seconds() > 50
            assert len(emulator.admin.requests()) == spent, "nothing spent before the reset"
            # Another gateway (not sharing state) resumes where the stream stopped.
            async with no_cache_gateway_for(emulator, **settings) as fresh:
                rest, err = await collect(fresh.stub.Classify(resume_request(token), timeout=10))
        else:
            rest, err = await collect(gw.stub.Classify(resume_request(token), timeout=10))
        assert err is None, err
        assert [p.page_number for p in rest] == list(range(1, len(rest) + 1))
        assert page_keys(pages + rest) == expected  # no duplicate, no gap


async def test_upstream_down_fresh_request(emulator: Any) -> None:
    """A gateway whose upstream port is closed: UNAVAILABLE at once; resume = send again."""
    req = classify_request(emulator, count=12, page_limit=2)
    closed = f"http://127.0.0.1:{free_port()}/v1.2"
    async with no_cache_gateway(closed, emulator.api_key, retry_max_attempts=ATTEMPTS) as down:
        started = time.monotonic()
        pages, err = await collect(down.stub.Classify(req, timeout=5))
        elapsed = time.monotonic() - started
    assert pages == []
    assert err is not None and err.code() == C.UNAVAILABLE
    info = error_details(err).info
    assert info is not None and info.reason == "UPSTREAM_UNREACHABLE"
    assert resume_token(err) is None  # no page sent: the caller sends the request again
    assert elapsed < 2.0, "connection refused must not wait for the deadline"
    async with no_cache_gateway_for(emulator) as gw:
        again, err = await collect(gw.stub.Classify(req, timeout=10))
        assert err is None
        assert page_keys(again) == page_keys(await _baseline(gw.stub, req))


async def test_upstream_down_resumed_stream(emulator: Any) -> None:
    """A resumed stream that cannot reach the upstream reports the token it was given."""
    req = classify_request(emulator, count=12, page_limit=2)
    async with no_cache_gateway_for(emulator) as gw:
        expected = page_keys(await _baseline(gw.stub, req))
        head_req = pb.ClassifyRequest()
        head_req.CopyFrom(req)
        head_req.max_pages = 2
        head, err = await collect(gw.stub.Classify(head_req, timeout=10))
        assert err is None and len(head) == 2
        token = head[-1].page_info.next_page_token
        closed = f"http://127.0.0.1:{free_port()}/v1.2"
        async with no_cache_gateway(closed, emulator.api_key, retry_max_attempts=ATTEMPTS) as down:
            started = time.monotonic()
            none, err = await collect(down.stub.Classify(resume_request(token), timeout=5))
            assert time.monotonic() - started < 2.0
        assert none == [] and err is not None and err.code() == C.UNAVAILABLE
        assert resume_token(err) == token
        rest, err = await collect(gw.stub.Classify(resume_request(token), timeout=10))
        assert err is None
        assert page_keys(head + rest) == expected


async def test_upstream_dies_mid_stream() -> None:
    """The upstream process is killed while a page is in flight: UNAVAILABLE + resume token."""
    with emulator_process() as emu:
        req = classify_request(emu, count=12, page_limit=2)
        emu.admin.add_fault(page_rule({"type": "latency", "ms": 5000}, after=1))
        async with no_cache_gateway_for(emu, retry_max_attempts=ATTEMPTS) as gw:
            call = gw.stub.Classify(req, timeout=8)
            first = await call.read()
            second = await call.read()
            emu.proc.popen.kill()  # page 3's GET is waiting upstream
            started = time.monotonic()
            rest: list[Any] = []
            err = None
            try:
                while (msg := await call.read()) is not grpc.aio.EOF:
                    rest.append(msg)
            except grpc.aio.AioRpcError as exc:
                err = exc
            elapsed = time.monotonic() - started
    assert rest == []
    assert err is not None and err.code() == C.UNAVAILABLE
    info = error_details(err).info
    assert info is not None and info.reason == "UPSTREAM_UNREACHABLE"
    assert resume_token(err) == second.page_info.next_page_token != ""
    assert first.page_number == 1 and second.page_number == 2
    assert elapsed < 2.0


async def test_token_really_expires_mid_stream(emulator: Any) -> None:
    """Tokens that expire while the stream waits: INVALID_ARGUMENT naming page_token, no
    resume token (resuming could only fail again, and does), and starting over works."""
    req = classify_request(emulator, count=12, page_limit=2)
    async with no_cache_gateway_for(emulator, retry_max_attempts=ATTEMPTS) as gw:
        expected = page_keys(await _baseline(gw.stub, req))
        emulator.admin.set_config(page_ttl_seconds=1)
        emulator.admin.add_fault(page_rule({"type": "latency", "ms": 1500}, after=1))
        pages, err = await collect(gw.stub.Classify(req, timeout=8))
        assert err is not None and err.code() == C.INVALID_ARGUMENT
        assert len(pages) == PAGES_BEFORE_FAULT
        d = error_details(err)
        assert d.info is not None and d.info.reason == "PARAMETER_INVALID"
        assert resume_token(err) is None
        assert d.bad_request is not None
        assert [v.field for v in d.bad_request.field_violations] == ["page_token"]
        emulator.admin.clear_faults()
        # The last page's token has expired too: resuming from it is refused the same way.
        last = pages[-1].page_info.next_page_token
        none, err = await collect(gw.stub.Classify(resume_request(last), timeout=8))
        assert none == [] and err is not None and err.code() == C.INVALID_ARGUMENT
        assert resume_token(err) is None
        # The documented recovery: start the classification again.
        emulator.admin.set_config(page_ttl_seconds=300)
        again, err = await collect(gw.stub.Classify(req, timeout=10))
        assert err is None and page_keys(again) == expected
    assert len([r for r in emulator.admin.requests() if PAGES in r["path"]]) > 0


async def test_deadline_error_carries_the_resume_token(emulator: Any) -> None:
    """A stream cut by its deadline says where to resume, like every other mid-stream error."""
    req = classify_request(emulator, count=12, page_limit=2)
    async with no_cache_gateway_for(emulator) as gw:
        missing = 0
        for _ in range(8):
            emulator.admin.clear_faults()
            emulator.admin.add_fault(page_rule({"type": "latency", "ms": 30_000}, after=1))
            pages, err = await collect(gw.stub.Classify(req, timeout=0.5))
            assert err is not None and err.code() == C.DEADLINE_EXCEEDED
            if resume_token(err) != pages[-1].page_info.next_page_token:
                missing += 1
    assert missing == 0, f"{missing} of 8 deadline errors came without resume_page_token"
