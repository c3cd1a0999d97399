"""Thin Celery tasks over the indexer's functions: ids in, one pipeline call, then `flow`
says what comes next. The retry policy lives in the decorators: transient errors (database,
broker, a unit written twice at once) retry with exponential backoff and jitter; anything
else, or retries spent, fails the video with its reason (VideoTask.on_failure)."""

import logging

from celery import Task
from celery.exceptions import Retry
from sqlalchemy.exc import IntegrityError

from core.config import get_settings
from core.errors import TransientError
from indexer import pipeline
from store.schema import PROCESSING, QUEUED
from workers import flow, webhooks
from workers.celery_app import app, worker_settings
from workers.names import CAPTION, CHUNK, FINALIZE, NOTIFY, PLAN

# Database and broker outages arrive as TransientError (store.db, workers.broker).
# IntegrityError: two deliveries of one unit racing to record it (the unit's primary key
# stops the second), or a video deleted under a running chunk; the retry then skips the
# finished unit or finds the video gone.
TRANSIENT = (TransientError, IntegrityError)

log = logging.getLogger(__name__)


class VideoTask(Task):
    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Retry:
            raise
        except Exception:
            # A video deleted under its running task (its rows or its file already gone):
            # nothing went wrong, the work just ends, without an error in the log.
            if not (args and _deleted(args[0])):
                raise
            log.info("video %s was deleted while indexing: %s dropped", args[0], self.name)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        flow.give_up(get_settings(), self.app, args[0], exc)


def _deleted(video_id: str) -> bool:
    try:
        return flow.status(get_settings(), video_id) is None
    except Exception:        # the database is away: not known to be deleted
        return False


_ws = worker_settings()
POLICY = dict(base=VideoTask, autoretry_for=TRANSIENT, max_retries=_ws.max_retries,
              retry_backoff=2, retry_backoff_max=_ws.retry_backoff_max_s, retry_jitter=True,
              acks_late=True, reject_on_worker_lost=True)


@app.task(name=PLAN, **POLICY)
def plan(video_id: str) -> None:
    settings = get_settings()
    if flow.status(settings, video_id) not in (QUEUED, PROCESSING):
        return      # deleted, failed, or already ready: a late duplicate
    pipeline.plan(settings, video_id)
    flow.advance(settings, app, video_id)


@app.task(name=CHUNK, **POLICY)
def index_chunk(video_id: str, idx: int) -> None:
    _chunk(video_id, idx, captioned=False)


@app.task(name=CAPTION, **POLICY)
def caption_chunk(video_id: str, idx: int) -> None:
    _chunk(video_id, idx, captioned=True)


def _chunk(video_id: str, idx: int, *, captioned: bool) -> None:
    """One chunk's CPU signals, or its Qwen3-VL captions (a separate task, on a GPU)."""
    settings = get_settings()
    if flow.status(settings, video_id) != PROCESSING:
        return
    stage = flow.gpu_settings if captioned else flow.cpu_settings
    pipeline.index_chunk(stage(settings), video_id, idx)
    flow.after_chunk(settings, app, video_id, idx, captioned=captioned)


@app.task(name=FINALIZE, **POLICY)
def finalize(video_id: str) -> None:
    settings = get_settings()
    if flow.status(settings, video_id) != PROCESSING:
        return
    pipeline.finalize(settings, video_id)
    flow.announce(settings, app, video_id, "ready")


# A webhook that cannot be delivered never fails the video: no VideoTask here. Receivers
# get up to about an hour of retries.
@app.task(name=NOTIFY, bind=True, autoretry_for=(TransientError,),
          max_retries=10, retry_backoff=5, retry_backoff_max=900, retry_jitter=True,
          acks_late=True)
def notify(self, video_id: str, status: str) -> None:
    webhooks.deliver(get_settings(), video_id, status, first_attempt=self.request.retries == 0)
