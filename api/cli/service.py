"""Long-running processes: the HTTP server and a Celery worker."""

import logging
from typing import Annotated

import typer

from api.cli.common import die, app
from core.config import get_settings


@app.command()
def serve(host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port")] = 8000,
          workers: Annotated[int, typer.Option(help="server processes (needs a broker when "
                                                    "more than 1)")] = 1) -> None:
    """Serve the HTTP API and the web page (migrates the database first)."""
    import uvicorn
    if workers > 1 and not get_settings().broker_url:
        die("several server processes need a broker (CHRONOSCOPE_BROKER_URL): without one "
             "each process would index the same uploads itself", 2)
    uvicorn.run("api.http:create_app", factory=True, host=host, port=port, workers=workers,
                proxy_headers=True, log_level="info")


@app.command()
def worker(queues: Annotated[str, typer.Option(help="comma-separated: cpu (decode, speech, "
                                                    "OCR), gpu (Qwen3-VL)")] = "cpu,gpu",
           concurrency: Annotated[int, typer.Option(help="worker processes; each loads its "
                                                         "own models")] = 1,
           loglevel: Annotated[str, typer.Option(help="celery log level")] = "info") -> None:
    """Run a Celery worker over the configured broker."""
    from workers.names import CPU, GPU, QUEUES
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not get_settings().broker_url:
        die("no broker configured: set CHRONOSCOPE_BROKER_URL (e.g. redis://127.0.0.1:6379/0); "
             "without one, `chronoscope index` runs the same tasks in-process", 2)
    if not names or any(q not in QUEUES for q in names):
        die(f"unknown queue in {queues!r}: use {CPU}, {GPU} or both", 2)
    logging.getLogger().setLevel(loglevel.upper())
    from workers.celery_app import run_worker   # loads the Celery app: only for a worker
    run_worker(names, concurrency=concurrency, loglevel=loglevel)
