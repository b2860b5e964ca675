"""A gateway process that pyinstrument profiles only between SIGUSR1 and SIGUSR2.

`python -m bench.profile_server OUT.pyisession` runs the same `Gateway` as
`classify-gateway serve` (settings from CLASSIFY_GATEWAY_*), so that start-up
(imports, compiling) stays out of the profile and only steady load is sampled.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from pyinstrument import Profiler

from classify_gateway.config import from_env
from classify_gateway.edge.server import Gateway
from classify_gateway.telemetry.observability import setup_logging


async def main(out: str) -> None:
    settings = from_env()
    setup_logging(settings.log_level, secrets=[settings.api_key])
    gateway = Gateway(settings)
    await gateway.start()
    loop = asyncio.get_running_loop()
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    done = asyncio.Event()

    def start() -> None:
        profiler.start()

    def stop() -> None:
        profiler.stop()
        profiler.last_session.save(out)  # type: ignore[union-attr]
        done.set()

    loop.add_signal_handler(signal.SIGUSR1, start)
    loop.add_signal_handler(signal.SIGUSR2, stop)
    loop.add_signal_handler(signal.SIGTERM, done.set)
    await done.wait()
    await gateway.stop(grace=1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
