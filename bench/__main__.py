"""`python -m bench [--quick]`: run every scenario, write bench/results/latest.json and docs.

Processes: this one (the load generator: every client, one asyncio loop), the gateway
(`classify-gateway serve`) and the fake upstream (tests/support/upstream.py). The gateway
runs alone on core 0, like a 1-CPU pod; the load generator and the upstream share core 1
(procs.pin). Each is its own OS process, so the kernel's CPU accounting of each is its own.
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
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

from bench import procs, report
from bench.scenarios import (
    added_latency,
    cpu_per_page,
    first_page,
    floor,
    ghz,
    memory,
    profile,
    sharing,
    slow_consumer,
    translation,
)
from bench.stage import Stage

SCENARIOS: list[tuple[str, Callable[[Stage], Awaitable[dict[str, Any]]]]] = [
    ("translation", translation.run),
    ("cpu_per_page", cpu_per_page.run),
    ("floor", floor.run),
    ("added_latency", added_latency.run),
    ("slow_consumer", slow_consumer.run),
    ("first_page", first_page.run),
    ("memory", memory.run),
    ("ghz", ghz.run),
    ("profile", profile.run),
    ("sharing", sharing.run),
]

# The goals of issue 16, on this machine, gateway pinned to one core, in one run.
GOALS: dict[str, tuple[str, float, tuple[str, ...]]] = {
    "gateway_cpu_ms_per_page_1page": (
        "<=",
        1.5,
        ("cpu_per_page", "docs_1page", "gateway_cpu_ms_per_page"),
    ),
    "gateway_cpu_ms_per_page_10page": (
        "<=",
        0.8,
        ("cpu_per_page", "docs_10page", "gateway_cpu_ms_per_page"),
    ),
    "added_p50_ms_at_100_calls_per_s": (
        "<=",
        2.0,
        ("added_latency", "100_calls_per_s", "added_p50_ms", "median"),
    ),
    "added_p99_ms_at_100_calls_per_s": (
        "<=",
        5.0,
        ("added_latency", "100_calls_per_s", "added_p99_ms", "median"),
    ),
    "rss_kib_per_stream_at_10000": (
        "<=",
        30.0,
        ("memory", "waiting", "points", "-1", "kib_per_stream"),
    ),
    "slow_consumer_gateway_vs_sdk": ("<=", 0.56, ("slow_consumer", "gateway_vs_sdk")),
    "first_page_added_ms": ("<=", 5.0, ("first_page", "added_p50_ms")),
    "translate_speedup_vs_parsedict": (
        ">=",
        5.0,
        ("translation", "10x5x5", "speedup_vs_parsedict"),
    ),
    "ghz_error_rate": ("<=", 0.0, ("ghz", "error_rate")),
}


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=procs.ROOT, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    model = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next(
            (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
        )
    return {
        "cores": psutil.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def lookup(res: dict[str, Any], path: tuple[str, ...]) -> Any:
    d: Any = res
    for p in path:
        if isinstance(d, list) and d:
            d = d[int(p)]
        elif isinstance(d, dict) and p in d:
            d = d[p]
        else:
            return None
    return d


def goals(res: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, (op, target, path) in GOALS.items():
        value = lookup(res, path)
        met = None
        if isinstance(value, int | float):
            met = value >= target if op == ">=" else value <= target
        out[key] = {"value": value, "goal": f"{op} {target}", "met": met, "from": ".".join(path)}
    return out


async def run(quick: bool, only: set[str]) -> dict[str, Any]:
    """Every scenario, in one event loop (grpc.aio does not like a loop per scenario)."""
    t_start = time.monotonic()
    pinned = procs.pin(os.getpid(), procs.DRIVER_CORES)
    provenance = {
        "commit": git("rev-parse", "HEAD"),
        "work_tree_clean": not git("status", "--porcelain", "--untracked-files=no"),
        "machine": machine(),
        "pinned": pinned,
        "mode": "quick" if quick else "full",
    }
    res: dict[str, Any] = {
        "schema": 2,
        "command": "make bench" + (" BENCH_QUICK=1" if quick else ""),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "provenance": provenance,
        "loadavg_at_start": loadavg(),
        "errors": {},
    }
    with (
        procs.running(procs.start_upstream()) as upstream,
        procs.running(procs.start_gateway(upstream.url)) as gateway,
    ):
        res["gateway_settings"] = procs.shown_settings(gateway)
        stage = Stage(quick, upstream, gateway, psutil.Process())
        for name, scenario in SCENARIOS:
            if only and name not in only:
                continue
            print(f"bench: {name} ...", flush=True)
            t0, load0 = time.monotonic(), loadavg()
            try:
                out = await scenario(stage)
            except Exception as exc:
                traceback.print_exc()
                res["errors"][name] = f"{type(exc).__name__}: {exc}"
                continue
            # Every figure carries where and when it was measured.
            out["measured"] = {
                **provenance,
                "loadavg_at_start": load0,
                "loadavg_at_end": loadavg(),
                "seconds": round(time.monotonic() - t0, 1),
            }
            res[name] = out
    res["goals"] = goals(res)
    res["loadavg_at_end"] = loadavg()
    res["total_seconds"] = round(time.monotonic() - t_start, 1)
    return res


def merged(path: Any, new: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """latest.json with the scenarios `names` measured again (listed under `remeasured`)."""
    res: dict[str, Any] = json.loads(path.read_text())
    for name in names:
        if name in new:
            res[name] = new[name]
        if name in new["errors"]:
            res["errors"][name] = new["errors"][name]
    res.setdefault("remeasured", []).extend(
        {"scenario": n, "started_at": new["started_at"]} for n in names
    )
    res["goals"] = goals(res)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, about 2 minutes")
    parser.add_argument("--only", action="append", default=[], help="run only this scenario")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: put these scenarios' new results into latest.json (each keeps its "
        "own `measured` block) and render the docs again",
    )
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    ns = parser.parse_args(argv)
    procs.RESULTS.mkdir(parents=True, exist_ok=True)
    for log in procs.RESULTS.glob("*.log"):
        log.unlink()
    res = asyncio.run(run(ns.quick, set(ns.only)))
    out = procs.RESULTS / ("latest.json" if not ns.only else "partial.json")
    if ns.only and ns.merge:
        res = merged(procs.RESULTS / "latest.json", res, ns.only)
        out = procs.RESULTS / "latest.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    if not ns.no_docs and (not ns.only or ns.merge):
        report.write(res)
    print(report.summary(res))
    print(f"bench: wrote {out.relative_to(procs.ROOT)} in {res['total_seconds']} s", flush=True)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
