"""The v1.3 surface: indexes, videos with embeddings, embed-v2 (text) and search.

Twelve Labs' API v1.3 has no classify; a v1.3 classify backend computes
classify's numbers from Marengo embeddings instead (a prompt's text embedding
against a video's stored segment embeddings). These handlers serve what that
needs, from the same corpus as /v1.2, in the shapes the official SDK 1.3.6
parses (checked against its source; docs/emulator.md lists the choices made
where the vendor's documents are silent). Routing, auth, quotas and faults are
the shared machinery of `api.UpstreamApi`; this module holds only routes,
validation and bodies.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request

from classify_emulator import api_errors, catalog
from classify_emulator.api_errors import ApiError
from classify_emulator.corpus import Corpus, Index, Video
from classify_emulator.embeddings import DIMENSION, MODEL_NAME, OPTIONS, text_embedding
from classify_emulator.search import SearchQuery, run_search
from classify_emulator.state import EmulatorState

#: (method, path pattern after /v1.3, handler name, rate-limit group, configured latency)
ROUTES: tuple[tuple[str, str, str, str, bool], ...] = (
    ("GET", r"/indexes", "v13_list_indexes", "videos", False),
    ("GET", r"/indexes/(?P<index_id>[^/]+)", "v13_get_index", "videos", False),
    ("GET", r"/indexes/(?P<index_id>[^/]+)/videos", "v13_list_videos", "videos", False),
    (
        "GET",
        r"/indexes/(?P<index_id>[^/]+)/videos/(?P<video_id>[^/]+)",
        "v13_get_video",
        "videos",
        True,
    ),
    ("POST", r"/embed-v2", "v13_embed", "embed", True),
    ("POST", r"/search", "v13_search", "search", True),
    ("GET", r"/search/(?P<page_token>[^/]+)", "v13_search_page", "search", True),
)

INDEX_LIST_PARAMS = frozenset(
    {"page", "page_limit", "sort_by", "sort_option", "index_name", "model_options"}
    | {"model_family", "created_at", "updated_at"}
)
# Serialising a long video's 512-float segments costs far more than sending them;
# the JSON is kept, up to this many bytes (not every option of every video fits).
SEGMENT_CACHE_BYTES = 64 * 1024 * 1024
MAX_QUERY_TOKENS = 500  # Marengo 3.0's text limit (SDK 1.3.6 docstrings)
SEARCH_OPTIONS = frozenset({"visual", "audio", "transcription"})
TRANSCRIPTION_OPTIONS = frozenset({"lexical", "semantic"})
# Accepted and ignored: the SDK calls them "Deprecated: ignored by the API".
SEARCH_IGNORED = frozenset({"threshold", "sort_option", "adjust_confidence_level"})
SEARCH_FIELDS = frozenset(
    {
        "index_id",
        "search_options",
        "transcription_options",
        "operator",
        "query_text",
        "query_media_type",
        "query_media_url",
        "query_media_file",
        "group_by",
        "page_limit",
        "filter",
        "include_user_metadata",
    }
)
EMBED_FIELDS = frozenset(
    {
        "input_type",
        "model_name",
        "auto_truncate",
        "embedding_uncertainty",
        "embedding_dimension",
        "text",
        "image",
        "text_image",
        "audio",
        "video",
        "multi_input",
    }
)
EMBED_INPUT_TYPES = frozenset({"text", "image", "text_image", "audio", "video", "multi_input"})
MARENGO_35_ONLY = ("auto_truncate", "embedding_uncertainty", "embedding_dimension")
FILTER_NUMBERS = frozenset({"duration", "width", "height", "size", "fps"})
TOO_MANY_REQUESTS_V13 = (
    "You have exceeded the rate limit ({limit} requests per {window}). "
    "Please try again later after {reset}."
)


def too_many_requests(limit: int, window_seconds: float, reset: str) -> ApiError:
    """The v1.3 message pattern (error-codes page), filled in."""
    window = f"{window_seconds:g} seconds"
    return ApiError(
        429,
        "too_many_requests",
        TOO_MANY_REQUESTS_V13.format(limit=limit, window=window, reset=reset),
    )


def index_not_supported_for_search() -> ApiError:
    return ApiError(
        400,
        "index_not_supported_for_search",
        "You can only perform search requests on indexes with an engine from the Marengo "
        "family enabled.",
    )


def search_filter_invalid() -> ApiError:
    return ApiError(
        400,
        "search_filter_invalid",
        "Filter used in search is invalid. Please use the valid filter syntax by following "
        "filtering documentation.",
    )


# -- resources ------------------------------------------------------------------


def asset_id(video_id: str) -> str:
    """A stable 24-hex asset id per video (what Pegasus 1.5+ analysis would need)."""
    return hashlib.sha256(f"asset:{video_id}".encode()).hexdigest()[:24]


def _models(index: Index) -> list[dict[str, Any]]:
    """v1.2 engines as v1.3 models: Marengo is 3.0 (its embeddings), Pegasus 1.2."""
    models: list[dict[str, Any]] = []
    for engine in index.resource.get("engines", []):
        name = str(engine.get("engine_name", ""))
        if name.startswith("marengo"):
            models.append({"model_name": MODEL_NAME, "model_options": ["visual", "audio"]})
        elif name.startswith("pegasus"):
            models.append({"model_name": "pegasus1.2", "model_options": ["visual", "audio"]})
    return models


def _has_marengo(index: Index) -> bool:
    return any(m["model_name"].startswith("marengo") for m in _models(index))


def index_resource(index: Index) -> dict[str, Any]:
    r = index.resource
    out: dict[str, Any] = {"_id": index.id, "index_name": r.get("index_name")}
    out["models"] = _models(index)
    for key in ("addons", "video_count", "total_duration", "created_at", "updated_at"):
        if key in r:
            out[key] = r[key]
    out["expires_at"] = r.get("expires_at")
    return out


def system_metadata(video: Video) -> dict[str, Any]:
    meta = video.resource["metadata"]
    return {k: meta[k] for k in ("filename", "duration", "fps", "width", "height", "size")}


def video_resource(video: Video) -> dict[str, Any]:
    r = video.resource
    out: dict[str, Any] = {"_id": video.id, "asset_id": asset_id(video.id)}
    for key in ("created_at", "updated_at", "indexed_at"):
        if key in r:
            out[key] = r[key]
    out["system_metadata"] = system_metadata(video)
    return out


# -- parameters -----------------------------------------------------------------


def _only(params: QueryParams, allowed: Iterable[str]) -> None:
    known = set(allowed)
    for key in params:
        if key.split("[", 1)[0] not in known:
            raise api_errors.parameter_unknown(key)


def _bool_param(raw: str, name: str) -> bool:
    if raw in ("true", "True", "1"):
        return True
    if raw in ("false", "False", "0"):
        return False
    raise api_errors.parameter_invalid(name)


def _index(corpus: Corpus, index_id: str) -> Index:
    index = corpus.indexes.get(index_id)
    if index is None:
        raise api_errors.resource_not_exist(index_id, "indexes")
    return index


def _video(corpus: Corpus, index_id: str, video_id: str) -> Video:
    _index(corpus, index_id)
    video = corpus.videos.get(video_id)
    if video is None or video.index_id != index_id:
        raise api_errors.resource_not_exist(video_id, "videos")
    return video


# -- handlers -------------------------------------------------------------------


class V13Api:
    """The v1.3 handlers; `handlers()` names them for `api.UpstreamApi`'s routing."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._segment_bodies: dict[tuple[str, str], bytes] = {}
        self._segment_bytes = 0

    def handlers(self) -> dict[str, Callable[[Request, dict[str, str]], Any]]:
        return {
            "v13_list_indexes": self.list_indexes,
            "v13_get_index": self.get_index,
            "v13_list_videos": self.list_videos,
            "v13_get_video": self.get_video,
            "v13_embed": self.embed,
            "v13_search": self.search,
            "v13_search_page": self.search_page,
        }

    async def list_indexes(self, request: Request, params: dict[str, str]) -> bytes:
        q = request.query_params
        _only(q, INDEX_LIST_PARAMS)
        family = q.get("model_family")
        if family is not None and family not in ("marengo", "pegasus"):
            raise api_errors.parameter_invalid("model_family")
        wanted = set(q.getlist("model_options"))
        name = q.get("index_name")
        items = []
        for index in self.state.corpus.indexes.values():
            resource = index_resource(index)
            models = resource["models"]
            if name is not None and resource["index_name"] != name:
                continue
            if family and not any(m["model_name"].startswith(family) for m in models):
                continue
            if not wanted <= {o for m in models for o in m["model_options"]}:
                continue
            if not all(
                str(resource.get(k, "")).startswith(q[k])
                for k in ("created_at", "updated_at")
                if k in q
            ):
                continue
            items.append(resource)
        return catalog.page_of(items, q)

    async def get_index(self, request: Request, params: dict[str, str]) -> bytes:
        _only(request.query_params, ())
        return orjson.dumps(index_resource(_index(self.state.corpus, params["index_id"])))

    async def list_videos(self, request: Request, params: dict[str, str]) -> bytes:
        corpus = self.state.corpus
        index = _index(corpus, params["index_id"])
        q = request.query_params
        # user_metadata[...] filters are accepted; the corpus has no user metadata.
        kept = QueryParams([(k, v) for k, v in q.multi_items() if not k.startswith("user_")])
        allowed = {"page", "page_limit", "sort_by", "sort_option", "filename"}
        allowed |= FILTER_NUMBERS | {"created_at", "updated_at"}
        _only(kept, allowed)
        selected = catalog.select_videos([corpus.videos[v].resource for v in index.video_ids], kept)
        items = [video_resource(corpus.videos[str(r["_id"])]) for r in selected]
        return catalog.page_of(items, kept)

    async def get_video(self, request: Request, params: dict[str, str]) -> bytes:
        q = request.query_params
        _only(q, ("embedding_option", "transcription"))
        corpus = self.state.corpus
        video = _video(corpus, params["index_id"], params["video_id"])
        wanted = q.getlist("embedding_option")
        for option in wanted:
            if option not in OPTIONS:
                raise api_errors.parameter_invalid("embedding_option")
        transcription = (
            _bool_param(q["transcription"], "transcription") if "transcription" in q else False
        )
        body = orjson.dumps(video_resource(video))
        parts = [body[:-1]]
        if wanted:
            bodies = (self._segments(video.id, o) for o in OPTIONS if o in wanted)
            segments = b",".join(b for b in bodies if b)  # an option may have no segments
            parts.append(
                b',"embedding":{"model_name":"'
                + MODEL_NAME.encode()
                + b'","video_embedding":{"segments":['
                + segments
                + b"]}}"
            )
        if transcription:
            lines = [
                {"start": s.start, "end": s.end, "value": s.text}
                for s in video.segments["conversation"]
            ]
            parts.append(b',"transcription":' + orjson.dumps(lines))
        parts.append(b"}")
        return b"".join(parts)

    def _segments(self, video_id: str, option: str) -> bytes:
        """One option's segment objects, comma-separated (cached: they never change)."""
        key = (video_id, option)
        cached = self._segment_bodies.get(key)
        if cached is not None:
            return cached
        emb = self.state.embeddings.video(video_id).options[option]
        objects = [
            b'{"float":'
            + orjson.dumps(emb.matrix[i], option=orjson.OPT_SERIALIZE_NUMPY)
            + b","
            + orjson.dumps(
                {
                    "start_offset_sec": round(emb.starts[i], 3),
                    "end_offset_sec": round(emb.ends[i], 3),
                    "embedding_option": option,
                    "embedding_scope": "clip",
                }
            )[1:]
            for i in range(len(emb.starts))
        ]
        body = b",".join(objects)
        if self._segment_bytes + len(body) <= SEGMENT_CACHE_BYTES:
            self._segment_bodies[key] = body
            self._segment_bytes += len(body)
        return body

    async def embed(self, request: Request, params: dict[str, str]) -> bytes:
        body = await _json_object(request)
        for key in body:
            if key not in EMBED_FIELDS:
                raise api_errors.parameter_unknown(key)
        for key in ("input_type", "model_name"):
            if body.get(key) is None:
                raise api_errors.parameter_not_provided(key)
        input_type, model = body["input_type"], body["model_name"]
        if input_type not in EMBED_INPUT_TYPES:
            raise api_errors.parameter_invalid("input_type")
        if model not in ("marengo3.0", "marengo3.5"):
            raise api_errors.parameter_invalid("model_name")
        if model == "marengo3.5":
            # 3.5 takes multi_input only; the emulator models 3.0's text embeddings.
            raise ApiError(
                400,
                "parameter_invalid",
                "The model_name parameter is invalid. The emulator embeds text with "
                "marengo3.0 only.",
            )
        for key in MARENGO_35_ONLY:
            if body.get(key) is not None:
                raise ApiError(
                    400,
                    "parameter_invalid",
                    f"The {key} parameter is invalid. It requires marengo3.5.",
                )
        if input_type != "text":
            raise ApiError(
                400,
                "parameter_invalid",
                "The input_type parameter is invalid. The emulator embeds text only.",
            )
        for key in EMBED_INPUT_TYPES - {"text"}:
            if body.get(key) is not None:
                raise api_errors.parameter_invalid(key)
        text = body.get("text")
        if text is None:
            raise api_errors.parameter_not_provided("text")
        if not isinstance(text, dict):
            raise api_errors.parameter_invalid("text")
        for key in text:
            if key != "input_text":
                raise api_errors.parameter_unknown(f"text.{key}")
        input_text = text.get("input_text")
        if input_text is None:
            raise api_errors.parameter_not_provided("text.input_text")
        _check_query_text(input_text, "text.input_text")
        vector = text_embedding(input_text)
        return (
            b'{"data":[{"embedding":'
            + orjson.dumps(vector, option=orjson.OPT_SERIALIZE_NUMPY)
            + b"}]}"
        )

    async def search(self, request: Request, params: dict[str, str]) -> bytes:
        state = self.state
        corpus = state.corpus
        form = await _multipart(request)
        for key in form:
            if key not in SEARCH_FIELDS and key not in SEARCH_IGNORED:
                raise api_errors.parameter_unknown(key)
        for key in ("index_id", "search_options"):
            if not form.get(key):
                raise api_errors.parameter_not_provided(key)
        options = tuple(dict.fromkeys(form["search_options"]))
        if not all(o in SEARCH_OPTIONS for o in options):
            raise api_errors.parameter_invalid("search_options")
        transcription_options = form.get("transcription_options", [])
        if transcription_options and (
            "transcription" not in options
            or not all(o in TRANSCRIPTION_OPTIONS for o in transcription_options)
        ):
            raise api_errors.parameter_invalid("transcription_options")
        operator = _single(form, "operator", "or")
        if operator not in ("or", "and"):
            raise api_errors.parameter_invalid("operator")
        group_by = _single(form, "group_by", "clip")
        if group_by not in ("clip", "video"):
            raise api_errors.parameter_invalid("group_by")
        page_limit = _int_field(_single(form, "page_limit", "10"), "page_limit", 1, 50)
        _bool_param(_single(form, "include_user_metadata", "false"), "include_user_metadata")
        if any(form.get(k) for k in ("query_media_type", "query_media_url", "query_media_file")):
            raise ApiError(
                400,
                "parameter_invalid",
                "The query_media_type parameter is invalid. The emulator searches with "
                "query_text only.",
            )
        query_text = _single(form, "query_text", None)
        if query_text is None:
            raise api_errors.parameter_not_provided("query_text")
        _check_query_text(query_text, "query_text")
        index = _index(corpus, _single(form, "index_id", ""))
        if not _has_marengo(index):
            raise index_not_supported_for_search()
        raw_filter = _single(form, "filter", None)
        video_ids = _filtered(corpus, index, raw_filter)
        query = SearchQuery(
            index_id=index.id,
            vector=text_embedding(query_text),
            options=options,
            operator=operator,
            group_by=group_by,
            page_limit=page_limit,
            video_ids=video_ids,
            thumbnails="thumbnail" in index.resource.get("addons", []),
        )
        items = run_search(state.embeddings, corpus, query)
        pool = {
            "total_count": len(index.video_ids),
            "total_duration": index.resource.get("total_duration", 0),
            "index_id": index.id,
        }
        return state.searches.create(
            items, page_limit, group_by == "video", pool, state.config.page_ttl_seconds
        )

    async def search_page(self, request: Request, params: dict[str, str]) -> bytes:
        q = request.query_params
        _only(q, ("include_user_metadata",))
        if "include_user_metadata" in q:
            _bool_param(q["include_user_metadata"], "include_user_metadata")
        return self.state.searches.page(params["page_token"])


