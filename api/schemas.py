"""Request parameters and response shapes of the HTTP API (they make the OpenAPI document)."""

from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from core.types import KINDS

Kind = Literal["speech", "screen_text", "visual"]
assert set(Kind.__args__) == set(KINDS)

Seconds = Annotated[float | None, Query(ge=0, le=10_000_000, description="seconds")]
Kinds = Annotated[list[Kind] | None, Query(description="speech, screen_text, visual")]


class SignalOut(BaseModel):
    signal: str
    model: str
    chunks: int


class VideoOut(BaseModel):
    id: str
    tenant: str
    filename: str
    status: Literal["queued", "processing", "interrupted", "ready", "failed"]
    error: str | None
    notes: list[str]
    duration: float | None
    progress: float                # percent of the duration, as progress_s
    progress_s: float              # seconds of the video indexed so far
    stage: Literal["decode", "speech", "text", "visual", "captions", "finalize"] | None
    eta_s: float | None            # from seconds indexed per second since the plan began
    chunks_done: int
    chunks_total: int
    signals: list[SignalOut]
    width: int | None
    height: int | None
    has_audio: bool | None
    size_bytes: int
    created_at: str | None
    media_url: str
    playback_url: str = Field(description="signed URL of what a browser can play: the "
                              "H.264/AAC preview made at index time when the original cannot "
                              "play (AVI, MPEG-4 part 2...), otherwise the same as media_url")


class MomentSegmentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    start: float
    end: float
    kind: str
    text: str
    score: float


class MomentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    video_id: str
    filename: str
    start: float
    end: float
    score: float
    weak: bool
    kinds: list[str]
    thumbnail: str | None = None      # the keyframe's JPEG, under /v1/videos/{id}/thumbnails
    text: str
    segments: list[MomentSegmentOut]


class SearchOut(BaseModel):
    query: str
    moments: list[MomentOut]
    next_page_token: str | None


class VideoPage(BaseModel):
    videos: list[VideoOut]
    next_page_token: str | None


class SegmentOut(BaseModel):
    id: int
    start: float
    end: float
    kind: str
    text: str
    model: str


class SegmentPage(BaseModel):
    segments: list[SegmentOut]
    next_page_token: str | None


class ChapterOut(BaseModel):
    start: float
    end: float
    title: str
    summary: str
    thumbnail: str | None = None      # the keyframe it opens on, under /v1/videos/{id}/thumbnails


class SummaryOut(BaseModel):
    video_id: str
    summary: str | None
    model: str | None
    chapters: list[ChapterOut]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    broker: str


class ErrorDetail(BaseModel):
    where: str
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="stable, snake_case: not_found, unauthorized, "
                      "validation_error, payload_too_large, unavailable, ...")
    message: str
    details: list[ErrorDetail] | None = Field(None, description="validation errors: each "
                                              "parameter at fault")


class ErrorOut(BaseModel):
    error: ErrorBody


def errors(*codes: int) -> dict:
    """The documented error answers of a route (api.errors.document makes every one JSON)."""
    text = {400: "refused input: a malformed multipart body, a webhook_url that may not be "
                 "called, a page_token that is not this list's (invalid_page_token), a "
                 "malformed Range",
            401: "no or bad API key", 404: "no such video for this tenant",
            413: "the file is over the upload limit", 415: "not a multipart upload",
            416: "range not satisfiable",
            422: "bad input", 503: "a dependency is unavailable; retry later"}
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}
