"""Settings: from the environment, validated, never leaking the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from classify_gateway.config import ConfigError, Settings, from_env

KEY = "tlk_SECRET_1234567890"


def test_defaults() -> None:
    s = from_env({"CLASSIFY_GATEWAY_API_KEY": KEY})
    assert s.upstream_url == "https://api.twelvelabs.io/v1.2"
    assert s.listen == "0.0.0.0:50051"
    assert s.metrics_listen == "0.0.0.0:9464"
    assert s.reflection is True


def test_env_values_parsed() -> None:
    s = from_env(
        {
            "CLASSIFY_GATEWAY_API_KEY": KEY,
            "CLASSIFY_GATEWAY_UPSTREAM_URL": "http://127.0.0.1:9/v1.2/",
            "CLASSIFY_GATEWAY_RETRY_MAX_ATTEMPTS": "7",
            "CLASSIFY_GATEWAY_UPSTREAM_RPS": "2.5",
            "CLASSIFY_GATEWAY_REFLECTION": "off",
            "CLASSIFY_GATEWAY_LOG_LEVEL": "debug",
        }
    )
    assert s.retry_max_attempts == 7
    assert s.upstream_rps == 2.5
    assert s.reflection is False
    assert s.log_level == "DEBUG"
    assert s.upstream_base == "http://127.0.0.1:9/v1.2"


def test_overrides_win() -> None:
    s = from_env(
        {"CLASSIFY_GATEWAY_API_KEY": KEY, "CLASSIFY_GATEWAY_LISTEN": "1.2.3.4:1"},
        listen="127.0.0.1:5",
    )
    assert s.listen == "127.0.0.1:5"


@pytest.mark.parametrize(
    "env,var",
    [
        ({}, "CLASSIFY_GATEWAY_API_KEY"),
        ({"CLASSIFY_GATEWAY_RETRY_MAX_ATTEMPTS": "many"}, "CLASSIFY_GATEWAY_RETRY_MAX_ATTEMPTS"),
        ({"CLASSIFY_GATEWAY_RETRY_MAX_ATTEMPTS": "0"}, "CLASSIFY_GATEWAY_RETRY_MAX_ATTEMPTS"),
        ({"CLASSIFY_GATEWAY_UPSTREAM_URL": "ftp://x"}, "CLASSIFY_GATEWAY_UPSTREAM_URL"),
        ({"CLASSIFY_GATEWAY_LISTEN": "50051"}, "CLASSIFY_GATEWAY_LISTEN"),
        ({"CLASSIFY_GATEWAY_METRICS_LISTEN": "host:port"}, "CLASSIFY_GATEWAY_METRICS_LISTEN"),
        ({"CLASSIFY_GATEWAY_REFLECTION": "maybe"}, "CLASSIFY_GATEWAY_REFLECTION"),
        ({"CLASSIFY_GATEWAY_TRACING_EXPORTER": "jaeger"}, "CLASSIFY_GATEWAY_TRACING_EXPORTER"),
        ({"CLASSIFY_GATEWAY_RETRY_MAX_BACKOFF": "0.01"}, "CLASSIFY_GATEWAY_RETRY_MAX_BACKOFF"),
        ({"CLASSIFY_GATEWAY_API_KEY_FILE": "/nonexistent/key"}, "CLASSIFY_GATEWAY_API_KEY_FILE"),
        ({"CLASSIFY_GATEWAY_REDIS_URL": "http://r:6379"}, "CLASSIFY_GATEWAY_REDIS_URL"),
        ({"CLASSIFY_GATEWAY_REDIS_TIMEOUT_MS": "0"}, "CLASSIFY_GATEWAY_REDIS_TIMEOUT_MS"),
        (
            {
                "CLASSIFY_GATEWAY_REDIS_URL": "redis://r:6379/0",
                "CLASSIFY_GATEWAY_REDIS_PASSWORD_FILE": "/nonexistent/pw",
            },
            "CLASSIFY_GATEWAY_REDIS_PASSWORD_FILE",
        ),
        ({"CLASSIFY_GATEWAY_CALLER_IDENTITY": "spiffe"}, "CLASSIFY_GATEWAY_CALLER_IDENTITY"),
        ({"CLASSIFY_GATEWAY_CALLER_IDENTITY": "metadata:"}, "CLASSIFY_GATEWAY_CALLER_IDENTITY"),
        ({"CLASSIFY_GATEWAY_WORKERS": "0"}, "CLASSIFY_GATEWAY_WORKERS"),
        ({"CLASSIFY_GATEWAY_UPSTREAM_DAILY_QUOTA": "-1"}, "CLASSIFY_GATEWAY_UPSTREAM_DAILY_QUOTA"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], var: str) -> None:
    full = {"CLASSIFY_GATEWAY_API_KEY": KEY, **env} if var != "CLASSIFY_GATEWAY_API_KEY" else env
    if var == "CLASSIFY_GATEWAY_API_KEY_FILE":
        full = env
    with pytest.raises(ConfigError) as info:
        from_env(full)
    assert var in str(info.value)
    assert KEY not in str(info.value)


def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    assert from_env({"CLASSIFY_GATEWAY_API_KEY_FILE": str(path)}).api_key == KEY


def test_key_never_in_repr_or_redacted() -> None:
    s = from_env({"CLASSIFY_GATEWAY_API_KEY": KEY})
    assert KEY not in repr(s)
    assert KEY not in str(s.redacted())


def test_caller_keys_make_config_key_optional() -> None:
    s = from_env({"CLASSIFY_GATEWAY_ALLOW_CALLER_API_KEY": "true"})
    assert s.api_key == ""
    assert isinstance(s, Settings)


def test_redis_url_password_is_redacted() -> None:
    s = from_env(
        {
            "CLASSIFY_GATEWAY_API_KEY": KEY,
            "CLASSIFY_GATEWAY_REDIS_URL": "rediss://gw:pa55word@redis.example:6380/2",
        }
    )
    assert s.redacted()["redis_url"] == "rediss://gw:<redacted>@redis.example:6380/2"
    assert "pa55word" not in repr(s) and "pa55word" not in str(s.redacted())


def test_redis_password_file_ignored_without_redis() -> None:
    s = from_env(
        {"CLASSIFY_GATEWAY_API_KEY": KEY, "CLASSIFY_GATEWAY_REDIS_PASSWORD_FILE": "/nonexistent"}
    )
    assert s.redis_url == "" and s.redis_password == ""
