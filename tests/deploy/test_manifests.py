"""The Kubernetes manifests agree with the code: names, ports, probes, drain timing, scaling.

Pure checks (no cluster): every manifest is parsed with yaml.safe_load_all and compared with
classify_gateway/config.py and classify_gateway/edge/server.py, so that a change on one side that
the other does not follow fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from classify_gateway.config import Settings
from classify_gateway.edge.server import SERVICE_NAME
from tests.deploy.support import (
    HEALTH_NAMES,
    ISTIO,
    K8S,
    NAME,
    ROOT,
    SELECTOR,
    container_port,
    cpu_millis,
    deployed_settings,
    duration_seconds,
    istio_proxy_config,
    load_docs,
    manifest_files,
    memory_bytes,
    parse_dockerfile,
    port_of,
    prestop_sleep_seconds,
    pyproject,
)

# -- every manifest ---------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_manifest_parses_and_is_namespace_agnostic(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), path
        if doc["kind"] == "Kustomization":
            assert "namespace" not in doc, "the manifests must stay namespace-agnostic"
            continue
        meta = doc["metadata"]
        assert meta["name"].startswith(NAME)
        assert "namespace" not in meta, f"{path}: no namespace in the manifests"
        assert meta["labels"]["app.kubernetes.io/name"] == NAME


@pytest.mark.parametrize("directory", [K8S, ISTIO], ids=["k8s", "istio"])
def test_kustomization_lists_every_manifest_but_the_example_secret(directory: Path) -> None:
    kustomization = load_docs(directory / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed <= present, f"listed but missing: {listed - present}"
    # Applying the example Secret would overwrite the real key with the placeholder.
    assert present - listed == ({"secret.yaml"} if directory == K8S else set())


def test_image_tag_is_the_project_version(container: dict[str, Any]) -> None:
    version = pyproject()["project"]["version"]
    assert container["image"] == f"{NAME}:{version}"
    kustomization = load_docs(K8S / "kustomization.yaml")[0]
    assert {"name": NAME, "newTag": version} in kustomization["images"]


# -- labels and selectors ---------------------------------------------------------------


def test_selectors_match_the_pod_labels(
    deployment: dict[str, Any],
    pod: dict[str, Any],
    service: dict[str, Any],
    pdb: dict[str, Any],
    hpa: dict[str, Any],
) -> None:
    labels = pod["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
        *(c["labelSelector"]["matchLabels"] for c in pod["spec"]["topologySpreadConstraints"]),
    ):
        assert selector == SELECTOR
        assert selector.items() <= labels.items()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert labels["sidecar.istio.io/inject"] == "true"


# -- ports ------------------------------------------------------------------------------


def test_container_ports_are_the_settings_defaults(
    container: dict[str, Any], configmap: dict[str, Any], tmp_path: Path
) -> None:
    defaults = Settings()
    assert container_port(container, "grpc") == port_of(defaults.listen) == 50051
    assert container_port(container, "metrics") == port_of(defaults.metrics_listen) == 9464
    deployed = deployed_settings(configmap, tmp_path)
    assert port_of(deployed.listen) == container_port(container, "grpc")
    assert port_of(deployed.metrics_listen) == container_port(container, "metrics")
    # Inside a pod the gateway must listen on every interface, not loopback.
    assert deployed.listen.rpartition(":")[0] in {"0.0.0.0", "[::]"}
    assert deployed.metrics_listen.rpartition(":")[0] in {"0.0.0.0", "[::]"}


def test_service_targets_the_grpc_port_with_app_protocol_grpc(
    service: dict[str, Any], container: dict[str, Any]
) -> None:
    assert service["spec"]["type"] == "ClusterIP"
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"grpc", "http-metrics"}
    grpc_port = ports["grpc"]
    assert grpc_port["appProtocol"] == "grpc"
    assert grpc_port["targetPort"] == "grpc"
    assert grpc_port["port"] == container_port(container, "grpc")
    metrics = ports["http-metrics"]
    assert metrics["appProtocol"] == "http"
    assert metrics["targetPort"] == "metrics"
    assert metrics["port"] == container_port(container, "metrics")


# -- probes -----------------------------------------------------------------------------


def test_probes_are_grpc_health_checks_on_the_registered_names(
    container: dict[str, Any],
) -> None:
    grpc_port = container_port(container, "grpc")
    readiness = container["readinessProbe"]["grpc"]
    liveness = container["livenessProbe"]["grpc"]
    assert readiness == {"port": grpc_port, "service": SERVICE_NAME}
    assert readiness["service"] == "classify.v1.ClassifyService"
    assert liveness["port"] == grpc_port
    assert liveness.get("service", "") == ""
    probes = [container["readinessProbe"], container["livenessProbe"]]
    if "startupProbe" in container:
        probes.append(container["startupProbe"])
    for probe in probes:
        assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}
        assert probe["grpc"]["port"] == grpc_port
        assert probe["grpc"].get("service", "") in HEALTH_NAMES
        assert probe["periodSeconds"] in range(1, 31)
        assert probe["timeoutSeconds"] < probe["periodSeconds"] or probe["periodSeconds"] <= 2


def test_liveness_is_slower_to_fire_than_readiness(container: dict[str, Any]) -> None:
    def budget(probe: dict[str, Any]) -> int:
        return int(probe["periodSeconds"] * probe.get("failureThreshold", 3))

    assert budget(container["livenessProbe"]) > budget(container["readinessProbe"])


# -- drain timeline ---------------------------------------------------------------------


def test_termination_grace_covers_prestop_and_drain(
    pod: dict[str, Any], container: dict[str, Any], configmap: dict[str, Any], tmp_path: Path
) -> None:
    drain = deployed_settings(configmap, tmp_path).drain_grace
    assert drain == Settings().drain_grace
    prestop = prestop_sleep_seconds(container)
    assert 15 >= prestop >= 1
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > prestop + drain, "SIGKILL would arrive before the drain ends"
    assert grace >= prestop + drain + 5, "leave a margin for the process to exit"


def test_prestop_runs_with_what_the_image_has(container: dict[str, Any]) -> None:
    # The slim runtime image is not guaranteed a `sleep` binary; python is on PATH.
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "python"


def test_istio_sidecar_outlives_the_drain(
    pod: dict[str, Any], container: dict[str, Any], configmap: dict[str, Any], tmp_path: Path
) -> None:
    config = istio_proxy_config(pod)
    drain_duration = duration_seconds(config["terminationDrainDuration"])
    drain = deployed_settings(configmap, tmp_path).drain_grace
    prestop = prestop_sleep_seconds(container)
    # The sidecar gets SIGTERM when the preStop hook starts: it must keep proxying
    # until the gateway's drain has ended, and exit before the kubelet's SIGKILL.
    assert drain_duration >= prestop + drain
    assert drain_duration < pod["spec"]["terminationGracePeriodSeconds"]


# -- resources, security, scaling ------------------------------------------------------


def test_resources_requests_and_limits(container: dict[str, Any]) -> None:
    requests = container["resources"]["requests"]
    limits = container["resources"]["limits"]
    for res in ("cpu", "memory"):
        assert res in requests and res in limits
    assert cpu_millis(requests["cpu"]) <= cpu_millis(limits["cpu"])
    assert memory_bytes(requests["memory"]) <= memory_bytes(limits["memory"])
    # One Python process (one event loop) cannot use much more than one core.
    assert cpu_millis(limits["cpu"]) <= 2000


def test_security_context(pod: dict[str, Any], container: dict[str, Any]) -> None:
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    # The same uid as the image's USER.
    assert parse_dockerfile().final.last("USER") == str(sc["runAsUser"])


def test_hpa_pdb_and_replicas_are_consistent(
    deployment: dict[str, Any], hpa: dict[str, Any], pdb: dict[str, Any]
) -> None:
    spec = hpa["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    # The HPA owns the count: a `replicas` beside it is set again by every apply.
    assert "replicas" not in deployment["spec"]
    assert spec["minReplicas"] >= 3
    assert spec["maxReplicas"] > spec["minReplicas"]
    cpu = [m for m in spec["metrics"] if m["type"] == "Resource"]
    assert cpu and cpu[0]["resource"]["name"] == "cpu"
    assert 50 <= cpu[0]["resource"]["target"]["averageUtilization"] <= 80
    budget = pdb["spec"]
    assert ("minAvailable" in budget) != ("maxUnavailable" in budget)
    if "minAvailable" in budget:
        assert spec["minReplicas"] >= int(budget["minAvailable"]) + 1, "no pod could be evicted"
    else:
        assert int(budget["maxUnavailable"]) in range(1, spec["minReplicas"] - 1)
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0


def test_fallback_replicas_is_the_largest_fleet(
    hpa: dict[str, Any], configmap: dict[str, Any]
) -> None:
    """Replicas that never reached Redis divide the rate by FALLBACK_REPLICAS; dividing by
    fewer than the HPA may run lets the fleet spend more than UPSTREAM_RPS."""
    assert (
        int(configmap["data"]["CLASSIFY_GATEWAY_FALLBACK_REPLICAS"]) == hpa["spec"]["maxReplicas"]
    )
