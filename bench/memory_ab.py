"""Memory per waiting stream of gateway variants: `python -m bench.memory_ab VARIANT ...`.

The waiting mode of bench/scenarios/memory.py (every stream holds its own upstream request,
which the fake upstream holds for 10 minutes; distinct questions; shipped defaults with the
upstream caps raised), for each variant in turn in front of one fake upstream: the shipped
gateway of this tree, a named variant of bench/ab.py, or `ref:COMMIT`. Writes
bench/results/memory_ab.json (`--out` to change).

`--trace DIR` runs each gateway under tracemalloc (`--frames` deep) and, at each level
(0 streams included), has it write a snapshot and a count of its live objects per type
into DIR (`python -m bench.memory_ab --report DIR/VARIANT A B` then shows the top
contributors between levels A and B, per stream). A traced gateway's RSS is not a
measurement: tracemalloc keeps a record per allocation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

from bench import procs
from bench.ab import known_variant, variant
from bench.scenarios import memory
from bench.stage import Stage

# Run inside the traced gateway: SIGUSR1 starts tracemalloc (the first time: what existed
# before is not traced, and a diff between levels does not need it), then writes a snapshot
# and the live objects per type (gc.get_objects) to $BENCH_TRACE_DIR/<n>.*, n from
# $BENCH_TRACE_DIR/next.
TRACE_HOOK = """
import collections, gc, json, os, signal, sys, tracemalloc
def _bench_dump(signum, frame):
    if not tracemalloc.is_tracing():  # from the first level on: start-up stays fast
        tracemalloc.start({frames})
    d = os.environ["BENCH_TRACE_DIR"]
    with open(os.path.join(d, "next")) as f:
        n = f.read().strip()
    gc.collect()
    counts = collections.Counter(
        f"{{type(o).__module__}}.{{type(o).__qualname__}}" for o in gc.get_objects()
    )
    with open(os.path.join(d, n + ".types.json"), "w") as f:
        json.dump(counts, f)
    tracemalloc.take_snapshot().dump(os.path.join(d, n + ".snapshot"))
    os.rename(os.path.join(d, n + ".types.json"), os.path.join(d, n + ".types"))
signal.signal(signal.SIGUSR1, _bench_dump)
"""
SERVE = "from classify_gateway.cli import main; sys.exit(main(['serve']))"


def traced(cmd: list[str] | None, frames: int) -> list[str]:
    hook = TRACE_HOOK.format(frames=frames)
    if cmd is None:
        return [procs.PY, "-c", hook + SERVE]
    assert cmd[:2] == [procs.PY, "-c"], "only the shipped gateway and refs can be traced"
    return [procs.PY, "-c", hook + cmd[2]]


def dumper(trace_dir: Path, stage: Stage) -> Any:
    base: list[int] = []

    def at_level(gateway: procs.Process, n: int) -> None:
        # A traced gateway is slow: each level is dumped once every stream of it waits on
        # its upstream request (or after 5 minutes).
        if not base:
            base.append(memory._upstream_requests(stage))
        deadline = time.monotonic() + 300
        while memory._upstream_requests(stage) - base[0] < n and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2.0)
        trace_dir.mkdir(parents=True, exist_ok=True)
        (trace_dir / "next").write_text(str(n))
        done = trace_dir / f"{n}.types"
        done.unlink(missing_ok=True)
        os.kill(gateway.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 300
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    return at_level


async def measure(
    names: list[str],
    levels: list[int],
    trace: Path | None,
    frames: int,
    extra: dict[str, object],
) -> dict[str, Any]:
    procs.pin(os.getpid(), procs.DRIVER_CORES)
    out: dict[str, Any] = {"levels": levels, "gateway_settings": procs.UNCAPPED, "variants": {}}
    with procs.running(procs.start_upstream()) as upstream:
        # memory._mode starts its own gateway per variant: the stage's is never read.
        stage = Stage(False, upstream, upstream, psutil.Process())
        for name in names:
            cmd, settings = variant(name)
            settings = {**settings, **extra}
            at_level = None
            env_dir = None
            if trace is not None:
                cmd = traced(cmd, frames)
                env_dir = trace / name.replace(":", "_")
                at_level = dumper(env_dir, stage)
                os.environ["BENCH_TRACE_DIR"] = str(env_dir)  # the gateway inherits it
            res = await memory._mode(stage, "waiting", levels, cmd, settings, at_level)
            out["variants"][name] = res
            print(name, json.dumps(res), flush=True)
    return out


def report(trace_dir: Path, a: int, b: int, top: int) -> None:
    """The largest differences between levels `a` and `b`, per stream (b - a streams)."""
    streams = b - a
    old = tracemalloc.Snapshot.load(str(trace_dir / f"{a}.snapshot"))
    new = tracemalloc.Snapshot.load(str(trace_dir / f"{b}.snapshot"))
    for key in ("filename", "lineno", "traceback"):
        stats = new.compare_to(old, key)
        total = sum(s.size_diff for s in stats)
        print(f"\n== by {key}: {total / streams:.0f} B per stream in all ==")
        for s in stats[:top]:
            if key == "traceback":
                print(f"{s.size_diff / streams:8.0f} B {s.count_diff / streams:6.2f} blocks")
                for line in s.traceback.format()[-12:]:
                    print("        " + line)
            else:
                tb = s.traceback[0]
                print(
                    f"{s.size_diff / streams:8.0f} B {s.count_diff / streams:6.2f} blocks  "
                    f"{tb.filename}:{tb.lineno if key != 'filename' else ''}"
                )
    types_a = json.loads((trace_dir / f"{a}.types").read_text())
    types_b = json.loads((trace_dir / f"{b}.types").read_text())
    diff = {t: (types_b.get(t, 0) - types_a.get(t, 0)) / streams for t in types_b}
    print("\n== live gc-tracked objects per stream, by type ==")
    for t, d in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{d:7.2f}  {t}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("variants", nargs="*", type=known_variant)
    p.add_argument("--levels", default="1000,5000,10000")
    p.add_argument("--trace", type=Path, help="tracemalloc snapshots into this directory")
    p.add_argument("--frames", type=int, default=1)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gateway setting for every variant (upstream_timeout=900: a traced gateway "
        "is slow, and its attempts would time out and retry before every stream waits)",
    )
    p.add_argument("--out", type=Path, default=procs.RESULTS / "memory_ab.json")
    p.add_argument("--report", nargs=3, metavar=("DIR", "A", "B"))
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args()
    if args.report:
        report(Path(args.report[0]), int(args.report[1]), int(args.report[2]), args.top)
        return
    levels = [int(n) for n in args.levels.split(",")]
    names = ["shipped", *args.variants]
    extra = dict(kv.split("=", 1) for kv in args.set)
    out = asyncio.run(measure(names, levels, args.trace, args.frames, extra))
    out["command"] = "python -m bench.memory_ab " + " ".join(sys.argv[1:])
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
