"""The embedded mode's indexer (no broker): one background thread runs the same steps as the
workers (plan, each chunk, finalize), one step at a time, tenants taking turns, so one
tenant's long video never holds another tenant's short one until it is done."""

import logging
import threading
from collections import OrderedDict, deque

from core.config import Settings
from core.errors import BadVideo, ChronoscopeError, NotFound
from store import queries
from store.leases import Busy
from store.db import session_scope
from store.schema import PROCESSING, QUEUED
from workers import flow

log = logging.getLogger(__name__)


class InlineRunner:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._tenants: OrderedDict[str, deque[str]] = OrderedDict()   # turn order
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, video_id: str) -> None:
        """Queue the video here, claimed by this process (a death leaves it resumable); one
        that another live process indexes is left to it."""
        from indexer import pipeline
        with session_scope(self.settings) as s:
            tenant = queries.get_video(s, video_id).tenant
        try:
            pipeline.claim(self.settings, video_id)
        except Busy as e:
            log.info("not queued here: %s", e)
            return
        with self._wake:
            videos = self._tenants.setdefault(tenant, deque())
            if video_id not in videos:
                videos.append(video_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="indexer", daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _next(self) -> tuple[str, str] | None:
        """The next tenant's first video; the tenant goes to the back of the line."""
        with self._wake:
            while not self._tenants and not self._closed:
                self._wake.wait()
            if self._closed:
                return None
            tenant, videos = self._tenants.popitem(last=False)
            self._tenants[tenant] = videos
            return tenant, videos[0]

    def _loop(self) -> None:
        while (turn := self._next()) is not None:
            tenant, video_id = turn
            try:
                more = step(self.settings, video_id)
            except Exception:
                log.exception("indexing %s failed", video_id)
                more = False
            if not more:
                _release(self.settings, video_id)
                with self._wake:
                    videos = self._tenants.get(tenant)
                    if videos and video_id in videos:
                        videos.remove(video_id)
                    if videos is not None and not videos:
                        del self._tenants[tenant]


def _release(settings: Settings, video_id: str) -> None:
    from indexer import pipeline
    try:
        pipeline.release(settings, video_id)
    except Exception as e:       # only bookkeeping: the video is done either way
        log.warning("could not release %s: %s", video_id, e)


def step(settings: Settings, video_id: str) -> bool:
    """One unit of the video's work: plan, one chunk or finalize (then the webhook). Whether
    more remains. A failure marks the video failed with its reason, as index_video does."""
    from indexer import pipeline
    status = flow.status(settings, video_id)
    try:
        if status == QUEUED:
            pipeline.plan(settings, video_id)
            return True
        if status != PROCESSING:
            return False
        with session_scope(settings) as s:
            todo = [c.idx for c in queries.get_chunks(s, video_id=video_id) if c.done_at is None]
        if todo:
            pipeline.index_chunk(settings, video_id, todo[0])
            return True
        pipeline.finalize(settings, video_id)
    except NotFound:
        return False            # deleted meanwhile
    except BadVideo:
        flow.announce(settings, None, video_id, "failed")      # plan marked it failed
        return False
    except Exception as e:
        reason = str(e) if isinstance(e, ChronoscopeError) else \
            f"internal error: {type(e).__name__}: {e}"
        try:
            pipeline.fail(settings, video_id, reason)
        except NotFound:
            return False
        flow.announce(settings, None, video_id, "failed")
        raise
    flow.announce(settings, None, video_id, "ready")
    return False
