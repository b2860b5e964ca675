"""A/B of gateway variants: `python -m bench.ab [--rounds N] [--seconds S] VARIANT ...`.

Starts the shipped gateway and one gateway per variant, all pinned to core 0 in front of
the same fake upstream, then loads them in turn, interleaved over rounds, with the
16-caller closed loop of the CPU scenario (docs pages, 1-page calls and 10-page
streams). Reports each variant's gateway CPU per page and its ratio to the shipped
gateway within each round (min / median / max). Writes bench/results/ab_VARIANTS.json.

Variants are a command and settings, so an idea can be measured before it is written
into the gateway (`uvloop` runs the same `serve` under uvloop's event loop). A variant
`ref:COMMIT` runs the gateway of another commit (checked out once into a git worktree
in the temporary directory, outside the tree ruff and pytest read), so that a change to
the gateway is measured against the code before it, in the same run:
`python -m bench.ab ref:main~1`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import procs
from bench.loadgen import interleaved_cpu_per_page
from bench.meters import r3, spread

UVLOOP_SERVE = (
    "import sys, uvloop; uvloop.install(); "
    "from classify_gateway.cli import main; sys.exit(main(['serve']))"
)
# httpx's API without AsyncClient's machinery (URL merging, auth, cookies, redirects, event
# hooks): an httpx.Request handed straight to the transport. What that layer costs.
TRANSPORT_SERVE = """
import sys, httpx
async def request(self, method, url, *, content=None, headers=None, **_):
    req = httpx.Request(method, self._merge_url(url), content=content,
                        headers={**self.headers, **(headers or {})},
                        extensions={"timeout": self.timeout.as_dict()})
    response = await self._transport.handle_async_request(req)
    await response.aread()
    return response
httpx.AsyncClient.request = request
from classify_gateway.cli import main
sys.exit(main(["serve"]))
"""
VARIANTS: dict[str, tuple[list[str] | None, dict[str, object]]] = {
    "shipped": (None, {}),
    "uvloop": ([procs.PY, "-c", UVLOOP_SERVE], {}),
    "httpx_transport_direct": ([procs.PY, "-c", TRANSPORT_SERVE], {}),
    "log_warning": (None, {"log_level": "WARNING"}),
    # Every variant runs the shipped sharing settings on distinct calls (nothing is
    # shared); `passthrough` turns them off: what coalescing and the cache cost.
    "passthrough": (None, dict(procs.PASSTHROUGH)),
    "coalesce_only": (None, {"coalesce": True, "cache_ttl": 0}),
    "cache_only": (None, {"coalesce": False, "cache_ttl": 300}),
}


REF_SERVE = (
    "import sys; sys.path[:0] = [{root!r}, {root!r} + '/generated']; "
    "from classify_gateway.cli import main; sys.exit(main(['serve']))"
)


def variant(name: str) -> tuple[list[str] | None, dict[str, object]]:
    """The command and settings of a variant: a named one, or `ref:COMMIT`."""
    if not name.startswith("ref:"):
        return VARIANTS[name]
    rev = subprocess.run(
        ["git", "-C", str(procs.ROOT), "rev-parse", "--verify", name[4:] + "^{commit}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tree = Path(tempfile.gettempdir()) / "classify-gateway-refs" / rev[:12]
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(procs.ROOT), "worktree", "add", "--detach", str(tree), rev],
            check=True,
            capture_output=True,
        )
    return [procs.PY, "-c", REF_SERVE.format(root=str(tree))], {}


def known_variant(name: str) -> str:
    if name.startswith("ref:") or (name in VARIANTS and name != "shipped"):
        return name
    raise argparse.ArgumentTypeError(f"unknown variant {name!r} (choose from {list(VARIANTS)})")


async def measure(names: list[str], rounds: int, seconds: float) -> dict[str, Any]:
    procs.pin(os.getpid(), procs.DRIVER_CORES)
    out: dict[str, Any] = {}
    with procs.running(procs.start_upstream()) as upstream:
        gateways = {}
        try:
            for name in ["shipped", *names]:
                cmd, settings = variant(name)
                gateways[name] = procs.start_gateway(
                    upstream.url, settings, cmd, f"gateway_{name}.log"
                )
            for pages in (1, 10):
                procs.upstream_config(upstream.url, shape="docs", pages=pages)
                per_round = await interleaved_cpu_per_page(gateways, rounds, seconds, distinct=True)
                base = per_round["shipped"]
                out[f"{pages}page"] = {
                    n: {
                        "gateway_cpu_ms_per_page": spread(v),
                        "ratio_to_shipped": spread([x / b for x, b in zip(v, base, strict=True)]),
                        "rounds": [r3(x) for x in v],
                    }
                    for n, v in per_round.items()
                }
        finally:
            for g in gateways.values():
                g.stop(grace=5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("variants", nargs="*", type=known_variant, help="names, or ref:COMMIT")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ns = ap.parse_args()
    names = ns.variants or [v for v in VARIANTS if v != "shipped"]
    load = [round(x, 2) for x in os.getloadavg()]
    res: dict[str, Any] = {"loadavg_at_start": load, "rounds": ns.rounds, "seconds": ns.seconds}
    res["results"] = asyncio.run(measure(names, ns.rounds, ns.seconds))
    res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    procs.RESULTS.mkdir(parents=True, exist_ok=True)
    # One file per run of variants; docs/benchmarks.md quotes the recorded ones.
    stem = "_".join(n.replace(":", "-") for n in names)
    (procs.RESULTS / f"ab_{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    for phase, rows in res["results"].items():
        for n, r in rows.items():
            print(
                f"{phase:7} {n:12} CPU ms/page {r['gateway_cpu_ms_per_page']['median']:.3f}  "
                f"ratio to shipped {r['ratio_to_shipped']['median']:.3f} "
                f"({r['ratio_to_shipped']['min']:.3f} .. {r['ratio_to_shipped']['max']:.3f})"
            )


if __name__ == "__main__":
    main()
