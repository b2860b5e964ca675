"""The deployment files agree with the code: ports, health names, settings, drain timing.

Pure checks (no cluster, no Docker): every manifest is parsed with yaml.safe_load_all
and compared with classify_gateway/config.py, classify_gateway/server.py, pyproject.toml, uv.lock and
the Makefile, so that a change on one side that the other does not follow fails here.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from classify_gateway import cli
from classify_gateway.config import PREFIX, Settings, from_env
from classify_gateway.server import SERVICE_NAME
from tests.deploy.support import (
    ISTIO,
    K8S,
    ROOT,
    cpu_millis,
    duration_seconds,
    env_of,
    exec_form,
    load_docs,
    makefile_var,
    manifest_files,
    memory_bytes,
    one,
    parse_dockerfile,
    port_of,
    pyproject,
)

NAME = "classify-gateway"
SELECTOR = {"app.kubernetes.io/name": NAME}
DUMMY_KEY = "dummy-key-for-tests"
# Settings whose deployed value deliberately differs from the code's default, with
# the reason. Empty: the ConfigMap documents the defaults.
DEPLOY_OVERRIDES: dict[str, Any] = {}
# Health names classify_gateway/server.py registers (Gateway._set_health): overall and service.
HEALTH_NAMES = {"", SERVICE_NAME}
SETTING_FIELDS = {f.name for f in dataclasses.fields(Settings)}
# Secrets come from files mounted from a Secret, never from the ConfigMap.
SECRET_SETTINGS = {"api_key", "redis_password"}
FILE_SETTINGS = {"api_key_file", "redis_password_file"}
# A stream that runs as long as the gateway lets a call without a deadline run.
LONG_STREAM_SECONDS = Settings().default_deadline


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return one(K8S, "Deployment")


@pytest.fixture(scope="module")
def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    assert [c["name"] for c in containers] == [NAME]
    return containers[0]


@pytest.fixture(scope="module")
def configmap() -> dict[str, Any]:
    return one(K8S, "ConfigMap")


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    return one(K8S, "Service")


@pytest.fixture(scope="module")
def hpa() -> dict[str, Any]:
    return one(K8S, "HorizontalPodAutoscaler")


@pytest.fixture(scope="module")
def pdb() -> dict[str, Any]:
    return one(K8S, "PodDisruptionBudget")


@pytest.fixture(scope="module")
def virtualservice() -> dict[str, Any]:
    return one(ISTIO, "VirtualService")


@pytest.fixture(scope="module")
def destinationrule() -> dict[str, Any]:
    return one(ISTIO, "DestinationRule")


def _deployed_settings(configmap: dict[str, Any], tmp_path: Path) -> Settings:
    """Settings exactly as the pod builds them: ConfigMap + Deployment env + key file."""
    key_file = tmp_path / "api-key"
    key_file.write_text(DUMMY_KEY + "\n", encoding="utf-8")
    env = dict(configmap["data"])
    env[PREFIX + "API_KEY_FILE"] = str(key_file)
    return from_env(env)


def _container_port(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return int(ports[name])


def _prestop_sleep_seconds(container: dict[str, Any]) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    match = re.search(r"sleep\(?\s*(\d+(?:\.\d+)?)", " ".join(command))
    assert match, f"preStop does not sleep: {command}"
    return float(match.group(1))


def _istio_proxy_config(pod: dict[str, Any]) -> dict[str, Any]:
    raw = pod["metadata"]["annotations"]["proxy.istio.io/config"]
    config = yaml.safe_load(raw)
    assert isinstance(config, dict)
    return config


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
    assert _container_port(container, "grpc") == port_of(defaults.listen) == 50051
    assert _container_port(container, "metrics") == port_of(defaults.metrics_listen) == 9090
    deployed = _deployed_settings(configmap, tmp_path)
    assert port_of(deployed.listen) == _container_port(container, "grpc")
    assert port_of(deployed.metrics_listen) == _container_port(container, "metrics")
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
    assert grpc_port["port"] == _container_port(container, "grpc")
    metrics = ports["http-metrics"]
    assert metrics["appProtocol"] == "http"
    assert metrics["targetPort"] == "metrics"
    assert metrics["port"] == _container_port(container, "metrics")


def test_prometheus_annotations_point_at_the_metrics_port(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == _container_port(container, "metrics")
    assert annotations["prometheus.io/path"] == "/metrics"


# -- probes -----------------------------------------------------------------------------


def test_probes_are_grpc_health_checks_on_the_registered_names(
    container: dict[str, Any],
) -> None:
    grpc_port = _container_port(container, "grpc")
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
    drain = _deployed_settings(configmap, tmp_path).drain_grace
    assert drain == Settings().drain_grace
    prestop = _prestop_sleep_seconds(container)
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
    config = _istio_proxy_config(pod)
    drain_duration = duration_seconds(config["terminationDrainDuration"])
    drain = _deployed_settings(configmap, tmp_path).drain_grace
    prestop = _prestop_sleep_seconds(container)
    # The sidecar gets SIGTERM when the preStop hook starts: it must keep proxying
    # until the gateway's drain has ended, and exit before the kubelet's SIGKILL.
    assert drain_duration >= prestop + drain
    assert drain_duration < pod["spec"]["terminationGracePeriodSeconds"]


# -- settings and secrets ---------------------------------------------------------------


def _env_names(container: dict[str, Any], configmap: dict[str, Any]) -> list[str]:
    return [*configmap["data"], *(e["name"] for e in container.get("env", []))]


def test_every_env_var_is_a_real_setting(
    container: dict[str, Any], configmap: dict[str, Any]
) -> None:
    for name in _env_names(container, configmap):
        assert name.startswith(PREFIX), name
        setting = name.removeprefix(PREFIX).lower()
        assert setting in SETTING_FIELDS or setting in FILE_SETTINGS, f"{name} is no setting"
    assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [
        configmap["metadata"]["name"]
    ]


def test_configmap_lists_every_non_secret_setting(configmap: dict[str, Any]) -> None:
    listed = {k.removeprefix(PREFIX).lower() for k in configmap["data"]}
    assert listed == SETTING_FIELDS - SECRET_SETTINGS
    assert all(isinstance(v, str) for v in configmap["data"].values()), "quote every value"


def test_configmap_values_parse_and_equal_the_defaults(
    configmap: dict[str, Any], tmp_path: Path
) -> None:
    deployed = _deployed_settings(configmap, tmp_path)  # must not raise
    assert deployed.api_key == DUMMY_KEY
    expected = dataclasses.replace(Settings(), api_key=DUMMY_KEY, **DEPLOY_OVERRIDES)
    assert deployed == expected


def test_api_key_comes_from_a_secret_and_is_never_literal(
    pod: dict[str, Any], container: dict[str, Any], configmap: dict[str, Any]
) -> None:
    assert not any("API_KEY" in k and "ALLOW" not in k for k in configmap["data"])
    env = {e["name"]: e for e in container.get("env", [])}
    assert env.get(PREFIX + "API_KEY", {}).get("value") is None, "literal API key"
    if PREFIX + "API_KEY" in env:
        assert "secretKeyRef" in env[PREFIX + "API_KEY"]["valueFrom"]
        return
    key_path = Path(env[PREFIX + "API_KEY_FILE"]["value"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(key_path.parent)]
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    secret = volumes[mount["name"]]["secret"]
    assert key_path.name in {item["path"] for item in secret["items"]}
    assert secret["defaultMode"] == 0o440  # readable by fsGroup, not by others
    assert pod["spec"]["securityContext"]["fsGroup"] == container["securityContext"]["runAsUser"]
    # The example Secret has that name and key, with an obvious placeholder.
    example = one(K8S, "Secret")
    assert example["metadata"]["name"] == secret["secretName"]
    item_keys = {item["key"] for item in secret["items"]}
    assert set(example["stringData"]) == item_keys
    assert all("REPLACE-ME" in v for v in example["stringData"].values())
    assert "EXAMPLE ONLY" in (K8S / "secret.yaml").read_text(encoding="utf-8")


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
    assert spec["minReplicas"] == deployment["spec"]["replicas"] >= 3
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


# -- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_one_pinned_base() -> None:
    dockerfile = parse_dockerfile()
    assert len(dockerfile.stages) >= 2
    bases = {stage.base for stage in dockerfile.stages}
    assert len(bases) == 1, "the venv's python symlink needs the same base in both stages"
    (base,) = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    final = dockerfile.final
    copies = final.all("COPY")
    assert copies, "the runtime stage copies the environment"
    assert all(c.startswith("--from=builder ") for c in copies)
    assert [c.split()[1:] for c in copies] == [["/app/.venv", "/app/.venv"]]
    assert not final.all("HEALTHCHECK"), "Kubernetes gRPC probes check health"
    assert final.last("STOPSIGNAL") == "SIGTERM"


def test_dockerfile_runs_as_non_root() -> None:
    user = parse_dockerfile().final.last("USER")
    assert user is not None
    assert user.split(":")[0] not in {"0", "root", ""}
    assert user == "10001"


def test_dockerfile_exposes_exactly_the_default_ports() -> None:
    final = parse_dockerfile().final
    exposed = {int(p.split("/")[0]) for args in final.all("EXPOSE") for p in args.split()}
    defaults = Settings()
    assert exposed == {port_of(defaults.listen), port_of(defaults.metrics_listen)}
    env = env_of(final)
    assert port_of(env[PREFIX + "LISTEN"]) == port_of(defaults.listen)
    assert port_of(env[PREFIX + "METRICS_LISTEN"]) == port_of(defaults.metrics_listen)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/app/.venv/bin:")


def test_dockerfile_command_is_the_console_script() -> None:
    final = parse_dockerfile().final
    entrypoint = exec_form(final.last("ENTRYPOINT") or "null")
    command = exec_form(final.last("CMD") or "null")
    assert [*entrypoint, *command] == ["classify-gateway", "serve"]
    scripts = pyproject()["project"]["scripts"]
    assert scripts[entrypoint[0]] == "classify_gateway.cli:main"
    assert command[0] in cli.COMMANDS


def test_dockerfile_pins_the_makefile_uv() -> None:
    dockerfile = parse_dockerfile()
    builder = dockerfile.stages[0]
    version = makefile_var("UV_VERSION")
    assert dockerfile.stage_args(builder)["UV_VERSION"] == version
    installs = [r for r in builder.all("RUN") if "pip install" in r and "uv==" in r]
    assert len(installs) == 1
    assert '"uv==${UV_VERSION}"' in installs[0] or f"uv=={version}" in installs[0]


def _uv_commands() -> list[str]:
    runs = parse_dockerfile().stages[0].all("RUN")
    return [r for r in runs if re.search(r"\buv (sync|export|pip)\b", r)]


def test_dockerfile_installs_the_lock_without_dev_or_extras() -> None:
    commands = _uv_commands()
    assert commands, "the builder installs with uv"
    for command in commands:
        words = command.split()
        assert "--frozen" in words or "--locked" in words, command
        assert "--no-dev" in words, command
        for flag in ("--all-extras", "--extra", "--all-groups", "--group", "--dev"):
            assert not any(w == flag or w.startswith(flag + "=") for w in words), command
    # The last install puts the project itself in, as a wheel (no source tree needed).
    assert "--no-editable" in commands[-1].split()
    assert "--no-install-project" not in commands[-1].split()


def test_dockerfile_copies_only_what_the_wheel_needs() -> None:
    sources: set[str] = set()
    for args in parse_dockerfile().stages[0].all("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        sources.update(w.rstrip("/") for w in words[:-1])
    assert sources == {"pyproject.toml", "uv.lock", "README.md", "classify_gateway", "generated"}
    # Everything the wheel target builds from must be there (or be the emulator,
    # which the image leaves out on purpose).
    wheel = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    for package in wheel:
        top = package.split("/")[0]
        assert top in sources or top == "classify_emulator", package


def test_runtime_packages_are_the_project_dependencies_only() -> None:
    """What `uv sync --no-dev` (no extras) installs, computed from uv.lock."""
    with (ROOT / "uv.lock").open("rb") as fh:
        lock = tomllib.load(fh)
    packages = {p["name"]: p for p in lock["package"]}
    root = packages[NAME]
    closure: set[str] = set()
    todo = [d["name"] for d in root.get("dependencies", [])]
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        todo.extend(d["name"] for d in packages[name].get("dependencies", []))
    declared = {
        re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower()
        for d in pyproject()["project"]["dependencies"]
    }
    assert declared <= closure
    for excluded in ("pytest", "grpcio-tools", "starlette", "uvicorn", "mypy", "ruff"):
        assert excluded not in closure, f"{excluded} would be in the image"


def _ignored(patterns: list[str], path: str) -> bool:
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.partition("/")[0], pat):
            result = not negate
    return result


def test_dockerignore() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for path in (".venv", ".git", ".tools", ".cache", "clients", "tests", "docs"):
        assert _ignored(patterns, path), f"{path} is sent to the build"
    assert _ignored(patterns, "bench/results/run.json")
    for path in ("pyproject.toml", "uv.lock", "README.md", "classify_gateway/cli.py", "generated"):
        assert not _ignored(patterns, path), f"the Dockerfile needs {path}"
