"""Upstream requests per delivered page, with and without coalescing and the page cache.

A realistic mixed workload against the emulator (which journals every upstream request):
in each wave, a few *hot* classifications are asked by many callers at once (ten replicas
of a service classifying the same new video, a dashboard reloading), and many *unique*
ones once each. Hot requests come back wave after wave, within the cache TTL. The same
waves run against two gateways over one emulator:

- `passthrough`: `CLASSIFY_GATEWAY_COALESCE=false`, `CLASSIFY_GATEWAY_CACHE_TTL=0`
  (every call fetches its own pages, as before coalescing existed);
- `shared`: the shipped defaults (coalescing on, cache TTL 300 s).

Every other scenario runs the shipped defaults on distinct questions, so they measure the
gateway's own cost per page on cache misses.

Reported: pages delivered, upstream requests (POSTs and page GETs), upstream requests
per delivered page, and whether every caller of a hot request got the same pages.
Bounded: a fixed number of calls, each with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import httpx
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

from bench import procs
from bench.stage import Stage
from classify_emulator.stack import start_emulator

SHARED: dict[str, object] = {"coalesce": True, "cache_ttl": 300}
PROMPTS = ["dance tutorial", "cooking tutorial", "soccer match", "news anchor", "live concert"]


def _video_ids(url: str) -> list[str]:
    with httpx.Client(base_url=url + "/v1.2", headers={"x-api-key": procs.API_KEY}) as c:
        ids: list[str] = []
        for index in c.get("/indexes").raise_for_status().json()["data"]:
            r = c.get(f"/indexes/{index['_id']}/videos", params={"page_limit": 50})
            ids += [v["_id"] for v in r.raise_for_status().json()["data"]]
    return ids


def _request(ids: list[str], n: int, prompt: str) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        video_ids=ids,
        options=[pb.SEARCH_OPTION_VISUAL, pb.SEARCH_OPTION_CONVERSATION],
        classes=[
            pb.ClassDefinition(name="a", prompts=[prompt]),
            pb.ClassDefinition(name="b", prompts=[PROMPTS[n % len(PROMPTS)], f"variant {n}"]),
        ],
        threshold=pb.Threshold(min_video_score=0, min_clip_score=0, min_duration_ratio=0.01),
        page_limit=2,
    )


def workload(ids: list[str], quick: bool) -> list[list[tuple[str, pb.ClassifyRequest]]]:
    """Waves of (label, request): hot requests asked by many callers, unique ones once."""
    waves, hot, callers, unique = (3, 3, 6, 6) if quick else (6, 4, 10, 12)
    hot_reqs = [_request(ids[i : i + 8], i, PROMPTS[i % len(PROMPTS)]) for i in range(hot)]
    out = []
    n = 1000
    for _ in range(waves):
        wave = [(f"hot{h}", r) for h, r in enumerate(hot_reqs) for _ in range(callers)]
        for _ in range(unique):
            n += 1
            # Unique: the same kind of videos, another taxonomy (its own prompts).
            start = n % len(hot_reqs)
            wave.append((f"unique{n}", _request(ids[start : start + 8], n, f"topic {n}")))
        out.append(wave)
    return out


async def _drive(
    addr: str, waves: list[list[tuple[str, pb.ClassifyRequest]]], gap: float
) -> dict[str, Any]:
    pages = errors = 0
    identical = True
    failures: list[str] = []
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = pb_grpc.ClassifyServiceStub(channel)
        await asyncio.wait_for(channel.channel_ready(), 10)

        async def one(req: pb.ClassifyRequest) -> list[bytes] | None:
            try:
                out = []
                async for page in stub.Classify(req, timeout=60):
                    # The results; tokens differ between independent upstream chains.
                    out.append(b"".join(v.SerializeToString() for v in page.data))
                return out
            except grpc.aio.AioRpcError as err:
                failures.append(f"{err.code().name}: {err.details()}")
                return None

        for wave in waves:
            results = await asyncio.gather(*(one(r) for _, r in wave))
            by_label: dict[str, list[list[bytes]]] = {}
            for (label, _), got in zip(wave, results, strict=True):
                if got is None:
                    errors += 1
                    continue
                pages += len(got)
                by_label.setdefault(label, []).append(got)
            for got_all in by_label.values():
                identical = identical and all(g == got_all[0] for g in got_all)
            await asyncio.sleep(gap)
    return {
        "pages_delivered": pages,
        "errors": errors,
        "error_samples": failures[:3],
        "hot_callers_got_same_pages": identical,
    }


def _clear_journal(emu_url: str) -> None:
    httpx.delete(emu_url + "/_emulator/requests", timeout=10).raise_for_status()


def _upstream_requests(emu_url: str) -> dict[str, int]:
    r = httpx.get(emu_url + "/_emulator/requests", timeout=30).raise_for_status()
    entries = [e for e in r.json()["requests"] if "/classify" in e["path"]]
    posts = sum(1 for e in entries if e["method"] == "POST")
    return {"posts": posts, "gets": len(entries) - posts, "total": len(entries)}


async def run(stage: Stage) -> dict[str, Any]:
    """The scenario (registered in bench/__main__.py); its own emulator and gateways."""
    return await measure(stage.quick)


async def measure(quick: bool) -> dict[str, Any]:
    emu = start_emulator(procs.API_KEY, procs.RESULTS / "emulator_sharing.log", latency_ms=20)
    out: dict[str, Any] = {}
    try:
        ids = _video_ids(emu.url)
        waves = workload(ids, quick)
        out["workload"] = {
            "waves": len(waves),
            "calls_per_wave": len(waves[0]),
            "calls": sum(len(w) for w in waves),
            "pages_per_call": 4,
            "emulator_latency_ms": 20,
        }
        for name, settings in (("passthrough", procs.PASSTHROUGH), ("shared", SHARED)):
            _clear_journal(emu.url)
            with procs.running(
                procs.start_gateway(emu.url, settings, log=f"gateway_{name}.log")
            ) as gw:
                t0 = time.monotonic()
                got = await _drive(gw.address, waves, gap=0.2)
                got["seconds"] = round(time.monotonic() - t0, 2)
            up = _upstream_requests(emu.url)
            got["upstream_requests"] = up
            got["upstream_requests_per_page"] = (
                round(up["total"] / got["pages_delivered"], 4) if got["pages_delivered"] else None
            )
            out[name] = got
        before = out["passthrough"]["upstream_requests_per_page"]
        after = out["shared"]["upstream_requests_per_page"]
        if before and after:
            out["reduction_factor"] = round(before / after, 2)
    finally:
        emu.stop(grace=5)
    return out


def report_lines(res: dict[str, Any] | None) -> list[str]:
    """The docs/benchmarks.md section of this scenario."""
    if not res or "shared" not in res:
        return []
    w = res["workload"]
    lines = [
        "## Coalescing and page cache: upstream requests per delivered page",
        "",
        f"`bench/scenarios/sharing.py`: {w['waves']} waves of {w['calls_per_wave']} "
        "concurrent calls "
        f"({w['calls']} calls, {w['pages_per_call']} pages each) against the emulator "
        f"({w['emulator_latency_ms']} ms per request); in each wave a few hot requests are "
        "asked by many callers at once and the rest are unique; hot requests repeat every "
        "wave.",
        "",
        "| gateway | pages delivered | upstream POST / GET | upstream requests per page | "
        "errors | hot callers got the same pages |",
        "|---|---:|---|---:|---:|---|",
    ]
    for name in ("passthrough", "shared"):
        r = res[name]
        up = r["upstream_requests"]
        lines.append(
            f"| {name} | {r['pages_delivered']} | {up['posts']} / {up['gets']} | "
            f"{r['upstream_requests_per_page']} | {r['errors']} | "
            f"{r['hot_callers_got_same_pages']} |"
        )
    lines += ["", f"Reduction: **{res.get('reduction_factor')}x** fewer upstream requests.", ""]
    return lines


def main() -> None:
    """`python -m bench.scenarios.sharing [--quick]`: this scenario alone, into
    bench/results/sharing.json (`make bench` runs it with the others, into latest.json)."""
    import json
    import sys

    res = asyncio.run(measure("--quick" in sys.argv[1:]))
    out = procs.RESULTS / "sharing.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print("\n".join(report_lines(res)))


if __name__ == "__main__":
    main()
