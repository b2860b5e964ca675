"""`python -m bench.v13`: what the v1.3 backend costs (docs/benchmarks.md, "The v1.3 backend").

Three measurements, written to bench/results/v13.json:

1. `stall`: the event loop's longest stall while the scoring of the big request runs
   the way `V13Client._ranked` runs it (100 one-prompt classes x 50 videos x 200
   segments of 512 floats, from warm caches), seen by a 1 ms ticker on the same loop;
   and the math's total time.
2. `requests_per_page`: upstream requests per delivered page, through real processes
   (`classify-gateway emulator`, `classify-gateway serve` with UPSTREAM_API=v1.3), for a
   whole-index classification of every demo index: cold (empty caches), warm with the
   page cache off (only the embedding caches answer), warm with the page cache on.
3. `cpu_per_page`: the gateway process's CPU per delivered page over repeated warm
   classifications with the page cache off (every page recomputed from cached vectors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import grpc
import httpx
import psutil
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from bench.procs import RESULTS
from classify_emulator.stack import running, start_emulator, start_gateway
from classify_gateway.backends.v1_3.client import SCORE_CHUNK_SECONDS
from classify_gateway.backends.v1_3.scoring import (
    Calibration,
    Segments,
    VideoVectors,
    query_of,
    rank,
    score_video,
    unit_rows,
)
from classify_gateway.config import Settings
from classify_gateway.demo import TAXONOMY  # the demo's classes: the same question

KEY = "bench-v13-key"
DIM = 512


def big_request(prompts: int) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        index_id="bench",
        options=[pb.SEARCH_OPTION_VISUAL],
        classes=[pb.ClassDefinition(name=f"c{i}", prompts=[f"prompt {i}"]) for i in range(prompts)],
        include_clips=True,
        show_detailed_score=True,
    )


async def stall(prompts: int = 100, videos: int = 50, segments: int = 200) -> dict[str, Any]:
    # numpy only once classify_gateway.backends.v1_3 (imported above) has set BLAS to one
    # thread, as in the gateway process.
    import numpy as np

    rng = np.random.default_rng(7)
    query = query_of(big_request(prompts))
    matrix = unit_rows(rng.standard_normal((prompts, DIM)))
    calibration = Calibration.parse(Settings().v13_calibration)
    vectors = [
        VideoVectors(
            f"v{k}",
            segments * 5.0,
            {
                "visual": Segments(
                    np.arange(segments) * 5.0,
                    np.arange(1, segments + 1) * 5.0,
                    unit_rows(rng.standard_normal((segments, DIM))),
                )
            },
        )
        for k in range(videos)
    ]
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)

    async def scoring() -> float:
        # As V13Client._ranked: score each video, yield once a piece has run the budget.
        started = time.perf_counter()
        results = []
        budget_from = time.monotonic()
        for order, video in enumerate(vectors):
            scored = score_video(query, matrix, video, calibration)
            if scored is not None:
                results.append((scored[0], order, scored[1]))
            if time.monotonic() - budget_from > SCORE_CHUNK_SECONDS:
                await asyncio.sleep(0)
                budget_from = time.monotonic()
        rank(results)
        return time.perf_counter() - started

    # Warm (numpy's first calls, the calibration's arrays), as a serving gateway is.
    score_video(query, matrix, vectors[0], calibration)
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    lags.clear()
    total = await scoring()
    done.set()
    await tick
    return {
        "shape": f"{prompts} prompts x {videos} videos x {segments} segments x {DIM} floats",
        "math_total_ms": round(total * 1000, 1),
        "per_video_ms": round(total * 1000 / videos, 2),
        "max_loop_stall_ms": round(max(lags) * 1000, 2),
        "p50_loop_stall_ms": round(float(np.percentile(lags, 50)) * 1000, 2),
        "ticks": len(lags),
        "p99_loop_stall_ms": round(float(np.percentile(lags, 99)) * 1000, 2),
    }


def journal_size(emulator_url: str) -> int:
    r = httpx.get(emulator_url + "/_emulator/requests", timeout=10)
    return len(r.raise_for_status().json()["requests"])


def indexes(emulator_url: str) -> list[str]:
    r = httpx.get(emulator_url + "/v1.3/indexes", headers={"x-api-key": KEY}, timeout=10)
    return [i["_id"] for i in r.raise_for_status().json()["data"]]


def classify_all(stub: pb_grpc.ClassifyServiceStub, index_ids: list[str]) -> int:
    """Every demo index classified with the demo taxonomy; returns the pages delivered."""
    pages = 0
    for index_id in index_ids:
        request = pb.ClassifyRequest(
            index_id=index_id,
            options=[pb.SEARCH_OPTION_VISUAL, pb.SEARCH_OPTION_CONVERSATION],
            classes=[pb.ClassDefinition(name=n, prompts=p) for n, p in TAXONOMY],
            include_clips=True,
            show_detailed_score=True,
            page_limit=2,
        )
        for _ in stub.Classify(request, timeout=120):
            pages += 1
    return pages


def through_processes(rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with running(start_emulator(KEY)) as emu:
        ids = indexes(emu.url)
        for cache_ttl in (0, 300):
            settings = {"upstream_api": "v1.3", "cache_ttl": cache_ttl, "coalesce": False}
            with running(start_gateway(emu.url + "/v1.3", KEY, **settings)) as gw:
                proc = psutil.Process(gw.pid)
                with grpc.insecure_channel(gw.address) as channel:
                    stub = pb_grpc.ClassifyServiceStub(channel)
                    runs = []
                    for label in ("cold", "warm"):
                        before = journal_size(emu.url)
                        pages = classify_all(stub, ids)
                        spent = journal_size(emu.url) - before
                        runs.append((label, pages, spent))
                    name = "page_cache_on" if cache_ttl else "page_cache_off"
                    out[name] = {
                        label: {
                            "pages": pages,
                            "upstream_requests": spent,
                            "requests_per_page": round(spent / pages, 3),
                        }
                        for label, pages, spent in runs
                    }
                    if not cache_ttl:
                        cpu0 = sum(proc.cpu_times()[:2])
                        pages = sum(classify_all(stub, ids) for _ in range(rounds))
                        cpu = sum(proc.cpu_times()[:2]) - cpu0
                        out["cpu_per_page"] = {
                            "pages": pages,
                            "gateway_cpu_ms_per_page": round(cpu * 1000 / pages, 2),
                            "what": "warm embedding caches, page cache off: every page "
                            "recomputed (prompt matrix, scoring, ranking, tokens)",
                        }
            emu_journal_reset(emu.url)
    return out


def emu_journal_reset(url: str) -> None:
    httpx.delete(url + "/_emulator/requests", timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="warm rounds for cpu_per_page")
    ns = parser.parse_args()
    result = {
        "stall": asyncio.run(stall()),
        **through_processes(ns.rounds),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "v13.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
