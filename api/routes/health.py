"""Service endpoints, no key: health, Prometheus metrics and the web page (with its CSP)."""

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.media_types import page_headers
from api.schemas import HealthOut

WEB = Path(__file__).resolve().parent.parent / "web"
router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "the database is down"}})
async def healthz(request: Request) -> JSONResponse:
    """Async and answered from the health thread's last check (api.health_status), so a
    storm of searches holding every threadpool thread and pooled connection cannot delay
    it."""
    body = await request.app.state.health.current()
    # Without its database the API can do nothing; without its broker it still serves
    # search and reads, so only the database makes it unhealthy.
    return JSONResponse(body, status_code=503 if body["database"] != "ok" else 200)


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}}}})
def prometheus(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache",
                                                     **page_headers()})


class PageFiles(StaticFiles):
    """The web page's static files, with the page's CSP."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(page_headers())
        return response
