"""Admission for expensive endpoints (search, clips): at most `api.max_concurrent_searches` run at
once, a few more wait up to `api.search_queue_wait_s`, the rest get a fast 503 with
Retry-After.

The wait happens on the event loop, before the sync route takes one of the threadpool's
threads or a database connection, so a storm of searches can neither starve /healthz of
threads nor exhaust the connection pool. Use it as the route's first dependency:

    @app.get("/v1/search", dependencies=[SearchSlot])
"""

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, HTTPException, Request

from core.config import ApiSettings

# Waiters beyond this many per slot could not be served within the wait anyway: they get
# their 503 at once instead of after the full wait.
WAITERS_PER_SLOT = 4


class Limiter:
    """A FIFO semaphore whose waiters give up after `wait_s`. Use it from one event loop."""

    def __init__(self, limit: int, wait_s: float, max_waiting: int):
        self.limit, self.wait_s, self.max_waiting = limit, wait_s, max_waiting
        self.active = 0
        self._waiters: deque[asyncio.Future] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> bool:
        """Whether a slot was taken (then call `release` exactly once)."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return True
        if self.wait_s <= 0 or len(self._waiters) >= self.max_waiting:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait([waiter], timeout=self.wait_s)
        except BaseException:           # the client went away while waiting
            if not self._give_up(waiter):
                self.release()          # a slot came just as it left: pass it on
            raise
        return not self._give_up(waiter)

    def release(self) -> None:
        # Hand the slot straight to the first waiter, so a newcomer cannot jump the queue.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1

    def _give_up(self, waiter: asyncio.Future) -> bool:
        """Stop waiting; False when a slot was handed over meanwhile (it is now ours)."""
        if waiter.cancel():
            self._waiters.remove(waiter)
            return True
        return False


def search_limiter(api: ApiSettings) -> Limiter:
    n = api.max_concurrent_searches
    return Limiter(n, api.search_queue_wait_s, WAITERS_PER_SLOT * n)


def retry_after(api: ApiSettings) -> str:
    return str(max(1, math.ceil(api.search_queue_wait_s)))


async def search_slot(request: Request) -> AsyncIterator[None]:
    """Hold a search slot for the request, or answer 503 + Retry-After (the API's usual
    {"detail": ...} body). Async, so the wait takes no thread."""
    api: ApiSettings = request.app.state.api_settings
    async with _slot(request, "search_limiter", lambda: search_limiter(api), "searches",
                     retry_after(api)):
        yield


async def clip_slot(request: Request) -> AsyncIterator[None]:
    """The same for cutting clips (CPU-heavy: `clip.max_concurrent` at once)."""
    clip = request.app.state.settings.clip
    wait = clip.queue_wait_s
    async with _slot(request, "clip_limiter", lambda: Limiter(
            clip.max_concurrent, wait, WAITERS_PER_SLOT * clip.max_concurrent), "clips",
            str(max(1, math.ceil(wait)))):
        yield


@asynccontextmanager
async def _slot(request: Request, name: str, make, what: str, retry: str
                ) -> AsyncIterator[None]:
    state = request.app.state
    if getattr(state, name, None) is None:
        setattr(state, name, make())
    limiter: Limiter = getattr(state, name)
    if not await limiter.acquire():
        raise HTTPException(503, f"too many {what} at once (at most "
                                 f"{limiter.limit} run together); retry in a moment",
                            headers={"Retry-After": retry})
    try:
        yield
    finally:
        limiter.release()


SearchSlot = Depends(search_slot)
ClipSlot = Depends(clip_slot)
