"""generated/ is exactly what proto/ produces with the pinned generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "generate.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    fresh, committed = _files(out), _files(ROOT / "generated")
    assert sorted(fresh) == sorted(committed), (
        "generated/ has missing or extra files: run make generate"
    )
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"generated/ is stale ({', '.join(stale)}): run make generate"
