"""The worst case of upstream calls per caller call, across every retrying layer.

Three layers can retry a Classify: the mesh (the caller's Envoy, VirtualService
`retries`), the caller's gRPC client (deploy/service-config.json, gRFC A6) and the
gateway itself (CLASSIFY_GATEWAY_RETRY_MAX_ATTEMPTS). Every POST /classify that reaches
the upstream starts a billed classification, so their product is what a persistent
upstream failure can cost. This test computes each layer's factor from the manifests and
the code (not from the docs) and keeps the product equal to the gateway's own attempts;
docs/deploy.md ("Retries across layers") explains the numbers.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import grpc

from classify_gateway.core.errors import (
    PUSHBACK_KEY,
    TABLE,
    from_upstream,
    own_error,
    to_grpc_status,
)
from tests.deploy.support import ISTIO, ROOT, deployed_settings, duration_seconds, one

NOTHING_REACHED_THE_GATEWAY = {"connect-failure", "refused-stream", "reset-before-request"}
# Refusals at the door: the gateway answers them before any upstream request.
REFUSED_BEFORE_ANY_UPSTREAM_CALL = {"GATEWAY_SHUTTING_DOWN"}
# A bound the product must never pass (AIP-194: at most 5 attempts in all).
MAX_UPSTREAM_CALLS_PER_CALLER_CALL = 5


def mesh_factor(vs: dict[str, Any]) -> int:
    """Tries of one caller call that can reach a gateway pod."""
    (route,) = [r for r in vs["spec"]["http"] if r.get("name") == "grpc"]
    retries = route.get("retries")
    assert retries is not None, "without retries Istio's default policy retries `unavailable`"
    assert duration_seconds(retries["perTryTimeout"]) > 0
    tokens = {t.strip() for t in retries["retryOn"].split(",") if t.strip()}
    if tokens <= NOTHING_REACHED_THE_GATEWAY:
        return 1  # a retried try never reached a pod: it made no upstream call
    return 1 + int(retries["attempts"])


def unavailable_errors() -> list[Any]:
    """Every UNAVAILABLE the gateway can answer after an upstream request, as it leaves
    the gateway on the first try (before the gateway's own retries marked it)."""
    errors = []
    for row in TABLE:
        if (
            row.code != grpc.StatusCode.UNAVAILABLE
            or row.reason in REFUSED_BEFORE_ANY_UPSTREAM_CALL
        ):
            continue
        if row.http_statuses:
            for status in list(row.http_statuses)[:3]:
                err = from_upstream(status, None)
                if err.reason == row.reason:
                    errors.append(err)
        else:
            errors.append(own_error(row.reason))
    return errors


def pushed_back(err: Any) -> bool:
    return (PUSHBACK_KEY, "-1") in tuple(to_grpc_status(err).trailing_metadata)


def client_factor() -> int:
    """Attempts of the shipped service config that can reach the upstream."""
    config = json.loads((ROOT / "deploy" / "service-config.json").read_text())
    attempts = max(mc["retryPolicy"]["maxAttempts"] for mc in config["methodConfig"])
    codes = {c for mc in config["methodConfig"] for c in mc["retryPolicy"]["retryableStatusCodes"]}
    assert codes == {"UNAVAILABLE"}
    errors = unavailable_errors()
    assert errors, "the table has no upstream UNAVAILABLE rows?"
    return 1 if all(pushed_back(e) for e in errors) else int(attempts)


def test_every_upstream_unavailable_stops_client_retries() -> None:
    not_pushed = [e.reason for e in unavailable_errors() if not pushed_back(e)]
    assert not not_pushed, f"clients would replay these after an upstream call: {not_pushed}"
    # The one UNAVAILABLE clients may retry: a refusal before any upstream request.
    assert not pushed_back(own_error("GATEWAY_SHUTTING_DOWN"))
    # ... but not one that interrupted an upstream request at the end of the drain.
    assert pushed_back(own_error("GATEWAY_SHUTTING_DOWN").replace(pushback=True))


def test_worst_case_upstream_calls_per_caller_call_is_bounded(tmp_path: Path) -> None:
    configmap = one(ROOT / "deploy" / "k8s", "ConfigMap")
    gateway = deployed_settings(configmap, tmp_path).retry_max_attempts
    mesh = mesh_factor(one(ISTIO, "VirtualService"))
    worst = mesh * client_factor() * gateway
    assert worst == gateway, f"mesh {mesh} x client {client_factor()} x gateway {gateway}"
    assert worst <= MAX_UPSTREAM_CALLS_PER_CALLER_CALL


def test_a_mesh_retry_on_unavailable_would_multiply() -> None:
    """The mesh factor is computed from the manifest, not assumed."""
    vs = copy.deepcopy(one(ISTIO, "VirtualService"))
    (route,) = [r for r in vs["spec"]["http"] if r.get("name") == "grpc"]
    assert mesh_factor(vs) == 1
    route["retries"]["retryOn"] = "connect-failure,unavailable"
    assert mesh_factor(vs) == 1 + route["retries"]["attempts"]
