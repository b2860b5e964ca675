"""The v1.3 backend: classify pages computed from Twelve Labs v1.3 embeddings.

It answers the same two calls as the v1.2 client (`pages` for a Classify stream,
`page` for GetClassifyPage), so the page path above it (coalescing, the page cache,
drain) serves it unchanged. Per classification it:

1. embeds each distinct prompt (`POST /embed-v2`, text, the configured Marengo
   model), cached per (API key, model, text) for `V13_TEXT_EMBEDDING_TTL` (a text
   embedding is deterministic for a model, so a long time);
2. walks the videos: the request's `video_ids` (each found in its index through a
   cached directory of the key's indexes), or a whole index page by page
   (`GET /indexes/{id}/videos`, 50 a page), fetching each video's segment
   embeddings (`GET /indexes/{id}/videos/{id}?embedding_option=...`), cached per
   (API key, index, video, options) for `V13_SEGMENT_TTL`. Only the videos in
   flight are held, never the whole index: a video is scored as soon as its
   vectors are in, and only its (small) result is kept;
3. ranks the results and cuts them into pages whose tokens it mints (tokens.py).

Caches: an in-process LRU bounded by `V13_CACHE_MAX_BYTES`, and with Redis the
shared state too, so that replicas share what one of them fetched. A repeat of a
question within the TTLs costs no upstream request at all (and the page cache
above usually answers before this runs). What changes upstream when a user changes an
index's videos (its listing pages, the index each video is in) is re-read by a call with
`cache-control: no-cache`, which refreshes the caches for every call after it, on every
replica (with Redis these are read from the shared state each time, never from an older
copy of this process's); embeddings (a prompt's, a video's segments) are what the model
made of a text or a video id's content, which does not change, and are kept.

Nothing that came on a connection later found to carry unsolicited bytes (a late extra
answer may have been read as it: issue 25 item 3) is kept, or served from a cache, or
used for a page the page store keeps.

Every upstream request goes through the shared quota limiter, in a bucket per
v1.3 endpoint category (`embed`, `videos`), with the v1.2 client's retry policy,
deadlines and error table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from google.protobuf import timestamp_pb2

from classify_gateway.backends.base import (
    HealthRecorder,
    Interruptions,
    Question,
    Unwatched,
    question_key,
)
from classify_gateway.backends.exchange import DEFAULT_HEADERS, Exchange, Provenances
from classify_gateway.backends.v1_2.question import canonical_json
from classify_gateway.backends.v1_2.translate import request_to_json
from classify_gateway.backends.v1_3 import tokens
from classify_gateway.backends.v1_3.scoring import (
    Calibration,
    Matrix,
    Query,
    Segments,
    VideoVectors,
    query_of,
    rank,
    score_video,
    unit_rows,
)
from classify_gateway.config import Settings
from classify_gateway.core.call import CallContext, api_key_hash
from classify_gateway.core.errors import GatewayError, own_error
from classify_gateway.core.page import Page
from classify_gateway.quota.limiter import Limiter
from classify_gateway.state.shared_state import SharedState
from classify_gateway.telemetry.observability import Metrics

log = logging.getLogger("classify_gateway.backends.v1_3.client")

VIDEOS_PAGE_LIMIT = 50  # the most v1.3 lists per page
MAX_INDEX_PAGES = 10_000  # a listing that never ends is an upstream fault
SCORE_CHUNK_SECONDS = 0.005  # scoring yields to the event loop at least this often
# v1.3 endpoint categories with limits of their own: each is its own quota bucket, at
# its own rate (V13_EMBED_RPS / V13_VIDEOS_RPS, config.Settings.endpoint_rates).
EMBED, VIDEOS = "embed", "videos"


class LruBytes:
    """A byte-bounded LRU of cached values (the in-process tier of every v1.3 cache), each
    with the connections it was fetched on when this process fetched it (`origin`)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[str, tuple[bytes, float, Provenances | None]] = OrderedDict()

    def get(self, key: str, now: float) -> tuple[bytes, Provenances | None] | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= now:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return item[0], item[2]

    def put(
        self, key: str, value: bytes, expires: float, origin: Provenances | None = None
    ) -> None:
        if len(value) > self._max:
            return
        self._drop(key)
        self._items[key] = (value, expires, origin)
        self._size += len(value) + len(key)
        while self._size > self._max and self._items:
            self._drop(next(iter(self._items)))

    def drop(self, key: str) -> None:
        self._drop(key)

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._size -= len(item[0]) + len(key)


