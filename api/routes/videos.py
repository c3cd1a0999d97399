"""/v1/videos: upload, list, status, delete, summary, segments and captions."""

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse

from api.captions import render
from api.errors import ApiError
from api.deps import SessionDep, SettingsDep, TenantDep, VideoDep
from api.pages import DEFAULT_LIMIT, Limit, PageToken, page_of, read_token
from api.schemas import Kinds, Seconds, SegmentPage, SummaryOut, VideoOut, VideoPage, errors
from api.upload import UploadDep
from api.video_view import video_out, videos_out
from core.config import Settings
from core.errors import BadInput
from core.times import check_range, to_ms
from store import queries
from store import webhooks as webhook_rows
from store.db import session_scope
from store.schema import FAILED
from store.serialize import segment_json

SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
CAPTION_TYPES = {"vtt": "text/vtt", "srt": "application/x-subrip", "json": "application/json"}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "the video"},
        "webhook_url": {"type": "string", "format": "uri", "pattern": "^https?://",
                        "maxLength": 2048, "description":
                        "POSTed on ready/failed, signed with HMAC-SHA256 "
                        "(Chronoscope-Signature header)"}}}}}}}

router = APIRouter(prefix="/v1/videos", tags=["videos"])


def _webhook_url(raw: str | None, allowed_hosts: str, *, allow_private: bool) -> str | None:
    if raw is None or not raw.strip():
        return None
    if not raw.strip().isprintable():
        raise BadInput("webhook_url has control characters")
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput("webhook_url must be an absolute http or https URL")
    allowed = {h.strip().lower() for h in allowed_hosts.split(",") if h.strip()}
    if allowed and (parts.hostname or "").lower() not in allowed:
        raise BadInput(f"webhook_url host {parts.hostname!r} is not allowed here; allowed: "
                       f"{', '.join(sorted(allowed))}")
    # Private, loopback, link-local and metadata targets are refused here (400) and again
    # at send time, where DNS may answer otherwise.
    from workers import egress
    try:
        egress.check(raw.strip(), allow_private=allow_private)
    except BadInput as e:
        raise ApiError(400, "webhook_refused", str(e)) from None
    return raw.strip()


def _submit(request: Request, settings: Settings, video_id: str) -> None:
    """Index in the background: on the workers with a broker, else in this process."""
    if settings.broker_url:
        from workers import broker, flow
        flow.send(broker.producer(settings.broker_url), flow.Unit(flow.PLAN, video_id))
    else:
        request.app.state.runner.submit(video_id)


def _store_upload(settings: Settings, upload, tenant: str) -> Path:
    """Move the upload into place. One file per tenant and content: a tenant deleting its
    copy never breaks another's."""
    suffix = Path(upload.filename).suffix.lower()
    dest = settings.media_dir / tenant / (
        upload.sha256 + (suffix if SUFFIX.fullmatch(suffix) else ""))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        os.replace(upload.path, dest)
    return dest


@router.post("", response_model=VideoOut, status_code=202, openapi_extra=UPLOAD_BODY,
             responses={200: {"model": VideoOut, "description": "this tenant already has "
                              "the same content: the existing video"},
                        **errors(400, 401, 413, 415, 422)})
def upload_video(upload: UploadDep, tenant: TenantDep, settings: SettingsDep,
                 response: Response, request: Request) -> dict:
    """Upload a video (multipart, streamed to disk). It is indexed in the background:
    poll GET /v1/videos/{id} or pass a webhook_url."""
    from indexer import pipeline
    from indexer.probe import check_file, probe
    # allow_private from the settings the workers send with, so what is accepted here is
    # what they will call.
    webhook = _webhook_url(upload.fields.get("webhook_url"),
                           request.app.state.api_settings.webhook_hosts,
                           allow_private=settings.api.webhook_allow_private)
    request.app.state.metrics.upload_bytes.inc(upload.size)
    try:
        check_file(upload.path)              # empty: its own message
        probe(upload.path, settings.decode)  # refuse what can never be indexed, right away
    except BadInput as e:
        raise type(e)(str(e).replace(upload.path.name, upload.filename)) from None
    dest = _store_upload(settings, upload, tenant)
    with session_scope(settings) as s:
        before = queries.find_video_by_sha256(s, sha256=upload.sha256, tenant=tenant)
        before_status = before.status if before else None
    video_id = pipeline.add_video(settings, dest, tenant=tenant, filename=upload.filename,
                                  sha256=upload.sha256)
    if webhook:
        with session_scope(settings) as s:
            webhook_rows.set_webhook(s, video_id=video_id, url=webhook)
    if before_status in (None, FAILED):
        _submit(request, settings, video_id)     # new, or failed before and queued again
    else:
        response.status_code = 200
    response.headers["Location"] = f"/v1/videos/{video_id}"
    with session_scope(settings) as s:
        return video_out(request, s, queries.get_video(s, video_id))


