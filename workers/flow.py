"""What remains to do for a video, read from the database (the source of truth), and how
each unit of work reaches a queue.

plan -> one `index_chunk` per chunk (cpu queue: decode, speech, OCR) -> with Qwen3-VL
configured, one `caption_chunk` per chunk (gpu queue) -> `finalize` -> `notify` (webhook).
No chord and no result backend: the task that completes the last unit sees it in the
database and sends `finalize`, so a broker that forgets everything loses nothing that
`reconcile` cannot rebuild from the rows.
"""

import ast
import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from celery import Celery

from core.config import Settings
from core.errors import ChronoscopeError, NotFound, TransientError
from store import queries
from store.db import session_scope
from store.schema import PROCESSING, QUEUED, Video
from workers import broker
from workers.names import CAPTION, CHUNK, FINALIZE, NOTIFY, PLAN, QUEUE_OF

log = logging.getLogger(__name__)
RECONCILE_LOCK = "chronoscope:reconcile"


@dataclass(frozen=True, order=True)
class Unit:
    task: str
    video_id: str
    idx: int | None = None

    @property
    def args(self) -> tuple:
        return (self.video_id,) if self.idx is None else (self.video_id, self.idx)

    def __str__(self) -> str:
        name = self.task.rsplit(".", 1)[-1]
        return f"{name}({self.video_id}{'' if self.idx is None else f', {self.idx}'})"


def cpu_settings(settings: Settings) -> Settings:
    """The chunk's CPU signals only; its Qwen3-VL captions are a separate task on a GPU."""
    return settings.model_copy(update={"qwen": settings.qwen.model_copy(update={"model": ""})})


def gpu_settings(settings: Settings) -> Settings:
    """Qwen3-VL only: speech and screen text are done (and read back as context)."""
    return settings.model_copy(update={
        "speech": settings.speech.model_copy(update={"enabled": False}),
        "ocr": settings.ocr.model_copy(update={"enabled": False})})


def remaining(session, video: Video) -> list[Unit]:
    """The units a video still needs, from its rows alone (captions: if its plan has them)."""
    if video.status == QUEUED:
        return [Unit(PLAN, video.id)]
    if video.status != PROCESSING:
        return []
    chunks = queries.get_chunks(session, video_id=video.id)
    todo = [Unit(CHUNK, video.id, c.idx) for c in chunks if c.done_at is None]
    if video.captions:
        captioned = queries.captioned_chunks(session, video_id=video.id)
        todo += [Unit(CAPTION, video.id, c.idx) for c in chunks
                 if c.done_at is not None and c.idx not in captioned]
    return todo or [Unit(FINALIZE, video.id)]


def status(settings: Settings, video_id: str) -> str | None:
    """The video's status, or None once it is deleted."""
    with session_scope(settings) as s:
        return queries.video_status(s, video_id=video_id)


def send(app: Celery, unit: Unit) -> bool:
    """Publish one unit. A broker that is down is not the task's failure: the unit stays
    visible in the database and `reconcile` sends it once the broker is back."""
    try:
        broker.send_task(app, unit.task, unit.args)
        return True
    except TransientError as e:
        log.warning("could not send %s (%s); reconcile will send it again", unit, e)
        return False


def advance(settings: Settings, app: Celery, video_id: str) -> list[Unit]:
    """After plan: send every unit the video still needs (all chunks on a first run, the
    unfinished ones on a resume)."""
    units = _remaining(settings, video_id)
    for unit in units:
        send(app, unit)
    return units


def after_chunk(settings: Settings, app: Celery, video_id: str, idx: int, *,
                captioned: bool) -> None:
    """After one chunk's CPU signals (captioned=False) or its captions (True): caption it
    next, or, when it was the last unit, finalize. Runs after the chunk's commit, so of two
    chunks finishing together the later one always sees both done (both may: finalize is
    idempotent)."""
    with session_scope(settings) as s:
        video = queries.find_video(s, video_id=video_id)
        captions = video is not None and video.captions
    if not captioned and captions:
        send(app, Unit(CAPTION, video_id, idx))
        return
    units = _remaining(settings, video_id)
    if units == [Unit(FINALIZE, video_id)]:
        send(app, units[0])


def _remaining(settings: Settings, video_id: str) -> list[Unit]:
    with session_scope(settings) as s:
        video = queries.find_video(s, video_id=video_id)
        return remaining(s, video) if video is not None else []


