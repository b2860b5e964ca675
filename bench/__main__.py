"""`python -m bench [--quick]`: run every scenario, write bench/results/latest.json and docs.

Processes: this driver (load generators for both paths, in one asyncio loop), the
gateway (`classify-gateway serve`), and the upstream(s): the static upstream of
tests/support/upstream.py's fake and, when it starts, the emulator with a second gateway
in front of it. Each is its own OS process, so psutil measures each one alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from contextlib import ExitStack
from typing import Any

import psutil

from bench import load, procs, report, scenarios, translate_bench
from classify_emulator.stack import catalogue

GOALS: dict[str, tuple[str, float]] = {
    "throughput_ratio_vs_direct": (">=", 0.9),
    "added_p50_ms_per_page": ("<=", 1.0),
    "stream_throughput_ratio_vs_direct": (">=", 0.85),
    "gateway_cpu_ms_per_page": ("<=", 1.0),
    "first_page_overhead_ms": ("<=", 5.0),
    "prefetch_speedup": (">=", 1.6),
    "rss_kib_per_stream": ("<=", 50.0),
    "translate_speedup_vs_parsedict": (">=", 5.0),
    "concurrency_errors": ("<=", 0),
    "ghz_error_rate": ("<=", 0),
}


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor()
    return {
        "cpu_count_logical": psutil.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=procs.ROOT, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def emulator_request(url: str) -> Any:
    """A request over 10 corpus videos (page_limit 1 gives one page per video)."""
    ids = list(catalogue(url, procs.API_KEY))
    if len(ids) < 10:
        raise RuntimeError(f"the emulator lists only {len(ids)} videos")
    return load.bench_request(video_ids=ids[:10], page_limit=1)


async def start_emulator(stack: ExitStack) -> tuple[Any, str]:
    try:
        emu = stack.enter_context(procs.running(procs.start_emulator()))
        req = emulator_request(emu.url)
        gw = stack.enter_context(procs.running(procs.start_gateway(emu.url)))

        # Smoke test: one 10-page stream through the gateway.
        async def smoke() -> int:
            path = load.GatewayPath(gw.address, req, channels=1)
            try:
                await path.wait_ready()
                return len(await path.call(0))
            finally:
                await path.aclose()

        pages = await smoke()
        if pages < 2:
            raise RuntimeError(f"a 10-video classification gave {pages} page(s)")
        return scenarios.LatencyUpstream("emulator", emu, gw, req), f"ok ({pages} pages)"
    except Exception as exc:  # the emulator is optional for the suite
        return None, f"{type(exc).__name__}: {exc}"


def goal(key: str, value: Any, baseline: Any = None, note: str = "") -> dict[str, Any]:
    op, target = GOALS[key]
    met = None
    if isinstance(value, int | float):
        met = value >= target if op == ">=" else value <= target
    return {
        "value": value,
        "goal": f"{op} {target}",
        "met": met,
        "baseline": baseline,
        "note": note,
    }


async def run(quick: bool, upstream: str, skip_ghz: bool) -> dict[str, Any]:
    """Every scenario, in one event loop (grpc.aio does not like a loop per scenario)."""
    t_start = time.monotonic()
    res: dict[str, Any] = {
        "schema": 1,
        "command": "make bench"
        + (" BENCH_QUICK=1" if quick else "")
        + f"  (= .venv/bin/python -m bench{' --quick' if quick else ''})",
        "mode": "quick" if quick else "full",
        "quick": quick,
        "commit": git("rev-parse", "HEAD"),
        "worktree_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "errors": {},
    }
    timings: dict[str, float] = {}

    async def step(name: str, fn: Any, *args: Any) -> Any:
        t0 = time.monotonic()
        print(f"bench: {name} ...", flush=True)
        try:
            out = fn(*args)
            if asyncio.iscoroutine(out):
                out = await out
        except Exception as exc:
            traceback.print_exc()
            res["errors"][name] = f"{type(exc).__name__}: {exc}"
            out = None
        timings[name] = round(time.monotonic() - t0, 1)
        return out

    res["translation"] = await step("translation", translate_bench.run, quick)
    with ExitStack() as stack:
        static = stack.enter_context(procs.running(procs.start_static()))
        gateway = stack.enter_context(procs.running(procs.start_gateway(static.url)))
        res["gateway_settings"] = procs.shown_settings(gateway)
        env = scenarios.Env(quick, static, gateway, psutil.Process())
        emu = None
        if upstream == "emulator" or (upstream == "auto" and not quick):
            emu, why = await start_emulator(stack)
            res["emulator"] = why
            if emu is None and upstream == "emulator":
                raise SystemExit(f"bench: the emulator did not start: {why}")
        else:
            res["emulator"] = "not used (" + ("quick run" if quick else "--upstream static") + ")"
        static_up = scenarios.LatencyUpstream("static", static, gateway)
        lat_up = emu or static_up
        procs.settle(0.5)
        res["gateway_idle_rss_mib"] = round(procs.ps(gateway).memory_info().rss / 2**20, 1)
        res["overhead_1page"] = await step("overhead 1-page", scenarios.overhead, env, 1)
        res["overhead_10page"] = await step("overhead 10-page", scenarios.overhead, env, 10)
        res["first_page"] = await step("time to first page", scenarios.first_page, env, emu)
        res["prefetch"] = await step("prefetch", scenarios.prefetch, env, lat_up)
        # The static upstream: the emulator saturates long before 1,000 streams (see the
        # emulator overhead scenario), which would measure the emulator, not the gateway.
        res["concurrency"] = await step("concurrency", scenarios.concurrency, env, static_up)
        res["memory"] = await step("memory per stream", scenarios.memory, env)
        res["ghz"] = (
            {"skipped": "--skip-ghz"} if skip_ghz else await step("ghz", scenarios.ghz_run, env)
        )
        if emu is not None and not quick:
            res["overhead_emulator_1page"] = await step(
                "overhead 1-page (emulator)", scenarios.overhead, env, 1, emu
            )
            res["overhead_emulator_10page"] = await step(
                "overhead 10-page (emulator)", scenarios.overhead, env, 10, emu
            )
        for key in ("overhead_emulator_1page", "overhead_emulator_10page"):
            res.setdefault(
                key, {"skipped": "quick run" if quick else f"emulator: {res['emulator']}"}
            )
        if quick:
            res["profile"] = {"skipped": "quick run (make bench profiles the gateway)"}
        else:
            res["profile"] = {
                "1page": await step("profile 1-page", scenarios.profile_gateway, env, 6.0, 1),
                "10page": await step("profile 10-page", scenarios.profile_gateway, env, 6.0, 10),
            }
        res["gateway_rss_mib_at_end"] = round(procs.ps(gateway).memory_info().rss / 2**20, 1)

    summarize(res)
    res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["step_seconds"] = timings
    res["total_seconds"] = round(time.monotonic() - t_start, 1)
    return res


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def summarize(res: dict[str, Any]) -> None:
    o1, o10 = res.get("overhead_1page") or {}, res.get("overhead_10page") or {}
    cpu1 = _get(o1, "gateway", "cpu_ms_per_page", "gateway")
    cpu10 = _get(o10, "gateway", "cpu_ms_per_page", "gateway")
    cpus = [c for c in (cpu1, cpu10) if c is not None]
    fp, pf = res.get("first_page") or {}, res.get("prefetch") or {}
    conc, mem = res.get("concurrency") or {}, res.get("memory") or {}
    tr = _get(res, "translation", "10x5x5") or {}
    ghz = res.get("ghz") or {}
    g = {
        "throughput_ratio_vs_direct": goal(
            "throughput_ratio_vs_direct",
            o1.get("throughput_ratio"),
            {
                "direct_pages_per_s": _get(o1, "direct", "pages_per_s"),
                "gateway_pages_per_s": _get(o1, "gateway", "pages_per_s"),
            },
        ),
        "added_p50_ms_per_page": goal(
            "added_p50_ms_per_page",
            o1.get("added_p50_ms_per_page"),
            {
                "direct_p50_ms": _get(o1, "direct", "paced_latency_per_page", "p50_ms"),
                "gateway_p50_ms": _get(o1, "gateway", "paced_latency_per_page", "p50_ms"),
                "paced_calls_per_s": o1.get("paced_calls_per_s"),
                "saturated_added_p50_ms": o1.get("added_p50_ms_per_page_saturated"),
                "unloaded_added_p50_ms": o1.get("added_p50_ms_per_page_unloaded"),
            },
            "16 concurrent callers, paced at a quarter of the slower path's throughput so that the "
            "difference is the gateway's hop, not queueing; the saturated closed-loop and the "
            "one-caller differences are given too",
        ),
        "stream_throughput_ratio_vs_direct": goal(
            "stream_throughput_ratio_vs_direct",
            o10.get("throughput_ratio"),
            {
                "direct_pages_per_s": _get(o10, "direct", "pages_per_s"),
                "gateway_pages_per_s": _get(o10, "gateway", "pages_per_s"),
            },
        ),
        "gateway_cpu_ms_per_page": goal(
            "gateway_cpu_ms_per_page",
            max(cpus) if cpus else None,
            {
                "one_page_calls": cpu1,
                "ten_page_streams": cpu10,
                "direct_httpx_client_cpu_ms_per_page_1page": _get(
                    o1, "direct", "cpu_ms_per_page", "driver"
                ),
                "direct_httpx_client_cpu_ms_per_page_10page": _get(
                    o10, "direct", "cpu_ms_per_page", "driver"
                ),
            },
            "the worse of 1-page calls and 10-page streams; baseline = CPU the plain httpx "
            "client (driver process) spends per page on the direct path",
        ),
        "first_page_overhead_ms": goal(
            "first_page_overhead_ms",
            fp.get("first_page_overhead_ms"),
            {
                "collect_all_time_to_first_page_ms": fp.get("collect_all_time_to_first_page_ms"),
                "direct_first_page_overhead_p50_ms": _get(
                    fp, "direct_first_page_overhead_ms", "p50_ms"
                ),
            },
        ),
        "prefetch_speedup": goal(
            "prefetch_speedup",
            pf.get("prefetch_speedup"),
            {
                "sequential_direct_s": pf.get("sequential_direct_s"),
                "gateway_stream_s": pf.get("gateway_stream_s"),
            },
        ),
        "rss_kib_per_stream": goal(
            "rss_kib_per_stream",
            mem.get("rss_kib_per_stream"),
            {"idle_rss_mib": mem.get("idle_rss_mib"), "open_streams": mem.get("open_streams")},
        ),
        "translate_speedup_vs_parsedict": goal(
            "translate_speedup_vs_parsedict",
            tr.get("speedup_vs_parsedict"),
            {"parsedict_us": tr.get("parsedict_us"), "handwritten_us": tr.get("handwritten_us")},
        ),
        "concurrency_errors": goal(
            "concurrency_errors",
            conc.get("errors_total"),
            {"levels": [r["concurrency"] for r in conc.get("levels", [])]},
        ),
        "ghz_error_rate": goal(
            "ghz_error_rate",
            ghz.get("error_rate"),
            {
                "direct_httpx_pages_per_s_1page": _get(o1, "direct", "pages_per_s"),
                "ghz_rps": ghz.get("rps"),
            },
            ghz.get("skipped", ""),
        ),
    }
    res["goals"] = g
    for k, v in g.items():
        res[k] = v["value"]
    res["ghz_rps"] = ghz.get("rps")
    res["ghz_p50_ms"] = ghz.get("p50_ms")
    res["ghz_p95_ms"] = ghz.get("p95_ms")
    res["ghz_p99_ms"] = ghz.get("p99_ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations, < 1 minute")
    parser.add_argument(
        "--upstream",
        choices=("auto", "static", "emulator"),
        default="auto",
        help="upstream for the prefetch scenario and the extra emulator scenarios; auto = the "
        "emulator in full runs if it starts, else the static upstream (quick runs use static).",
    )
    parser.add_argument("--skip-ghz", action="store_true")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    ns = parser.parse_args(argv)
    for name in (
        "upstream.log",
        "gateway.log",
        "emulator.log",
        "gateway_profiled.log",
    ):
        with contextlib.suppress(OSError):
            (procs.RESULTS / name).unlink()
    res = asyncio.run(run(ns.quick, ns.upstream, ns.skip_ghz))
    procs.RESULTS.mkdir(parents=True, exist_ok=True)
    out = procs.RESULTS / "latest.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=2, sort_keys=False) + "\n")
    tmp.replace(out)
    if not ns.no_docs:
        report.write(res)
    print(report.summary_lines(res))
    print(f"bench: wrote {out.relative_to(procs.ROOT)} in {res['total_seconds']} s", flush=True)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
