"""Every kustomization renders with kustomize as `kubectl apply -k` would, and each way to
install the gateway gives what it promises: the HPA alone owns the replica count, /metrics
is scraped exactly once, only mesh callers and Prometheus get through the NetworkPolicy,
and the alerts' runbook links are absolute, from one base an overlay can change."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import (
    COMPONENTS,
    ISTIO,
    K8S,
    MONITORING,
    NAME,
    OVERLAYS,
    ROOT,
    container_port,
    kustomize_build,
    load_docs,
    one,
    only,
)

KUSTOMIZATIONS = [K8S, ISTIO, MONITORING, ROOT / "deploy" / "redis", OVERLAYS / "production"]


def _overlay(tmp_path: Path, text: str, **dirs: Path) -> Path:
    """A kustomization in tmp_path; {name} in `text` becomes the relative path to dirs[name]
    (kustomize refuses absolute paths to bases)."""
    rel = {k: os.path.relpath(v, tmp_path) for k, v in dirs.items()}
    (tmp_path / "kustomization.yaml").write_text(text.format(**rel), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(ROOT)))
def test_kustomization_renders_and_names_no_namespace(directory: Path) -> None:
    objects = kustomize_build(directory)
    assert objects
    for obj in objects:
        assert "namespace" not in obj["metadata"], obj["metadata"]
        # local-config objects (the runbook base) are read by kustomize, never applied.
        assert (
            obj["metadata"].get("annotations", {}).get("config.kubernetes.io/local-config") is None
        )


def test_the_hpa_alone_owns_the_replica_count() -> None:
    for directory in (K8S, OVERLAYS / "production"):
        objects = kustomize_build(directory)
        deployment = only(objects, "Deployment", NAME)
        hpa = only(objects, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"]["name"] == NAME
        assert "replicas" not in deployment["spec"], f"{directory}: every apply would reset it"


# -- scraping: one way per install ----------------------------------------------------------


def _scrapes(objects: list[dict[str, Any]]) -> list[str]:
    """What would scrape the gateway's /metrics: ServiceMonitors and pod annotations."""
    found = []
    service = only(objects, "Service", NAME)
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        if selector.items() <= service["metadata"]["labels"].items():
            found.append(f"ServiceMonitor {monitor['metadata']['name']}")
    pod = only(objects, "Deployment", NAME)["spec"]["template"]
    if pod["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true":
        found.append("prometheus.io annotations")
    return found


def test_the_operator_install_scrapes_once_with_its_service_monitor() -> None:
    assert _scrapes(kustomize_build(OVERLAYS / "production")) == ["ServiceMonitor classify-gateway"]


def test_the_annotation_install_scrapes_once_at_the_metrics_port(tmp_path: Path) -> None:
    overlay = _overlay(
        tmp_path,
        "resources: [{k8s}, {istio}]\ncomponents: [{component}]\n",
        k8s=K8S,
        istio=ISTIO,
        component=COMPONENTS / "scrape-annotations",
    )
    objects = kustomize_build(overlay)
    assert _scrapes(objects) == ["prometheus.io annotations"]
    pod = only(objects, "Deployment", NAME)["spec"]["template"]
    annotations = pod["metadata"]["annotations"]
    container = pod["spec"]["containers"][0]
    assert int(annotations["prometheus.io/port"]) == container_port(container, "metrics")
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_base_and_the_monitoring_do_not_both_scrape() -> None:
    # The base has no annotations; the ServiceMonitor exists only in deploy/monitoring.
    pod = one(K8S, "Deployment")["spec"]["template"]
    assert not any(k.startswith("prometheus.io/") for k in pod["metadata"].get("annotations", {}))
    assert all(o["kind"] != "ServiceMonitor" for o in kustomize_build(K8S))


# -- NetworkPolicy ----------------------------------------------------------------------------


def test_only_mesh_callers_reach_grpc_and_only_prometheus_the_metrics() -> None:
    objects = kustomize_build(K8S)
    policy = only(objects, "NetworkPolicy", NAME)["spec"]
    deployment = only(objects, "Deployment", NAME)
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    by_port: dict[Any, list[dict[str, Any]]] = {}
    for rule in policy["ingress"]:
        assert rule.get("from"), "a rule without `from` admits everyone"
        for port in rule["ports"]:
            assert port["protocol"] == "TCP"
            by_port.setdefault(port["port"], []).extend(rule["from"])
    container_ports = {p["name"] for p in container["ports"]}
    # Every port the Service exposes has its rule (named ports: the container's names).
    service = only(objects, "Service", NAME)
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in by_port, f"no rule for {port['name']}"
    assert {p for p in by_port if isinstance(p, str)} <= container_ports
    # gRPC: only pods with an Istio sidecar, from any namespace.
    (grpc_peer,) = by_port["grpc"]
    assert grpc_peer["podSelector"]["matchLabels"] == {"security.istio.io/tlsMode": "istio"}
    assert grpc_peer["namespaceSelector"] == {}
    # Metrics (the container's, and Istio's merged port): only Prometheus's pods.
    for port in ("metrics", 15020):
        (peer,) = by_port[port]
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
        assert peer["namespaceSelector"]["matchLabels"]
    assert set(by_port) == {"grpc", "metrics", 15020}


# -- runbook links ----------------------------------------------------------------------------


def _links(objects: list[dict[str, Any]]) -> dict[str, str]:
    rule = only(objects, "PrometheusRule", NAME)
    return {
        r["alert"]: r["annotations"]["runbook_url"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
    }


def _anchors() -> dict[str, str]:
    rule = one(MONITORING, "PrometheusRule")
    out = {}
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            path, _, anchor = r["annotations"]["runbook_url"].partition("#")
            assert path == "docs/operations.md", "the source keeps the repository path"
            out[r["alert"]] = anchor
    return out


def test_runbook_links_are_absolute_from_the_one_base() -> None:
    base = load_docs(MONITORING / "runbook.yaml")[0]["data"]["base"]
    assert re.fullmatch(r"https://[^#\s]+/docs/operations\.md", base), base
    anchors = _anchors()
    assert _links(kustomize_build(MONITORING)) == {a: f"{base}#{x}" for a, x in anchors.items()}
    overlay_links = _links(kustomize_build(OVERLAYS / "production"))
    assert all(re.fullmatch(r"https://[^#\s]+#[a-z0-9-]+", url) for url in overlay_links.values())
    assert {a: url.partition("#")[2] for a, url in overlay_links.items()} == anchors


def test_an_overlay_moves_every_runbook_link_by_setting_the_base(tmp_path: Path) -> None:
    production = (OVERLAYS / "production" / "kustomization.yaml").read_text(encoding="utf-8")
    replacements = production[production.index("replacements:") :]
    # The overlay repeats deploy/monitoring's replacement word for word.
    monitoring = (MONITORING / "kustomization.yaml").read_text(encoding="utf-8")
    strip = re.compile(r"^\s*#.*\n", re.M)
    assert strip.sub("", replacements) == strip.sub(
        "", monitoring[monitoring.index("replacements:") :]
    )
    wiki = "https://wiki.example.com/runbooks/classify-gateway"
    text = (
        "resources: [{monitoring}]\n"
        "patches:\n"
        "  - target: {{kind: ConfigMap, name: classify-gateway-runbook}}\n"
        "    patch: |\n"
        "      - op: replace\n"
        "        path: /data/base\n"
        f"        value: {wiki}\n" + replacements.replace("{", "{{").replace("}", "}}")
    )
    overlay = _overlay(tmp_path, text, monitoring=MONITORING)
    assert _links(kustomize_build(overlay)) == {a: f"{wiki}#{x}" for a, x in _anchors().items()}
