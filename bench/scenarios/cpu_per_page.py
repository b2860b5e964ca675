"""CPU per page of each process, and pages per CPU-second of the whole path.

16 callers back to back (closed loop), interleaved rounds, per page shape and per number
of pages per call. Paths: the gateway (grpc.aio stub -> gateway -> upstream), a careful
direct client (aiohttp + orjson -> upstream) and the official SDK's page loop. CPU per
process is read from the kernel (all threads); the load generator's own CPU and cores
are reported so that a saturated generator is never mistaken for a gateway limit.
"""

from __future__ import annotations

from typing import Any

from bench.loadgen import closed_loop
from bench.meters import MS, CpuMeter, r3, spread
from bench.stage import SHAPES, Stage

CALLERS = 16
SATURATED = 0.9  # cores: a load generator above this is the limit, not the path


async def run(stage: Stage) -> dict[str, Any]:
    rounds, seconds = (1, 1.5) if stage.quick else (3, 4.0)
    out: dict[str, Any] = {"callers": CALLERS, "rounds": rounds, "seconds_per_round": seconds}
    for shape in SHAPES:
        for pages in (1, 10):
            page_bytes = stage.serve(shape, pages)
            key = f"{shape}_{pages}page"
            out[key] = await _one(stage, rounds, seconds, pages)
            out[key]["page_bytes"] = page_bytes
    return out


async def _one(stage: Stage, rounds: int, seconds: float, pages: int) -> dict[str, Any]:
    clients = [stage.gateway_client(), stage.direct_client(), stage.sdk_client(threads=CALLERS)]
    totals: dict[str, dict[str, Any]] = {
        c.name: {"pages": 0, "seconds": 0.0, "cpu": {}, "errors": 0, "samples": [], "rounds": []}
        for c in clients
    }
    try:
        for c in clients:
            await c.start()
            await closed_loop(c.call, 4, 1.0, 20)  # warm: connections, caches, imports
        for _ in range(rounds):
            for c in clients:  # interleaved: the machine's noise falls on every path alike
                named = stage.processes(with_gateway=c.name == "gateway")
                with CpuMeter(named) as m:
                    res = await closed_loop(c.call, CALLERS, seconds, 1_000_000)
                t = totals[c.name]
                t["pages"] += res.pages
                t["seconds"] += m.seconds
                t["errors"] += res.errors
                t["samples"] += res.error_samples
                for k, v in m.used.items():
                    t["cpu"][k] = t["cpu"].get(k, 0.0) + v
                path_cpu = sum(v for k, v in m.used.items() if k != "others")
                t["rounds"].append(
                    {
                        "pages_per_s": res.pages_per_s,
                        "path_cpu_ms_per_page": path_cpu / max(res.pages, 1) * MS,
                        "gateway_cpu_ms_per_page": m.used.get("gateway", 0.0)
                        / max(res.pages, 1)
                        * MS,
                    }
                )
    finally:
        for c in clients:
            await c.aclose()
    paths = {name: _summary(t) for name, t in totals.items()}
    g, d, s = paths["gateway"], paths["direct"], paths["sdk"]
    return {
        "pages_per_call": pages,
        "paths": paths,
        "gateway_cpu_ms_per_page": g["cpu_ms_per_page"]["gateway"],
        "gateway_cpu_ms_per_page_rounds": spread(
            [r["gateway_cpu_ms_per_page"] for r in totals["gateway"]["rounds"]]
        ),
        # Whole path: every process the page goes through, gateway path vs direct.
        "path_cpu_ratio_gateway_vs_direct": r3(
            g["path_cpu_ms_per_page"] / d["path_cpu_ms_per_page"]
        ),
        "path_cpu_ratio_gateway_vs_sdk": r3(g["path_cpu_ms_per_page"] / s["path_cpu_ms_per_page"]),
        "path_cpu_ratio_rounds": spread(
            [
                gr["path_cpu_ms_per_page"] / dr["path_cpu_ms_per_page"]
                for gr, dr in zip(
                    totals["gateway"]["rounds"], totals["direct"]["rounds"], strict=True
                )
            ]
        ),
    }


def _summary(t: dict[str, Any]) -> dict[str, Any]:
    pages = max(t["pages"], 1)
    cpu = t["cpu"]
    path_cpu = sum(v for k, v in cpu.items() if k != "others")
    generator_cores = cpu["load_generator"] / t["seconds"]
    return {
        "pages": t["pages"],
        "pages_per_s": round(t["pages"] / t["seconds"], 1),
        "errors": t["errors"],
        "error_samples": t["samples"][:3],
        "cpu_ms_per_page": {k: r3(v / pages * MS) for k, v in cpu.items() if k != "others"},
        "path_cpu_ms_per_page": r3(path_cpu / pages * MS),
        "pages_per_cpu_second": round(pages / path_cpu, 1) if path_cpu else None,
        "cores_used": {k: round(v / t["seconds"], 2) for k, v in cpu.items()},
        "load_generator_saturated": generator_cores >= SATURATED,
    }
