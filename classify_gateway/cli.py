"""`classify-gateway`: serve | emulator | demo."""

from __future__ import annotations

import argparse
import asyncio
import sys

from classify_gateway.config import ConfigError, check_listen, from_env, url_secret


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="classify-gateway serve",
        description="Run the gRPC gateway. Settings come from CLASSIFY_GATEWAY_* variables "
        "(docs/operations.md); these flags override them.",
    )
    parser.add_argument("--listen", help="gRPC HOST:PORT (CLASSIFY_GATEWAY_LISTEN)")
    parser.add_argument(
        "--metrics-listen", help="metrics HOST:PORT (CLASSIFY_GATEWAY_METRICS_LISTEN)"
    )
    parser.add_argument(
        "--upstream-url", help="upstream base URL with version (CLASSIFY_GATEWAY_UPSTREAM_URL)"
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    ns = parser.parse_args(argv)
    try:
        settings = from_env(
            listen=ns.listen,
            metrics_listen=ns.metrics_listen,
            upstream_url=ns.upstream_url,
            log_level=ns.log_level,
        )
        check_listen("LISTEN", settings.listen)
        check_listen("METRICS_LISTEN", settings.metrics_listen)
    except ConfigError as exc:
        print(f"classify-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    from classify_gateway.observability import setup_logging
    from classify_gateway.redis_conn import secrets_of
    from classify_gateway.server import serve

    setup_logging(
        settings.log_level,
        secrets=[settings.api_key, url_secret(settings.upstream_url), *secrets_of(settings)],
    )
    try:
        return asyncio.run(serve(settings))
    except (OSError, RuntimeError) as exc:
        # The listen checks above catch the usual causes; this is the race after them
        # (grpc says "Failed to bind" as a RuntimeError). One line, no traceback.
        print(f"classify-gateway: cannot start: {exc}", file=sys.stderr)
        return 2


def _emulator(argv: list[str]) -> int:
    try:
        from classify_emulator.cli import main as emulator_main
    except ImportError as exc:  # the container installs the gateway only
        print(f"classify-gateway: the emulator is not installed ({exc})", file=sys.stderr)
        return 2
    return int(emulator_main(argv))


def _demo(argv: list[str]) -> int:
    from classify_gateway.demo import main as demo_main

    return demo_main(argv)


COMMANDS = {"serve": _serve, "emulator": _emulator, "demo": _demo}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"} or args[0] not in COMMANDS:
        print(
            "usage: classify-gateway {serve,emulator,demo} [options]\n"
            "  serve     run the gRPC gateway (settings from CLASSIFY_GATEWAY_* variables)\n"
            "  emulator  run the local upstream emulator (--listen HOST:PORT)\n"
            "  demo      start both, stream a classification to the terminal, stop",
            file=sys.stderr if args and args[0] not in {"-h", "--help"} else sys.stdout,
        )
        return 0 if args and args[0] in {"-h", "--help"} else 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
