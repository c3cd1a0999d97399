"""Service endpoints, no key: health, Prometheus metrics and the web page."""

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.deps import SettingsDep
from api.schemas import HealthOut
from core.errors import TransientError
from store import db

WEB = Path(__file__).resolve().parent.parent / "web"
router = APIRouter(tags=["service"])


def _down(e: Exception) -> str:
    # The driver's error names the outage better than our wrapper does.
    cause = e.__cause__ if isinstance(e, TransientError) and e.__cause__ else e
    return f"down: {type(cause).__name__}"


@router.get("/healthz", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "the database is down"}})
def healthz(settings: SettingsDep) -> JSONResponse:
    body = {"status": "ok", "database": "ok", "broker": "in-process"}
    try:
        db.ping(settings)
    except Exception as e:
        body.update(status="degraded", database=_down(e))
    if settings.broker_url:
        from workers import broker
        try:
            broker.ping(broker.producer(settings.broker_url))
            body["broker"] = "ok"
        except Exception as e:
            body.update(status="degraded", broker=_down(e))
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
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})