@router.get("", response_model=VideoPage, responses=errors(400, 401, 422))
def list_videos(tenant: TenantDep, session: SessionDep, request: Request,
                limit: Limit = DEFAULT_LIMIT, page_token: PageToken = None,
                active: Annotated[bool, Query(description="only videos not done yet: queued, "
                                              "indexing or interrupted")] = False) -> dict:
    """The tenant's videos, oldest first, a page at a time."""
    after = read_token(request, "videos", tenant, page_token)
    rows = queries.list_videos(session, tenant=tenant, limit=limit + 1, after=(
        datetime.fromisoformat(after[0]), after[1]) if after else None, active=active)
    rows, token = page_of(request, "videos", tenant, rows, limit,
                          lambda v: [v.created_at.isoformat(), v.id])
    return {"videos": videos_out(request, session, rows), "next_page_token": token}


@router.get("/{video_id}", response_model=VideoOut, responses=errors(401, 404))
def get_video(video: VideoDep, session: SessionDep, request: Request) -> dict:
    """Status, progress (seconds indexed, stage, percent of the duration), ETA, signals,
    error and notes."""
    return video_out(request, session, video)


@router.delete("/{video_id}", status_code=204, responses=errors(401, 404))
def delete_video(video: VideoDep, tenant: TenantDep, settings: SettingsDep) -> Response:
    """Delete the video: its rows, its vectors and its uploaded file."""
    from indexer import pipeline
    pipeline.delete_video(settings, video.id, tenant=tenant)
    return Response(status_code=204)


@router.get("/{video_id}/summary", response_model=SummaryOut, responses=errors(401, 404))
def summary(video: VideoDep, tenant: TenantDep, settings: SettingsDep) -> dict:
    """The summary and chapters (empty until the video is ready)."""
    from search import chapters
    return chapters.get_summary(settings, video.id, tenant=tenant)


@router.get("/{video_id}/segments", response_model=SegmentPage,
            responses=errors(400, 401, 404, 422))
def segments(video: VideoDep, session: SessionDep, request: Request, start: Seconds = None,
             end: Seconds = None, kind: Kinds = None, limit: Limit = DEFAULT_LIMIT,
             page_token: PageToken = None) -> dict:
    """Segments that overlap [start, end), in time order, a page at a time."""
    check_range(to_ms(start), to_ms(end))
    scope = f"{video.tenant}/{video.id}"
    after = read_token(request, "segments", scope, page_token)
    rows = queries.get_segments(session, video_id=video.id, start_ms=to_ms(start),
                                end_ms=to_ms(end), kinds=kind, limit=limit + 1,
                                after=tuple(after) if after else None)
    rows, token = page_of(request, "segments", scope, rows, limit,
                          lambda r: [r.start_ms, r.end_ms, r.kind, r.id])
    return {"segments": [segment_json(r) for r in rows], "next_page_token": token}


@router.get("/{video_id}/captions.{fmt}", response_class=PlainTextResponse, responses={
    200: {"content": {t: {} for t in CAPTION_TYPES.values()},
          "description": "WebVTT, SRT or JSON captions"},
    **errors(401, 404, 422)})
def captions(video: VideoDep, session: SessionDep, fmt: Literal["vtt", "srt", "json"],
             kind: Kinds = None) -> Response:
    """Captions as WebVTT, SRT or JSON."""
    body = render(fmt, video, queries.get_segments(session, video_id=video.id, kinds=kind))
    charset = "" if fmt == "json" else "; charset=utf-8"
    return Response(body, media_type=CAPTION_TYPES[fmt] + charset)
