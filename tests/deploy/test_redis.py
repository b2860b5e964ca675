"""deploy/redis and the gateway's Redis settings agree with each other and with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from classify_gateway.config import PREFIX, from_env
from tests.deploy.support import ROOT, load_docs, one

REDIS = ROOT / "deploy" / "redis"
REDIS_NAME = "classify-gateway-redis"


def _port(container: dict[str, Any], name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    listed = set(load_docs(REDIS / "kustomization.yaml")[0]["resources"])
    present = {p.name for p in REDIS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {"secret.yaml"}
    assert "EXAMPLE ONLY" in (REDIS / "secret.yaml").read_text(encoding="utf-8")


def test_redis_keeps_nothing_on_disk_and_needs_its_password() -> None:
    redis = one(REDIS, "Deployment")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--save"] == "" and pairs["--appendonly"] == "no"
    assert pairs["--requirepass"] == "$(REDIS_PASSWORD)"
    env = {e["name"]: e for e in container["env"]}
    ref = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    example = one(REDIS, "Secret")
    assert ref["name"] == example["metadata"]["name"] == REDIS_NAME
    assert ref["key"] in example["stringData"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pairs["--maxmemory-policy"].startswith("volatile-"), "evict only keys with a TTL"


def test_only_the_gateway_reaches_redis(deployment: dict[str, Any]) -> None:
    redis = one(REDIS, "Deployment")
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    port = _port(redis["spec"]["template"]["spec"]["containers"][0], "tcp-redis")
    policy = one(REDIS, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_labels.items()
    [rule] = policy["ingress"]
    [source] = rule["from"]
    gateway_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert source["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    assert not source["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    service = one(REDIS, "Service")
    assert service["metadata"]["name"] == REDIS_NAME
    assert service["spec"]["ports"][0]["port"] == port


def test_gateway_reads_the_redis_password_from_the_optional_secret(
    pod: dict[str, Any], container: dict[str, Any], tmp_path: Path
) -> None:
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    path = Path(env[PREFIX + "REDIS_PASSWORD_FILE"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(path.parent)]
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == REDIS_NAME
    # Optional: a gateway without Redis starts without the Secret (the file is only
    # read when CLASSIFY_GATEWAY_REDIS_URL is set).
    assert secret["optional"] is True
    assert {i["path"] for i in secret["items"]} == {path.name}
    assert {i["key"] for i in secret["items"]} <= set(one(REDIS, "Secret")["stringData"])
    # The URL the docs tell operators to set works with the file's password.
    pw = tmp_path / "pw"
    pw.write_text("pw")
    url = f"redis://{REDIS_NAME}:6379/0"
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert url in docs
    s = from_env(
        {
            PREFIX + "API_KEY": "k",
            PREFIX + "REDIS_URL": url,
            PREFIX + "REDIS_PASSWORD_FILE": str(pw),
        }
    )
    assert s.redis_password == "pw"
