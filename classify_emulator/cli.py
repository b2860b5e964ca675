"""`emulator --listen HOST:PORT`: run the Twelve Labs classify API emulator.

Settings come from CLASSIFY_EMULATOR_* environment variables (see
docs/emulator.md); the console command `classify-gateway emulator` calls
`main(argv)` with the arguments after `emulator`.
"""

from __future__ import annotations

import argparse
import sys

from classify_emulator.config import EmulatorConfig
from classify_emulator.serving import parse_listen, run

DEFAULT_LISTEN = "127.0.0.1:8800"


def main(argv: list[str] | None = None, prog: str = "python -m classify_emulator") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Emulator of the Twelve Labs classify API v1.2 (and of the v1.3 embeddings "
        "and search a v1.3 backend uses), with injectable faults.",
        epilog="Settings: CLASSIFY_EMULATOR_API_KEYS, _PAGE_TTL_SECONDS, _RATE_LIMIT, "
        "_RATE_WINDOW_SECONDS, _LATENCY_MS, _CORPUS, _JOURNAL_LIMIT, _RATE_LIMIT_EMBED, "
        "_RATE_LIMIT_VIDEOS, _RATE_LIMIT_SEARCH. See docs/emulator.md.",
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN})",
    )
    args = parser.parse_args(argv)
    try:
        parse_listen(args.listen)
        config = EmulatorConfig.from_env()
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    run(args.listen, config, announce=_announce)
    return 0


def _announce(url: str) -> None:
    """Said once listening, with the real port (so `--listen 127.0.0.1:0` is usable)."""
    print(f"emulator: serving the classify API v1.2 on {url}", file=sys.stderr, flush=True)
