"""The settings a pod runs with: every env var is a real setting, the ConfigMap ships only
the named overrides of the defaults, and the API key comes from a Secret, never a literal."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from classify_gateway.config import PREFIX, Settings
from tests.deploy.support import (
    DEPLOY_OVERRIDES,
    DUMMY_KEY,
    FILE_SETTINGS,
    K8S,
    SECRET_SETTINGS,
    SETTING_FIELDS,
    deployed_settings,
    one,
)

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


def test_configmap_ships_only_the_named_overrides(configmap: dict[str, Any]) -> None:
    listed = {k.removeprefix(PREFIX).lower() for k in configmap["data"]}
    assert listed == set(DEPLOY_OVERRIDES), "the ConfigMap ships exactly DEPLOY_OVERRIDES"
    assert listed <= SETTING_FIELDS
    assert not listed & SECRET_SETTINGS, "secrets come from the Secret"
    assert all(isinstance(v, str) for v in configmap["data"].values()), "quote every value"
    defaults = Settings()
    for name, value in DEPLOY_OVERRIDES.items():
        assert getattr(defaults, name) != value, f"{name} repeats the default: drop it"


def test_configmap_values_parse_and_give_the_overrides(
    configmap: dict[str, Any], tmp_path: Path
) -> None:
    deployed = deployed_settings(configmap, tmp_path)  # must not raise
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