# -- request bodies ---------------------------------------------------------------


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise api_errors.parameter_invalid("body") from None
    if not isinstance(body, dict):
        raise api_errors.parameter_invalid("body")
    return body


async def _multipart(request: Request) -> dict[str, list[str]]:
    """A multipart/form-data body as field -> values (repeated fields are lists).

    Parsed with the standard library's MIME parser: the emulator needs no form
    library, and files (`query_media_file`) are kept as text only to be refused.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            400,
            "parameter_invalid",
            "The body parameter is invalid. Send multipart/form-data.",
        )
    raw = await request.body()
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise api_errors.parameter_invalid("body")
    fields: dict[str, list[str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise api_errors.parameter_invalid("body")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields.setdefault(name, []).append(data.decode("utf-8", "replace"))
    return fields


def _single(form: dict[str, list[str]], name: str, default: Any) -> Any:
    values = form.get(name)
    if not values:
        return default
    if len(values) > 1:
        raise api_errors.parameter_invalid(name)
    return values[0]


def _int_field(raw: str, name: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise api_errors.parameter_invalid(name) from None
    if not low <= value <= high:
        raise api_errors.parameter_invalid(name)
    return value


def _check_query_text(text: Any, name: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise api_errors.parameter_invalid(name)
    if len(text.split()) > MAX_QUERY_TOKENS:  # words stand in for tokens
        raise api_errors.parameter_invalid(name)


def _filtered(corpus: Corpus, index: Index, raw: str | None) -> tuple[str, ...]:
    """The index's videos that pass a search `filter` (stringified JSON), in index order."""
    if raw is None:
        return index.video_ids
    try:
        spec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise search_filter_invalid() from None
    if not isinstance(spec, dict):
        raise search_filter_invalid()
    tests: list[Callable[[Video], bool]] = []
    for key, value in spec.items():
        if key == "id":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise search_filter_invalid()
            tests.append(_id_test(frozenset(value)))
        elif key in FILTER_NUMBERS:
            tests.append(_number_test(key, value))
        elif key == "filename":
            if not isinstance(value, str):
                raise search_filter_invalid()
            tests.append(_filename_test(value))
        else:  # user metadata: the corpus has none, so nothing matches
            tests.append(lambda v: False)
    return tuple(vid for vid in index.video_ids if all(test(corpus.videos[vid]) for test in tests))


def _id_test(ids: frozenset[str]) -> Callable[[Video], bool]:
    return lambda v: v.id in ids


def _filename_test(name: str) -> Callable[[Video], bool]:
    return lambda v: bool(system_metadata(v)["filename"] == name)


def _number_test(key: str, value: Any) -> Callable[[Video], bool]:
    def number(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool)

    if number(value):
        return lambda v: bool(system_metadata(v)[key] == value)
    if isinstance(value, dict) and value and set(value) <= {"gte", "lte"}:
        if not all(number(x) for x in value.values()):
            raise search_filter_invalid()
        low, high = value.get("gte"), value.get("lte")
        return lambda v: (
            (low is None or system_metadata(v)[key] >= low)
            and (high is None or system_metadata(v)[key] <= high)
        )
    raise search_filter_invalid()


__all__ = ["DIMENSION", "ROUTES", "V13Api", "too_many_requests"]
