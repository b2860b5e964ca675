"""deploy/monitoring/dashboard.json, the Grafana dashboard, agrees with the code and the alerts
as the rules do: every query names only metrics and labels the gateway exports, is limited to
the chosen namespace and job, labels its legend with labels the query keeps, and every alert
has a panel. With promtool installed, every query also parses as PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import TARGET_LABELS, exported, grouping_labels, problems, selectors
from tests.deploy.support import MONITORING, NAME, ROOT, kustomize_build, one, only

DASHBOARD_FILE = MONITORING / "dashboard.json"
DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
TARGETS = [(p["title"], t) for p in PANELS for t in p["targets"]]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every gateway series is narrowed to the install the viewer picked.
FILTERS = {("namespace", "=~", "$namespace"), ("job", "=~", "$job")}


def test_dashboard_is_one_grafana_dashboard_with_unique_panels() -> None:
    assert DASHBOARD["uid"] == NAME and DASHBOARD["title"]
    assert DASHBOARD["schemaVersion"] >= 36
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in PANELS]
    assert len(titles) == len(set(titles))
    # Panels sit on Grafana's 24-column grid without overlapping.
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_every_query_uses_the_chosen_data_source() -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in PANELS:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]


@pytest.mark.parametrize(
    ("title", "target"), TARGETS, ids=[f"{t}:{x['refId']}" for t, x in TARGETS]
)
def test_query_names_exported_metrics_and_labels_of_the_chosen_install(
    title: str, target: dict[str, Any]
) -> None:
    expr = target["expr"]
    assert problems(expr) == [], title
    for selector in selectors(expr):
        assert set(selector.matchers) >= FILTERS, f"{title}: {selector.metric} is not filtered"
    # A legend names only labels the query keeps (its `by` labels), or Grafana shows "".
    kept = grouping_labels(expr)
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
        assert label in kept, f"{title}: legend {label} is not kept by the query"


def test_template_variables_query_exported_metrics_and_labels() -> None:
    known = exported()
    queries = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "query"]
    assert {v["name"] for v in queries} == {"namespace", "job"}
    for variable in queries:
        query = variable["query"]["query"]
        match = re.fullmatch(r"label_values\((\w+)(\{[^}]*\})?,\s*(\w+)\)", query)
        assert match, query
        assert match.group(1) in known
        assert match.group(3) in TARGET_LABELS | known[match.group(1)]


def test_every_alert_has_its_panel() -> None:
    rule = one(MONITORING, "PrometheusRule")
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    described = " ".join(p.get("description", "") for p in PANELS)
    named = set(re.findall(r"\bClassifyGateway\w+", described))
    assert named <= set(alerts), f"panels name alerts that do not exist: {named - set(alerts)}"
    assert set(alerts) <= named, f"alerts without a panel: {set(alerts) - named}"
    shown = {s.metric for _, t in TARGETS for s in selectors(t["expr"])}
    for name, expr in alerts.items():
        missing = {s.metric for s in selectors(expr)} - shown
        assert not missing, f"{name}: no panel shows {missing}"


def test_the_monitoring_install_ships_the_dashboard_to_grafana() -> None:
    config_map = only(kustomize_build(MONITORING), "ConfigMap", f"{NAME}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = config_map["data"].values()
    assert json.loads(content) == DASHBOARD


def test_panels_the_runbook_names_exist() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    flat = " ".join(runbook.split())
    named = re.findall(r'dashboard(?:\'s|:) "([^"]+)"', flat)
    assert named, "the runbook no longer points at the dashboard's panels"
    titles = {p["title"] for p in PANELS}
    assert set(named) <= titles, f"no such panel: {set(named) - titles}"


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: prometheus)")
def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    # Grafana's variables in the values Grafana would give them, then each query as a
    # recording rule: `promtool check rules` parses every expression.
    values = {"$__rate_interval": "5m", "$namespace": ".*", "$job": ".*"}
    rules = []
    for i, (_, target) in enumerate(TARGETS):
        expr = target["expr"]
        for var, value in values.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
