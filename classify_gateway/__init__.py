"""classify-gateway: a gRPC gateway in front of the Twelve Labs classify API."""

import sys

# httpx's package __init__ imports its command-line tool (httpx._main) whenever click,
# pygments and rich are importable, and drops it on ImportError. The gateway never runs
# that tool, but in an environment that has those packages (the development one: the
# emulator's uvicorn brings click, pytest brings pygments) every gateway process would
# load them at start-up. A None entry makes that one import fail at once, as it does in
# the container, where they are not installed. Only when httpx is not loaded yet: an
# httpx already loaded keeps what it has.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
