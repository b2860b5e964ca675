"""Latency the gateway adds per 1-page call at a fixed offered load.

Open loop (a call starts every 1/rate s whatever the answers do) at 100 and 300 calls/s,
1-page calls of the documentation's page, the gateway path and the careful direct client
in interleaved rounds. Each round gives p50 and p99 for both; the added latency is
gateway minus direct within the round, reported as min / median / max over the rounds,
never from one pass. A round in which the load generator itself fell behind (more than
1% of its calls started over 10 ms late: it was starved of CPU, and the offered load was
not the one asked for) says nothing about the paths; such rounds are counted and left
out of the figures, unless every round was.
"""

from __future__ import annotations

from typing import Any

import psutil

from bench.loadgen import CallFn, closed_loop, open_loop
from bench.meters import MS, CpuMeter, percentile, r3, spread
from bench.stage import Stage

RATES = (100, 300)
LATE_LIMIT = 0.01  # share of calls started late beyond which a round is the generator's


async def run(stage: Stage) -> dict[str, Any]:
    rounds, seconds = (2, 2.0) if stage.quick else (7, 3.0)
    page_bytes = stage.serve("docs", 1)
    out: dict[str, Any] = {
        "page": "docs (2 videos with clips)",
        "page_bytes": page_bytes,
        "rounds": rounds,
        "seconds_per_round": seconds,
    }
    clients = [stage.gateway_client(), stage.direct_client()]
    try:
        for c in clients:
            await c.start()
            await closed_loop(c.call, 4, 1.0, 40)
        for rate in RATES:
            out[f"{rate}_calls_per_s"] = await _rate(stage, clients, rate, rounds, seconds)
    finally:
        for c in clients:
            await c.aclose()
    return out


async def _rate(
    stage: Stage, clients: list[Any], rate: int, rounds: int, seconds: float
) -> dict[str, Any]:
    rounds_seen: list[Round] = []
    errors = {c.name: 0 for c in clients}
    generator_cores = 0.0
    for _ in range(rounds):
        one: Round = {}
        for c in clients:
            one[c.name], errs, cores = await measure_path(c.call, rate, seconds, stage.driver)
            generator_cores = max(generator_cores, cores)
            errors[c.name] += errs
        rounds_seen.append(one)
    used, kept = kept_rounds(rounds_seen)
    quantiles = ("p50_ms", "p99_ms")
    return {
        "offered_calls_per_s": rate,
        **kept,
        "gateway": {q: spread([r["gateway"][q] for r in used]) for q in quantiles},
        "direct": {q: spread([r["direct"][q] for r in used]) for q in quantiles},
        "added_p50_ms": spread([r["gateway"]["p50_ms"] - r["direct"]["p50_ms"] for r in used]),
        "added_p99_ms": spread([r["gateway"]["p99_ms"] - r["direct"]["p99_ms"] for r in used]),
        "errors": errors,
        "load_generator_cores_max": r3(generator_cores),
        "rounds": shown_rounds(rounds_seen),
    }


# One round: each path's p50 and p99 (ms) and the share of its calls started late.
Round = dict[str, dict[str, float]]


async def measure_path(
    call: CallFn, rate: int, seconds: float, driver: psutil.Process
) -> tuple[dict[str, float], int, float]:
    """One path's part of a round (also bench/latency_ab.py's): its p50, p99 and late share,
    its errors, and the load generator's busiest share of a core meanwhile."""
    with CpuMeter({"load_generator": driver}) as m:
        res = await open_loop(call, rate, seconds)
    figures = {
        "p50_ms": percentile(res.call_latencies, 50) * MS,
        "p99_ms": percentile(res.call_latencies, 99) * MS,
        "late_share": res.late_starts / max(rate * seconds, 1),
    }
    return figures, res.errors, m.cores()["load_generator"]


def kept_rounds(seen: list[Round]) -> tuple[list[Round], dict[str, Any]]:
    """The rounds the figures come from (those whose load generator kept time on every
    path, or all of them when none did), and how many were kept and left out."""
    valid = [r for r in seen if all(p["late_share"] <= LATE_LIMIT for p in r.values())]
    return valid or seen, {
        "rounds_used": len(valid) if valid else f"all {len(seen)} (none was clean)",
        "rounds_left_out": len(seen) - len(valid) if valid else 0,
    }


def shown_rounds(seen: list[Round]) -> list[Round]:
    return [{n: {k: r3(v) for k, v in p.items()} for n, p in r.items()} for r in seen]
