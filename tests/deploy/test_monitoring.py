"""deploy/monitoring agrees with the code and the runbook: the ServiceMonitor scrapes the
Service's metrics port, every alert uses only metrics and labels the gateway exports, and
every alert links a runbook entry of docs/operations.md that exists."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.promql import problems
from tests.deploy.support import NAME, ROOT, load_docs, one

MONITORING = ROOT / "deploy" / "monitoring"
RUNBOOK = ROOT / "docs" / "operations.md"
# The alerts the runbook promises: upstream failing (issue 17), the upstream refusing the
# gateway's key or endpoint and the gRPC error ratio per method (issue 26), quota nearly
# spent, p99 first-page latency, drain taking too long.
EXPECTED_ALERTS = {
    "ClassifyGatewayUpstreamFailing",
    "ClassifyGatewayUpstreamRejectsGateway",
    "ClassifyGatewayRpcErrors",
    "ClassifyGatewayQuotaNearlySpent",
    "ClassifyGatewayFirstPageSlow",
    "ClassifyGatewayDrainTooLong",
}


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def rules() -> list[dict[str, Any]]:
    rule = one(MONITORING, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_kustomization_lists_both_and_labels_are_ours() -> None:
    kustomization = load_docs(MONITORING / "kustomization.yaml")[0]
    assert set(kustomization["resources"]) == {
        "servicemonitor.yaml",
        "prometheusrule.yaml",
        "runbook.yaml",
    }
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
    assert problems(rule["expr"]) == []
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