def give_up(settings: Settings, app: Celery | None, video_id: str, exc: BaseException) -> None:
    """A task failed for good: the video is failed with a reason a user can act on."""
    if isinstance(exc, NotFound):
        log.info("video %s is gone (deleted while indexing); dropping its task", video_id)
        return
    if isinstance(exc, ChronoscopeError):
        reason = str(exc)
    else:
        reason = f"internal error: {type(exc).__name__}: {exc}"
    from indexer import pipeline
    try:
        pipeline.fail(settings, video_id, reason)
    except NotFound:
        return
    announce(settings, app, video_id, "failed")


def announce(settings: Settings, app: Celery | None, video_id: str, new_status: str) -> None:
    """Queue the video's webhook, if it has one; without a broker, deliver it here."""
    from workers import webhooks
    if not webhooks.has_webhook(settings, video_id):
        return
    if app is None:
        webhooks.deliver_inline(settings, video_id, new_status)
    else:
        try:
            broker.send_task(app, NOTIFY, (video_id, new_status))
        except TransientError:
            log.exception("could not queue the %s webhook of %s", new_status, video_id)


def run_inline(settings: Settings, video_id: str) -> None:
    """The embedded mode (no broker): the same steps in this process, then the webhook."""
    from indexer import pipeline
    try:
        pipeline.index_video(settings, video_id)
    except NotFound:
        return
    except Exception:
        log.exception("indexing %s failed", video_id)   # index_video marked it failed
        announce(settings, None, video_id, "failed")
        return
    announce(settings, None, video_id, "ready")


def unfinished(settings: Settings) -> list[str]:
    """Videos queued or in progress, oldest first (what an embedded server resumes)."""
    with session_scope(settings) as s:
        return [v.id for v in queries.active_videos(s)]


# --- recovery ------------------------------------------------------------------------------

def _unit_of(task: str | None, args) -> Unit | None:
    if task not in QUEUE_OF or task == NOTIFY:
        return None
    if isinstance(args, str):        # some Celery versions report args as their repr
        args = ast.literal_eval(args)
    args = list(args or [])
    return Unit(task, *args[:2]) if args else None


def _decode_message(raw: bytes) -> Unit | None:
    try:
        msg = json.loads(raw)
        body = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return _unit_of(msg.get("headers", {}).get("task"), args)
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def queued_units(app: Celery) -> set[Unit]:
    """Units waiting in the Redis lists of our queues."""
    return {unit for raw in broker.queued_messages(app)
            if (unit := _decode_message(raw)) is not None}


def worker_units(app: Celery, timeout: float = 1.0) -> set[Unit]:
    """Units that live workers are running, hold prefetched, or wait to retry (ETA)."""
    found: set[Unit] = set()
    inspect = app.control.inspect(timeout=timeout)
    for method in (inspect.active, inspect.reserved, inspect.scheduled):
        with broker.transient_errors():
            replies = method() or {}
        for tasks in replies.values():
            for t in tasks:
                req = t.get("request", t)     # scheduled entries wrap the request
                if (unit := _unit_of(req.get("name") or req.get("type"), req.get("args"))):
                    found.add(unit)
    return found


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)   # SQLite drops the zone


def reconcile(settings: Settings, app: Celery, *, node: str = "", interval_s: float = 0,
              min_age_s: float = 30.0) -> list[Unit]:
    """Send again every unit the database still needs that no queue and no live worker
    holds: messages lost with a restarted broker, or held unacked by a killed worker; and
    sync the vector index. One worker per interval does it (a Redis lock); returns what it
    sent."""
    if interval_s and not broker.take_lock(app, RECONCILE_LOCK, node or "1",
                                           max(1, int(interval_s * 900))):
        return []
    # The vector index catches up with the database too: a sync lost with a killed worker,
    # or an index an older version wrote (its state reads as unreadable and is rebuilt).
    from indexer import index_sync
    try:
        index_sync.sync(settings)
    except Exception as e:            # never in the way of sending lost work again
        log.warning("reconcile: vector index sync failed: %s", e)
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=min_age_s)
    with session_scope(settings) as s:
        todo = {unit for v in queries.active_videos(s)
                if v.status != QUEUED or _aware(v.updated_at) <= cutoff
                for unit in remaining(s, v)}
    if not todo:
        return []
    # Queues first, then workers: a message moving from one to the other is seen at least
    # once in that order.
    known = queued_units(app) | worker_units(app)
    planning = {u.video_id for u in known if u.task == PLAN}   # its plan sends the rest
    lost = sorted(u for u in todo - known if u.task == PLAN or u.video_id not in planning)
    for unit in lost:
        send(app, unit)
    return lost

