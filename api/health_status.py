"""/healthz's answer, which never waits behind searches.

The checks (database `SELECT 1` on its own one-connection engine, broker ping) run in one
dedicated thread, not in the threadpool that sync routes share, and their result is kept:
a probe gets the last result at once and, when it is older than FRESH_S, starts a new check
in the background (the server also checks every FRESH_S on its own: `keep_fresh`). Only a probe that finds no result, or one older than STALE_S (the check
thread is stuck), waits for a check, at most CHECK_TIMEOUT_S.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from core.config import Settings
from core.errors import TransientError
from store import db

FRESH_S = 1.0
STALE_S = 30.0
CHECK_TIMEOUT_S = 2.0


def _down(e: Exception) -> str:
    # The driver's error names the outage better than our wrapper does.
    cause = e.__cause__ if isinstance(e, TransientError) and e.__cause__ else e
    return f"down: {type(cause).__name__}"


def check(settings: Settings) -> dict:
    """Database and broker, now (blocking: run it in the health thread)."""
    body = {"status": "ok", "database": "ok", "broker": "in-process"}
    try:
        db.ping(settings, timeout_s=CHECK_TIMEOUT_S)
    except Exception as e:
        body.update(status="degraded", database=_down(e))
    if settings.broker_url:
        from workers import broker
        try:
            broker.ping(broker.producer(settings.broker_url))
            body["broker"] = "ok"
        except Exception as e:
            body.update(status="degraded", broker=_down(e))
    return body


class HealthStatus:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz")
        self._body: dict | None = None
        self._at = 0.0
        self._pending: asyncio.Future | None = None

    async def current(self) -> dict:
        age = time.monotonic() - self._at
        if self._pending is None and (self._body is None or age > FRESH_S):
            loop = asyncio.get_running_loop()
            self._pending = loop.run_in_executor(self._thread, check, self.settings)
            self._pending.add_done_callback(self._store)
        if self._body is not None and age <= STALE_S:
            return self._body
        try:
            return await asyncio.wait_for(asyncio.shield(self._pending), CHECK_TIMEOUT_S)
        except asyncio.TimeoutError:
            return {"status": "degraded", "database": f"down: no answer in "
                    f"{CHECK_TIMEOUT_S:g} s", "broker": "unknown"}

    async def keep_fresh(self) -> None:
        """Check every FRESH_S, so a probe after a quiet spell finds a recent result."""
        while True:
            await self.current()
            await asyncio.sleep(FRESH_S)

    def _store(self, future: asyncio.Future) -> None:
        self._pending = None
        if not future.cancelled() and future.exception() is None:
            self._body, self._at = future.result(), time.monotonic()

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
