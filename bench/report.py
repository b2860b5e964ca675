"""docs/benchmarks.md and its plots, rendered from one run's results.

The page is bench/report_template.md (string.Template): prose with `$name` fields. This
module only computes the fields: each is a figure, or a table made by `table()` from
rows of the results. The hand-written analysis is bench/NOTES.md, included as it is.
`python -m bench.report` renders again from bench/results/latest.json.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Sequence
from typing import Any

from bench.procs import RESULTS, ROOT

DOC = ROOT / "docs" / "benchmarks.md"
TEMPLATE = ROOT / "bench" / "report_template.md"
NOTES = ROOT / "bench" / "NOTES.md"
PLOTS = "../bench/results/"
PATH_NAMES = {
    "gateway": "gateway (grpc.aio stub -> gateway -> upstream)",
    "direct": "direct: aiohttp + orjson",
    "sdk": "SDK 0.3.2 page loop",
    "direct_prefetch": "direct, prefetching one page",
}
MET = {True: "**met**", False: "**not met**", None: "-"}


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    if isinstance(v, dict) and set(v) == {"min", "median", "max"}:
        return f"{fmt(v['median'])} ({fmt(v['min'])} .. {fmt(v['max'])})"
    if isinstance(v, list):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt(x)}" for k, x in v.items())
    return str(v)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def dig(record: Any, path: str) -> Any:
    """`record["a"]["b"]` for "a.b"; None where a key is missing."""
    for key in path.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def columns_table(
    rows: Iterable[tuple[str, dict[str, Any]]], first: str, columns: Sequence[tuple[str, str]]
) -> str:
    """One row per (label, record); each column is a header and a dotted key of the record."""
    return table(
        [first, *(h for h, _ in columns)],
        [(label, *(dig(rec, path) for _, path in columns)) for label, rec in rows],
    )


def cases(section: Any, required: str) -> list[tuple[str, dict[str, Any]]]:
    """The (name, result) pairs of a scenario that hold `required` (not its metadata)."""
    items = (section or {}).items()
    return [(k, v) for k, v in items if isinstance(v, dict) and required in v]


GOAL_COLUMNS = [("value", "value"), ("target", "goal"), ("met", "met_text")]
CPU_COLUMNS = [
    ("pages/s", "pages_per_s"),
    ("CPU ms/page: load generator", "cpu_ms_per_page.load_generator"),
    ("gateway", "cpu_ms_per_page.gateway"),
    ("upstream", "cpu_ms_per_page.upstream"),
    ("whole path", "path_cpu_ms_per_page"),
    ("pages per CPU-second", "pages_per_cpu_second"),
    ("generator cores", "cores_used.load_generator"),
    ("generator saturated", "load_generator_saturated"),
    ("errors", "errors"),
]
RATIO_COLUMNS = [
    ("bytes per page", "page_bytes"),
    ("gateway CPU ms/page", "gateway_cpu_ms_per_page"),
    ("per round: median (min .. max)", "gateway_cpu_ms_per_page_rounds"),
    ("whole-path CPU, gateway / direct", "path_cpu_ratio_gateway_vs_direct"),
    ("per round", "path_cpu_ratio_rounds"),
    ("gateway / SDK", "path_cpu_ratio_gateway_vs_sdk"),
]
LATENCY_COLUMNS = [
    ("direct p50 ms", "direct.p50_ms"),
    ("gateway p50 ms", "gateway.p50_ms"),
    ("added p50 ms", "added_p50_ms"),
    ("direct p99 ms", "direct.p99_ms"),
    ("gateway p99 ms", "gateway.p99_ms"),
    ("added p99 ms", "added_p99_ms"),
    ("rounds used", "rounds_used"),
    ("left out (generator late)", "rounds_left_out"),
    ("errors", "errors"),
    ("generator cores (max)", "load_generator_cores_max"),
]
MEMORY_COLUMNS = [
    ("upstream requests", "upstream_requests"),
    ("idle RSS MiB", "idle_rss_mib"),
    ("RSS MiB", "rss_mib"),
    ("KiB per stream", "kib_per_stream"),
]
TRANSLATION_COLUMNS = [
    ("bytes", "page_bytes"),
    ("hand-written µs", "handwritten_us"),
    ("ParseDict µs", "parsedict_us"),
    ("speedup", "speedup_vs_parsedict"),
    ("orjson.loads µs", "orjson_loads_us"),
    ("json.loads µs", "json_loads_us"),
]


def _goals(res: dict[str, Any]) -> str:
    rows = [(f"`{k}`", {**g, "met_text": MET[g["met"]]}) for k, g in res["goals"].items()]
    return columns_table(rows, "goal", GOAL_COLUMNS)


def _cpu(res: dict[str, Any]) -> str:
    rows = [
        (f"{key}: {PATH_NAMES[name]}", p)
        for key, case in cases(res.get("cpu_per_page"), "paths")
        for name, p in case["paths"].items()
    ]
    return columns_table(rows, "pages: path", CPU_COLUMNS)


def _cpu_ratios(res: dict[str, Any]) -> str:
    return columns_table(cases(res.get("cpu_per_page"), "paths"), "pages", RATIO_COLUMNS)


def _latency(res: dict[str, Any]) -> str:
    rows = cases(res.get("added_latency"), "added_p50_ms")
    return columns_table(
        [(f"{r['offered_calls_per_s']}", r) for _, r in rows], "calls/s", LATENCY_COLUMNS
    )


def _slow(res: dict[str, Any]) -> str:
    sc = res.get("slow_consumer") or {}
    rows = [(PATH_NAMES[n], v) for n, v in (sc.get("seconds") or {}).items()]
    rows.append(("floor: 200 ms + 10 x 200 ms", sc.get("floor_s")))
    rows.append(("page loop: 10 x (200 + 200) ms", sc.get("page_loop_s")))
    return table(["path", "seconds for 10 pages"], rows)


def _memory(res: dict[str, Any]) -> str:
    rows = [
        (f"{mode}, {p['open_streams']} streams", {**p, "idle_rss_mib": m["idle_rss_mib"]})
        for mode, m in cases(res.get("memory"), "points")
        for p in m["points"]
    ]
    return columns_table(rows, "streams", MEMORY_COLUMNS)


def _floor(res: dict[str, Any]) -> str:
    f = res.get("floor") or {}
    if not f or f.get("skipped"):
        return "Not run."
    names = {
        "grpc_bare": "grpc.aio alone (a prebuilt page per call)",
        "grpc_aiohttp": "grpc.aio + one aiohttp POST per call",
        "grpc_wire": "grpc.aio + one POST through the gateway's wire (`http1_transport`)",
        "gateway": "the gateway",
    }
    cpu = f.get("cpu_ms_per_1page_call", {})
    over = f.get("gateway_over", {})
    mem = f.get("kib_per_waiting_stream", {})
    gateway_mem = dig(res, "memory.waiting.points")
    if gateway_mem:
        mem = {**mem, "gateway": gateway_mem[-1]["kib_per_stream"]}
    rows = [
        (label, cpu.get(name), over.get(name, "-" if name == "gateway" else None), mem.get(name))
        for name, label in names.items()
    ]
    out = table(
        [
            "server",
            "CPU ms per 1-page call",
            "gateway CPU / this, per round",
            "KiB per waiting stream",
        ],
        rows,
    )
    own = f.get("gateway_own_ms")
    if own:
        out += (
            "\n\nWhat the gateway spends beyond grpc.aio and its wire, per 1-page call (its "
            "own work: validation, translation, limiter, sharing, metrics, log line): "
            f"**{fmt(own)} ms**."
        )
    return out


def _translation(res: dict[str, Any]) -> str:
    return columns_table(cases(res.get("translation"), "page_bytes"), "page", TRANSLATION_COLUMNS)


def _ghz(res: dict[str, Any]) -> str:
    g = res.get("ghz") or {}
    if g.get("skipped") or not g:
        return f"Not run: {g.get('skipped', 'no result')}."
    head = f"ghz {g['version']}: `{g['command']}`\n\n"
    return head + table(
        [
            "calls",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "gateway cores",
            "gateway CPU ms/call",
        ],
        [
            (
                g["count"],
                g["rps"],
                g["p50_ms"],
                g["p99_ms"],
                g["errors"],
                g["gateway_cores_used"],
                g["gateway_cpu_ms_per_page"],
            )
        ],
    )


def _profile(res: dict[str, Any]) -> str:
    prof = res.get("profile") or {}
    if prof.get("skipped"):
        return f"Not profiled in this run: {prof['skipped']}."
    parts = []
    for key, p in prof.items():
        if not isinstance(p, dict) or "top_self_time" not in p:
            continue
        rows = [(r["share"], r["us_per_page"], f"`{r['frame']}`") for r in p["top_self_time"][:12]]
        parts.append(
            f"{key}: {p['pages']} pages, {p['gateway_cpu_ms_per_page_while_profiled']} ms CPU per "
            f"page while sampled (report `{p['report']}`).\n\n"
            + table(["share of busy samples", "µs per page", "frame (self time)"], rows)
        )
    return "\n\n".join(parts) or "No profile in this run."


def plots(res: dict[str, Any]) -> dict[str, str]:
    """PNG files in bench/results; markdown image lines for the template."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {"plot_cpu": "", "plot_latency": "", "plot_memory": ""}
    cpu = res.get("cpu_per_page") or {}
    cases = [k for k in ("docs_1page", "docs_10page", "large_1page", "large_10page") if k in cpu]
    if cases:
        fig, ax = plt.subplots(figsize=(8, 4))
        names = ["gateway", "direct", "sdk"]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs = [j + i * width for j in range(len(cases))]
            ax.bar(
                xs,
                [cpu[k]["paths"][name]["path_cpu_ms_per_page"] for k in cases],
                width,
                label=PATH_NAMES[name],
            )
        ax.set_xticks([j + width for j in range(len(cases))], cases)
        ax.set_ylabel("whole-path CPU ms per page")
        ax.set_yscale("log")
        ax.set_title("CPU per page, every process of the path (lower is better)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(RESULTS / "cpu_per_page.png", dpi=100)
        plt.close(fig)
        out["plot_cpu"] = f"![CPU per page]({PLOTS}cpu_per_page.png)"
    lat = res.get("added_latency") or {}
    rates = [r for k, r in lat.items() if isinstance(r, dict) and "added_p50_ms" in r]
    if rates:
        fig, ax = plt.subplots(figsize=(6, 4))
        for q, style in (("p50_ms", "o-"), ("p99_ms", "^--")):
            for name, color in (("gateway", "C0"), ("direct", "C1")):
                ax.plot(
                    [r["offered_calls_per_s"] for r in rates],
                    [r[name][q]["median"] for r in rates],
                    style,
                    color=color,
                    label=f"{name} {q[:3]}",
                )
        ax.set_xlabel("offered calls/s (open loop)")
        ax.set_ylabel("call latency, ms (median over rounds)")
        ax.set_title("1-page calls at a fixed offered load")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(RESULTS / "added_latency.png", dpi=100)
        plt.close(fig)
        out["plot_latency"] = f"![latency at fixed load]({PLOTS}added_latency.png)"
    mem = res.get("memory") or {}
    if mem.get("waiting"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for mode in ("waiting", "holding"):
            pts = (mem.get(mode) or {}).get("points") or []
            ax.plot([p["open_streams"] for p in pts], [p["rss_mib"] for p in pts], "o-", label=mode)
        ax.set_xlabel("open streams")
        ax.set_ylabel("gateway RSS, MiB")
        ax.set_title("Gateway memory vs open streams")
        ax.legend()
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(RESULTS / "memory_per_stream.png", dpi=100)
        plt.close(fig)
        out["plot_memory"] = f"![memory per stream]({PLOTS}memory_per_stream.png)"
    return out


def fields(res: dict[str, Any]) -> dict[str, str]:
    p = res["provenance"]
    m = p["machine"]
    sc = res.get("slow_consumer") or {}
    return {
        "command": res["command"],
        "mode": p["mode"],
        "started_at": res["started_at"],
        "total_seconds": fmt(res.get("total_seconds")),
        "commit": p["commit"],
        "clean": "clean" if p["work_tree_clean"] else "**with uncommitted changes**",
        "cores": str(m["cores"]),
        "cpu_model": m["cpu_model"],
        "python": m["python"],
        "pinned": "yes" if p["pinned"] else "**no** (fewer than 2 cores)",
        "loadavg_start": fmt(res["loadavg_at_start"]),
        "loadavg_end": fmt(res.get("loadavg_at_end")),
        "errors": json.dumps(res["errors"]) if res["errors"] else "none",
        "remeasured": ", ".join(
            f"{r['scenario']} at {r['started_at']}" for r in res.get("remeasured", [])
        )
        or "none",
        "goals": _goals(res),
        "cpu_table": _cpu(res),
        "cpu_ratios": _cpu_ratios(res),
        "latency_table": _latency(res),
        "slow_table": _slow(res),
        "slow_ratio": fmt(sc.get("gateway_vs_sdk")),
        "slow_vs_prefetch": fmt(sc.get("gateway_vs_direct_prefetch")),
        "first_page": fmt((res.get("first_page") or {}).get("added_p50_ms")),
        "memory_table": _memory(res),
        "floor_table": _floor(res),
        "floor_streams": fmt(dig(res, "floor.kib_per_waiting_stream.streams")),
        "translation_table": _translation(res),
        "ghz": _ghz(res),
        "profile": _profile(res),
        "notes": NOTES.read_text().rstrip() if NOTES.exists() else "",
    }


def write(res: dict[str, Any]) -> None:
    values = fields(res)
    try:
        values.update(plots(res))
    except Exception as exc:  # a missing plot must not lose the numbers
        values.update(plot_cpu="", plot_latency="", plot_memory="")
        res["errors"]["plots"] = repr(exc)
    DOC.write_text(string.Template(TEMPLATE.read_text()).substitute(values))


def summary(res: dict[str, Any]) -> str:
    rows = [
        f"{k:<36} {fmt(g['value']):<24} {g['goal']:<8} {MET[g['met']]}"
        for k, g in res["goals"].items()
    ]
    return "\n".join(["", *rows])


if __name__ == "__main__":
    write(json.loads((RESULTS / "latest.json").read_text()))
