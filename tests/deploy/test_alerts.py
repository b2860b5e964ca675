"""The alerts fire on the failures they are named for, and not on a caller's own mistakes.

Two halves. The first runs a real gateway against the emulator through each failure (the
endpoint retired: 404 and 410 on POST /classify; the key revoked: 401; an expired page token:
404 on the page route) and checks that the alerts' matchers pick exactly the series the
gateway then exports, label values included (a matcher on `http_route="POST /classify"`
would name a real label and never fire). The second gives promtool (Debian's `prometheus`
package; the tests skip without it) series of those shapes and checks which alerts fire
after their `for:`: the arithmetic, the per-method grouping and the volume guards.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.promql import grouping_labels, selectors
from tests.deploy.support import ROOT, one
from tests.support.classify import classify_request
from tests.support.gateway import collect, running_gateway
from tests.support.processes import free_port

MONITORING = ROOT / "deploy" / "monitoring"
UPSTREAM = "classify_gateway_upstream_requests_total"
RPCS = "classify_gateway_rpcs_total"


def alert(name: str) -> dict[str, Any]:
    rule = one(MONITORING, "PrometheusRule")
    (found,) = [r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == name]
    return found


def samples(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of every series `name` with a value above 0."""
    return [
        dict(s.labels)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.value > 0
    ]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def failure_metrics(emulator: Any) -> str:
    """/metrics after one good Classify and one of each failure."""
    status = {"type": "status"}
    failures: list[tuple[dict[str, Any], int]] = [
        ({"method": "GET", "path": "/classify/"}, 404),  # a page token the upstream forgot
        ({"method": "POST", "path": "/classify"}, 404),  # the endpoint retired
        ({"method": "POST", "path": "/classify"}, 410),
        ({}, 401),  # the key revoked
    ]
    port = free_port()
    async with running_gateway(
        emulator.base_url + "/v1.2",
        emulator.api_key,
        metrics_listen=f"127.0.0.1:{port}",
        retry_max_attempts=1,
        cache_ttl=0.0,
        coalesce=False,
    ) as gw:
        await gw.gateway.start_metrics()
        request = classify_request(emulator, count=4, page_limit=2)
        pages, err = await collect(gw.stub.Classify(request))
        assert err is None and len(pages) == 2
        for match, code in failures:
            emulator.admin.clear_faults()
            emulator.admin.add_fault(
                {"match": match, "times": -1, "action": {**status, "status": code}}
            )
            _, err = await collect(gw.stub.Classify(request))
            assert err is not None, (match, code)
        emulator.admin.clear_faults()
        return await asyncio.to_thread(scrape, port)


@pytest.fixture(scope="module")
def metrics_text(emulator_session: Any) -> str:
    return asyncio.run(failure_metrics(emulator_session))


def _one(series: list[dict[str, str]], **labels: str) -> dict[str, str]:
    found = [s for s in series if labels.items() <= s.items()]
    assert len(found) == 1, f"{labels}: {found}"
    return found[0]


def test_rejects_gateway_picks_the_retired_endpoint_and_the_key_not_a_token(
    metrics_text: str,
) -> None:
    upstream = samples(metrics_text, UPSTREAM)
    healthy = _one(upstream, http_route="/classify", http_status="200")
    retired_404 = _one(upstream, http_route="/classify", http_status="404")
    retired_410 = _one(upstream, http_route="/classify", http_status="410")
    key = _one(upstream, http_route="/classify", http_status="401")
    token = _one(upstream, http_route="/classify/{page_token}", http_status="404")
    # The failure side of the ratio: the selectors that do not also count a good answer.
    failing = [
        s
        for s in selectors(alert("ClassifyGatewayUpstreamRejectsGateway")["expr"])
        if not s.picks(UPSTREAM, healthy)
    ]
    assert failing
    for series in (retired_404, retired_410, key):
        assert any(s.picks(UPSTREAM, series) for s in failing), series
    # A page token that expired is the caller's wait, not the endpoint's end.
    assert not any(s.picks(UPSTREAM, token) for s in failing)


