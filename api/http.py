"""The HTTP service: the API under /v1, /healthz, Prometheus /metrics, the OpenAPI document
(/openapi.json, /docs) and the web page at /.

Every /v1 request carries an API key, and a key belongs to a tenant: another tenant's video
is a 404, never a 403, so ids cannot be probed. Indexing goes to Celery when a broker is
configured; without one (the embedded default) the same steps run in a background thread of
this process. HTTP status codes are chosen here and nowhere below.
"""

import logging
import mimetypes
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import func, select, text

from api.captions import render
from api.deps import (VIDEO_ID, ApiSettings, MediaVideoDep, SessionDep, TenantDep, UploadDep,
                      VideoDep, media_token, server_secret)
from core.config import Settings, get_settings
from core.errors import BadInput, ModelUnavailable, NotFound, TransientError
from core.types import KINDS
from store import queries
from store.db import get_engine, session_scope
from store.serialize import segment_json, video_json
from store.schema import FAILED, PROCESSING, QUEUED, ChunkRun, Video, Webhook

log = logging.getLogger(__name__)
WEB = Path(__file__).resolve().parent / "web"
SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")

Kind = Literal["speech", "screen_text", "visual"]
assert set(Kind.__args__) == set(KINDS)


# --- response shapes (they make the OpenAPI document) ---------------------------------------

class SignalOut(BaseModel):
    signal: str
    model: str
    chunks: int


class VideoOut(BaseModel):
    id: str
    filename: str
    status: Literal["queued", "processing", "ready", "failed"]
    error: str | None
    notes: list[str]
    duration: float | None
    progress: float
    eta_s: float | None
    chunks_done: int
    chunks_total: int
    signals: list[SignalOut]
    width: int | None
    height: int | None
    has_audio: bool | None
    size_bytes: int
    created_at: str | None
    media_url: str


class MomentSegmentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    start: float
    end: float
    kind: str
    text: str


class MomentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    video_id: str
    filename: str
    start: float
    end: float
    score: float
    weak: bool
    kinds: list[str]
    text: str
    segments: list[MomentSegmentOut]


class SearchOut(BaseModel):
    query: str
    moments: list[MomentOut]


class SegmentOut(BaseModel):
    id: int
    start: float
    end: float
    kind: str
    text: str
    model: str


class ChapterOut(BaseModel):
    start: float
    end: float
    title: str
    summary: str


class SummaryOut(BaseModel):
    video_id: str
    summary: str | None
    model: str | None
    chapters: list[ChapterOut]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    broker: str


class ErrorOut(BaseModel):
    detail: Any


def _errors(*codes: int) -> dict:
    text = {401: "no or bad API key", 404: "no such video for this tenant",
            413: "the file is over the upload limit", 415: "not a multipart upload",
            422: "bad input", 503: "a dependency is unavailable; retry later"}
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}


# --- metrics -------------------------------------------------------------------------------

class _Metrics:
    """Per-app registry, so several apps in one process (tests) do not collide."""

    def __init__(self, app: FastAPI):
        self.registry = CollectorRegistry()
        self.requests = Counter("chronoscope_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("chronoscope_http_request_duration_seconds",
                                 "HTTP request latency", ["method", "route"],
                                 registry=self.registry)
        self.upload_bytes = Counter("chronoscope_upload_bytes_total", "bytes uploaded",
                                    registry=self.registry)
        self.registry.register(_StateCollector(app))


class _StateCollector:
    """Read at scrape time: videos by status, and the depth of each queue (to size pools)."""

    def __init__(self, app: FastAPI):
        self.app = app

    def collect(self):
        settings: Settings = self.app.state.settings
        videos = GaugeMetricFamily("chronoscope_videos", "videos by status", labels=["status"])
        try:
            with session_scope(settings) as s:
                counts = dict(s.execute(select(Video.status, func.count())
                                         .group_by(Video.status)).all())
            for st in (QUEUED, PROCESSING, "ready", FAILED):
                videos.add_metric([st], counts.get(st, 0))
        except Exception:
            log.warning("metrics: database unavailable", exc_info=True)
        yield videos
        if settings.broker_url:
            queue = GaugeMetricFamily("chronoscope_queue_length", "messages waiting",
                                      labels=["queue"])
            try:
                from workers import flow
                from workers.celery_app import producer
                for name, n in flow.queue_lengths(producer(settings.broker_url)).items():
                    queue.add_metric([name], n)
            except Exception:
                log.warning("metrics: broker unavailable", exc_info=True)
            yield queue


