"""v1.3 search: rank clips by the cosine of the query's embedding, pages behind tokens.

What Marengo 3.0 search returns is a ranked list of clips (`rank` 1 = most
relevant, no score), optionally grouped by video, paged through short-lived
tokens. The emulator ranks with the same vectors it serves (`embeddings`), so a
client that computes cosines itself and one that searches see one consistent
world. Choices where upstream is silent (docs/emulator.md, "v1.3"):

* a clip is one shot, caption or spoken line of the corpus (the embedding
  segments cut from it, up to 10 s each, merged back) whose best cosine with
  the query reaches `MIN_COSINE` (upstream dropped its `threshold` parameter
  but does not return every segment of an index either);
* with several options, `or` keeps every option's clips and `and` keeps the
  videos that have a clip in every option;
* `total_results` counts what is paged (clips, or videos when grouped), and
  `total_inner_matches` the clips of a grouped result;
* all tokens of a result expire together, `page_ttl_seconds` after the POST,
  and an unknown or expired one is `400 search_page_token_expired`.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from classify_emulator.api_errors import ApiError
from classify_emulator.corpus import Corpus, thumbnail_url
from classify_emulator.embeddings import EmbeddingSpace, Vector
from classify_emulator.pages import rfc3339

MIN_COSINE = 0.2  # between unrelated (below ~0.15) and partly relevant segments
MAX_RESULTS = 10_000  # stored results; the oldest go first


def page_token_expired(token: str) -> ApiError:
    return ApiError(
        400,
        "search_page_token_expired",
        "The token that identifies the page to be retrieved is expired or invalid. "
        f"You must make a new search request. Token: {token}.",
    )


@dataclass(frozen=True, slots=True)
class Clip:
    video_id: str
    start: float
    end: float
    cosine: float
    option: str
    transcription: str | None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    index_id: str
    vector: Vector
    options: tuple[str, ...]
    operator: str  # "or" | "and"
    group_by: str  # "clip" | "video"
    page_limit: int
    video_ids: tuple[str, ...]  # after the filter, in index order
    thumbnails: bool


def _clips(
    space: EmbeddingSpace, corpus: Corpus, video_id: str, option: str, q: Vector
) -> list[Clip]:
    """Matching corpus segments (the pieces of one shot or line), each with its best cosine."""
    emb = space.video(video_id).options[option]
    if not emb.starts:
        return []
    best: dict[int, float] = {}
    spans: dict[int, tuple[float, float]] = {}
    for i, cosine in enumerate((emb.matrix @ q).tolist()):
        origin = emb.sources[i]
        start, end = spans.get(origin, (emb.starts[i], emb.ends[i]))
        spans[origin] = (min(start, emb.starts[i]), max(end, emb.ends[i]))
        best[origin] = max(best.get(origin, -1.0), cosine)
    # The transcription option has one source, conversation: origin n is line n.
    lines = corpus.videos[video_id].segments["conversation"] if option == "transcription" else ()
    return [
        Clip(
            video_id,
            spans[origin][0],
            spans[origin][1],
            cosine,
            option,
            lines[origin].text if lines else None,
        )
        for origin, cosine in best.items()
        if cosine >= MIN_COSINE
    ]


def run_search(space: EmbeddingSpace, corpus: Corpus, query: SearchQuery) -> list[dict[str, Any]]:
    """Every result item of a search, ranked, as JSON-ready dicts (all pages)."""
    clips: list[Clip] = []
    for video_id in query.video_ids:
        per_option = [_clips(space, corpus, video_id, o, query.vector) for o in query.options]
        if query.operator == "and" and not all(per_option):
            continue
        for found in per_option:
            clips.extend(found)
    order = {v: n for n, v in enumerate(query.video_ids)}
    clips.sort(key=lambda c: (-c.cosine, order[c.video_id], c.start))
    items = [_clip_item(c, rank, query.thumbnails) for rank, c in enumerate(clips, start=1)]
    if query.group_by == "clip":
        return items
    grouped: dict[str, list[dict[str, Any]]] = {}
    for item in items:  # best clip first, so videos come out in rank order
        grouped.setdefault(item["video_id"], []).append(item)
    return [
        {"id": video_id, "rank": rank, "clips": video_clips}
        for rank, (video_id, video_clips) in enumerate(grouped.items(), start=1)
    ]


def _clip_item(clip: Clip, rank: int, thumbnails: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "start": round(clip.start, 3),
        "end": round(clip.end, 3),
        "video_id": clip.video_id,
        "rank": rank,
    }
    if thumbnails:
        item["thumbnail_url"] = thumbnail_url(clip.video_id, clip.start)
    if clip.transcription:
        item["transcription"] = clip.transcription
    return item


@dataclass(eq=False, slots=True)
class SearchResult:
    items: list[dict[str, Any]]
    page_limit: int
    grouped: bool
    pool: dict[str, Any]
    tokens: list[str]
    expires_at: float
    bodies: dict[tuple[int, bool], bytes] = field(default_factory=dict)

    def body(self, page: int, *, with_prev: bool) -> bytes:
        key = (page, with_prev)
        cached = self.bodies.get(key)
        if cached is not None:
            return cached
        limit = self.page_limit
        page_info: dict[str, Any] = {
            "limit_per_page": limit,
            "total_results": len(self.items),
            "page_expires_at": rfc3339(self.expires_at),
        }
        if self.grouped:
            page_info["total_inner_matches"] = sum(len(i["clips"]) for i in self.items)
        if page + 1 < len(self.tokens):
            page_info["next_page_token"] = self.tokens[page + 1]
        if with_prev and page > 0:
            page_info["prev_page_token"] = self.tokens[page - 1]
        body = orjson.dumps(
            {
                "data": self.items[page * limit : (page + 1) * limit],
                "page_info": page_info,
                "search_pool": self.pool,
            }
        )
        self.bodies[key] = body
        return body


class SearchStore:
    """Search results behind page tokens (a token per page, all expiring together)."""

    def __init__(self, max_results: int = MAX_RESULTS) -> None:
        self._by_token: dict[str, tuple[SearchResult, int]] = {}
        self._results: list[SearchResult] = []  # oldest first
        self._max_results = max_results
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._by_token.clear()
            self._results.clear()

    def create(
        self,
        items: list[dict[str, Any]],
        page_limit: int,
        grouped: bool,
        pool: dict[str, Any],
        ttl: float,
        now: float | None = None,
    ) -> bytes:
        """Store a result; the body of its first page (which has no `prev_page_token`)."""
        now = time.time() if now is None else now
        pages = max(1, math.ceil(len(items) / page_limit))
        result = SearchResult(
            items=items,
            page_limit=page_limit,
            grouped=grouped,
            pool=pool,
            tokens=[f"{secrets.token_hex(4)}-{secrets.token_hex(12)}" for _ in range(pages)],
            expires_at=now + ttl,
        )
        with self._lock:
            self._evict(now)
            while len(self._results) >= self._max_results:
                self._drop(self._results.pop(0))
            self._results.append(result)
            for page, token in enumerate(result.tokens):
                self._by_token[token] = (result, page)
        return result.body(0, with_prev=False)

    def page(self, token: str, now: float | None = None) -> bytes:
        now = time.time() if now is None else now
        with self._lock:
            entry = self._by_token.get(token)
            if entry is None or entry[0].expires_at <= now:
                raise page_token_expired(token)
        result, page = entry
        return result.body(page, with_prev=True)

    def _evict(self, now: float) -> None:
        keep: list[SearchResult] = []
        for result in self._results:
            if result.expires_at <= now:
                self._drop(result)
            else:
                keep.append(result)
        self._results = keep

    def _drop(self, result: SearchResult) -> None:
        for token in result.tokens:
            self._by_token.pop(token, None)
