"""`classify-gateway`: serve | emulator | demo, and `--version`.

One argparse parser with a subcommand each. `serve` is parsed here; `emulator` and
`demo` hand their arguments to their own parsers (classify_emulator/cli.py,
classify_gateway/demo.py), which name themselves `classify-gateway emulator` and
`classify-gateway demo` in `--help` and in errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from classify_gateway.config import (
    ConfigError,
    Settings,
    check_listen,
    from_env,
    proxy_for,
    secrets_of,
    url_secret,
)

# `emulator` and `demo` load none of serve's modules (grpc and prometheus_client through
# telemetry, the workers' supervisor): those are imported where serve and check-config
# use them, so a process running the emulator does not pay for loading them.

PROG = "classify-gateway"


def version() -> str:
    """The installed distribution's version (pyproject.toml's [project].version)."""
    from classify_gateway.telemetry.observability import service_version

    return service_version()


def _serve_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="gRPC address (CLASSIFY_GATEWAY_LISTEN)"
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="metrics address (CLASSIFY_GATEWAY_METRICS_LISTEN)",
    )
    parser.add_argument(
        "--upstream-url",
        metavar="URL",
        help="upstream base URL with version (CLASSIFY_GATEWAY_UPSTREAM_URL)",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (CLASSIFY_GATEWAY_LOG_LEVEL)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="gateway processes on the one port (CLASSIFY_GATEWAY_WORKERS)",
    )
    return parser


def _flags(ns: argparse.Namespace) -> dict[str, Any]:
    return {
        "listen": ns.listen,
        "metrics_listen": ns.metrics_listen,
        "upstream_url": ns.upstream_url,
        "log_level": ns.log_level,
        "workers": ns.workers,
    }


def _checked(flags: dict[str, Any], *, bind: bool) -> tuple[Settings, dict[str, float]]:
    """Every check `serve` makes before it starts, raising ConfigError/TracingConfigError:
    `check-config` runs exactly these, so it passes exactly when `serve` would start."""
    from classify_gateway.quota.callers import load_weights
    from classify_gateway.telemetry.tracing import exporter_name, otlp_protocol

    settings = from_env(**flags)
    weights = load_weights(settings.caller_weights)  # a bad file stops start-up, named
    if bind:
        check_listen("LISTEN", settings.listen)
        check_listen("METRICS_LISTEN", settings.metrics_listen)
    # OTEL_* values the tracing setup would refuse: say so now, in one line.
    if exporter_name(settings) == "otlp":
        otlp_protocol()
    return settings, weights


def _check_config(ns: argparse.Namespace) -> int:
    """Print the effective settings (secrets redacted) as JSON; exit 2 on any problem."""
    from classify_gateway.quota.callers import trust_warnings
    from classify_gateway.telemetry.tracing import TracingConfigError

    try:
        settings, weights = _checked(_flags(ns), bind=not ns.no_bind)
    except (ConfigError, TracingConfigError) as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 2
    report = {
        "settings": settings.redacted(),
        "warnings": trust_warnings(settings.caller_identity, weights),
    }
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


def _serve(ns: argparse.Namespace) -> int:
    from classify_gateway import workers
    from classify_gateway.quota.callers import trust_warnings
    from classify_gateway.telemetry.tracing import TracingConfigError
    from classify_gateway.workers import worker_slot

    flags = _flags(ns)
    slot = worker_slot()
    try:
        # A worker shares the port its parent holds, and serves no metrics.
        settings, weights = _checked(flags, bind=slot is None)
    except (ConfigError, TracingConfigError) as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 2
    from classify_gateway.telemetry.observability import setup_logging

    setup_logging(
        settings.log_level,
        secrets=[
            settings.api_key,
            url_secret(settings.upstream_url),
            url_secret(proxy_for(settings.upstream_url, settings.upstream_proxy, os.environ) or ""),
            *secrets_of(settings),
        ],
    )
    if slot is None:
        for warning in trust_warnings(settings.caller_identity, weights):
            logging.getLogger("classify_gateway.cli").warning(warning)
    if slot is None and settings.workers > 1:
        # The parent: its workers get the same flags through the environment.
        given = {k: str(v) for k, v in flags.items() if v is not None and k != "workers"}
        return workers.run(settings, settings.workers, given)
    if slot is not None:
        settings = workers.split_for_workers(settings, slot[1])
    from classify_gateway.edge.server import serve

    try:
        return asyncio.run(serve(settings, serve_metrics=slot is None))
    except (OSError, RuntimeError) as exc:
        # The listen checks above catch the usual causes; this is the race after them
        # (grpc says "Failed to bind" as a RuntimeError). One line, no traceback.
        print(f"{PROG}: cannot start: {exc}", file=sys.stderr)
        return 2


def _emulator(argv: list[str]) -> int:
    try:
        from classify_emulator.cli import main as emulator_main
    except ImportError as exc:  # the container installs the gateway only
        print(
            f"{PROG} emulator: the emulator is not installed ({exc}); "
            "install classify-gateway[emulator]",
            file=sys.stderr,
        )
        return 2
    return int(emulator_main(argv, prog=f"{PROG} emulator"))


def _demo(argv: list[str]) -> int:
    from classify_gateway.demo import main as demo_main

    return demo_main(argv)


# Subcommands whose arguments their own parsers read.
DELEGATED: dict[str, Callable[[list[str]], int]] = {"emulator": _emulator, "demo": _demo}
COMMANDS = ("serve", "check-config", *DELEGATED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A gRPC gateway in front of the Twelve Labs classify REST API.",
        epilog=f"`{PROG} COMMAND --help` describes each command. Settings: docs/operations.md.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _serve_parser(
        sub.add_parser(
            "serve",
            help="run the gRPC gateway (settings from CLASSIFY_GATEWAY_* variables)",
            description="Run the gRPC gateway. Settings come from CLASSIFY_GATEWAY_* "
            "variables (docs/operations.md); these flags override them.",
        )
    )
    # Listed for --help; their arguments go to their own parsers (see main).
    check = _serve_parser(
        sub.add_parser(
            "check-config",
            help="print the effective settings (secrets redacted); exit 2 on any problem",
            description="Run every check `serve` makes before it starts, print the effective "
            "settings as JSON (secrets redacted) and exit 0, or print the first problem and "
            "exit 2: for a CI step or an init container.",
        )
    )
    check.add_argument(
        "--no-bind",
        action="store_true",
        help="skip the check that LISTEN and METRICS_LISTEN can be bound (a CI runner "
        "whose ports are taken)",
    )
    sub.add_parser(
        "emulator", help="run the local upstream emulator (--listen HOST:PORT)", add_help=False
    )
    sub.add_parser(
        "demo", help="start both, stream a classification to the terminal, stop", add_help=False
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in DELEGATED:
        return DELEGATED[args[0]](args[1:])
    ns = build_parser().parse_args(args)  # exits 2 with usage on a bad command or flag
    if ns.command == "check-config":
        return _check_config(ns)
    return _serve(ns)


if __name__ == "__main__":
    raise SystemExit(main())
