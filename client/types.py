"""The JSON shapes the chronoscope API answers with, as TypedDicts: what a type checker and an
editor know of each. Times are seconds; ids are strings. Fields the server adds later come
through too (a TypedDict does not drop them)."""

from pathlib import Path
from typing import Literal, TypedDict

Kind = Literal["speech", "screen_text", "visual"]
Status = Literal["queued", "processing", "interrupted", "ready", "failed"]
Stage = Literal["decode", "speech", "text", "visual", "captions", "finalize"]


class Signal(TypedDict):
    signal: str
    model: str
    chunks: int


class Video(TypedDict):
    id: str
    tenant: str
    filename: str
    status: Status
    error: str | None
    notes: list[str]
    duration: float | None
    progress: float
    progress_s: float
    stage: Stage | None
    eta_s: float | None
    chunks_done: int
    chunks_total: int
    signals: list[Signal]
    width: int | None
    height: int | None
    has_audio: bool | None
    size_bytes: int
    created_at: str | None
    media_url: str
    playback_url: str


class Segment(TypedDict):
    id: int
    start: float
    end: float
    kind: str
    text: str
    model: str


class MomentSegment(TypedDict):
    id: int
    start: float
    end: float
    kind: str
    text: str
    score: float


class Moment(TypedDict):
    video_id: str
    filename: str
    start: float
    end: float
    score: float
    weak: bool
    kinds: list[str]
    thumbnail: str | None
    text: str
    segments: list[MomentSegment]


class Chapter(TypedDict):
    start: float
    end: float
    title: str
    summary: str
    thumbnail: str | None


class Summary(TypedDict):
    video_id: str
    summary: str | None
    model: str | None
    chapters: list[Chapter]


class VideoPage(TypedDict):
    videos: list[Video]
    next_page_token: str | None


class SegmentPage(TypedDict):
    segments: list[Segment]
    next_page_token: str | None


class SearchPage(TypedDict):
    query: str
    moments: list[Moment]
    next_page_token: str | None


class ClipFile(TypedDict):
    path: Path
    start: float        # the first frame's time, seconds
    mode: str           # copy, smart or encode


class Health(TypedDict):
    status: Literal["ok", "degraded"]
    database: str
    broker: str
