"""Helpers for tests that run the real service: a scratch Postgres database per module, the
API on a real socket (uvicorn in a thread), API keys, a webhook receiver, polling."""

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import uvicorn
from sqlalchemy import create_engine, text

from conftest import PG_ADMIN

SERVER = PG_ADMIN.rsplit("/", 1)[0]


@contextmanager
def scratch_database(template: str) -> Iterator[str]:
    """A Postgres database copied from the migrated template, dropped afterwards."""
    name = f"chronoscope_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    url = f"{SERVER}/{name}"
    try:
        yield url
    finally:
        from store import db
        engine = db._engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def serve(app) -> Iterator[str]:
    """The app on 127.0.0.1 at a free port, lifespan included; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="the API server to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def make_key(settings, tenant: str) -> tuple[str, str]:
    """(API key, webhook secret) of a new key for the tenant."""
    from store.keys import create_key
    from store.db import session_scope
    with session_scope(settings) as s:
        key, row = create_key(s, tenant=tenant)
        return key, row.webhook_secret


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str,
             interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class WebhookReceiver:
    """Records every POST it gets: (path, headers, body)."""

    def __init__(self):
        self.received: list[tuple[str, dict, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append((self.path, dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.received]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
