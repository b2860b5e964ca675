"""Odd configuration is refused at start-up with one line naming the variable (exit 2).

Issue 13 item 7: numbers that overflow a gRPC channel argument, values that are not
numbers at all (inf, nan), a key file that is not UTF-8, a key or URL that could never be
sent in a header, a listen port in use or a host that does not resolve: each used to end
in a traceback (OverflowError, UnicodeDecodeError, RuntimeError) or, worse, in a gateway
that started and failed every call. And a password in UPSTREAM_URL must never be logged.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
from pathlib import Path

import grpc
import pytest

from classify_gateway.config import ConfigError, Settings, from_env, redact_url
from classify_gateway.edge.server import server_options
from tests.support.processes import EXE, free_port, serve_process

KEY = "tlk_CONFIG_canary_0b7d"
NUMERIC = [f.name for f in dataclasses.fields(Settings) if str(f.type) in {"int", "float"}]
HOSTILE_NUMBERS = [
    "inf",
    "-inf",
    "nan",
    "1e10",
    "1e309",
    "99999999999",
    "-99999999999",
    "1000000000",
]


@pytest.mark.parametrize("value", HOSTILE_NUMBERS)
@pytest.mark.parametrize("name", NUMERIC)
async def test_every_number_is_refused_or_builds_a_server(name: str, value: str) -> None:
    """The class of defect, not one input: any value of any numeric setting either is
    refused naming its variable, or gives a server grpc can build."""
    var = "CLASSIFY_GATEWAY_" + name.upper()
    try:
        settings = from_env({"CLASSIFY_GATEWAY_API_KEY": KEY, var: value})
    except ConfigError as exc:
        assert var in str(exc)
        assert "\n" not in str(exc)
        return
    server = grpc.aio.server(options=server_options(settings))
    server.add_insecure_port("127.0.0.1:0")
    await server.stop(None)


@pytest.mark.parametrize(
    "var,value",
    [
        ("KEEPALIVE_TIME", "inf"),
        ("KEEPALIVE_TIME", "1e10"),
        ("MAX_CONNECTION_AGE", "inf"),
        ("MAX_CONCURRENT_STREAMS", "1000000000"),
        ("MAX_RECEIVE_MESSAGE_BYTES", "99999999999"),
    ],
)
def test_reported_overflows_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match="CLASSIFY_GATEWAY_" + var):
        from_env({"CLASSIFY_GATEWAY_API_KEY": KEY, "CLASSIFY_GATEWAY_" + var: value})


@pytest.mark.parametrize(
    "key",
    ["line1\nline2", "key\r\nx-evil: 1", "k\x00ey", "clé", "with space", "tab\tkey", "\x7f"],
)
def test_a_key_that_is_not_a_header_value_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="CLASSIFY_GATEWAY_API_KEY ") as info:
        from_env({"CLASSIFY_GATEWAY_API_KEY": key})
    assert key not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://up stream/v1.2",
        "http://upstream/v1.2\r\nx: y",
        "http://\u00e9xample.com\x00/v1.2",
        "http:///v1.2",
        "http://host:port/v1.2",
        "http://host/v1.2?x=1",
    ],
)
def test_an_unusable_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="CLASSIFY_GATEWAY_UPSTREAM_URL"):
        from_env({"CLASSIFY_GATEWAY_API_KEY": KEY, "CLASSIFY_GATEWAY_UPSTREAM_URL": url})


def test_url_password_is_redacted_in_settings_log() -> None:
    s = from_env(
        {
            "CLASSIFY_GATEWAY_API_KEY": KEY,
            "CLASSIFY_GATEWAY_UPSTREAM_URL": "https://bob:hunter2pass@api.example/v1.2",
        }
    )
    assert "hunter2pass" not in str(s.redacted())
    assert "api.example" in s.redacted()["upstream_url"]
    assert redact_url("https://api.example/v1.2") == "https://api.example/v1.2"


def _serve(env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "serve"],
        check=False,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_one_line_exit_2(proc: subprocess.CompletedProcess[str], var: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert var in lines[0]


def _base_env() -> dict[str, str]:
    return {
        "CLASSIFY_GATEWAY_API_KEY": KEY,
        "CLASSIFY_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
        "CLASSIFY_GATEWAY_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        "CLASSIFY_GATEWAY_UPSTREAM_URL": "http://127.0.0.1:9/v1.2",
    }


@pytest.mark.parametrize(
    "var,value",
    [
        ("KEEPALIVE_TIME", "inf"),
        ("MAX_RECEIVE_MESSAGE_BYTES", "99999999999"),
        ("MAX_CONCURRENT_STREAMS", "1000000000"),
        ("LISTEN", "no-such-host.invalid:50051"),
    ],
)
def test_serve_refuses_with_one_line(var: str, value: str) -> None:
    proc = _serve({**_base_env(), "CLASSIFY_GATEWAY_" + var: value})
    _assert_one_line_exit_2(proc, "CLASSIFY_GATEWAY_" + var)


@pytest.mark.parametrize(
    "value", ["nonsense", "127.0.0.1:", "[::1]", "127.0.0.1:abc", "127.0.0.1:99999"]
)
@pytest.mark.parametrize("var", ["LISTEN", "METRICS_LISTEN"])
def test_serve_refuses_a_listen_address_that_is_not_host_port(var: str, value: str) -> None:
    """Issue 25 item 5: these ended in a traceback (ValueError, OverflowError) and exit 1,
    and LISTEN=127.0.0.1:99999 started on another port: `serve` passes its unset flags as
    None overrides, which hid the environment's value from the check."""
    proc = _serve({**_base_env(), "CLASSIFY_GATEWAY_" + var: value})
    _assert_one_line_exit_2(proc, "CLASSIFY_GATEWAY_" + var)
    assert "HOST:PORT" in proc.stderr


def test_serve_refuses_a_key_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"tlk_\xff\xfe_key\n")
    env = _base_env()
    del env["CLASSIFY_GATEWAY_API_KEY"]
    proc = _serve({**env, "CLASSIFY_GATEWAY_API_KEY_FILE": str(path)})
    _assert_one_line_exit_2(proc, "CLASSIFY_GATEWAY_API_KEY_FILE")


def test_serve_refuses_a_key_file_with_two_lines(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("line1\nline2\n")
    env = _base_env()
    del env["CLASSIFY_GATEWAY_API_KEY"]
    proc = _serve({**env, "CLASSIFY_GATEWAY_API_KEY_FILE": str(path)})
    _assert_one_line_exit_2(proc, "CLASSIFY_GATEWAY_API_KEY")
    assert "line1" not in proc.stderr


@pytest.mark.parametrize("var", ["LISTEN", "METRICS_LISTEN"])
def test_serve_refuses_a_port_in_use(var: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _serve({**_base_env(), "CLASSIFY_GATEWAY_" + var: f"127.0.0.1:{port}"})
    _assert_one_line_exit_2(proc, "CLASSIFY_GATEWAY_" + var)
    assert "in use" in proc.stderr


def test_serve_never_logs_the_url_password() -> None:
    proc = serve_process("http://bob:hunter2pass@127.0.0.1:9/v1.2", KEY)
    try:
        proc.popen.send_signal(signal.SIGTERM)
        out, err = proc.popen.communicate(timeout=30)
    finally:
        proc.stop(grace=1)
    text = out.decode() + err.decode()
    assert "gateway started" in text
    assert "127.0.0.1:9" in text
    assert "hunter2pass" not in text
