"""The Istio objects: hosts are the Service, every port is routed, retries only where
nothing reached the gateway, timeouts that let long streams live, outlier detection,
STRICT mTLS and an allow-list of callers."""

from __future__ import annotations

import re
from typing import Any

from classify_gateway.config import Settings
from tests.deploy.support import (
    ISTIO,
    LONG_STREAM_SECONDS,
    duration_seconds,
    one,
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


def test_only_named_service_accounts_may_call_the_api(
    pod: dict[str, Any], service: dict[str, Any]
) -> None:
    spec = one(ISTIO, "AuthorizationPolicy")["spec"]
    assert spec["action"] == "ALLOW"
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    grpc_port = str(_service_port(service, "grpc"))
    api_rules = [
        r for r in spec["rules"] for op in r.get("to", []) if grpc_port in op["operation"]["ports"]
    ]
    assert api_rules, "no rule for the gRPC port"
    for rule in api_rules:
        principals = [p for src in rule["from"] for p in src["source"]["principals"]]
        assert principals
        for principal in principals:
            assert "*" not in principal, f"wildcard principal {principal!r}"
            assert re.fullmatch(r"cluster\.local/ns/[a-z0-9-]+/sa/[a-z0-9-]+", principal)
        assert not any(
            k in src["source"] for src in rule["from"] for k in ("namespaces", "ipBlocks")
        )
    # Every other rule opens the metrics endpoint only, never the gRPC port.
    metrics_port = str(_service_port(service, "http-metrics"))
    for rule in spec["rules"]:
        if rule in api_rules:
            continue
        for op in rule["to"]:
            assert op["operation"]["ports"] == [metrics_port]
            assert op["operation"]["paths"] == ["/metrics"]


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
