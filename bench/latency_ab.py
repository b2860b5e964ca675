"""Added latency, this tree's gateway against another commit's:
`python -m bench.latency_ab [--rounds N] [--seconds S] [--rates 100,300] ref:COMMIT`.

bench/scenarios/added_latency.py's method with two gateways: the fake upstream serving the
documentation's 1-page answer, this tree's gateway and the gateway of COMMIT (bench/ab.py's
`ref:` worktree), both with the shipped defaults, and the direct client. At each rate an
open loop of 1-page calls goes to each of the three paths in turn within every round (the
order turns from round to round, so that no path always runs right after the same one).
Every call asks a question of its own (a distinct video id, the same page), on the
gateways and on the direct path alike: all are cache misses. A path's added p50 and p99
are its gateway's minus the direct client's within the round; `new_minus_old` is this
tree's added latency minus COMMIT's, round by round. Each is min / median / max over the
rounds; rounds in which the load generator started more than 1 % of its calls over 10 ms
late are left out, as the scenario does. Writes bench/results/latency_ab_COMMIT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import psutil

from bench import procs
from bench.ab import variant
from bench.clients import DirectClient, GatewayClient, bench_request
from bench.loadgen import closed_loop
from bench.meters import r3, spread
from bench.scenarios.added_latency import RATES, Round, kept_rounds, measure_path, shown_rounds

Client = GatewayClient | DirectClient


async def one_rate(clients: dict[str, Client], rate: int, rounds: int, seconds: float) -> Any:
    names = list(clients)
    seen: list[Round] = []
    errors = dict.fromkeys(names, 0)
    generator_cores = 0.0
    for i in range(rounds):
        one: Round = {}
        for name in names[i % len(names) :] + names[: i % len(names)]:
            one[name], errs, cores = await measure_path(
                clients[name].call, rate, seconds, psutil.Process()
            )
            generator_cores = max(generator_cores, cores)
            errors[name] += errs
        seen.append(one)
    used, kept = kept_rounds(seen)

    def added(r: Round, gw: str, q: str) -> float:
        return r[gw][q] - r["direct"][q]

    out: dict[str, Any] = {"offered_calls_per_s": rate, **kept}
    for gw in ("new", "old"):
        out[gw] = {
            f"added_{q}": spread([added(r, gw, q) for r in used]) for q in ("p50_ms", "p99_ms")
        }
    out["new_minus_old"] = {
        f"added_{q}": spread([added(r, "new", q) - added(r, "old", q) for r in used])
        for q in ("p50_ms", "p99_ms")
    }
    out["direct"] = {q: spread([r["direct"][q] for r in used]) for q in ("p50_ms", "p99_ms")}
    out["errors"] = errors
    out["load_generator_cores_max"] = r3(generator_cores)
    out["rounds"] = shown_rounds(seen)
    return out


async def measure(ref: str, rates: list[int], rounds: int, seconds: float) -> dict[str, Any]:
    procs.pin(os.getpid(), procs.DRIVER_CORES)
    out: dict[str, Any] = {}
    with procs.running(procs.start_upstream()) as upstream:
        out["page_bytes"] = procs.upstream_config(upstream.url, shape="docs", pages=1)["page_bytes"]
        gateways: dict[str, procs.Process] = {}
        clients: dict[str, Client] = {}
        try:
            for name, (cmd, settings) in (("new", (None, {})), ("old", variant(ref))):
                gateways[name] = procs.start_gateway(
                    upstream.url, settings, cmd, f"gateway_latency_ab_{name}.log"
                )
                clients[name] = GatewayClient(gateways[name].address, bench_request()).distinct()
            out["gateway_settings"] = procs.shown_settings(gateways["new"])
            clients["direct"] = DirectClient(
                upstream.url, procs.API_KEY, bench_request()
            ).distinct()
            for c in clients.values():
                await c.start()
                await closed_loop(c.call, 4, 1.0, 40)
            for rate in rates:
                out[f"{rate}_calls_per_s"] = await one_rate(clients, rate, rounds, seconds)
        finally:
            for c in clients.values():
                await c.aclose()
            for g in gateways.values():
                g.stop(grace=5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("ref", help="ref:COMMIT, the gateway to compare with")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default=",".join(map(str, RATES)))
    ns = ap.parse_args()
    if not ns.ref.startswith("ref:"):
        ap.error("the gateway to compare with is ref:COMMIT")
    rates = [int(r) for r in ns.rates.split(",")]

    def git(*args: str) -> str:
        cmd = ["git", "-C", str(procs.ROOT), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()

    res: dict[str, Any] = {
        "command": "python -m bench.latency_ab " + " ".join(sys.argv[1:]),
        "new_commit": git("rev-parse", "HEAD"),
        "old_commit": git("rev-parse", ns.ref[4:] + "^{commit}"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "rounds": ns.rounds,
        "seconds_per_round": ns.seconds,
    }
    res["results"] = asyncio.run(measure(ns.ref, rates, ns.rounds, ns.seconds))
    res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    procs.RESULTS.mkdir(parents=True, exist_ok=True)
    path = procs.RESULTS / f"latency_ab_{ns.ref[4:].replace('/', '-')}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"load average {res['loadavg_at_start']} -> {res['loadavg_at_end']}; {path.name}")
    for rate in rates:
        r = res["results"][f"{rate}_calls_per_s"]
        print(f"{rate} calls/s, rounds kept {r['rounds_used']} (left out {r['rounds_left_out']}):")
        for q in ("added_p50_ms", "added_p99_ms"):
            shown = (f"{n} {show(r[n][q])}" for n in ("new", "old", "new_minus_old"))
            print(f"  {q:13} " + "   ".join(shown))


def show(s: dict[str, float]) -> str:
    """median (min .. max)"""
    return f"{s['median']:+.2f} ({s['min']:+.2f} .. {s['max']:+.2f})"


if __name__ == "__main__":
    main()