class _MetricsMiddleware:
    def __init__(self, app, metrics: _Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            self.metrics.latency.labels(scope["method"], route).observe(
                time.perf_counter() - started)


# --- helpers -------------------------------------------------------------------------------

def _eta_s(video: Video, now: datetime) -> float | None:
    # Throughput so far (queue wait included) times what is left: rough, but it only ever
    # uses what the database knows, so every API replica says the same.
    if video.status != PROCESSING or not video.chunks_done or not video.chunks_total:
        return None
    created = video.created_at if video.created_at.tzinfo else \
        video.created_at.replace(tzinfo=timezone.utc)
    elapsed = max(0.0, (now - created).total_seconds())
    return round(elapsed / video.chunks_done * (video.chunks_total - video.chunks_done), 1)


def _signals(session, video_ids: list[str]) -> dict[str, list[dict]]:
    """Per video: each signal and model with the number of chunks it has done; one query
    for a whole listing."""
    out: dict[str, list[dict]] = {v: [] for v in video_ids}
    for i in range(0, len(video_ids), 900):      # under every driver's parameter limit
        rows = session.execute(
            select(ChunkRun.video_id, ChunkRun.signal, ChunkRun.model_id, func.count())
            .where(ChunkRun.video_id.in_(video_ids[i:i + 900]))
            .group_by(ChunkRun.video_id, ChunkRun.signal, ChunkRun.model_id)
            .order_by(ChunkRun.signal, ChunkRun.model_id))
        for video_id, sig, model, n in rows:
            out[video_id].append({"signal": sig, "model": model, "chunks": n})
    return out


def _videos_out(request: Request, session, videos: list[Video]) -> list[dict]:
    settings, api = request.app.state.settings, request.app.state.api_settings
    expires = int(time.time()) + api.media_url_ttl_s
    secret = server_secret(settings, api)
    signals = _signals(session, [v.id for v in videos])
    now = datetime.now(timezone.utc)
    return [{**video_json(v), "size_bytes": v.size_bytes, "eta_s": _eta_s(v, now),
             "signals": signals[v.id],
             "media_url": f"/v1/videos/{v.id}/media?token={media_token(secret, v.id, expires)}"}
            for v in videos]


def _video_out(request: Request, session, video: Video) -> dict:
    return _videos_out(request, session, [video])[0]


def _ms(s: float | None) -> int | None:
    return None if s is None else round(s * 1000)


def _check_range(start: float | None, end: float | None) -> None:
    if start is not None and end is not None and start >= end:
        raise BadInput(f"start ({start} s) must be before end ({end} s)")


def _webhook_url(raw: str | None, allowed_hosts: str) -> str | None:
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
    return raw.strip()


Seconds = Annotated[float | None, Query(ge=0, le=10_000_000, description="seconds")]
Kinds = Annotated[list[Kind] | None, Query(description="speech, screen_text, visual")]


# --- the app -------------------------------------------------------------------------------

def create_app(settings: Settings | None = None, api_settings: ApiSettings | None = None
               ) -> FastAPI:
    settings = settings or get_settings()
    api_settings = api_settings or settings.api

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        get_engine(settings)        # migrates the database to head before the first request
        if not settings.broker_url:
            from workers import flow
            # Embedded mode: finish what a previous run of this server left unfinished.
            for video_id in flow.unfinished(settings):
                app.state.executor.submit(flow.run_inline, settings, video_id)
        yield
        app.state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="chronoscope", version="0.1.0", lifespan=lifespan,
                  summary="Search hours-long video to the second.")
    app.state.settings, app.state.api_settings = settings, api_settings
    app.state.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer")
    metrics = _Metrics(app)
    app.add_middleware(_MetricsMiddleware, metrics=metrics)

    def error(status: int, headers: dict | None = None):
        async def handler(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)
        return handler

    app.add_exception_handler(NotFound, error(404))
    app.add_exception_handler(BadInput, error(422))
    app.add_exception_handler(ModelUnavailable, error(503))
    app.add_exception_handler(TransientError, error(503, {"Retry-After": "5"}))

    def submit(video_id: str) -> None:
        from workers import flow
        if settings.broker_url:
            from workers.celery_app import producer
            flow.send(producer(settings.broker_url), flow.Unit(flow.PLAN, video_id))
        else:
            app.state.executor.submit(flow.run_inline, settings, video_id)

    # -- service endpoints, no key --

    @app.get("/healthz", response_model=HealthOut, tags=["service"],
             responses={503: {"model": HealthOut, "description": "the database is down"}})
    def healthz() -> JSONResponse:
        body = {"status": "ok", "database": "ok", "broker": "in-process"}
        try:
            with get_engine(settings).connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:
            body.update(status="degraded", database=f"down: {type(e).__name__}")
        if settings.broker_url:
            from workers.celery_app import producer
            try:
                with producer(settings.broker_url).connection_for_write() as conn:
                    conn.ensure_connection(max_retries=1, timeout=2)
                body["broker"] = "ok"
            except Exception as e:
                body.update(status="degraded", broker=f"down: {type(e).__name__}")
        # Without its database the API can do nothing; without its broker it still serves
        # search and reads, so only the database makes it unhealthy.
        return JSONResponse(body, status_code=503 if body["database"] != "ok" else 200)

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}}})
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB), name="static")

    # -- /v1 --

    upload_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": "the video"},
            "webhook_url": {"type": "string", "format": "uri", "pattern": "^https?://",
                            "maxLength": 2048, "description":
                            "POSTed on ready/failed, signed with HMAC-SHA256 "
                            "(Chronoscope-Signature header)"}}}}}}}

    @app.post("/v1/videos", tags=["videos"], response_model=VideoOut, status_code=202,
              openapi_extra=upload_body,
              responses={200: {"model": VideoOut, "description": "this tenant already has "
                               "the same content: the existing video"},
                         **_errors(401, 413, 415, 422)})
    def upload_video(upload: UploadDep, tenant: TenantDep, response: Response,
                     request: Request) -> dict:
        """Upload a video (multipart, streamed to disk). It is indexed in the background:
        poll GET /v1/videos/{id} or pass a webhook_url."""
        from indexer import pipeline
        from indexer.probe import probe
        webhook = _webhook_url(upload.fields.get("webhook_url"),
                               request.app.state.api_settings.webhook_hosts)
        metrics.upload_bytes.inc(upload.size)
        try:
            probe(upload.path, settings.decode)  # refuse what can never be indexed, right away
        except BadInput as e:
            raise BadInput(str(e).replace(upload.path.name, upload.filename)) from None
        # One file per tenant and content: a tenant deleting its copy never breaks another's.
        suffix = Path(upload.filename).suffix.lower()
        dest = settings.media_dir / tenant / (
            upload.sha256 + (suffix if SUFFIX.fullmatch(suffix) else ""))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.replace(upload.path, dest)
        with session_scope(settings) as s:
            before = queries.find_video_by_sha256(s, sha256=upload.sha256, tenant=tenant)
            before_status = before.status if before else None
        video_id = pipeline.add_video(settings, dest, tenant=tenant, filename=upload.filename,
                                      sha256=upload.sha256)
        if webhook:
            with session_scope(settings) as s:
                hook = s.get(Webhook, video_id)
                if hook is None:
                    s.add(Webhook(video_id=video_id, url=webhook))
                else:
                    hook.url = webhook
        if before_status in (None, FAILED):
            submit(video_id)                     # new, or failed before and queued again
        else:
            response.status_code = 200
        response.headers["Location"] = f"/v1/videos/{video_id}"
        with session_scope(settings) as s:
            return _video_out(request, s, queries.get_video(s, video_id))

    @app.get("/v1/videos", tags=["videos"], response_model=list[VideoOut],
             responses=_errors(401))
    def list_videos(tenant: TenantDep, session: SessionDep, request: Request) -> list[dict]:
        """The tenant's videos, oldest first."""
        return _videos_out(request, session, queries.list_videos(session, tenant=tenant))

    @app.get("/v1/videos/{video_id}", tags=["videos"], response_model=VideoOut,
             responses=_errors(401, 404))
    def get_video(video: VideoDep, session: SessionDep, request: Request) -> dict:
        """Status, progress (percent of chunks done), ETA, signals, error and notes."""
        return _video_out(request, session, video)

    @app.delete("/v1/videos/{video_id}", tags=["videos"], status_code=204,
                responses=_errors(401, 404))
    def delete_video(video: VideoDep, tenant: TenantDep) -> Response:
        """Delete the video: its rows, its vectors and its uploaded file."""
        from indexer import pipeline
        pipeline.delete_video(settings, video.id, tenant=tenant)
        return Response(status_code=204)

    @app.get("/v1/search", tags=["search"], response_model=SearchOut,
             responses=_errors(401, 422))
    def search(tenant: TenantDep, session: SessionDep,
               q: Annotated[str, Query(min_length=1, max_length=1000, pattern=r"^[^\x00]*$",
                                       description="what to find, in plain words")],
               video: Annotated[list[Annotated[str, StringConstraints(pattern=VIDEO_ID)]] | None,
                                Query(description="video ids")] = None,
               start: Seconds = None, end: Seconds = None, kind: Kinds = None,
               k: Annotated[int, Query(ge=1, le=100)] = 10) -> dict:
        """Moments that match the query across the tenant's videos, or inside the given
        videos and time range."""
        from search import query as search_query
        _check_range(start, end)
        moments = [m.to_json() for m in search_query.search(
            settings, q, video_ids=video, start_ms=_ms(start), end_ms=_ms(end), kinds=kind,
            k=k, tenant=tenant)]
        ids = {m["video_id"] for m in moments}
        names = dict(session.execute(select(Video.id, Video.filename)
                                     .where(Video.id.in_(ids))).all()) if ids else {}
        return {"query": q, "moments": [{**m, "filename": names.get(m["video_id"], "")}
                                        for m in moments]}

    @app.get("/v1/videos/{video_id}/summary", tags=["videos"], response_model=SummaryOut,
             responses=_errors(401, 404))
    def summary(video: VideoDep, tenant: TenantDep) -> dict:
        """The summary and chapters (empty until the video is ready)."""
        from search import chapters
        return chapters.get_summary(settings, video.id, tenant=tenant)

    @app.get("/v1/videos/{video_id}/segments", tags=["videos"], response_model=list[SegmentOut],
             responses=_errors(401, 404, 422))
    def segments(video: VideoDep, session: SessionDep, start: Seconds = None,
                 end: Seconds = None, kind: Kinds = None) -> list[dict]:
        """Segments that overlap [start, end), in time order."""
        _check_range(start, end)
        return [segment_json(r) for r in queries.get_segments(
            session, video_id=video.id, start_ms=_ms(start), end_ms=_ms(end), kinds=kind)]

    caption_types = {"vtt": "text/vtt", "srt": "application/x-subrip",
                     "json": "application/json"}

    @app.get("/v1/videos/{video_id}/captions.{fmt}", tags=["videos"],
             response_class=PlainTextResponse, responses={
                 200: {"content": {t: {} for t in caption_types.values()},
                       "description": "WebVTT, SRT or JSON captions"},
                 **_errors(401, 404, 422)})
    def captions(video: VideoDep, session: SessionDep, fmt: Literal["vtt", "srt", "json"],
                 kind: Kinds = None) -> Response:
        """Captions as WebVTT, SRT or JSON."""
        body = render(fmt, video, queries.get_segments(session, video_id=video.id, kinds=kind))
        charset = "" if fmt == "json" else "; charset=utf-8"
        return Response(body, media_type=caption_types[fmt] + charset)

    @app.get("/v1/videos/{video_id}/media", tags=["videos"], response_class=FileResponse,
             responses={200: {"content": {"video/*": {}}, "description": "the file"},
                        206: {"content": {"video/*": {}}, "description": "a byte range"},
                        416: {"description": "range not satisfiable"},
                        **_errors(401, 404, 422)})
    def media(video: MediaVideoDep) -> FileResponse:
        """The uploaded file, with range requests so a player can seek. Authorise with a
        key, or with the `token` of the video's media_url (for an HTML5 <video>)."""
        path = Path(video.path)
        if not path.is_file():
            raise NotFound(f"the media file of video {video.id} is gone")
        mime = mimetypes.guess_type(video.filename)[0] or mimetypes.guess_type(path.name)[0]
        return FileResponse(path, media_type=mime or "application/octet-stream",
                            content_disposition_type="inline", filename=video.filename)

    return app

