"""The HTTP service: the API under /v1, /healthz, Prometheus /metrics, the OpenAPI document
(/openapi.json, /docs) and the web page at /.

Every /v1 request carries an API key, and a key belongs to a tenant: another tenant's video
is a 404, never a 403, so ids cannot be probed. Indexing goes to Celery when a broker is
configured; without one (the embedded default) the same steps run in a background thread of
this process, tenants taking turns (workers/inline.py). HTTP status codes are chosen here and in the routes, nowhere below;
every error answers `{"error": {"code", "message"}}` (api/errors.py).
"""

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.health_status import HealthStatus
from api.metrics import Metrics, MetricsMiddleware
from api.routes import health, media, search, videos
from core.config import ApiSettings, Settings, get_settings
from store.db import get_engine
from workers.inline import InlineRunner


@asynccontextmanager
async def _lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    get_engine(settings)        # migrates the database to head before the first request
    fresh = asyncio.create_task(app.state.health.keep_fresh())
    if not settings.broker_url:
        from workers import flow
        # Embedded mode: finish what a previous run of this server left unfinished.
        for video_id in flow.unfinished(settings):
            app.state.runner.submit(video_id)
    yield
    fresh.cancel()
    app.state.runner.close()
    app.state.health.close()


def create_app(settings: Settings | None = None, api_settings: ApiSettings | None = None
               ) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="chronoscope", version="0.1.0", lifespan=_lifespan,
                  summary="Search hours-long video to the second.")
    app.state.settings, app.state.api_settings = settings, api_settings or settings.api
    app.state.runner = InlineRunner(settings)     # embedded mode: tenants take turns
    app.state.metrics = Metrics(app)
    app.state.health = HealthStatus(settings)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    errors.install(app)       # one error body: {"error": {"code", "message"}}
    app.openapi = lambda: errors.document(FastAPI.openapi(app))
    app.include_router(health.router)
    app.mount("/static", health.PageFiles(directory=health.WEB), name="static")
    for routes in (videos, search, media):
        app.include_router(routes.router)
    return app
