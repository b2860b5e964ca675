"""A/B of gateway variants: `python -m bench.ab [--rounds N] [--seconds S]`.

Starts one gateway per variant (all against the same static upstream), then
loads them in turn, interleaved over several rounds, with the same 16-caller
closed loop as the overhead scenarios, and reports the gateway's CPU per page and
pages/s for 1-page calls and 10-page streams. Variants (settings only, the code is
the same):

* baseline      the shipped defaults;
* log_warning   CLASSIFY_GATEWAY_LOG_LEVEL=WARNING (no per-RPC log line).

Writes bench/results/ab.json. Add a variant (an environment) to measure a setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from typing import Any

import psutil

from bench import load, procs
from bench.scenarios import CpuMeter

VARIANTS: dict[str, dict[str, object]] = {
    "baseline": {},
    "log_warning": {"log_level": "WARNING"},
}


async def measure(rounds: int, seconds: float) -> dict[str, Any]:
    variants = VARIANTS
    up = procs.start_static()
    gws = {}
    try:
        for name, env in variants.items():
            gws[name] = procs.start_gateway(up.url, env)
        driver = psutil.Process()
        out: dict[str, Any] = {}
        for pages in (1, 10):
            procs.static_config(up.url, pages=pages, videos=2, classes=2, clips=2)
            samples: dict[str, list[tuple[float, float]]] = {n: [] for n in gws}
            paths = {
                n: load.GatewayPath(g.address, load.bench_request(), 4) for n, g in gws.items()
            }
            for p in paths.values():
                await p.wait_ready()
                await load.closed_loop(p.call, 4, 0.5, 50)  # warm every variant
            for _ in range(rounds):
                for name, g in gws.items():
                    with CpuMeter({"gateway": procs.ps(g), "driver": driver}) as m:
                        r = await load.closed_loop(paths[name].call, 16, seconds, 100_000)
                    samples[name].append(
                        (m.used["gateway"] / max(r.pages, 1) * 1000, r.pages_per_s)
                    )
            for p in paths.values():
                await p.aclose()
            base = statistics.median(c for c, _ in samples["baseline"])
            out[f"{pages}page"] = {
                n: {
                    "gateway_cpu_ms_per_page_median": round(statistics.median(c for c, _ in s), 3),
                    "gateway_cpu_ms_per_page_all": [round(c, 3) for c, _ in s],
                    "pages_per_s_median": round(statistics.median(t for _, t in s), 1),
                    "cpu_change_vs_baseline": round(
                        statistics.median(c for c, _ in s) / base - 1, 3
                    ),
                }
                for n, s in samples.items()
            }
        return out
    finally:
        for g in gws.values():
            g.stop(grace=5)
        up.stop(grace=5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ns = ap.parse_args()
    import os

    res = {"loadavg_start": os.getloadavg(), "rounds": ns.rounds, "seconds": ns.seconds}
    res["results"] = asyncio.run(measure(ns.rounds, ns.seconds))
    res["loadavg_end"] = os.getloadavg()
    (procs.RESULTS / "ab.json").write_text(json.dumps(res, indent=2) + "\n")
    for phase, rows in res["results"].items():
        for n, r in rows.items():
            print(
                f"{phase:7} {n:15} cpu/page {r['gateway_cpu_ms_per_page_median']:.3f} ms "
                f"({r['cpu_change_vs_baseline']:+.1%})  pages/s {r['pages_per_s_median']}"
            )


if __name__ == "__main__":
    main()
