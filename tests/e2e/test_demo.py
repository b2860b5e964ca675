"""`make demo`'s command end to end: real processes, real ports, clean stop."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.processes import EXE


@pytest.mark.parametrize("api", ["v1.2", "v1.3"])
def test_demo_streams_every_page_and_stops_cleanly(api: str) -> None:
    done = subprocess.run(
        [EXE, "demo", "--upstream-latency-ms", "50", "--upstream-api", api],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    progress = re.findall(r"▸ page (\d+) received after .*? (\d+)/(\d+) videos", out)
    assert [int(p[0]) for p in progress] == list(range(1, len(progress) + 1))
    assert len(progress) >= 3  # a real multi-page stream
    last_seen, total = int(progress[-1][1]), int(progress[-1][2])
    assert last_seen == total > 0
    assert "(none: last page)" in out
    assert re.search(
        r"\.mp4 +(Dance|Cooking|Sports|News|Travel|Music|Nature|Technology) +\d+\.\d\d", out
    )
    assert out.rstrip().endswith("Stopped cleanly.")
    scoring = "SCORING_EMBEDDINGS_V1_3" if api == "v1.3" else "SCORING_CLASSIFY_V1_2"
    assert f"Scoring: {scoring}" in out
