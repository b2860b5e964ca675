"""`make demo`'s command end to end: real processes, real ports, clean stop."""

from __future__ import annotations

import re
import subprocess

from tests.support.processes import EXE


def test_demo_streams_every_page_and_stops_cleanly() -> None:
    done = subprocess.run(
        [EXE, "demo", "--upstream-latency-ms", "50"],
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