# -- wire forms of cached values -------------------------------------------------------

_SEG_HEADER = struct.Struct("<dII")  # duration, segments, dimension


def pack_video(video: VideoVectors, options: Sequence[str]) -> bytes:
    """A video's duration and segments per option, as bytes for the caches."""
    parts = [struct.pack("<dI", video.duration, len(options))]
    for option in options:
        seg = video.options.get(option)
        n = 0 if seg is None else len(seg.starts)
        dim = 0 if seg is None or n == 0 else seg.vectors.shape[1]
        name = option.encode()
        parts.append(struct.pack("<B", len(name)) + name + struct.pack("<II", n, dim))
        if seg is not None and n:
            parts += [
                seg.starts.astype("<f8").tobytes(),
                seg.ends.astype("<f8").tobytes(),
                seg.vectors.astype("<f4").tobytes(),
            ]
    return b"".join(parts)


def unpack_video(video_id: str, raw: bytes) -> VideoVectors:
    duration, count = struct.unpack_from("<dI", raw)
    at = 12
    options: dict[str, Segments] = {}
    for _ in range(count):
        (size,) = struct.unpack_from("<B", raw, at)
        name = raw[at + 1 : at + 1 + size].decode()
        at += 1 + size
        n, dim = struct.unpack_from("<II", raw, at)
        at += 8
        if n == 0:
            continue
        starts = np.frombuffer(raw, "<f8", n, at)
        at += 8 * n
        ends = np.frombuffer(raw, "<f8", n, at)
        at += 8 * n
        vectors = np.frombuffer(raw, "<f4", n * dim, at).reshape(n, dim)
        at += 4 * n * dim
        options[name] = Segments(starts, ends, vectors)
    return VideoVectors(video_id, duration, options)


def _segments_of(body: Any, options: Sequence[str]) -> dict[str, Segments]:
    """Segments per embedding option from a video retrieval's JSON (unit rows)."""
    embedding = body.get("embedding") if isinstance(body, dict) else None
    video_embedding = embedding.get("video_embedding") if isinstance(embedding, dict) else None
    raw = video_embedding.get("segments") if isinstance(video_embedding, dict) else None
    if not isinstance(raw, list):
        raw = []
    rows: dict[str, list[tuple[float, float, list[float]]]] = {o: [] for o in options}
    for seg in raw:
        if not isinstance(seg, dict):
            raise _schema("a segment is not an object")
        option = seg.get("embedding_option")
        vector = seg.get("float")
        start, end = seg.get("start_offset_sec"), seg.get("end_offset_sec")
        if option not in rows:
            continue
        if not (
            isinstance(vector, list)
            and isinstance(start, int | float)
            and isinstance(end, int | float)
        ):
            raise _schema("a segment lacks float, start_offset_sec or end_offset_sec")
        rows[option].append((float(start), float(end), vector))
    out: dict[str, Segments] = {}
    for option, items in rows.items():
        if not items:
            continue
        items.sort(key=lambda r: (r[0], r[1]))
        try:
            vectors = unit_rows([r[2] for r in items])
        except ValueError:
            raise _schema("segment embeddings of different lengths") from None
        out[option] = Segments(
            np.fromiter((r[0] for r in items), np.float64, len(items)),
            np.fromiter((r[1] for r in items), np.float64, len(items)),
            vectors,
        )
    return out


def _schema(why: str) -> GatewayError:
    return own_error(
        "UPSTREAM_SCHEMA_MISMATCH", f"the upstream's v1.3 answer does not match its contract: {why}"
    )


def _duration_of(body: Any) -> float:
    meta = body.get("system_metadata") if isinstance(body, dict) else None
    duration = meta.get("duration") if isinstance(meta, dict) else None
    if not isinstance(duration, int | float) or duration < 0:
        raise _schema("the video has no system_metadata.duration")
    return float(duration)


