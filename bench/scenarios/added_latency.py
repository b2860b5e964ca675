"""Latency the gateway adds per 1-page call at a fixed offered load.

Open loop (a call starts every 1/rate s whatever the answers do) at 100 and 300 calls/s,
1-page calls of the documentation's page, the gateway path and the careful direct client
in interleaved rounds. Each round gives p50 and p99 for both; the added latency is
gateway minus direct within the round, reported as min / median / max over the rounds,
never from one pass.
"""

from __future__ import annotations

from typing import Any

from bench.loadgen import closed_loop, open_loop
from bench.meters import MS, CpuMeter, percentile, r3, spread
from bench.stage import Stage

RATES = (100, 300)


async def run(stage: Stage) -> dict[str, Any]:
    rounds, seconds = (2, 2.0) if stage.quick else (5, 4.0)
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
    per_round: dict[str, list[dict[str, float]]] = {c.name: [] for c in clients}
    errors = {c.name: 0 for c in clients}
    late = 0
    generator_cores = 0.0
    for _ in range(rounds):
        for c in clients:
            with CpuMeter({"load_generator": stage.driver}) as m:
                res = await open_loop(c.call, rate, seconds)
            generator_cores = max(generator_cores, m.cores()["load_generator"])
            errors[c.name] += res.errors
            late += res.late_starts
            per_round[c.name].append(
                {
                    "p50_ms": percentile(res.call_latencies, 50) * MS,
                    "p99_ms": percentile(res.call_latencies, 99) * MS,
                }
            )
    g, d = per_round["gateway"], per_round["direct"]
    added = {
        q: spread([gr[q] - dr[q] for gr, dr in zip(g, d, strict=True)])
        for q in ("p50_ms", "p99_ms")
    }
    return {
        "offered_calls_per_s": rate,
        "gateway": {q: spread([r[q] for r in g]) for q in ("p50_ms", "p99_ms")},
        "direct": {q: spread([r[q] for r in d]) for q in ("p50_ms", "p99_ms")},
        "added_p50_ms": added["p50_ms"],
        "added_p99_ms": added["p99_ms"],
        "errors": errors,
        "late_starts": late,
        "load_generator_cores_max": r3(generator_cores),
    }
