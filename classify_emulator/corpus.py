"""The emulator's videos and indexes, loaded once and analysed for scoring.

State is kept apart from HTTP (moto's lesson): routes read this model, and the
model knows nothing about requests. Everything the scorer needs per segment
(feature sets, trigrams, a thumbnail URL) is computed here at load, so a
classification request only analyses its prompts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from classify_emulator.textsim import TextFeatures, VideoContext

SOURCES: tuple[str, ...] = ("visual", "conversation", "text_in_video")
DEFAULT_CORPUS_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    analysed: TextFeatures
    salt: int  # per-segment seed for the score jitter
    thumbnail_url: str


@dataclass(frozen=True, slots=True)
class Video:
    id: str
    index_id: str
    duration: float
    segments: dict[str, tuple[Segment, ...]]
    context: VideoContext  # what the title and filename say
    resource: dict[str, Any]  # the v1.2 video object, as listed by GET .../videos


@dataclass(frozen=True, slots=True)
class Index:
    id: str
    video_ids: tuple[str, ...]
    resource: dict[str, Any]  # the v1.2 index object


def thumbnail_url(video_id: str, start: float) -> str:
    """A URL shaped like upstream's presigned S3 thumbnail links (never fetched).

    Upstream names the file after the second following the clip start
    (start 224 -> 225.jpeg, 153.9375 -> 154.jpeg), so the emulator does too.
    """
    second = int(start) + 1
    signature = hashlib.sha256(f"{video_id}/{second}".encode()).hexdigest()
    return (
        f"https://thumbnails.emulator.local/{video_id}/{second}.jpeg"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20240601T000000Z"
        f"&X-Amz-Expires=604799&X-Amz-SignedHeaders=host&x-id=GetObject&X-Amz-Signature={signature}"
    )


class Corpus:
    """Indexes and videos by id, every text analysed for scoring."""

    def __init__(self, indexes: list[dict[str, Any]], videos: list[dict[str, Any]]) -> None:
        self.videos: dict[str, Video] = {}
        members: dict[str, list[str]] = {str(ix["_id"]): [] for ix in indexes}
        for raw in videos:
            video = self._video(raw)
            if video.index_id not in members:
                raise ValueError(f"video {video.id} names unknown index {video.index_id}")
            if video.id in self.videos:
                raise ValueError(f"duplicate video id {video.id}")
            self.videos[video.id] = video
            members[video.index_id].append(video.id)
        self.indexes: dict[str, Index] = {}
        for raw in indexes:
            index_id = str(raw["_id"])
            ids = tuple(members[index_id])
            resource = dict(raw)
            resource["video_count"] = len(ids)
            resource["total_duration"] = round(sum(self.videos[v].duration for v in ids), 3)
            self.indexes[index_id] = Index(index_id, ids, resource)

    def with_video_in(self, video_id: str, index_id: str) -> Corpus:
        """This corpus with `video_id` moved into `index_id` (the last it holds), out of
        the index it was in: a video added to one index and removed from another, as a
        user's upload or delete changes an index upstream (admin `PUT .../index`).

        A new Corpus sharing every unchanged object: the loaded one is cached per process
        and shared by every emulator app in it, so it is never changed in place. A
        video's content (segments, what scoring reads) is the same wherever it is."""
        video = self.videos[video_id]
        if index_id not in self.indexes:
            raise KeyError(index_id)
        moved = dataclasses.replace(video, index_id=index_id)
        out = Corpus.__new__(Corpus)
        out.videos = {**self.videos, video_id: moved}
        out.indexes = dict(self.indexes)
        for changed in {video.index_id, index_id}:
            ids = [v for v in self.indexes[changed].video_ids if v != video_id]
            if changed == index_id:
                ids.append(video_id)
            resource = dict(self.indexes[changed].resource)
            resource["video_count"] = len(ids)
            resource["total_duration"] = round(sum(out.videos[v].duration for v in ids), 3)
            out.indexes[changed] = Index(changed, tuple(ids), resource)
        return out

    @staticmethod
    def _video(raw: dict[str, Any]) -> Video:
        video_id = str(raw["_id"])
        metadata = raw["metadata"]
        duration = float(metadata["duration"])
        items: dict[str, list[tuple[float, float, str, TextFeatures]]] = {}
        for source in SOURCES:
            items[source] = [
                (
                    float(item["start"]),
                    float(item["end"]),
                    str(item["text"]),
                    TextFeatures.of(str(item["text"])),
                )
                for item in raw.get("segments", {}).get(source, [])
            ]
        context = VideoContext.of(
            (str(metadata.get("video_title", "")), str(metadata.get("filename", ""))),
            ((end - start, analysed) for start, end, _, analysed in items["visual"]),
            (analysed for source in SOURCES for _, _, _, analysed in items[source]),
        )
        segments = {
            source: tuple(
                Segment(
                    start=start,
                    end=end,
                    text=text,
                    analysed=analysed,
                    salt=zlib.crc32(f"{video_id}:{source}:{n}".encode()),
                    thumbnail_url=thumbnail_url(video_id, start),
                )
                for n, (start, end, text, analysed) in enumerate(entries)
            )
            for source, entries in items.items()
        }
        resource = {k: v for k, v in raw.items() if k not in ("segments", "index_id")}
        return Video(
            id=video_id,
            index_id=str(raw["index_id"]),
            duration=duration,
            segments=segments,
            context=context,
            resource=resource,
        )

    @classmethod
    def load(cls, directory: Path | None = None) -> Corpus:
        """Load `indexes.json` and `videos.json` from a corpus directory."""
        base = directory or DEFAULT_CORPUS_DIR
        indexes = orjson.loads((base / "indexes.json").read_bytes())
        videos = orjson.loads((base / "videos.json").read_bytes())
        return cls(indexes, videos)
