"""A 10-second soak, run exactly as `make soak` runs it (a child process, its JSON report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.reliability.soak import ROOT, slope_per_minute


def test_quick_soak(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability.soak",
            "--seconds",
            "10",
            "--out",
            str(out),
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"], report["failures"]
    assert report["lost_pages"] == report["duplicated_pages"] == report["mismatched_pages"] == 0
    assert report["abandoned"] == 0 and report["resume_token_mismatches"] == 0
    assert report["pages"] >= 1000
    assert report["pages"] == report["pages_expected"]  # every page exactly once
    # Not vacuous: faults were injected, reached clients, and streams resumed.
    assert sum(report["faults_injected"].values()) >= 10
    assert sum(report["errors"].values()) >= 1
    assert sum(report["resumes"].values()) >= 1
    assert len(report["samples"]) >= 5 and report["gateway_alive_at_end"]


def test_slope_is_least_squares_per_minute() -> None:
    assert slope_per_minute([(0, 10.0), (30, 11.0), (60, 12.0)]) == 2.0
    assert slope_per_minute([(0, 5.0), (1, 5.0)]) == 0.0
    assert slope_per_minute([(0, 1.0)]) == 0.0
    # Noise around a flat line gives a slope near zero.
    assert abs(slope_per_minute([(t, 100.0 + (-1) ** t) for t in range(120)])) < 0.1
