"""Generate the Python code of proto/ into generated/ (or into a given folder).

One generator, used both by `make generate` and by the freshness test, so that
the two can never disagree about what "fresh" means. It runs the protoc that
grpcio-tools bundles (pinned in uv.lock) with mypy-protobuf's plugins for the
type stubs, fully offline.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "generated"
# The Python package the generated code is installed as (see _relocate).
PYTHON_PACKAGE = "classify_gateway_proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write every generated file for proto/ into out_dir (which must exist)."""
    bin_dir = Path(sys.executable).parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    _relocate(out_dir)
    # Package markers so that `import classify_gateway_proto.v1` works from the generated/ root
    # and mypy sees a package.
    for leaf in {p.parent for p in out_dir.rglob("*.py")}:
        for d in (leaf, *leaf.parents):
            if d == out_dir:
                break
            (d / "__init__.py").touch()
            (d / "py.typed").touch()


def _relocate(out_dir: Path) -> None:
    """Move the code of proto package `classify.v1` to the Python package `classify_gateway_proto`.

    protoc names Python modules after the .proto path (`classify/v1/...`), which would install
    a top-level package `classify`, a name already taken on PyPI. The descriptors keep their
    proto file names (reflection and the wire are unchanged); only the Python import path moves,
    and the one cross-module import that protoc writes is rewritten to match.
    """
    src = out_dir / "classify"
    dst = out_dir / PYTHON_PACKAGE
    dst.mkdir()
    for item in src.iterdir():
        shutil.move(str(item), dst / item.name)
    src.rmdir()
    for f in dst.rglob("*.py*"):
        text = f.read_text()
        fixed = text.replace("from classify.v1 import", f"from {PYTHON_PACKAGE}.v1 import")
        fixed = fixed.replace(
            "classify.v1.classify_service_pb2", f"{PYTHON_PACKAGE}.v1.classify_service_pb2"
        )
        if fixed != text:
            f.write_text(fixed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args()
    out: Path = ns.out
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    print(f"generated {sum(1 for _ in out.rglob('*') if _.is_file())} files into {out}")


if __name__ == "__main__":
    main()
