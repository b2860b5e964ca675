# pyinstrument renders its report after the load has stopped: blocking there is harmless.
# ruff: noqa: ASYNC221
"""Where the gateway's CPU goes per page: pyinstrument on a gateway under steady load.

bench/profile_server.py runs the same Gateway as `serve` and samples only between SIGUSR1
and SIGUSR2, so that start-up is not in the profile. The full reports go to
bench/results/profile_gateway_*.txt (not committed); the top self-time frames go into
latest.json, scaled to the CPU the process really used per page.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal as sig
import subprocess
from pathlib import Path
from typing import Any

from bench import procs
from bench.clients import GatewayClient, bench_request
from bench.loadgen import closed_loop
from bench.meters import cpu_seconds, r3
from bench.stage import Stage

ROOT = procs.ROOT


async def run(stage: Stage) -> dict[str, Any]:
    if stage.quick:
        return {"skipped": "quick run (make bench profiles the gateway)"}
    return {f"{pages}page": await _profile(stage, 6.0, pages) for pages in (1, 10)}


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


async def _profile(stage: Stage, seconds: float, pages: int) -> dict[str, Any]:
    """Profile a second gateway (bench.profile_server) under steady load, docs pages.

    Sampling starts after warm-up (SIGUSR1) and stops before the load ends (SIGUSR2),
    so imports and start-up are not in it. Shares are of non-idle samples.
    """
    exe = Path(procs.PY).parent / "pyinstrument"
    session = procs.RESULTS / f"profile_{pages}p.tmp"
    cmd = [procs.PY, "-m", "bench.profile_server", str(session)]
    proc = procs.start_gateway(stage.upstream.url, cmd=cmd, log="gateway_profiled.log")
    try:
        stage.serve("docs", pages)
        gw = GatewayClient(proc.address, bench_request(), channels=4).distinct()
        await gw.start()
        try:
            await closed_loop(gw.call, 16, 1.0, 100_000, warmup_calls=5)
            proc.popen.send_signal(sig.SIGUSR1)
            c0 = cpu_seconds(procs.ps(proc))
            res = await closed_loop(gw.call, 16, seconds, 100_000)
            cpu = cpu_seconds(procs.ps(proc)) - c0
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
        f"# pyinstrument, gateway under 16 concurrent {pages}-page calls (docs pages), "
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
