"""The emulator's own control API under /_emulator (not part of upstream; no auth).

Tests drive the emulator through it from any language (the Go and Java suites
use plain HTTP): health, reset, fault rules, the request journal, runtime
settings, and moving a video to another index (an index's videos changing
upstream). Admin requests are never journaled and never faulted.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from classify_emulator.config import parse_overrides
from classify_emulator.faults import FaultSpecError, parse_rule
from classify_emulator.state import EmulatorState

PREFIX = "/_emulator"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _bad_request(message: str) -> Response:
    return _json({"code": "parameter_invalid", "message": message}, 400)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    return orjson.loads(raw)


def admin_mount(state: EmulatorState) -> Mount:
    """A mount, so that unknown /_emulator paths get 404/405 here, not upstream's."""

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def reset(request: Request) -> Response:
        state.reset()
        return _json({"status": "reset"})

    async def add_fault(request: Request) -> Response:
        try:
            rule = parse_rule(await _body(request))
        except orjson.JSONDecodeError:
            return _bad_request("The body is not valid JSON.")
        except FaultSpecError as exc:
            return _bad_request(str(exc))
        count = state.faults.add(rule)
        return _json({"faults": count}, 201)

    async def list_faults(request: Request) -> Response:
        return _json({"faults": state.faults.describe()})

    async def clear_faults(request: Request) -> Response:
        state.faults.clear()
        return _json({"faults": 0})

    async def journal(request: Request) -> Response:
        return _json({"requests": state.journal.snapshot()})

    async def clear_journal(request: Request) -> Response:
        state.journal.clear()
        return _json({"requests": []})

    async def get_config(request: Request) -> Response:
        return _json(state.config.runtime_view())

    async def put_config(request: Request) -> Response:
        try:
            config = state.override(parse_overrides(await _body(request)))
        except orjson.JSONDecodeError:
            return _bad_request("The body is not valid JSON.")
        except ValueError as exc:
            return _bad_request(str(exc))
        return _json(config.runtime_view())

    async def move_video(request: Request) -> Response:
        try:
            body = await _body(request)
        except orjson.JSONDecodeError:
            return _bad_request("The body is not valid JSON.")
        index_id = body.get("index_id") if isinstance(body, dict) else None
        if not isinstance(index_id, str) or not index_id:
            return _bad_request('The body must be {"index_id": "<an index id>"}.')
        video_id = request.path_params["video_id"]
        try:
            was = state.move_video(video_id, index_id)
        except KeyError as exc:
            missing = "index" if exc.args and exc.args[0] == index_id else "video"
            return _json(
                {"code": "resource_not_exist", "message": f"No {missing} {exc.args[0]}."}, 404
            )
        return _json({"video_id": video_id, "index_id": index_id, "previous_index_id": was})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/faults", add_fault, methods=["POST"]),
        Route("/faults", list_faults, methods=["GET"]),
        Route("/faults", clear_faults, methods=["DELETE"]),
        Route("/requests", journal, methods=["GET"]),
        Route("/requests", clear_journal, methods=["DELETE"]),
        Route("/config", get_config, methods=["GET"]),
        Route("/config", put_config, methods=["PUT"]),
        Route("/videos/{video_id}/index", move_video, methods=["PUT"]),
    ]
    return Mount(PREFIX, routes=routes)
