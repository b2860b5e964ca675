"""`python -m classify_emulator --listen HOST:PORT` as a process: serves, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from classify_emulator.cli import main
from classify_emulator.serving import parse_listen
from tests.support.processes import free_port, running, spawn


def test_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "classify_emulator", "--listen", f"127.0.0.1:{port}"]
    with running(spawn("emulator", cmd, port, {"CLASSIFY_EMULATOR_API_KEYS": "cli-key"})) as proc:
        with httpx.Client(base_url=proc.url) as client:
            assert client.get("/_emulator/health").status_code == 200
            ok = client.get("/v1.2/indexes", headers={"x-api-key": "cli-key"})
            assert ok.status_code == 200
            bad = client.get("/v1.2/indexes", headers={"x-api-key": "other"})
            assert bad.status_code == 401
        start = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(timeout=10) == 0
        assert time.monotonic() - start < 5


def test_port_zero_announces_the_port_it_got() -> None:
    """`--listen 127.0.0.1:0` picks a free port and says which, once it is listening.

    Started with Popen, not the harness's spawn(): the port is what is being tested.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "classify_emulator", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        prefix = "emulator: serving the classify API v1.2 on http://127.0.0.1:"
        assert line.startswith(prefix), line
        port = int(line.removeprefix(prefix))
        assert port > 0
        assert httpx.get(f"http://127.0.0.1:{port}/_emulator/health").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8800") == ("127.0.0.1", 8800)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8800", "host:", ":80", "host:99999", "host:http"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_bad_arguments_exit_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "nope"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
