"""The emulator as an ASGI application: `create_app(config) -> Starlette`.

One app instance owns one `EmulatorState`; the admin API is mounted under
/_emulator and everything else goes to the upstream surface, which does its
own routing so that unknown paths still get upstream-style JSON answers and
are journaled.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from classify_emulator.admin import admin_mount
from classify_emulator.api import UpstreamApi
from classify_emulator.config import EmulatorConfig
from classify_emulator.responses import install_log_filter
from classify_emulator.state import EmulatorState

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    """A new emulator app; `config` defaults to `EmulatorConfig.from_env()`."""
    state = EmulatorState(config if config is not None else EmulatorConfig.from_env())
    upstream = UpstreamApi(state)
    install_log_filter()
    app = Starlette(
        routes=[
            admin_mount(state),
            Route("/{path:path}", upstream.handle, methods=ALL_METHODS),
        ]
    )
    app.state.emulator = state
    return app
