"""ghz (an outside gRPC load generator, Go) against the gateway: 16 callers, 1-page calls.

Installed with `go install` into bench/.gobin on first use; skipped when Go is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench import procs
from bench.meters import MS, CpuMeter, r3
from bench.stage import Stage

ROOT = procs.ROOT
BENCH = ROOT / "bench"
GHZ_VERSION = "v0.120.0"


def ghz_install() -> tuple[Path | None, str]:
    gobin = BENCH / ".gobin"
    exe = gobin / "ghz"
    if exe.exists():
        return exe, "already installed"
    go = shutil.which("go")
    if go is None:
        return None, "go is not installed"
    env = {
        **os.environ,
        "GOBIN": str(gobin),
        "GOMODCACHE": str(BENCH / ".gomodcache"),
        "GOCACHE": str(BENCH / ".gocache"),
        "GOFLAGS": "-modcacherw",
    }
    try:
        p = subprocess.run(
            [go, "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, "go install timed out after 600 s"
    if p.returncode != 0 or not exe.exists():
        return None, "go install failed: " + (p.stderr or p.stdout)[-500:]
    return exe, "installed"


async def run(stage: Stage) -> dict[str, Any]:
    exe, how = ghz_install()
    if exe is None:
        return {"skipped": how}
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    # Bounded by count (-n); the time bound is the subprocess timeout. Not -z: with -z
    # ghz ignores -n and cancels the calls in flight at the end, counting them as errors.
    n, cap = (600, 30) if stage.quick else (4000, 120)
    stage.serve("docs", 1)
    data = {
        "video_ids": ["6444c376456b2dab381e702d"],
        "options": ["SEARCH_OPTION_VISUAL", "SEARCH_OPTION_CONVERSATION"],
        "classes": [
            {"name": "dance", "prompts": ["dancing", "dance moves"]},
            {"name": "cooking", "prompts": ["cooking", "kitchen"]},
        ],
        "include_clips": True,
        "show_detailed_score": True,
        "threshold": {"min_video_score": 0, "min_clip_score": 0, "min_duration_ratio": 0.01},
    }
    cmd = [
        str(exe),
        "--insecure",
        "--proto",
        "proto/classify/v1/classify_service.proto",
        "--import-paths",
        f"proto,{include}",
        "--call",
        "classify.v1.ClassifyService.Classify",
        "-d",
        json.dumps(data),
        "-c",
        "16",
        "--connections",
        "4",
        "-n",
        str(n),
        "--timeout",
        "20s",
        "-O",
        "json",
        stage.gateway.address,
    ]
    with CpuMeter({"gateway": procs.ps(stage.gateway)}) as m:
        p = await asyncio.to_thread(
            subprocess.run, cmd, cwd=ROOT, capture_output=True, text=True, timeout=cap, check=False
        )
    if p.returncode != 0 and not p.stdout.strip():
        return {"skipped": f"ghz failed: {p.stderr[-500:]}", "version": GHZ_VERSION}
    rep = json.loads(p.stdout)
    lat = {d["percentage"]: d["latency"] / 1e6 for d in rep.get("latencyDistribution") or []}
    count = int(rep.get("count", 0))
    errors = sum(int(v) for v in (rep.get("errorDistribution") or {}).values())
    shown = ["ghz", *cmd[1:]]
    shown[shown.index("-d") + 1] = "'" + json.dumps(data) + "'"
    return {
        "version": GHZ_VERSION,
        "install": how,
        "upstream": "fake (1 docs page per call)",
        "command": " ".join(shown),
        "count": count,
        "rps": round(float(rep.get("rps", 0.0)), 1),
        "p50_ms": r3(lat.get(50, float("nan"))),
        "p95_ms": r3(lat.get(95, float("nan"))),
        "p99_ms": r3(lat.get(99, float("nan"))),
        "average_ms": r3(float(rep.get("average", 0)) / 1e6),
        "status_codes": rep.get("statusCodeDistribution"),
        "error_distribution": rep.get("errorDistribution"),
        "errors": errors,
        "error_rate": round(errors / count, 4) if count else None,
        "gateway_cores_used": round(m.used["gateway"] / m.seconds, 2),
        "gateway_cpu_ms_per_page": round(m.used["gateway"] / max(count, 1) * MS, 3),
    }
