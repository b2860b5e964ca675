"""`classify-gateway check-config`: what a CI step or an init container runs before `serve`.

Run as the container runs it (the console script, the environment only), it passes exactly
when `serve` would start: every setting's effective value as JSON with the secrets redacted,
or one line naming the problem and exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from classify_emulator.stack import free_port

SCRIPT = Path(sys.executable).with_name("classify-gateway")
KEY = "tlk_CHECK_CONFIG_SECRET_0123"


def check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLASSIFY_GATEWAY_", "OTEL_"))}
    return subprocess.run(
        [str(SCRIPT), "check-config", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def listen_env() -> dict[str, str]:
    return {
        "CLASSIFY_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
        "CLASSIFY_GATEWAY_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
    }


def test_prints_the_effective_settings_with_secrets_redacted() -> None:
    done = check(
        {
            **listen_env(),
            "CLASSIFY_GATEWAY_API_KEY": KEY,
            "CLASSIFY_GATEWAY_REDIS_URL": "redis://:hunter2pass@127.0.0.1:6379/0",
            "CLASSIFY_GATEWAY_UPSTREAM_RPS": "7.5",
        }
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    settings = report["settings"]
    assert settings["upstream_rps"] == 7.5
    assert settings["api_key"] == "<set>"
    assert settings["redis_url"] == "redis://:<redacted>@127.0.0.1:6379/0"
    assert KEY not in done.stdout + done.stderr
    assert "hunter2pass" not in done.stdout + done.stderr
    assert report["warnings"] == []


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("UPSTREAM_RPS", "lots"),
        ("V13_EMBED_RPS", "-2"),
        ("V13_EMBED_BURST", "0"),
        ("V13_VIDEOS_RPS", "nan"),
        ("V13_VIDEOS_BURST", "many"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_2(var: str, value: str) -> None:
    done = check(
        {**listen_env(), "CLASSIFY_GATEWAY_API_KEY": KEY, f"CLASSIFY_GATEWAY_{var}": value}
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"CLASSIFY_GATEWAY_{var}" in lines[0], done.stderr


def test_a_port_in_use_fails_unless_binding_is_skipped() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **listen_env(),
            "CLASSIFY_GATEWAY_API_KEY": KEY,
            "CLASSIFY_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        }
        refused = check(env)
        skipped = check(env, "--no-bind")
    assert refused.returncode == 2 and "in use" in refused.stderr, refused.stderr
    assert skipped.returncode == 0, skipped.stderr


def test_a_caller_controlled_identity_is_reported() -> None:
    done = check(
        {
            **listen_env(),
            "CLASSIFY_GATEWAY_API_KEY": KEY,
            "CLASSIFY_GATEWAY_CALLER_IDENTITY": "metadata:x-calling-service",
        }
    )
    assert done.returncode == 0, done.stderr
    warnings = json.loads(done.stdout)["warnings"]
    assert len(warnings) == 2 and "x-calling-service" in warnings[0], warnings
