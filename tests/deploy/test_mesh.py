"""The Istio objects: hosts are the Service, every port is routed, retries only where
nothing reached the gateway, timeouts that let long streams live, outlier detection,
STRICT mTLS and an allow-list of callers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from classify_gateway.config import Settings
from classify_gateway.edge.server import SERVICE_NAME
from tests.deploy.support import (
    ISTIO,
    LONG_STREAM_SECONDS,
    OVERLAYS,
    duration_seconds,
    kustomize_build,
    load_docs,
    one,
    only,
)

# -- Istio ------------------------------------------------------------------------------


def test_istio_hosts_are_the_service(
    virtualservice: dict[str, Any], destinationrule: dict[str, Any], service: dict[str, Any]
) -> None:
    name = service["metadata"]["name"]
    assert virtualservice["spec"]["hosts"] == [name]
    assert destinationrule["spec"]["host"] == name
    for route in virtualservice["spec"]["http"]:
        for dest in route["route"]:
            assert dest["destination"]["host"] == name


def _grpc_route(virtualservice: dict[str, Any], service: dict[str, Any]) -> dict[str, Any]:
    port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
    routes: list[dict[str, Any]] = [
        r for r in virtualservice["spec"]["http"] if {"port": port} in r.get("match", [])
    ]
    assert len(routes) == 1
    (dest,) = routes[0]["route"]
    assert dest["destination"]["port"]["number"] == port
    return routes[0]


def test_every_service_port_has_a_route(
    virtualservice: dict[str, Any], service: dict[str, Any]
) -> None:
    # Once a VirtualService exists for the host, unmatched HTTP traffic gets 404.
    matched = {m["port"] for r in virtualservice["spec"]["http"] for m in r.get("match", [])}
    assert matched == {p["port"] for p in service["spec"]["ports"]}


def _service_port(service: dict[str, Any], name: str) -> int:
    return int(next(p["port"] for p in service["spec"]["ports"] if p["name"] == name))


# Envoy retry conditions under which the request never reached a gateway pod.
NOTHING_REACHED_THE_GATEWAY = {"connect-failure", "refused-stream", "reset-before-request"}


def test_mesh_retries_only_where_nothing_reached_the_gateway(
    virtualservice: dict[str, Any], service: dict[str, Any]
) -> None:
    # Without a retries block Istio applies its default, which retries `unavailable`.
    retries = _grpc_route(virtualservice, service)["retries"]
    tokens = {t.strip() for t in retries["retryOn"].split(",")}
    assert tokens <= NOTHING_REACHED_THE_GATEWAY, "a replayed classify call spends quota again"
    assert retries["attempts"] in (1, 2, 3)
    # The per-try timeout applies until the response starts: never shorter than the
    # gateway's own bound on a call, or it cancels calls that already spent quota.
    assert duration_seconds(retries["perTryTimeout"]) >= Settings().default_deadline


# A principal of the callers' rule: an mTLS identity (trust domain, namespace, service
# account), or the overlay's placeholder, which names no namespace that can exist.
PRINCIPAL = re.compile(r"[a-z0-9.-]+/ns/([a-z0-9-]+)/sa/([a-z0-9-]+)")
PLACEHOLDER = re.compile(r"[a-z0-9.-]+/ns/REPLACE-[a-z-]+/sa/REPLACE-[a-z-]+")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _api_and_other_rules(
    spec: dict[str, Any], service: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    grpc_port = str(_service_port(service, "grpc"))
    api = [
        r
        for r in spec["rules"]
        if any(grpc_port in op["operation"].get("ports", []) for op in r.get("to", []))
    ]
    return api, [r for r in spec["rules"] if r not in api]


def _check_metrics_only(rules: list[dict[str, Any]], service: dict[str, Any]) -> None:
    metrics_port = str(_service_port(service, "http-metrics"))
    for rule in rules:
        for op in rule["to"]:
            assert op["operation"]["ports"] == [metrics_port]
            assert op["operation"]["paths"] == ["/metrics"]


def test_the_base_policy_admits_no_caller(pod: dict[str, Any], service: dict[str, Any]) -> None:
    # deploy/istio alone: every API call denied, only GET /metrics allowed.
    spec = one(ISTIO, "AuthorizationPolicy")["spec"]
    assert spec["action"] == "ALLOW"
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    api, other = _api_and_other_rules(spec, service)
    assert api == []
    assert other
    _check_metrics_only(other, service)


def test_the_overlay_admits_only_named_service_accounts(
    pod: dict[str, Any], service: dict[str, Any]
) -> None:
    rendered = kustomize_build(OVERLAYS / "production")
    spec = only(rendered, "AuthorizationPolicy")["spec"]
    assert spec["action"] == "ALLOW"
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    api, other = _api_and_other_rules(spec, service)
    assert len(api) == 1, "one rule names the callers"
    (rule,) = api
    assert {p for op in rule["to"] for p in op["operation"]["paths"]} == {
        f"/{SERVICE_NAME}/*",
        "/grpc.health.v1.Health/*",
    }
    sources = [src["source"] for src in rule["from"]]
    assert all(set(src) == {"principals"} for src in sources), "no namespaces, no IP blocks"
    principals = [p for src in sources for p in src["principals"]]
    assert principals
    for principal in principals:
        assert "*" not in principal, f"wildcard principal {principal!r}"
        real = PRINCIPAL.fullmatch(principal)
        if real is None:
            assert PLACEHOLDER.fullmatch(principal), f"not an mTLS identity: {principal!r}"
            # The placeholder can match no workload: no namespace can have that name.
            namespace = principal.split("/ns/")[1].split("/")[0]
            assert not DNS_LABEL.fullmatch(namespace)
        else:
            assert all(DNS_LABEL.fullmatch(part) for part in real.groups()), principal
    _check_metrics_only(other, service)


def test_peer_authentication_is_strict_on_the_grpc_port(
    pod: dict[str, Any], service: dict[str, Any]
) -> None:
    peer = one(ISTIO, "PeerAuthentication")["spec"]
    assert peer["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert peer["mtls"]["mode"] == "STRICT"
    relaxed = {int(p) for p in peer.get("portLevelMtls", {})}
    assert relaxed <= {_service_port(service, "http-metrics")}, "only the metrics port"


def test_route_timeout_allows_long_streams(
    virtualservice: dict[str, Any], service: dict[str, Any]
) -> None:
    timeout = duration_seconds(_grpc_route(virtualservice, service).get("timeout", "0s"))
    assert timeout == 0 or timeout >= LONG_STREAM_SECONDS  # 0 disables the route timeout


def test_destination_rule_has_outlier_detection_and_room_for_streams(
    destinationrule: dict[str, Any], hpa: dict[str, Any]
) -> None:
    policy = destinationrule["spec"]["trafficPolicy"]
    outlier = policy["outlierDetection"]
    assert outlier.get("consecutiveGatewayErrors", 0) > 0 or outlier.get("consecutive5xxErrors", 0)
    assert duration_seconds(outlier["interval"]) > 0
    assert duration_seconds(outlier["baseEjectionTime"]) > 0
    # Upstream trouble makes every pod answer UNAVAILABLE at once: never eject most.
    assert 0 < outlier["maxEjectionPercent"] < 50
    http = policy["connectionPool"]["http"]
    minimum = hpa["spec"]["minReplicas"] * Settings().max_concurrent_streams
    assert http["http2MaxRequests"] >= minimum
    assert http["maxRequestsPerConnection"] >= 0
    assert http["h2UpgradePolicy"] in {"DEFAULT", "UPGRADE", "DO_NOT_UPGRADE"}


def test_the_upstream_is_a_mesh_external_service_entry_without_tls_origination() -> None:
    # REGISTRY_ONLY meshes let out only registered hosts: the upstream's, as configured.
    url = urlsplit(Settings().upstream_url)
    assert url.scheme == "https" and url.hostname
    port = url.port or 443
    entry = one(ISTIO, "ServiceEntry")["spec"]
    assert entry["hosts"] == [url.hostname]
    assert entry["location"] == "MESH_EXTERNAL"
    assert entry["resolution"] == "DNS"
    (entry_port,) = entry["ports"]
    # The gateway speaks TLS itself (https://), so the sidecar passes TLS through (routes
    # on SNI); no DestinationRule originates TLS for the host (docs/deploy.md).
    assert entry_port["number"] == port and entry_port["protocol"] == "TLS"
    rules = [
        doc
        for path in sorted(ISTIO.glob("*.yaml"))
        for doc in load_docs(path)
        if doc.get("kind") == "DestinationRule"
    ]
    assert all(r["spec"]["host"] != url.hostname for r in rules)
    assert entry["exportTo"] == ["."], "the entry changes no other namespace's egress"
