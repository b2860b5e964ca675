"""The parts of PromQL the deployment tests read: the selectors of an expression, whether a
selector picks a given series, and the metrics the gateway exports.

Not a PromQL parser: enough to check that the alerts' and the dashboard's expressions name
metrics and labels that exist, and that their matchers pick the series the gateway really
writes in the failures they are meant to catch. `promtool` (when installed) checks the
rest: syntax, and the alerts' arithmetic (tests/deploy/test_alerts.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from classify_gateway.telemetry.observability import Metrics

# Labels Prometheus itself adds to every series (and aggregation helpers).
TARGET_LABELS = {"pod", "instance", "job", "namespace", "le", "__name__"}

_SELECTOR = re.compile(r"\b((?:classify_gateway|process|python)_[a-z_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]

    def picks(self, name: str, labels: dict[str, str]) -> bool:
        """Whether this selector picks the series `name{labels}` (absent label = "")."""
        if name != self.metric:
            return False
        for label, op, value in self.matchers:
            have = labels.get(label, "")
            regex = op in ("=~", "!~")
            hit = re.fullmatch(value, have) is not None if regex else have == value
            if hit != (op in ("=", "=~")):
                return False
        return True


def selectors(expr: str) -> list[Selector]:
    """Every `metric{matchers}` of an expression, in order."""
    out: list[Selector] = []
    for match in _SELECTOR.finditer(expr):
        body = (match.group(2) or "{}")[1:-1]
        matchers = tuple(
            (m.group(1), m.group(2), m.group(3).replace('\\"', '"').replace("\\\\", "\\"))
            for m in _MATCHER.finditer(body)
        )
        rebuilt = "".join(m.group(0) for m in _MATCHER.finditer(body))
        assert rebuilt.strip() == body.strip(), f"matchers not understood: {{{body}}}"
        out.append(Selector(match.group(1), matchers))
    return out


def grouping_labels(expr: str) -> set[str]:
    """The labels of every by/without/on/ignoring clause."""
    return {
        label.strip()
        for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr)
        for label in clause.split(",")
        if label.strip()
    }


def exported() -> dict[str, set[str]]:
    """Every sample name the gateway exports -> its label names (from the code's own
    registry, process and Python collectors included)."""
    out: dict[str, set[str]] = {}
    metrics = Metrics(CollectorRegistry())
    for family in metrics.registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    for metric in vars(metrics).values():
        name = getattr(metric, "_name", None)
        kind = getattr(metric, "_type", None)
        if name is None or kind is None:
            continue
        labels = set(getattr(metric, "_labelnames", ()))
        suffixes = {
            "counter": ["_total"],
            "gauge": [""],
            "histogram": ["_bucket", "_count", "_sum"],
        }[kind]
        for suffix in suffixes:
            out.setdefault(name + suffix, set()).update(
                labels | ({"le"} if suffix == "_bucket" else set())
            )
    return out


def problems(expr: str, known: dict[str, set[str]] | None = None) -> list[str]:
    """What in `expr` names a metric or a label the gateway does not export."""
    known = exported() if known is None else known
    found: list[str] = []
    picked = selectors(expr)
    if not picked:
        found.append(f"no gateway metric in {expr!r}")
    for selector in picked:
        if selector.metric not in known:
            found.append(f"{selector.metric} is not exported")
            continue
        for label, _, _ in selector.matchers:
            if label not in known[selector.metric] | TARGET_LABELS:
                found.append(f"{selector.metric} has no label {label}")
    every_label = set().union(*known.values())
    for label in grouping_labels(expr):
        if label not in TARGET_LABELS | every_label:
            found.append(f"no exported metric has the label {label}")
    return found
