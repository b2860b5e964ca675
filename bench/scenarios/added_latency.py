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

from bench.loadgen import closed_loop, open_loop
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
    rounds_seen: list[dict[str, dict[str, float]]] = []
    errors = {c.name: 0 for c in clients}
    generator_cores = 0.0
    for _ in range(rounds):
        one: dict[str, dict[str, float]] = {}
        for c in clients:
            with CpuMeter({"load_generator": stage.driver}) as m:
                res = await open_loop(c.call, rate, seconds)
            generator_cores = max(generator_cores, m.cores()["load_generator"])
            errors[c.name] += res.errors
            one[c.name] = {
                "p50_ms": percentile(res.call_latencies, 50) * MS,
                "p99_ms": percentile(res.call_latencies, 99) * MS,
                "late_share": res.late_starts / max(rate * seconds, 1),
            }
        rounds_seen.append(one)
    valid = [r for r in rounds_seen if all(p["late_share"] <= LATE_LIMIT for p in r.values())]
    used = valid or rounds_seen
    quantiles = ("p50_ms", "p99_ms")
    return {
        "offered_calls_per_s": rate,
        "rounds_used": len(valid) if valid else f"all {len(rounds_seen)} (none was clean)",
        "rounds_left_out": len(rounds_seen) - len(valid) if valid else 0,
        "gateway": {q: spread([r["gateway"][q] for r in used]) for q in quantiles},
        "direct": {q: spread([r["direct"][q] for r in used]) for q in quantiles},
        "added_p50_ms": spread([r["gateway"]["p50_ms"] - r["direct"]["p50_ms"] for r in used]),
        "added_p99_ms": spread([r["gateway"]["p99_ms"] - r["direct"]["p99_ms"] for r in used]),
        "errors": errors,
        "load_generator_cores_max": r3(generator_cores),
        "rounds": [
            {n: {k: r3(v) for k, v in p.items()} for n, p in r.items()} for r in rounds_seen
        ],
    }
