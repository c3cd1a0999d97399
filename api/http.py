"""The HTTP service: the API under /v1, /healthz, Prometheus /metrics, the OpenAPI document
(/openapi.json, /docs) and the web page at /.

Every /v1 request carries an API key, and a key belongs to a tenant: another tenant's video
is a 404, never a 403, so ids cannot be probed. Indexing goes to Celery when a broker is
configured; without one (the embedded default) the same steps run in a background thread of
this process. HTTP status codes are chosen here and in the routes, nowhere below.
"""

from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from api.metrics import Metrics, MetricsMiddleware
from api.routes import health, media, search, videos
from core.config import ApiSettings, Settings, get_settings
from core.errors import BadInput, ModelUnavailable, NotFound, TransientError
from store.db import get_engine

# Seconds a client should wait before retrying after a database or broker outage.
RETRY_AFTER_S = 5


@asynccontextmanager
async def _lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    get_engine(settings)        # migrates the database to head before the first request
    if not settings.broker_url:
        from workers import flow
        # Embedded mode: finish what a previous run of this server left unfinished.
        for video_id in flow.unfinished(settings):
            app.state.executor.submit(flow.run_inline, settings, video_id)
    yield
    app.state.executor.shutdown(wait=False, cancel_futures=True)


def _error(status: int, headers: dict | None = None):
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)
    return handler


def create_app(settings: Settings | None = None, api_settings: ApiSettings | None = None
               ) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="chronoscope", version="0.1.0", lifespan=_lifespan,
                  summary="Search hours-long video to the second.")
    app.state.settings, app.state.api_settings = settings, api_settings or settings.api
    app.state.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer")
    app.state.metrics = Metrics(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_exception_handler(NotFound, _error(404))
    app.add_exception_handler(BadInput, _error(422))
    app.add_exception_handler(ModelUnavailable, _error(503))
    app.add_exception_handler(TransientError,
                              _error(503, {"Retry-After": str(RETRY_AFTER_S)}))
    app.include_router(health.router)
    app.mount("/static", StaticFiles(directory=health.WEB), name="static")
    for routes in (videos, search, media):
        app.include_router(routes.router)
    return app
