"""Fixtures of the deployment tests: each Kubernetes and Istio object, parsed once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.support import (
    ISTIO,
    K8S,
    NAME,
    one,
)


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
