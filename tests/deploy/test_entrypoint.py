"""Run the image's exact command, `classify-gateway serve`, as the container would.

The command and its environment are read from the Dockerfile's runtime stage (ENTRYPOINT,
CMD, ENV) and run from the project's virtual environment, with only the listen
addresses moved to free loopback ports. What the kubelet and the mesh rely on is then
checked from outside: the gRPC port accepts connections, grpc.health.v1 answers
SERVING for the names the probes ask, reflection lists the service, /metrics answers,
and SIGTERM ends the process with exit code 0 well inside terminationGracePeriodSeconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from classify_gateway.edge.server import SERVICE_NAME
from tests.deploy.support import PREFIX, ROOT, env_of, exec_form, parse_dockerfile
from tests.support.processes import Process, free_port, spawn
from tests.support.processes import running as stopped_after
from tests.support.upstream import FakeUpstream, serving

VENV_BIN = ROOT / ".venv" / "bin"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def image_command() -> list[str]:
    """ENTRYPOINT + CMD of the runtime stage, the executable taken from .venv/bin."""
    final = parse_dockerfile().final
    argv = [*exec_form(final.last("ENTRYPOINT") or "null"), *exec_form(final.last("CMD") or "")]
    executable = VENV_BIN / argv[0]
    if not executable.exists():
        pytest.fail(f"{executable} is not installed (run `make venv`)")
    return [str(executable), *argv[1:]]


def image_env(**settings: str) -> dict[str, str]:
    """The runtime stage's ENV, PATH with the project venv, plus CLASSIFY_GATEWAY_ settings."""
    env = {k: v for k, v in env_of(parse_dockerfile().final).items() if k != "PATH"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    env.update({PREFIX + k.upper(): v for k, v in settings.items()})
    return env


@dataclass
class Gateway:
    proc: Process
    grpc_port: int
    metrics_port: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def health(self, service: str = "") -> int:
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            return int(reply.status)


@contextlib.contextmanager
def running(tmp_path: Path, **settings: str) -> Iterator[Gateway]:
    grpc_port, metrics_port = free_port(), free_port()
    defaults = {
        "listen": f"127.0.0.1:{grpc_port}",
        "metrics_listen": f"127.0.0.1:{metrics_port}",
        "api_key": "dummy",
        # Port 9 (discard): nothing listens, every upstream call fails fast.
        "upstream_url": "http://127.0.0.1:9/v1.2",
    }
    env = image_env(**{**defaults, **settings})
    stderr_path = tmp_path / "gateway.stderr"
    try:
        # cwd is an empty directory: the command must not depend on the source tree.
        proc = spawn(
            "gateway",
            image_command(),
            grpc_port,
            env,
            output=stderr_path,
            cwd=tmp_path,
            timeout=START_TIMEOUT,
            inherit_env=False,
        )
    except RuntimeError as exc:
        pytest.fail(f"{exc}:\n{stderr_path.read_text(errors='replace')}")
    with stopped_after(proc, grace=STOP_TIMEOUT):
        yield Gateway(proc, grpc_port, metrics_port, stderr_path)


def test_image_command_serves_health_reflection_metrics_and_drains(tmp_path: Path) -> None:
    with running(tmp_path) as gw:
        # The liveness ("") and readiness (service) probes' questions.
        assert gw.health("") == SERVING
        assert gw.health(SERVICE_NAME) == SERVING

        with grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
            names = {s.name for s in reply.list_services_response.service}
        assert names >= {
            "classify.v1.ClassifyService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }

        url = f"http://127.0.0.1:{gw.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
            assert b"classify_gateway_" in resp.read()

        started = time.monotonic()
        gw.proc.popen.send_signal(signal.SIGTERM)
        try:
            code = gw.proc.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within {STOP_TIMEOUT} s of SIGTERM:\n{gw.stderr()}")
        assert code == 0, gw.stderr()
        assert time.monotonic() - started < STOP_TIMEOUT
        assert "shutdown complete" in gw.stderr()
        assert "dummy" not in gw.stderr(), "the API key leaked into the logs"


def test_image_command_rejects_a_bad_setting_with_one_line(tmp_path: Path) -> None:
    env = image_env(api_key="dummy", retry_max_attempts="zero")
    result = subprocess.run(
        image_command(), env=env, cwd=tmp_path, capture_output=True, timeout=30, check=False
    )
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.decode().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "CLASSIFY_GATEWAY_RETRY_MAX_ATTEMPTS" in lines[0]


# -- health semantics the probes depend on ----------------------------------------------
#
# deployment.yaml's livenessProbe asks the overall status "" and its readinessProbe
# asks classify.v1.ClassifyService. For those probes to mean what docs/deploy.md says,
# only the service's status may follow the upstream, and a pod that left the
# endpoints because its upstream failed must find out by itself when the upstream is
# back (no traffic reaches an unready pod): the two tests below check both.


def _fail_one_upstream_call(gw: Gateway) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
        stub = pb_grpc.ClassifyServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetClassifyPage(pb.GetClassifyPageRequest(page_token="tok123"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def _wait_status(gw: Gateway, service: str, status: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if gw.health(service) == status:
            return True
        time.sleep(0.1)
    return False


DOWN = {"unhealthy_after": "1", "retry_max_attempts": "1"}


def test_readiness_goes_not_serving_when_the_upstream_is_down(tmp_path: Path) -> None:
    with running(tmp_path, **DOWN) as gw:
        _fail_one_upstream_call(gw)
        assert _wait_status(gw, SERVICE_NAME, NOT_SERVING, timeout=5)


def test_liveness_status_does_not_follow_the_upstream(tmp_path: Path) -> None:
    with running(tmp_path, **DOWN) as gw:
        _fail_one_upstream_call(gw)
        assert _wait_status(gw, SERVICE_NAME, NOT_SERVING, timeout=5)
        assert gw.health("") == SERVING


def test_readiness_recovers_without_traffic_when_the_upstream_is_back(tmp_path: Path) -> None:
    upstream_port = free_port()
    with running(tmp_path, upstream_url=f"http://127.0.0.1:{upstream_port}/v1.2", **DOWN) as gw:
        _fail_one_upstream_call(gw)
        assert _wait_status(gw, SERVICE_NAME, NOT_SERVING, timeout=5)
        with serving(FakeUpstream(), port=upstream_port):
            assert _wait_status(gw, SERVICE_NAME, SERVING, timeout=8)
