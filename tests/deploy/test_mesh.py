"""The Istio objects: hosts are the Service, every port is routed, retries only on
UNAVAILABLE, timeouts that let long streams live, outlier detection."""

from __future__ import annotations

from typing import Any

from classify_gateway.config import Settings
from tests.deploy.support import (
    LONG_STREAM_SECONDS,
    duration_seconds,
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


def test_mesh_retries_only_unavailable(
    virtualservice: dict[str, Any], service: dict[str, Any]
) -> None:
    retries = _grpc_route(virtualservice, service)["retries"]
    tokens = {t.strip() for t in retries["retryOn"].split(",")}
    assert tokens == {"unavailable"}, "every replayed classify call spends quota"
    assert retries["attempts"] in (1, 2)
    # The per-try timeout applies until the response starts: never shorter than the
    # gateway's own bound on a call, or it cancels calls that already spent quota.
    assert duration_seconds(retries["perTryTimeout"]) >= Settings().default_deadline


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
