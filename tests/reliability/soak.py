"""Soak: a real emulator and gateway under steady load with faults, for as long as asked.

    .venv/bin/python -m tests.reliability.soak --seconds 600      # make soak
    .venv/bin/python -m tests.reliability.soak --seconds 20       # a quick check

classify_emulator/stack.py's running_stack starts `classify-gateway emulator` and `classify-gateway serve`
as child processes. `--concurrency` clients (20) run logical requests back to back: each
streams a whole classification; when a stream fails, the client resumes from the error's
ErrorInfo `resume_page_token` (or, if the error has none, from the last page's
`next_page_token`; or sends the request again if it had no page yet). Meanwhile faults are
injected at random into the emulator (503/502 bursts, 429s, latency spikes, some past the
client's deadline, connection resets, truncated and malformed bodies). Every few seconds
the gateway's RSS and open fds are sampled.

At the end, the pages each logical request received are compared with a fault-free run of
the same request: a missing page is lost, an extra one duplicated, a different one
mismatched. The report (JSON) goes to bench/results/soak.json (`--out -` for stdout);
the exit status is 1 on any lost, duplicated or mismatched page, on an abandoned request,
or when memory or fds grow beyond the thresholds below, else 0.

Thresholds (see docs/reliability.md): after a warm-up (a fifth of the run, at most 60 s)
the gateway's RSS may grow at most RSS_GROWTH_LIMIT_MB in total and, for runs of at least
RSS_SLOPE_MIN_SECONDS, at most RSS_SLOPE_LIMIT_MB_PER_MIN (least squares); open fds may
grow at most FD_GROWTH_LIMIT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import psutil
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from classify_emulator.stack import running_stack
from classify_emulator.testing import AdminClient
from tests.support.classify import classify_request
from tests.support.gateway import error_info, page_key

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "results" / "soak.json"
# A leak of one 50 KB page per logical request would grow RSS by ~25 MB/min at the
# quick-run rate (~500 requests/min); allocator noise on a steady gateway stays well
# below these (docs/reliability.md gives the measured slopes).
RSS_GROWTH_LIMIT_MB = 48.0
RSS_SLOPE_LIMIT_MB_PER_MIN = 1.0
RSS_SLOPE_MIN_SECONDS = 120.0
# Idle keep-alive connections come and go (the pool keeps at most 50); a leak grows for good.
FD_GROWTH_LIMIT = 64
MAX_ATTEMPTS = 40  # RPCs per logical request before it is abandoned
PAGE_LIMITS = (1, 2, 3)  # 12 videos: 12, 6 and 4 pages


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) pairs, per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var * 60.0


@dataclass
class Tally:
    logical_requests: int = 0
    unfinished: int = 0
    abandoned: int = 0
    rpcs: int = 0
    pages: int = 0
    pages_expected: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    resumes_from_error_info: int = 0
    resumes_from_last_page: int = 0
    restarts: int = 0
    token_mismatch: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


def compare(received: list[bytes], expected: list[bytes], tally: Tally) -> None:
    """Count lost, duplicated and mismatched pages of one finished logical request."""
    tally.pages_expected += len(expected)
    got, want = Counter(received), Counter(expected)
    tally.lost += sum((want - got).values())
    tally.duplicated += sum((got - want).values())
    if not (want - got) and not (got - want) and received != expected:
        tally.mismatched += len(expected)  # same pages, wrong order


async def logical_request(
    stub: Any, req: pb.ClassifyRequest, expected: list[bytes], tally: Tally, rpc_timeout: float
) -> bool:
    """Stream one classification to the end, resuming after failures. True if finished."""
    received: list[bytes] = []
    current = req
    for _ in range(MAX_ATTEMPTS):
        tally.rpcs += 1
        last: Any = None
        call = stub.Classify(current, timeout=rpc_timeout)
        try:
            async for page in call:
                received.append(page_key(page))
                tally.pages += 1
                last = page
        except grpc.aio.AioRpcError as err:
            info = error_info(err)
            tally.errors[f"{err.code().name}/{info.reason if info else '-'}"] += 1
            token = info.metadata.get("resume_page_token") if info else None
            last_token = last.page_info.next_page_token if last is not None else None
            if last_token == "":
                # The last page (no next token) arrived before the error: under load the
                # caller's own deadline can fire between it and the OK status. Every page
                # is here; starting again would count each one twice.
                compare(received, expected, tally)
                return True
            if token:
                if last_token is not None and token != last_token:
                    tally.token_mismatch += 1
                tally.resumes_from_error_info += 1
                current = pb.ClassifyRequest(page_token=token)
            elif last_token:
                tally.resumes_from_last_page += 1
                current = pb.ClassifyRequest(page_token=last_token)
            elif current.page_token:
                tally.resumes_from_last_page += 1  # failed before its first page: same token
            else:
                tally.restarts += 1  # nothing received yet: send the request again
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                await asyncio.sleep(0.2)
            continue
        compare(received, expected, tally)
        return True
    tally.abandoned += 1
    compare(received, expected, tally)
    return False


async def inject_faults(
    admin: AdminClient, rng: random.Random, stop: asyncio.Event, every: float, tally: Tally
) -> None:
    """Add a random fault rule every `every` seconds; clear the (used up) rules now and then."""
    kinds = [
        # (name, weight, action, (min, max) uses): bursts longer than the gateway's two
        # attempts reach the clients, shorter ones are absorbed by its retries.
        ("503_burst", 4, lambda: {"type": "status", "status": 503}, (3, 16)),
        ("502_burst", 2, lambda: {"type": "status", "status": 502}, (3, 10)),
        ("429", 2, lambda: {"type": "rate_limit", "retry_after": 0}, (3, 10)),
        ("latency_spike", 4, lambda: {"type": "latency", "ms": rng.randint(100, 1500)}, (1, 10)),
        ("latency_past_deadline", 1, lambda: {"type": "latency", "ms": 30_000}, (1, 1)),
        ("reset", 3, lambda: {"type": "reset", "after_bytes": rng.randint(0, 200)}, (1, 8)),
        ("truncate", 2, lambda: {"type": "truncate"}, (1, 6)),
        ("malformed", 1, lambda: {"type": "malformed"}, (1, 6)),
        ("wrong_types", 1, lambda: {"type": "wrong_types"}, (1, 2)),
    ]
    weights = [w for _, w, _, _ in kinds]
    added = 0
    while not stop.is_set():
        name, _, action, (low, high) = rng.choices(kinds, weights)[0]
        match: dict[str, str] = (
            {"method": "GET", "path": "/classify/"} if rng.random() < 0.8 else {"method": "POST"}
        )
        rule = {
            "match": match,
            "after": rng.randint(0, 3),
            "times": rng.randint(low, high),
            "action": action(),
        }
        await asyncio.to_thread(admin.add_fault, rule)
        tally.faults[name] += 1
        added += 1
        if added % 30 == 0:
            await asyncio.to_thread(admin.clear_faults)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    await asyncio.to_thread(admin.clear_faults)


async def sample(
    proc: psutil.Process, started: float, stop: asyncio.Event, every: float, out: list[list[float]]
) -> None:
    while True:
        with proc.oneshot():
            out.append(
                [
                    round(time.monotonic() - started, 2),
                    proc.memory_info().rss / 2**20,
                    proc.num_fds(),
                ]
            )
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except TimeoutError:
            pass


def analyse(samples: list[list[float]], seconds: float) -> dict[str, Any]:
    warmup = min(60.0, seconds / 5)
    steady = [s for s in samples if s[0] >= warmup] or samples[-1:]
    rss = [(t, v) for t, v, _ in samples]
    rss_steady = [(t, v) for t, v, _ in steady]
    fds_steady = [(t, float(f)) for t, _, f in steady]
    return {
        "warmup_s": warmup,
        "rss_mb": {
            "start": round(samples[0][1], 1),
            "after_warmup": round(steady[0][1], 1),
            "end": round(samples[-1][1], 1),
            "max": round(max(v for _, v in rss), 1),
            "growth_after_warmup": round(samples[-1][1] - steady[0][1], 2),
            "slope_per_min": round(slope_per_minute(rss), 3),
            "slope_after_warmup_per_min": round(slope_per_minute(rss_steady), 3),
        },
        "fds": {
            "start": int(samples[0][2]),
            "after_warmup": int(steady[0][2]),
            "end": int(samples[-1][2]),
            "max": int(max(f for _, _, f in samples)),
            "growth_after_warmup": int(samples[-1][2] - steady[0][2]),
            "slope_after_warmup_per_min": round(slope_per_minute(fds_steady), 3),
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    tally = Tally()
    # Sharing off: every logical request must reach the faulty upstream (tests/support/gateway.py).
    gateway_settings = {
        "retry_max_attempts": 2,
        "log_level": "WARNING",
        "coalesce": False,
        "cache_ttl": 0,
    }
    log_dir = Path(args.log_dir) if args.log_dir else ROOT / ".cache" / "soak-logs"
    with running_stack(gateway_settings, log_dir) as stack:
        emu = SimpleNamespace(
            base_url=stack.env["CLASSIFY_EMULATOR_URL"],
            api_key=stack.env["CLASSIFY_EMULATOR_API_KEY"],
        )
        admin = AdminClient(emu.base_url)
        gateway = psutil.Process(stack.gateway.pid)
        channels = [grpc.aio.insecure_channel(stack.env["CLASSIFY_GATEWAY_ADDR"]) for _ in range(2)]
        stubs = [pb_grpc.ClassifyServiceStub(c) for c in channels]
        try:
            variants = [classify_request(emu, count=12, page_limit=n) for n in PAGE_LIMITS]
            expected: list[list[bytes]] = []
            for req in variants:
                pages = [page_key(p) async for p in stubs[0].Classify(req, timeout=30)]
                assert len(pages) == 12 // req.page_limit, "the baseline run must be fault-free"
                expected.append(pages)

            started = time.monotonic()
            end = started + args.seconds
            stop = asyncio.Event()
            samples: list[list[float]] = []
            sampler = asyncio.ensure_future(
                sample(gateway, started, stop, args.sample_interval, samples)
            )
            injector = asyncio.ensure_future(
                inject_faults(admin, rng, stop, args.fault_interval, tally)
            )

            async def worker(n: int) -> None:
                wrng = random.Random(args.seed * 1000 + n)
                while time.monotonic() < end:
                    i = wrng.randrange(len(variants))
                    tally.logical_requests += 1
                    await logical_request(
                        stubs[n % len(stubs)], variants[i], expected[i], tally, args.rpc_timeout
                    )

            workers = [asyncio.ensure_future(worker(n)) for n in range(args.concurrency)]
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            stop.set()  # no new faults (and the rules are cleared); in-flight requests finish
            await injector
            _, pending = await asyncio.wait(workers, timeout=args.rpc_timeout * 3)
            for w in pending:
                w.cancel()
                tally.unfinished += 1
            await asyncio.gather(*pending, return_exceptions=True)
            await sampler
            ran = time.monotonic() - started
        finally:
            for c in channels:
                await c.close()
            admin.close()
        gateway_exit = stack.gateway.popen.poll()

    report: dict[str, Any] = {
        "seconds_requested": args.seconds,
        "seconds_run": round(ran, 1),
        "concurrency": args.concurrency,
        "seed": args.seed,
        "rpc_timeout_s": args.rpc_timeout,
        "logical_requests": tally.logical_requests,
        "finished_requests": tally.logical_requests - tally.unfinished,
        "unfinished_at_stop": tally.unfinished,
        "abandoned": tally.abandoned,
        "rpcs": tally.rpcs,
        "pages": tally.pages,
        "pages_per_second": round(tally.pages / ran, 1),
        "pages_expected": tally.pages_expected,
        "lost_pages": tally.lost,
        "duplicated_pages": tally.duplicated,
        "mismatched_pages": tally.mismatched,
        "resume_token_mismatches": tally.token_mismatch,
        "resumes": {
            "from_error_info": tally.resumes_from_error_info,
            "from_last_page": tally.resumes_from_last_page,
            "restarts_without_pages": tally.restarts,
        },
        "errors": dict(tally.errors.most_common()),
        "faults_injected": dict(tally.faults.most_common()),
        "gateway_alive_at_end": gateway_exit is None,
        **analyse(samples, ran),
        "thresholds": {
            "rss_growth_after_warmup_mb": RSS_GROWTH_LIMIT_MB,
            "rss_slope_after_warmup_mb_per_min": RSS_SLOPE_LIMIT_MB_PER_MIN,
            "rss_slope_applies_from_s": RSS_SLOPE_MIN_SECONDS,
            "fd_growth_after_warmup": FD_GROWTH_LIMIT,
        },
        "samples": samples,
    }
    failures = []
    for key in (
        "lost_pages",
        "duplicated_pages",
        "mismatched_pages",
        "abandoned",
        "resume_token_mismatches",
    ):
        if report[key]:
            failures.append(f"{key}={report[key]}")
    if not report["gateway_alive_at_end"]:
        failures.append("the gateway exited during the soak")
    if report["rss_mb"]["growth_after_warmup"] > RSS_GROWTH_LIMIT_MB:
        failures.append(f"RSS grew {report['rss_mb']['growth_after_warmup']} MB after the warm-up")
    slope = report["rss_mb"]["slope_after_warmup_per_min"]
    if ran >= RSS_SLOPE_MIN_SECONDS and slope > RSS_SLOPE_LIMIT_MB_PER_MIN:
        failures.append(f"RSS slope {slope} MB/min after the warm-up")
    if report["fds"]["growth_after_warmup"] > FD_GROWTH_LIMIT:
        failures.append(f"fds grew by {report['fds']['growth_after_warmup']} after the warm-up")
    report["failures"] = failures
    report["ok"] = not failures
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to load (600)")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent clients (20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rpc-timeout", type=float, default=8.0, help="each RPC's deadline, s (8)")
    parser.add_argument(
        "--fault-interval", type=float, default=0.3, help="s between new faults (0.3)"
    )
    parser.add_argument(
        "--sample-interval", type=float, default=None, help="s between samples (2, or 1 below 60 s)"
    )
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT), help=f"report path, or - for stdout ({DEFAULT_OUT})"
    )
    parser.add_argument(
        "--log-dir", default=None, help="emulator and gateway logs (.cache/soak-logs)"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1:
        parser.error("--seconds must be > 0 and --concurrency >= 1")
    if args.sample_interval is None:
        args.sample_interval = 2.0 if args.seconds >= 60 else 1.0
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    if args.out == "-":
        print(text)
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        summary = {k: v for k, v in report.items() if k != "samples"}
        print(json.dumps(summary, indent=2))
        print(f"soak: report written to {out}", file=sys.stderr)
    status = "ok" if report["ok"] else "FAILED: " + "; ".join(report["failures"])
    print(f"soak: {report['pages']} pages in {report['seconds_run']} s, {status}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
