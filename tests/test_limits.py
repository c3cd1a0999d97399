"""Search and clip admission on a real server: N in flight, the next waits then gets a fast
503 with Retry-After, a full queue answers at once, other routes stay quick; and the pool
sizing."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import FastAPI

from api import errors
from api.limits import ClipSlot, Limiter, SearchSlot
from core.config import ApiSettings, DatabaseSettings, Settings
from core.errors import TransientError
from store import pool
from web.live import serve, wait_for


class Gate:
    """A sync route that holds its slot until the test opens the gate."""

    def __init__(self, limit: int, wait_s: float):
        self.open, self.inside = threading.Event(), 0
        self.app = app = FastAPI()
        errors.install(app)               # the API's error body
        app.state.api_settings = ApiSettings(max_concurrent_searches=limit,
                                             search_queue_wait_s=wait_s)
        app.state.settings = Settings()
        app.state.settings.clip.max_concurrent, app.state.settings.clip.queue_wait_s = 1, 0.5

        @app.get("/search", dependencies=[SearchSlot])
        def search() -> dict:
            self.inside += 1
            self.open.wait(30)
            return {"ok": True}

        @app.get("/clip", dependencies=[ClipSlot])
        def clip() -> dict:
            self.inside += 1
            self.open.wait(30)
            return {"ok": True}

        @app.get("/healthz")
        def healthz() -> dict:
            return {"status": "ok"}

    @property
    def limiter(self) -> Limiter:
        return self.app.state.search_limiter


def _get(base: str, path: str = "/search") -> tuple[int, dict, dict, float]:
    started = time.monotonic()
    r = httpx.get(base + path, timeout=30)
    return r.status_code, dict(r.headers), r.json(), time.monotonic() - started


def test_n_in_flight_then_wait_then_fast_503():
    gate = Gate(limit=2, wait_s=0.5)
    with serve(gate.app) as base, ThreadPoolExecutor(8) as pool_:
        try:
            running = [pool_.submit(_get, base) for _ in range(2)]
            wait_for(lambda: gate.inside == 2, timeout=10, what="two searches in flight")
            status, headers, body, took = _get(base)
            assert status == 503 and headers["retry-after"] == "1"
            assert body["error"]["code"] == "unavailable"
            assert "too many searches" in body["error"]["message"]
            assert 0.4 < took < 3, took                  # waited its turn, then gave up fast
            assert gate.inside == 2 and gate.limiter.active == 2
            assert _get(base, "/healthz")[3] < 1         # the rest of the API is unaffected
        finally:
            gate.open.set()
        assert [f.result()[0] for f in running] == [200, 200]
    assert (gate.limiter.active, gate.limiter.waiting) == (0, 0)


def test_clips_have_their_own_slots():
    """A clip being cut holds the one clip slot: the next clip waits, then gets 503 +
    Retry-After; searches are not held up by clips."""
    gate = Gate(limit=2, wait_s=0.5)
    with serve(gate.app) as base, ThreadPoolExecutor(4) as pool_:
        try:
            cutting = pool_.submit(_get, base, "/clip")
            wait_for(lambda: gate.inside == 1, timeout=10, what="a clip in flight")
            status, headers, body, took = _get(base, "/clip")
            assert status == 503 and headers["retry-after"] == "1", body
            assert "too many clips at once (at most 1 run together)" in body["error"]["message"]
            assert 0.4 < took < 3, took
            searching = pool_.submit(_get, base)
            wait_for(lambda: gate.inside == 2, timeout=10, what="a search beside the clip")
        finally:
            gate.open.set()
        assert cutting.result()[0] == searching.result()[0] == 200


def test_a_waiting_search_runs_when_a_slot_frees():
    gate = Gate(limit=1, wait_s=10)
    with serve(gate.app) as base, ThreadPoolExecutor(4) as pool_:
        first = pool_.submit(_get, base)
        wait_for(lambda: gate.inside == 1, timeout=10, what="the first search")
        second = pool_.submit(_get, base)
        wait_for(lambda: gate.limiter.waiting == 1, timeout=10, what="the second to queue")
        assert gate.inside == 1
        gate.open.set()
        assert first.result()[0] == second.result()[0] == 200
    assert (gate.limiter.active, gate.limiter.waiting) == (0, 0)


def test_a_full_queue_answers_at_once():
    gate = Gate(limit=1, wait_s=10)                      # 1 running + 4 waiting at most
    with serve(gate.app) as base, ThreadPoolExecutor(8) as pool_:
        try:
            held = [pool_.submit(_get, base) for _ in range(5)]
            wait_for(lambda: gate.inside == 1 and gate.limiter.waiting == 4, timeout=10,
                     what="a full queue")
            status, headers, _, took = _get(base)
            assert status == 503 and "retry-after" in headers and took < 1, took
        finally:
            gate.open.set()
        assert [f.result()[0] for f in held] == [200] * 5


def test_a_waiter_that_leaves_gives_no_slot_away():
    async def scenario():
        limiter = Limiter(1, wait_s=5, max_waiting=4)
        assert await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()                                  # the client disconnected
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.waiting == 0
        limiter.release()
        assert (limiter.active, limiter.waiting) == (0, 0)
        # A slot handed over just as the waiter is cancelled is passed on, not lost.
        assert await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        limiter.release()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (limiter.active, limiter.waiting) == (0, 0)
    asyncio.run(scenario())


def test_pool_is_sized_above_the_search_limit(tmp_path):
    settings = Settings(home=tmp_path, database_url="postgresql+psycopg://u@h/db",
                        api=ApiSettings(max_concurrent_searches=8))
    options = pool.engine_options(settings)
    assert options["pool_size"] >= 2 * 8 and options["pool_timeout"] <= 5
    assert options["pool_size"] + options["max_overflow"] >= 8 + pool.THREADPOOL
    explicit = settings.model_copy(update={"database": DatabaseSettings(
        pool_size=3, max_overflow=0, pool_timeout_s=0.5)})
    assert pool.engine_options(explicit) == {"pool_size": 3, "max_overflow": 0,
                                             "pool_timeout": 0.5, "pool_pre_ping": True}
    assert pool.engine_options(Settings(home=tmp_path, database_url="sqlite://")) == {}


def test_a_starved_pool_fails_fast_as_transient(pg_url, tmp_path):
    from sqlalchemy import create_engine, text
    settings = Settings(home=tmp_path, database_url=pg_url, database=DatabaseSettings(
        pool_size=1, max_overflow=0, pool_timeout_s=0.3))
    engine = create_engine(settings.db_url, **pool.engine_options(settings))
    try:
        with engine.connect() as held:
            held.execute(text("SELECT 1"))
            started = time.monotonic()
            with pytest.raises(TransientError, match="busy"), pool.starved_as_transient():
                engine.connect()
            assert time.monotonic() - started < 2
    finally:
        engine.dispose()