def test_rpc_errors_picks_every_failure_per_method_but_not_a_cancel(metrics_text: str) -> None:
    rpcs = samples(metrics_text, RPCS)
    ok = _one(rpcs, grpc_method="Classify", grpc_code="OK")
    expr = alert("ClassifyGatewayRpcErrors")["expr"]
    failing = [s for s in selectors(expr) if not s.picks(RPCS, ok)]
    assert failing
    codes = {s["grpc_code"] for s in rpcs} - {"OK"}
    assert codes >= {"NOT_FOUND", "FAILED_PRECONDITION", "UNAUTHENTICATED"}, codes
    for series in rpcs:
        if series["grpc_code"] != "OK":
            assert any(s.picks(RPCS, series) for s in failing), series
    cancelled = {**ok, "grpc_code": "CANCELLED"}
    assert not any(s.picks(RPCS, cancelled) for s in failing)
    assert "grpc_method" in grouping_labels(expr), "the ratio is per method"


# -- promtool -------------------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _upstream(route: str, status: str, per_minute: int, method: str = "POST") -> dict[str, str]:
    return _series(
        UPSTREAM, f"0+{per_minute}x40", http_method=method, http_route=route, http_status=status
    )


def _rpcs(method: str, code: str, per_minute: int) -> dict[str, str]:
    return _series(RPCS, f"0+{per_minute}x40", grpc_method=method, grpc_code=code)


# One more every 5 minutes: every answer fails, but too few to mean anything.
TRICKLE = " ".join(str(minute // 5) for minute in range(41))
REJECTS = "ClassifyGatewayUpstreamRejectsGateway"
RPC_ERRORS = "ClassifyGatewayRpcErrors"
# name -> (input series, {alert: [the grpc_method of each firing instance, or "" for none]}),
# evaluated 30 minutes in: every `for:` has passed.
SCENARIOS: dict[str, tuple[list[dict[str, str]], dict[str, list[str]]]] = {
    "endpoint retired": (
        [_upstream("/classify", "404", 10), _rpcs("Classify", "NOT_FOUND", 10)],
        {REJECTS: [""], RPC_ERRORS: ["Classify"]},
    ),
    "endpoint gone (410)": (
        [_upstream("/classify", "410", 10), _rpcs("Classify", "FAILED_PRECONDITION", 10)],
        {REJECTS: [""], RPC_ERRORS: ["Classify"]},
    ),
    "key revoked": (
        [
            _upstream("/classify", "401", 5),
            _upstream("/indexes", "401", 2, method="GET"),
            _rpcs("Classify", "UNAUTHENTICATED", 5),
        ],
        {REJECTS: [""], RPC_ERRORS: ["Classify"]},
    ),
    "a caller's unknown ids among good calls": (
        [
            _upstream("/classify", "200", 30),
            _upstream("/classify", "404", 2),
            _rpcs("Classify", "OK", 30),
            _rpcs("Classify", "NOT_FOUND", 2),
        ],
        {REJECTS: [], RPC_ERRORS: []},
    ),
    "expired page tokens": (
        [
            _upstream("/classify", "200", 5),
            _upstream("/classify/{page_token}", "404", 10, method="GET"),
        ],
        {REJECTS: []},
    ),
    "a caller's unknown id every 5 minutes on an idle gateway": (
        [
            _series(
                UPSTREAM, TRICKLE, http_method="POST", http_route="/classify", http_status="404"
            ),
            _series(RPCS, TRICKLE, grpc_method="Classify", grpc_code="NOT_FOUND"),
        ],
        {REJECTS: [], RPC_ERRORS: []},
    ),
    "one method failing, the other busy and fine": (
        [
            _rpcs("Classify", "OK", 100),
            _rpcs("GetClassifyPage", "OK", 5),
            _rpcs("GetClassifyPage", "UNAVAILABLE", 5),
        ],
        {RPC_ERRORS: ["GetClassifyPage"]},
    ),
}


def _rule_file(tmp_path: Path, *, annotations: bool) -> Path:
    spec = one(MONITORING, "PrometheusRule")["spec"]
    groups = json.loads(json.dumps(spec["groups"]))
    if not annotations:
        for group in groups:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    result = _promtool("check", "rules", str(_rule_file(tmp_path, annotations=True)))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_alerts_fire_on_their_failure_only(scenario: str, tmp_path: Path) -> None:
    series, expected = SCENARIOS[scenario]
    severity = {a: alert(a)["labels"]["severity"] for a in expected}
    tests = {
        "rule_files": [str(_rule_file(tmp_path, annotations=False))],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": name,
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": severity[name],
                                    **({"grpc_method": method} if method else {}),
                                }
                            }
                            for method in methods
                        ],
                    }
                    for name, methods in expected.items()
                ],
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(tests), encoding="utf-8")
    result = _promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
