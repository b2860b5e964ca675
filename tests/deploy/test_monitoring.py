"""deploy/monitoring agrees with the code and the runbook: the ServiceMonitor scrapes the
Service's metrics port, every alert uses only metrics and labels the gateway exports, and
every alert links a runbook entry of docs/operations.md that exists."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from classify_gateway.telemetry.observability import Metrics
from tests.deploy.support import NAME, ROOT, load_docs, one

MONITORING = ROOT / "deploy" / "monitoring"
RUNBOOK = ROOT / "docs" / "operations.md"
# The alerts the runbook promises (issue 17): upstream failing, quota nearly spent, p99
# first-page latency, drain taking too long.
EXPECTED_ALERTS = {
    "ClassifyGatewayUpstreamFailing",
    "ClassifyGatewayQuotaNearlySpent",
    "ClassifyGatewayFirstPageSlow",
    "ClassifyGatewayDrainTooLong",
}
# Labels Prometheus itself adds to every series (and aggregation helpers).
TARGET_LABELS = {"pod", "instance", "job", "namespace", "le", "__name__"}


def exported() -> dict[str, set[str]]:
    """Every sample name the gateway exports -> its label names."""
    out: dict[str, set[str]] = {}
    metrics = Metrics(CollectorRegistry())
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
            out[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def rules() -> list[dict[str, Any]]:
    rule = one(MONITORING, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_kustomization_lists_both_and_labels_are_ours() -> None:
    kustomization = load_docs(MONITORING / "kustomization.yaml")[0]
    assert set(kustomization["resources"]) == {"servicemonitor.yaml", "prometheusrule.yaml"}
    for kind in ("ServiceMonitor", "PrometheusRule"):
        meta = one(MONITORING, kind)["metadata"]
        assert meta["name"] == NAME and "namespace" not in meta
        assert meta["labels"]["app.kubernetes.io/name"] == NAME


def test_service_monitor_scrapes_the_metrics_port(service: dict[str, Any]) -> None:
    monitor = one(MONITORING, "ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in ports and endpoint["port"] != "grpc"
    assert endpoint["path"] == "/metrics"


def test_the_promised_alerts_exist() -> None:
    assert {r["alert"] for r in rules()} == EXPECTED_ALERTS


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_alert_uses_only_exported_metrics_and_labels(rule: dict[str, Any]) -> None:
    known = exported()
    expr = rule["expr"]
    names = set(re.findall(r"\b(classify_gateway_[a-z_]+)\b", expr))
    assert names, expr
    for name in names:
        assert name in known, f"{rule['alert']}: {name} is not exported"
    for name, matchers in re.findall(r"\b(classify_gateway_[a-z_]+)\{([^}]*)\}", expr):
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
            assert label in known[name], f"{rule['alert']}: {name} has no label {label}"
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        for label in (x.strip() for x in clause.split(",") if x.strip()):
            assert label in TARGET_LABELS or any(label in ls for ls in known.values()), label
    assert rule["labels"]["severity"] in {"page", "warning"}
    assert rule["annotations"]["summary"]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_alert_links_a_runbook_entry_that_names_it(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path == "docs/operations.md"
    text = RUNBOOK.read_text(encoding="utf-8")
    runbook = text[text.index("## Runbook") :]
    sections = {slug(m.group(1)): m.end() for m in re.finditer(r"^### (.+)$", runbook, re.M)}
    assert anchor in sections, f"{rule['alert']}: no runbook heading for #{anchor}"
    body = runbook[sections[anchor] :].split("\n### ", 1)[0]
    assert rule["alert"] in body, f"the runbook entry #{anchor} does not name {rule['alert']}"