def canonical_question(request: pb.ClassifyRequest) -> bytes:
    """The request as the question it asks: no paging fields, deterministic bytes."""
    q = pb.ClassifyRequest()
    q.CopyFrom(request)
    q.page_token = ""
    q.max_pages = 0
    return q.SerializeToString(deterministic=True)


def _timestamp(epoch: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromSeconds(epoch)
    return ts


class V13Client:
    """The v1.3 backend (backends/base.py's protocol): pages computed from embeddings."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        health: HealthRecorder | None = None,
        limiter: Limiter | None = None,
        drain: Interruptions | None = None,
        shared: SharedState | None = None,
    ) -> None:
        """`shared`: the process's shared state when Redis is configured (else None)."""
        self._exchange = Exchange(settings, metrics, health, limiter, fixed_paths=("/embed-v2",))
        self._settings = settings
        self._drain: Interruptions = drain or Unwatched()
        self._shared = shared
        self._local = LruBytes(settings.v13_cache_max_bytes)
        self._calibration = Calibration.parse(settings.v13_calibration)
        self._model = settings.v13_model
        self._transport = self._exchange.transport  # tests count its connections
        # Pages of another origin, model or calibration are other numbers: never shared.
        self.identity = f"v1.3 {self._exchange.base} {self._model} {self._calibration}"

    async def aclose(self) -> None:
        await self._exchange.aclose()

    # -- the two calls ---------------------------------------------------------------

    def question(self, request: pb.ClassifyRequest) -> Question:
        """The v1.2 canonical question (the same numbers come from the same question)."""
        return Question(request, question_key(canonical_json(request, request_to_json(request))))

    async def pages(
        self,
        call: CallContext,
        question: Question | None,
        start_token: str = "",
        *,
        limit: int = 0,
    ) -> AsyncGenerator[Page, None]:
        """The pages of one classification (or from the page `start_token` names).

        The whole ranked result is computed first (ranking needs every video), then
        handed out a page at a time; nothing is fetched after the first page."""
        key = tokens.mac_key(call.api_key)
        if start_token:
            request, ref = await self._resolve(key, start_token, call)
            offset = ref.offset
        elif question is not None:
            request, offset = question.request, 0
        else:
            raise own_error("INTERNAL_ERROR", "a chain needs a question or a start token")
        wires = Provenances()
        with self._drain.inline():
            ranked = await self._ranked(request, call, wires)
        page_limit = request.page_limit or 10
        number = 0
        while True:
            yield await self._page_at(key, request, ranked, offset, page_limit, call, wires)
            number += 1
            offset += page_limit
            if offset >= len(ranked) or (limit and number >= limit):
                return
            if self._drain.cutoff:
                raise own_error("GATEWAY_SHUTTING_DOWN")

    async def page(self, call: CallContext, token: str) -> Page:
        """One page by a token this backend minted (GetClassifyPage)."""
        key = tokens.mac_key(call.api_key)
        request, ref = await self._resolve(key, token, call)
        wires = Provenances()
        with self._drain.inline():
            ranked = await self._ranked(request, call, wires)
        return await self._page_at(key, request, ranked, ref.offset, ref.page_limit, call, wires)

    async def probe(self, api_key: str) -> bool:
        """One cheap request (`GET /indexes?page_limit=1`): is the upstream there at all."""
        return await self._exchange.probe(api_key)

    # -- tokens and pages ----------------------------------------------------------------

    def _question_key(self, call: CallContext, digest: bytes) -> str:
        return f"v13:question:{api_key_hash(call.api_key)}:{digest.hex()}"

    async def _resolve(
        self, key: bytes, token: str, call: CallContext
    ) -> tuple[pb.ClassifyRequest, tokens.PageRef]:
        """The question and page a token names (INVALID_ARGUMENT on page_token if none)."""
        ref = tokens.read(key, token, time.time())
        raw = ref.question
        if raw is None:
            raw = await self._cache_get(self._question_key(call, ref.digest))
        if raw is None or tokens.question_digest(raw) != ref.digest:
            raise tokens.refused(
                "names a classification this gateway no longer holds (its question was too "
                "large to travel in the token and the shared store has lost it); start again"
            )
        return pb.ClassifyRequest.FromString(raw), ref

    async def _page_at(
        self,
        key: bytes,
        question: pb.ClassifyRequest,
        ranked: Sequence[pb.VideoClassification],
        offset: int,
        limit: int,
        call: CallContext,
        wires: Provenances,
    ) -> Page:
        """One page of `ranked`; it may not be stored or served from the page store once
        any answer it was computed from turns out to have come on a connection that
        carried unsolicited bytes (`wires`, issue 25 item 3)."""
        raw = canonical_question(question)
        digest = tokens.question_digest(raw)
        expires = int(time.time() + self._settings.v13_page_ttl)
        stored = False

        async def token_for(at: int) -> str:
            nonlocal stored
            token, inline = tokens.mint(key, tokens.PageRef(digest, at, limit, expires), raw)
            if not inline and not stored:
                await self._cache_put(
                    self._question_key(call, digest), raw, self._settings.v13_page_ttl
                )
                stored = True
            return token

        info = pb.PageInfo(
            limit_per_page=limit,
            total_results=len(ranked),
            page_expired_at=_timestamp(expires),
        )
        if offset + limit < len(ranked):
            info.next_page_token = await token_for(offset + limit)
        if offset > 0:
            info.prev_page_token = await token_for(max(0, offset - limit))
        message = pb.ClassifyResponse(
            data=ranked[offset : offset + limit],
            page_info=info,
            scoring=pb.SCORING_EMBEDDINGS_V1_3,
        )
        return Page.from_message(
            message, unsolicited=wires.unsolicited, watch_unsolicited=wires.watch
        )

    # -- one classification --------------------------------------------------------------

    async def _ranked(
        self, request: pb.ClassifyRequest, call: CallContext, wires: Provenances
    ) -> list[pb.VideoClassification]:
        """Every listed video of the classification, best first; `wires` gets the
        connections of every answer it was computed from, fetched or cached here."""
        question = query_of(request)
        prompts = await self._prompt_matrix(question.prompts, call, wires)
        results: list[tuple[float, int, pb.VideoClassification]] = []
        budget_from = time.monotonic()
        async for order, video in self._videos(request, question, call, wires):
            scored = score_video(question, prompts, video, self._calibration)
            if scored is not None:
                results.append((scored[0], order, scored[1]))
            if time.monotonic() - budget_from > SCORE_CHUNK_SECONDS:
                await asyncio.sleep(0)  # other calls run between pieces of the math
                budget_from = time.monotonic()
        return rank(results)

    async def _prompt_matrix(
        self, texts: Sequence[str], call: CallContext, wires: Provenances
    ) -> Matrix:
        sem = asyncio.Semaphore(self._settings.v13_fetch_concurrency)

        async def one(text: str) -> np.ndarray[Any, Any]:
            async with sem:
                return await self._text_embedding(text, call, wires)

        # A TaskGroup, not gather: when one embedding fails, the others are cancelled at
        # once instead of spending the quota on a classification that has already failed.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(t)) for t in texts]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the caller gets the first failure's status
        vectors = [t.result() for t in tasks]
        if len({v.shape for v in vectors}) > 1:
            raise _schema("text embeddings of different lengths")
        return unit_rows(np.stack(vectors))

    async def _text_embedding(
        self, text: str, call: CallContext, wires: Provenances
    ) -> np.ndarray[Any, Any]:
        digest = hashlib.sha256(text.encode()).hexdigest()
        cache_key = f"v13:text:{api_key_hash(call.api_key)}:{self._model}:{digest}"
        cached = await self._cache_get(cache_key, wires)
        if cached is not None:
            return np.frombuffer(cached, "<f4")
        body = {"input_type": "text", "model_name": self._model, "text": {"input_text": text}}
        answer, origin = await self._call(
            "POST", "/embed-v2", orjson.dumps(body), call, EMBED, wires
        )
        data = answer.get("data") if isinstance(answer, dict) else None
        first = data[0] if isinstance(data, list) and data else None
        vector = first.get("embedding") if isinstance(first, dict) else None
        if not isinstance(vector, list) or not vector:
            raise _schema("embed-v2 answered without data[0].embedding")
        try:
            array = np.asarray(vector, dtype="<f4")
        except (TypeError, ValueError):
            raise _schema("embed-v2's embedding is not a list of numbers") from None
        await self._cache_put(
            cache_key, array.tobytes(), self._settings.v13_text_embedding_ttl, origin
        )
        return array

    async def _videos(
        self, request: pb.ClassifyRequest, question: Query, call: CallContext, wires: Provenances
    ) -> AsyncIterator[tuple[int, VideoVectors]]:
        """(position, vectors) of each video to score, fetched a few at a time, in order."""
        options = question.embedding_options
        if request.index_id:
            located: AsyncIterator[tuple[str, str]] = self._index_videos(
                request.index_id, call, wires
            )
        else:
            located = self._locate(list(request.video_ids), call, wires)
        fetch = self._video if request.index_id else self._video_anywhere
        window = self._settings.v13_fetch_concurrency
        pending: list[asyncio.Task[VideoVectors]] = []
        order = 0
        try:
            async for index_id, video_id in located:
                pending.append(
                    asyncio.ensure_future(fetch(index_id, video_id, options, call, wires))
                )
                if len(pending) >= window:
                    yield order, await pending.pop(0)
                    order += 1
            while pending:
                yield order, await pending.pop(0)
                order += 1
        finally:
            for task in pending:
                task.cancel()

    async def _video(
        self,
        index_id: str,
        video_id: str,
        options: Sequence[str],
        call: CallContext,
        wires: Provenances,
    ) -> VideoVectors:
        cache_key = (
            f"v13:segments:{api_key_hash(call.api_key)}:{index_id}:{video_id}:{','.join(options)}"
        )
        cached = await self._cache_get(cache_key, wires)
        if cached is not None:
            return unpack_video(video_id, cached)
        query = "&".join(f"embedding_option={o}" for o in options)
        path = f"/indexes/{quote(index_id, safe='')}/videos/{quote(video_id, safe='')}?{query}"
        body, origin = await self._call("GET", path, None, call, VIDEOS, wires)
        answered = body.get("_id") if isinstance(body, dict) else None
        if answered is not None and answered != video_id:
            # Another video's vectors (a late answer read as this one's) must never be
            # cached under this id.
            raise _schema(f"asked for video {video_id}, the answer is video {answered}")
        video = VideoVectors(video_id, _duration_of(body), _segments_of(body, options))
        await self._cache_put(
            cache_key, pack_video(video, options), self._settings.v13_segment_ttl, origin
        )
        return video

    async def _video_anywhere(
        self,
        index_id: str,
        video_id: str,
        options: Sequence[str],
        call: CallContext,
        wires: Provenances,
    ) -> VideoVectors:
        """`_video` for a `video_ids` request: where the directory said, and when the
        upstream no longer has it there (moved to another index since the directory
        learnt it), where the upstream's listings say now, once. Without this a moved
        video was NOT_FOUND on every replica until a no-cache call or the entry's TTL."""
        try:
            return await self._video(index_id, video_id, options, call, wires)
        except GatewayError as err:
            if err.reason != "RESOURCE_NOT_EXIST" or call.no_cache:
                raise  # a no-cache call located it from the listings just now
        fresh = dataclasses.replace(call, no_cache=True)
        async for now_in, _ in self._locate([video_id], fresh, wires):
            return await self._video(now_in, video_id, options, call, wires)
        raise AssertionError("_locate yields every id it was given or raises")

    async def _index_videos(
        self, index_id: str, call: CallContext, wires: Provenances
    ) -> AsyncIterator[tuple[str, str]]:
        """Every video id of an index, one listing page at a time."""
        path = f"/indexes/{quote(index_id, safe='')}/videos"
        async for video_id in self._listing(path, call, wires):
            yield index_id, video_id

    async def _listing(
        self, path: str, call: CallContext, wires: Provenances
    ) -> AsyncIterator[str]:
        """The `_id`s of a v1.3 page-number listing, until an empty or the last page.

        Each listing page is cached (ids only) for V13_SEGMENT_TTL, like the segments it
        leads to: a repeat of a question walks the index without an upstream request."""
        kh = api_key_hash(call.api_key)
        for page in range(1, MAX_INDEX_PAGES + 1):
            ids, last = await self._listing_page(path, page, call, kh, wires)
            for item_id in ids:
                yield item_id
            if last:
                return
        raise _schema(f"{path} never reached its last page")

    async def _listing_page(
        self, path: str, page: int, call: CallContext, kh: str, wires: Provenances
    ) -> tuple[list[str], bool]:
        """One listing page: cached, unless the call says `no-cache` (an index's videos
        change; a call made after changing them must see the change), in which case it is
        read from the upstream and the cache refreshed with it for the calls after."""
        cache_key = f"v13:list:{kh}:{path}:{page}"
        cached = None if call.no_cache else await self._cache_get(cache_key, wires, fact=True)
        if cached is not None:
            ids, last = orjson.loads(cached)
            return list(ids), bool(last)
        body, origin = await self._call(
            "GET", f"{path}?page={page}&page_limit={VIDEOS_PAGE_LIMIT}", None, call, VIDEOS, wires
        )
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise _schema(f"{path} answered without a data list")
        found: list[str] = []
        for item in data:
            item_id = item.get("_id") if isinstance(item, dict) else None
            if not isinstance(item_id, str) or not item_id:
                raise _schema(f"an item of {path} has no _id")
            found.append(item_id)
        info = body.get("page_info") if isinstance(body, dict) else None
        total = info.get("total_page") if isinstance(info, dict) else None
        last = not data or (isinstance(total, int) and page >= total)
        await self._cache_put(
            cache_key, orjson.dumps([found, last]), self._settings.v13_segment_ttl, origin
        )
        return found, last

    async def _locate(
        self, video_ids: list[str], call: CallContext, wires: Provenances
    ) -> AsyncIterator[tuple[str, str]]:
        """(index, video) for each requested id, in request order.

        v1.3 names a video only within its index, and classify's `video_ids` carry no
        index: the key's indexes are listed (once per segment TTL; the directory is
        cached) until every id is found. An id in none of them is NOT_FOUND. A `no-cache`
        call reads no directory entry and no cached listing: it finds every id from the
        upstream's listings now, and leaves the directory as it found it (an id found
        nowhere loses its entry), for the calls after it too.
        """
        kh = api_key_hash(call.api_key)
        where: dict[str, str] = {}
        missing: set[str] = set()
        unique = list(dict.fromkeys(video_ids))
        if call.no_cache:
            known: list[bytes | None] = [None] * len(unique)
        else:
            # At once: with Redis each is a round trip (facts are read there every time).
            known = await asyncio.gather(
                *(self._cache_get(f"v13:where:{kh}:{v}", wires, fact=True) for v in unique)
            )
        for video_id, found in zip(unique, known, strict=True):
            if found is not None:
                where[video_id] = found.decode()
            else:
                missing.add(video_id)
        if missing:
            async for index_id in self._listing("/indexes", call, wires):
                async for _, video_id in self._index_videos(index_id, call, wires):
                    if video_id in missing:
                        missing.discard(video_id)
                        where[video_id] = index_id
                        # Learnt from the listings this run fetched or read: as
                        # trustworthy as all of them (a suspect one poisons it too).
                        await self._cache_put(
                            f"v13:where:{kh}:{video_id}",
                            index_id.encode(),
                            self._settings.v13_segment_ttl,
                            wires,
                        )
                if not missing:
                    break
        if missing:
            if call.no_cache:
                for video_id in missing:  # where it was is no longer true
                    await self._cache_drop(f"v13:where:{kh}:{video_id}")
            first = sorted(missing)[0]
            raise own_error(
                "RESOURCE_NOT_EXIST",
                f"video {first} is in none of this API key's indexes"
                + (f" ({len(missing)} video ids in all)" if len(missing) > 1 else ""),
            ).replace(resource=("videos", first), violations=(("video_ids", "unknown video id"),))
        for video_id in video_ids:
            yield where[video_id], video_id

    # -- caches --------------------------------------------------------------------------

    async def _cache_get(
        self, key: str, wires: Provenances | None = None, *, fact: bool = False
    ) -> bytes | None:
        """A cached value; the connections it was fetched on (when this process fetched
        it) join `wires`. One whose connection turned suspect is dropped, not served.

        `fact`: a value that changes upstream (an index listing, the index a video is
        in), which a `no-cache` call on any replica may refresh: with a shared state it
        is read there every time, so that this replica sees another's refresh at once
        (the local tier then only says which connection the value came on)."""
        now = time.monotonic()
        if fact and self._shared is not None:
            return await self._shared_fact(key, wires, now)
        local = self._local.get(key, now)
        if local is not None:
            value, origin = local
            if origin is None:
                return value
            if origin.unsolicited():
                self._forget(key)
                return None
            if wires is not None:
                wires.include(origin)
            return value
        if self._shared is None:
            return None
        shared = await self._shared.get(key)
        if shared is not None:
            # Kept locally for a short while; the shared entry's TTL still rules. Its
            # origin is the replica that fetched it, which deletes it when it turns
            # suspect (`_cache_put`).
            self._local.put(key, shared, now + 60.0)
        return shared

    async def _shared_fact(self, key: str, wires: Provenances | None, now: float) -> bytes | None:
        assert self._shared is not None
        value = await self._shared.get(key)
        local = self._local.get(key, now)
        if value is None or local is None or local[0] != value or local[1] is None:
            return value  # fetched by another replica (or its local copy is stale)
        origin = local[1]
        if origin.unsolicited():
            self._forget(key)
            return None
        if wires is not None:
            wires.include(origin)
        return value

    async def _cache_drop(self, key: str) -> None:
        self._local.drop(key)
        if self._shared is not None:
            await self._shared.delete(key)

    async def _cache_put(
        self, key: str, value: bytes, ttl: float, origin: Provenances | None = None
    ) -> None:
        """Keep a value for `ttl` seconds, unless the connection it came on (`origin`)
        already carried unsolicited bytes; when it does later, the value is deleted here
        and from the shared state, so that no replica computes a page from it again
        (issue 25 item 3: a late extra answer read as this one's)."""
        if origin is not None and origin.unsolicited():
            return
        self._local.put(key, value, time.monotonic() + ttl, origin)
        if self._shared is not None:
            await self._shared.set(key, value, ttl)
        if origin is not None:
            origin.watch(functools.partial(self._forget, key))

    def _forget(self, key: str) -> None:
        """Drop a cached value that turned suspect, here and in the shared state (called
        by the transport, sync)."""
        self._local.drop(key)
        if self._shared is not None:
            self._shared.delete_soon(key)

    # -- one request, with retries (backends/exchange.py, as the v1.2 client) ----------

    async def _call(
        self,
        method: str,
        path: str,
        content: bytes | None,
        call: CallContext,
        category: str,
        wires: Provenances,
    ) -> tuple[Any, Provenances]:
        """Parsed JSON of a 2xx answer, after the retries the error table allows, and the
        connection it came on (also added to `wires`, the whole run's)."""
        origin = Provenances()
        body = await self._exchange.call(
            method,
            _route(method, path),
            path,
            content,
            _headers(call, content is not None),
            call,
            first_page=False,
            wires=origin,
            endpoint=category,
        )
        wires.include(origin)
        return body, origin


def _headers(call: CallContext, json_body: bool) -> httpx.Headers:
    headers = [*DEFAULT_HEADERS, ("x-api-key", call.api_key), *call.trace.items()]
    if json_body:
        headers.append(("content-type", "application/json"))
    return httpx.Headers(headers)


def _route(method: str, path: str) -> str:
    """A path template for metrics: never an id."""
    bare = path.partition("?")[0]
    if bare == "/embed-v2":
        return "POST /embed-v2"
    if bare == "/indexes":
        return "GET /indexes"
    if bare.endswith("/videos"):
        return "GET /indexes/{index_id}/videos"
    return "GET /indexes/{index_id}/videos/{video_id}"
