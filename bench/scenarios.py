# The driver blocks between measurements on purpose (subprocess, file and HTTP admin calls).
# ruff: noqa: ASYNC110, ASYNC221
"""The scenarios of the issue, each measured against a baseline taken in the same run.

Every load generator here is bounded both in calls and in seconds, and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from bench import load, procs
from bench.load import DirectPath, GatewayPath, closed_loop, percentile
from classify_gateway.translate import request_to_json

ROOT = procs.ROOT
MS = 1000.0


def r3(x: float) -> float:
    return round(float(x), 3)


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


class CpuMeter:
    """CPU seconds of the driver, gateway and upstream (and everyone else) over a window."""

    def __init__(self, named: dict[str, psutil.Process]) -> None:
        self.named = named

    def __enter__(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.c0 = {n: _cpu(p) for n, p in self.named.items()}
        s = psutil.cpu_times()
        self.sys0 = s.user + s.system + s.nice + s.irq + s.softirq
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.t0
        self.used = {n: _cpu(p) - self.c0[n] for n, p in self.named.items()}
        s = psutil.cpu_times()
        total = s.user + s.system + s.nice + s.irq + s.softirq - self.sys0
        self.used["machine_total"] = total
        self.used["others"] = max(
            0.0, total - sum(v for k, v in self.used.items() if k != "machine_total")
        )

    def cores(self) -> dict[str, float]:
        return {n: round(v / self.seconds, 2) for n, v in self.used.items()}


class RssSampler:
    """Peak RSS of one process, sampled every 50 ms in a thread, while the block runs."""

    def __init__(self, p: psutil.Process) -> None:
        self.p = p
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.p.memory_info().rss)
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self.start_rss = self.p.memory_info().rss
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def lat_summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": r3(percentile(values, 50) * MS),
        "p95_ms": r3(percentile(values, 95) * MS),
        "p99_ms": r3(percentile(values, 99) * MS),
    }


@dataclass
class Env:
    quick: bool
    static: procs.Proc
    gateway: procs.Proc  # in front of the static upstream
    driver: psutil.Process


# --------------------------------------------------------------------------------------------
# Goals 1-3: overhead and CPU (static upstream)


async def overhead(
    env: Env, pages: int, up: LatencyUpstream | None = None, concurrency: int = 16
) -> dict[str, Any]:
    """Direct httpx vs gateway, same driver process, same concurrency, interleaved rounds."""
    q = env.quick
    rounds, seconds = (1, 2.0) if q else (3, 5.0)
    if up is not None and up.kind == "emulator":
        rounds, seconds = 1, (2.5 if q else 4.0)
    max_calls = 200_000
    shape = {"videos": 2, "classes": 2, "clips": 2}
    if up is None or up.kind == "static":
        page_bytes = procs.static_config(env.static.url, pages=pages, **shape)["page_bytes"]
        req = load.bench_request()
        up_proc, gw_proc, kind = env.static, env.gateway, "static"
        shape_text = (
            f"{shape['videos']} videos x {shape['classes']} classes x {shape['clips']} clips "
            f"({page_bytes} bytes with headers)"
        )
    else:
        req = up.configure(0, pages)
        up_proc, gw_proc, kind = up.proc, up.gw, "emulator"
        shape_text = "1 video per page (page_limit 1), 2 classes, clips and detailed scores"
    direct = DirectPath(up_proc.url, procs.API_KEY, req)
    gw = GatewayPath(gw_proc.address, req, channels=4)
    await gw.wait_ready()
    named = {"driver": env.driver, "gateway": procs.ps(gw_proc), "upstream": procs.ps(up_proc)}
    agg: dict[str, dict[str, Any]] = {
        name: {
            "pages": 0,
            "seconds": 0.0,
            "lat": [],
            "errors": 0,
            "cpu": {},
            "samples": [],
            "cpu_seconds_wall": 0.0,
        }
        for name in ("direct", "gateway")
    }
    try:
        for _ in range(rounds):
            for name, path in (("direct", direct), ("gateway", gw)):
                with CpuMeter(named) as m:
                    res = await closed_loop(
                        path.call, concurrency, seconds, max_calls, warmup_calls=10
                    )
                a = agg[name]
                a["pages"] += res.pages
                a["seconds"] += res.seconds
                a["lat"].extend(res.call_latencies)
                a["errors"] += res.errors
                a["samples"].extend(res.error_samples)
                for k, v in m.used.items():
                    a["cpu"][k] = a["cpu"].get(k, 0.0) + v
                a["cpu_seconds_wall"] += m.seconds
        # Paced latency at the same concurrency: offered load at a quarter of what the slower
        # path served, so that neither queues and the p50 difference is the gateway's hop.
        slower = min(a["pages"] / a["seconds"] for a in agg.values()) / pages
        pace = concurrency / (0.25 * slower)
        paced: dict[str, list[float]] = {"direct": [], "gateway": []}
        for name, path in (("direct", direct), ("gateway", gw)):
            res = await closed_loop(
                path.call, concurrency, 2.0 if q else 5.0, max_calls, warmup_calls=5, pace=pace
            )
            paced[name] = [x / pages for x in res.call_latencies]
        # Unloaded latency: one call at a time (pure per-hop cost, no queueing).
        n1 = 40 if q else 300
        unloaded: dict[str, list[float]] = {"direct": [], "gateway": []}
        for name, path in (("direct", direct), ("gateway", gw)):
            res = await closed_loop(path.call, 1, 3.0 if q else 8.0, n1, warmup_calls=5)
            unloaded[name] = [x / pages for x in res.call_latencies]
    finally:
        await direct.aclose()
        await gw.aclose()

    out: dict[str, Any] = {
        "upstream": kind,
        "page_shape": shape_text,
        "pages_per_call": pages,
        "concurrency": concurrency,
        "rounds": rounds,
        "seconds_per_round": seconds,
    }
    for name, a in agg.items():
        per_page_lat = [x / pages for x in a["lat"]]
        wall = a["cpu_seconds_wall"]
        out[name] = {
            "pages": a["pages"],
            "pages_per_s": round(a["pages"] / a["seconds"], 1),
            "errors": a["errors"],
            "error_samples": a["samples"][:3],
            "call_latency": lat_summary(a["lat"]),
            "latency_per_page": lat_summary(per_page_lat),
            "cores_used": {k: round(v / wall, 2) for k, v in a["cpu"].items()},
            "cpu_ms_per_page": {
                k: round(v / max(a["pages"], 1) * MS, 3)
                for k, v in a["cpu"].items()
                if k in ("driver", "gateway", "upstream")
            },
            "unloaded_latency_per_page": lat_summary(unloaded[name]),
            "paced_latency_per_page": lat_summary(paced[name]),
        }
    d, g = out["direct"], out["gateway"]
    out["throughput_ratio"] = round(g["pages_per_s"] / d["pages_per_s"], 3)
    out["paced_calls_per_s"] = round(concurrency / pace, 1)
    out["added_p50_ms_per_page"] = r3(
        g["paced_latency_per_page"]["p50_ms"] - d["paced_latency_per_page"]["p50_ms"]
    )
    out["added_p50_ms_per_page_saturated"] = r3(
        g["latency_per_page"]["p50_ms"] - d["latency_per_page"]["p50_ms"]
    )
    out["added_p50_ms_per_page_unloaded"] = r3(
        g["unloaded_latency_per_page"]["p50_ms"] - d["unloaded_latency_per_page"]["p50_ms"]
    )
    return out


# --------------------------------------------------------------------------------------------
# Goals 4-5: time to first page and prefetch


class LatencyUpstream:
    """Sets the per-page latency and page count on whichever upstream a scenario uses."""

    def __init__(
        self,
        kind: str,
        proc: procs.Proc,
        gw: procs.Proc,
        emu_request: pb.ClassifyRequest | None = None,
    ) -> None:
        self.kind = kind
        self.proc = proc  # the upstream
        self.gw = gw  # the gateway in front of it
        self.emu_request = emu_request

    def configure(self, latency_ms: int, pages: int, stamps: bool = False) -> pb.ClassifyRequest:
        if self.kind == "emulator":
            procs.emulator_config(self.proc.url, latency_ms=latency_ms)
            assert self.emu_request is not None
            req = pb.ClassifyRequest()
            req.CopyFrom(self.emu_request)
            del req.video_ids[pages:]
            req.page_limit = 1
            return req
        procs.static_config(
            self.proc.url,
            pages=pages,
            latency_ms=latency_ms,
            stamps=stamps,
            videos=2,
            classes=2,
            clips=2,
        )
        return load.bench_request()


async def first_page(env: Env, emu: LatencyUpstream | None) -> dict[str, Any]:
    """Goal 4: (caller has page 1) - (upstream finished sending page 1), 200 ms/page, 10 pages."""
    n = 5 if env.quick else 15
    up = LatencyUpstream("static", env.static, env.gateway)
    req = up.configure(200, 10, stamps=True)
    procs.static_stamps(env.static.url)  # clear
    gw = GatewayPath(env.gateway.address, req, channels=1)
    direct = DirectPath(env.static.url, procs.API_KEY, req)
    await gw.wait_ready()
    over_gw: list[float] = []
    over_direct: list[float] = []
    ttfp_gw: list[float] = []
    try:
        for _ in range(n):
            t0 = time.monotonic()
            call = gw.stubs[0].Classify(req, timeout=30)
            await call.read()
            got = time.monotonic()
            call.cancel()
            stamps = procs.static_stamps(env.static.url)
            over_gw.append(got - stamps[0])
            ttfp_gw.append(got - t0)
            # The same on the direct path: the httpx client's own delay after the upstream.
            r = await direct.client.post(direct.path, content=b"{}")
            r.content  # noqa: B018
            got = time.monotonic()
            over_direct.append(got - procs.static_stamps(env.static.url)[0])
        # Baseline: collect every page first, then hand page 1 over.
        t0 = time.monotonic()
        times = await direct.call(0)
        collect_all = time.monotonic() - t0
        assert len(times) == 10
    finally:
        await gw.aclose()
        await direct.aclose()
        procs.static_config(env.static.url, pages=1)
    out: dict[str, Any] = {
        "upstream": "static (timestamps taken in the upstream process, CLOCK_MONOTONIC)",
        "upstream_latency_ms_per_page": 200,
        "pages": 10,
        "calls": n,
        "gateway_first_page_overhead_ms": lat_summary(over_gw),
        "direct_first_page_overhead_ms": lat_summary(over_direct),
        "gateway_time_to_first_page_ms": lat_summary(ttfp_gw),
        "collect_all_time_to_first_page_ms": r3(collect_all * MS),
        "first_page_overhead_ms": r3(percentile(over_gw, 50) * MS),
    }
    if emu is not None and not env.quick:
        out["emulator"] = await _first_page_emulator(env, emu, 3 if env.quick else 8)
    return out


async def _first_page_emulator(env: Env, emu: LatencyUpstream, n: int) -> dict[str, Any]:
    """Same on the emulator, approximated: gateway TTFP - direct TTFP (no upstream stamps)."""
    req = emu.configure(200, 10)
    gw = GatewayPath(emu.gw.address, req, channels=1)
    direct = DirectPath(emu.proc.url, procs.API_KEY, req)
    await gw.wait_ready()
    tg: list[float] = []
    td: list[float] = []
    try:
        for _ in range(n):
            t0 = time.monotonic()
            call = gw.stubs[0].Classify(req, timeout=30)
            await call.read()
            tg.append(time.monotonic() - t0)
            call.cancel()
            body = json.dumps(request_to_json(req))
            t0 = time.monotonic()
            r = await direct.client.post(
                direct.path, content=body, headers={"content-type": "application/json"}
            )
            r.raise_for_status()
            td.append(time.monotonic() - t0)
    finally:
        await gw.aclose()
        await direct.aclose()
        procs.emulator_config(emu.proc.url, latency_ms=0)
    return {
        "upstream": "emulator (latency_ms=200 via PUT /_emulator/config)",
        "gateway_ttfp_ms": lat_summary(tg),
        "direct_ttfp_ms": lat_summary(td),
        "approx_first_page_overhead_ms": r3((percentile(tg, 50) - percentile(td, 50)) * MS),
    }


async def prefetch(env: Env, up: LatencyUpstream) -> dict[str, Any]:
    """Goal 5: caller 200 ms/page, upstream 200 ms/page, 10 pages: gateway vs sequential."""
    reps = 2 if env.quick else 4
    req = up.configure(200, 10)

    async def consume(_page: object) -> None:
        await asyncio.sleep(0.2)

    gw = GatewayPath(up.gw.address, req, channels=1)
    direct = DirectPath(up.proc.url, procs.API_KEY, req)
    await gw.wait_ready()

    async def timed(path: Any) -> tuple[float, int]:
        t0 = time.monotonic()
        times = await path.call(0, on_page=consume)
        return time.monotonic() - t0, len(times)

    try:
        # All calls at once: they are latency-bound, a handful do not load anything.
        results = await asyncio.wait_for(
            asyncio.gather(
                *(timed(gw) for _ in range(reps)), *(timed(direct) for _ in range(reps))
            ),
            timeout=60,
        )
    finally:
        await gw.aclose()
        await direct.aclose()
        if up.kind == "emulator":
            procs.emulator_config(up.proc.url, latency_ms=0)
        else:
            procs.static_config(up.proc.url, pages=1)
    g = [t for t, _ in results[:reps]]
    d = [t for t, _ in results[reps:]]
    pages = {n for _, n in results}
    return {
        "upstream": up.kind,
        "upstream_latency_ms_per_page": 200,
        "caller_ms_per_page": 200,
        "pages": sorted(pages),
        "repetitions": reps,
        "gateway_stream_s": [r3(x) for x in g],
        "sequential_direct_s": [r3(x) for x in d],
        "ideal_pipelined_s": r3(0.2 + 10 * 0.2),
        "prefetch_speedup": r3(percentile(d, 50) / percentile(g, 50)),
    }


# --------------------------------------------------------------------------------------------
# Goal 6: concurrency and memory


async def concurrency(env: Env, up: LatencyUpstream) -> dict[str, Any]:
    q = env.quick
    gw_proc = up.gw
    pages = 2
    req = up.configure(50, pages)
    levels = [1, 10, 100, 1000]
    seconds = 1.0 if q else 4.0
    rows: list[dict[str, Any]] = []
    named = {"driver": env.driver, "gateway": procs.ps(gw_proc), "upstream": procs.ps(up.proc)}
    try:
        for conc in levels:
            row: dict[str, Any] = {"concurrency": conc}
            max_calls = conc if (q and conc >= 1000) else max(conc * 40, 50)
            for name in ("gateway", "direct"):
                path: Any
                if name == "gateway":
                    path = GatewayPath(gw_proc.address, req, channels=min(16, max(1, conc // 64)))
                    await path.wait_ready()
                else:
                    path = DirectPath(up.proc.url, procs.API_KEY, req, clients=max(1, conc // 16))
                try:
                    with CpuMeter(named) as m, RssSampler(procs.ps(gw_proc)) as rss:
                        res = await closed_loop(path.call, conc, seconds, max_calls)
                finally:
                    await path.aclose()
                row[name] = {
                    "calls": res.calls,
                    "pages": res.pages,
                    "seconds": r3(res.seconds),
                    "pages_per_s": round(res.pages_per_s, 1),
                    "errors": res.errors,
                    "error_samples": res.error_samples[:3],
                    "stream": lat_summary(res.call_latencies),
                    "first_page": lat_summary(res.first_page),
                    "cores_used": m.cores(),
                }
                if name == "gateway":
                    row[name]["gateway_rss_mib_start"] = round(rss.start_rss / 2**20, 1)
                    row[name]["gateway_rss_mib_peak"] = round(rss.peak / 2**20, 1)
                    row[name]["gateway_cpu_ms_per_page"] = round(
                        m.used["gateway"] / max(res.pages, 1) * MS, 3
                    )
            row["throughput_ratio"] = round(
                row["gateway"]["pages_per_s"] / max(row["direct"]["pages_per_s"], 1e-9), 3
            )
            rows.append(row)
    finally:
        if up.kind == "emulator":
            procs.emulator_config(up.proc.url, latency_ms=0)
        else:
            procs.static_config(up.proc.url, pages=1)
    return {
        "upstream": up.kind,
        "upstream_latency_ms_per_page": 50,
        "pages_per_stream": pages,
        "seconds_per_level": seconds,
        "levels": rows,
        "errors_total": sum(r["gateway"]["errors"] for r in rows),
    }


async def memory(env: Env) -> dict[str, Any]:
    """Gateway RSS with N streams held open (upstream answers after 10 s) vs idle."""
    steps = [0, 100, 250, 500] if env.quick else [0, 100, 250, 500, 750, 1000]
    target = steps[-1]
    procs.static_config(env.static.url, pages=2, latency_ms=0)
    req = load.bench_request()
    # A gateway of its own with the upstream caps raised (procs.UNCAPPED), so that every
    # open stream holds an upstream request and connection: the worst case per stream.
    gw_proc = procs.start_gateway(env.static.url, procs.UNCAPPED)
    gw = GatewayPath(gw_proc.address, req, channels=min(16, max(1, target // 64)))
    await gw.wait_ready()
    await closed_loop(gw.call, 4, 2.0, 40)  # warm, then make every page take 10 s
    procs.static_config(env.static.url, pages=2, latency_ms=10_000)
    ps = procs.ps(gw_proc)
    calls: list[Any] = []
    points: list[dict[str, Any]] = []

    def upstream_requests() -> int:
        return int(httpx.get(env.static.url + "/_fake/stamps", timeout=5).json()["requests"])

    try:
        await asyncio.sleep(0.5)
        idle = ps.memory_info().rss
        base_req = upstream_requests()
        for n in steps:
            while len(calls) < n:
                call = gw.stubs[len(calls) % len(gw.stubs)].Classify(req, timeout=60)
                calls.append(call)
            # Wait until each open stream has its upstream request in flight (bounded).
            deadline = time.monotonic() + 20
            while upstream_requests() - base_req - 1 < n and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
            rss = ps.memory_info().rss
            points.append(
                {
                    "open_streams": n,
                    "upstream_requests_in_flight": upstream_requests() - base_req - 1,
                    "rss_mib": round(rss / 2**20, 2),
                    "kib_per_stream": round((rss - idle) / 1024 / n, 2) if n else None,
                }
            )
    finally:
        for c in calls:
            c.cancel()
        await gw.aclose()
        gw_proc.stop(grace=5)
        procs.static_config(env.static.url, pages=1, latency_ms=0)
    top = points[-1]
    return {
        "upstream": "static (10 s per page, so that streams stay open)",
        "gateway_settings": procs.UNCAPPED,
        "idle_rss_mib": round(idle / 2**20, 2),
        "points": points,
        "open_streams": target,
        "rss_kib_per_stream": top["kib_per_stream"],
    }


# --------------------------------------------------------------------------------------------
# Goal 8: ghz

GHZ_VERSION = "v0.120.0"
BENCH = ROOT / "bench"


def ghz_install() -> tuple[Path | None, str]:
    gobin = BENCH / ".gobin"
    exe = gobin / "ghz"
    if exe.exists():
        return exe, "already installed"
    go = shutil.which("go")
    if go is None:
        return None, "go is not installed"
    env = {
        **os.environ,
        "GOBIN": str(gobin),
        "GOMODCACHE": str(BENCH / ".gomodcache"),
        "GOCACHE": str(BENCH / ".gocache"),
        "GOFLAGS": "-modcacherw",
    }
    try:
        p = subprocess.run(
            [go, "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, "go install timed out after 600 s"
    if p.returncode != 0 or not exe.exists():
        return None, "go install failed: " + (p.stderr or p.stdout)[-500:]
    return exe, "installed"


def ghz_run(env: Env) -> dict[str, Any]:
    exe, how = ghz_install()
    if exe is None:
        return {"skipped": how}
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    # Bounded by count (-n); the time bound is the subprocess timeout. Not -z: with -z
    # ghz ignores -n and cancels the calls in flight at the end, counting them as errors.
    n, cap = (600, 30) if env.quick else (4000, 120)
    procs.static_config(env.static.url, pages=1, videos=2, classes=2, clips=2)
    data = {
        "video_ids": ["6444c376456b2dab381e702d"],
        "options": ["SEARCH_OPTION_VISUAL", "SEARCH_OPTION_CONVERSATION"],
        "classes": [
            {"name": "dance", "prompts": ["dancing", "dance moves"]},
            {"name": "cooking", "prompts": ["cooking", "kitchen"]},
        ],
        "include_clips": True,
        "show_detailed_score": True,
        "threshold": {"min_video_score": 0, "min_clip_score": 0, "min_duration_ratio": 0.01},
    }
    cmd = [
        str(exe),
        "--insecure",
        "--proto",
        "proto/classify/v1/classify_service.proto",
        "--import-paths",
        f"proto,{include}",
        "--call",
        "classify.v1.ClassifyService.Classify",
        "-d",
        json.dumps(data),
        "-c",
        "16",
        "--connections",
        "4",
        "-n",
        str(n),
        "--timeout",
        "20s",
        "-O",
        "json",
        env.gateway.address,
    ]
    with CpuMeter({"gateway": procs.ps(env.gateway)}) as m:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=cap, check=False)
    if p.returncode != 0 and not p.stdout.strip():
        return {"skipped": f"ghz failed: {p.stderr[-500:]}", "version": GHZ_VERSION}
    rep = json.loads(p.stdout)
    lat = {d["percentage"]: d["latency"] / 1e6 for d in rep.get("latencyDistribution") or []}
    count = int(rep.get("count", 0))
    errors = sum(int(v) for v in (rep.get("errorDistribution") or {}).values())
    shown = ["ghz", *cmd[1:]]
    shown[shown.index("-d") + 1] = "'" + json.dumps(data) + "'"
    return {
        "version": GHZ_VERSION,
        "install": how,
        "upstream": "static (1 page per call)",
        "command": " ".join(shown),
        "count": count,
        "rps": round(float(rep.get("rps", 0.0)), 1),
        "p50_ms": r3(lat.get(50, float("nan"))),
        "p95_ms": r3(lat.get(95, float("nan"))),
        "p99_ms": r3(lat.get(99, float("nan"))),
        "average_ms": r3(float(rep.get("average", 0)) / 1e6),
        "status_codes": rep.get("statusCodeDistribution"),
        "error_distribution": rep.get("errorDistribution"),
        "errors": errors,
        "error_rate": round(errors / count, 4) if count else None,
        "gateway_cores_used": round(m.used["gateway"] / m.seconds, 2),
        "gateway_cpu_ms_per_page": round(m.used["gateway"] / max(count, 1) * MS, 3),
    }


# --------------------------------------------------------------------------------------------
# Profile (full runs): where the gateway's CPU goes per page


# Samples where the loop waits (epoll) or that pyinstrument books on the loop's own frame
# (`[self] asyncio/base_events.py`, which includes the epoll wait) are left out of shares.
IDLE_FRAMES = (
    "epoll.poll",
    "poll.poll",
    "select.",
    "[await]",
    "[self]  asyncio/unix_events.py",
    "[self]  asyncio/base_events.py",
    "[self]  asyncio/__init__.py",
)


async def profile_gateway(env: Env, seconds: float, pages: int) -> dict[str, Any]:
    """Profile a second gateway (bench.profile_server) under steady load, static upstream.

    Sampling starts after warm-up (SIGUSR1) and stops before the load ends (SIGUSR2),
    so imports and start-up are not in it. Shares are of non-idle samples.
    """
    import signal as sig

    exe = Path(procs.PY).parent / "pyinstrument"
    session = procs.RESULTS / f"profile_{pages}p.tmp"
    cmd = [procs.PY, "-m", "bench.profile_server", str(session)]
    proc = procs.start_gateway(env.static.url, cmd=cmd, log="gateway_profiled.log")
    try:
        procs.static_config(env.static.url, pages=pages, videos=2, classes=2, clips=2)
        gw = GatewayPath(proc.address, load.bench_request(), channels=4)
        await gw.wait_ready()
        try:
            await closed_loop(gw.call, 16, 1.0, 100_000, warmup_calls=5)
            proc.popen.send_signal(sig.SIGUSR1)
            c0 = _cpu(procs.ps(proc))
            res = await closed_loop(gw.call, 16, seconds, 100_000)
            cpu = _cpu(procs.ps(proc)) - c0
            proc.popen.send_signal(sig.SIGUSR2)
        finally:
            await gw.aclose()
        for _ in range(100):
            if session.exists():
                break
            await asyncio.sleep(0.1)
        total_pages = res.pages
    finally:
        proc.stop(grace=10)
    flat = subprocess.run(
        [str(exe), f"--load={session}", "-r", "text", "-p", "flat=true", "-p", "show_all=true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    rows = []
    for line in flat.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0].replace(".", "", 1).isdigit():
            rows.append((float(parts[0]), parts[1].strip()))
    busy = [(s, f) for s, f in rows if not f.startswith(IDLE_FRAMES)]
    idle = sum(s for s, f in rows if f.startswith(IDLE_FRAMES))
    total = sum(s for s, _ in busy) or 1.0
    # Scale profiled (sampled, slowed) time to the CPU the process really used per page.
    cpu_us_per_page = cpu / max(total_pages, 1) * 1e6
    top = [
        {
            "self_s": r3(s),
            "share": round(s / total, 3),
            "us_per_page": round(s / total * cpu_us_per_page, 1),
            "frame": f,
        }
        for s, f in busy[:25]
    ]
    tree = subprocess.run(
        [str(exe), f"--load={session}", "-r", "text", "-p", "show_all=false"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    out_txt = procs.RESULTS / f"profile_gateway_{pages}p.txt"
    out_txt.write_text(
        f"# pyinstrument, gateway under 16 concurrent {pages}-page calls (static upstream), "
        f"{total_pages} pages, {cpu:.2f} CPU s while sampled\n# flat (self time)\n{flat}\n"
        f"# call tree\n{tree}"
    )
    with contextlib.suppress(OSError):
        session.unlink()
    return {
        "pages": total_pages,
        "pages_per_call": pages,
        "seconds": seconds,
        "gateway_cpu_ms_per_page_while_profiled": round(cpu_us_per_page / 1000, 3),
        "idle_share_of_samples": round(idle / (idle + total), 3),
        "top_self_time": top,
        "report": str(out_txt.relative_to(ROOT)),
    }
