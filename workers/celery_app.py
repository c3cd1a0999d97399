"""The Celery app over Redis: a `cpu` queue (plan, decode, speech, OCR, finalize, webhooks)
and a `gpu` queue (Qwen3-VL captions), so each pool is sized on its own.

Late acks with reject-on-worker-lost: a task whose worker dies is delivered again rather than
lost. Redis keeps an unacked message invisible for the visibility timeout, and loses every
message when it restarts without persistence, so each worker also runs `flow.reconcile` on
start and then periodically: the database says what remains to do, and whatever no queue and
no live worker holds is sent again (every step is idempotent, so a duplicate costs only time).
"""

import logging
import os
import threading
from functools import lru_cache

from celery import Celery
from celery import signals as celery_signals
from kombu import Queue
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from core.config import WorkerSettings, get_settings

log = logging.getLogger(__name__)

CPU, GPU = "cpu", "gpu"
PLAN = "chronoscope.plan"
CHUNK = "chronoscope.index_chunk"
CAPTION = "chronoscope.caption_chunk"
FINALIZE = "chronoscope.finalize"
NOTIFY = "chronoscope.notify"
QUEUE_OF = {PLAN: CPU, CHUNK: CPU, CAPTION: GPU, FINALIZE: CPU, NOTIFY: CPU}


def worker_settings() -> WorkerSettings:
    return get_settings().worker


def create_app(broker_url: str) -> Celery:
    app = Celery("chronoscope", broker=broker_url or None, set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"],
        task_ignore_result=True,         # state lives in the database, not in a result backend
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,    # long tasks: a worker holds no more than it runs
        task_queues=(Queue(CPU), Queue(GPU)), task_default_queue=CPU,
        task_routes={name: {"queue": queue} for name, queue in QUEUE_OF.items()},
        broker_transport_options={"visibility_timeout": worker_settings().visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,   # ride out a broker restart
        worker_send_task_events=True, task_send_sent_event=True,   # for Flower
        worker_hijack_root_logger=False,
    )
    return app


@lru_cache
def producer(broker_url: str) -> Celery:
    """An app that only sends (the API process): tasks are sent by name."""
    return create_app(broker_url)


app = create_app(get_settings().broker_url)
app.conf.imports = ("workers.tasks",)


@celery_signals.worker_process_init.connect
def _fresh_connections(**_) -> None:
    # A forked pool process must not share the parent's pooled database connections.
    from store import db
    for engine in list(db._engines.values()):
        engine.dispose(close=False)


_stop = threading.Event()


@celery_signals.worker_ready.connect
def _start_reconciler(sender=None, **_) -> None:
    interval = worker_settings().reconcile_interval_s
    if interval <= 0:
        return
    _stop.clear()
    threading.Thread(target=_reconcile_loop, args=(sender.app, interval), daemon=True,
                     name="chronoscope-reconcile").start()


@celery_signals.worker_shutting_down.connect
def _stop_reconciler(**_) -> None:
    _stop.set()


def _reconcile_loop(celery_app: Celery, interval: float) -> None:
    from workers import flow
    node = f"{os.uname().nodename}:{os.getpid()}"
    while not _stop.is_set():
        try:
            sent = flow.reconcile(get_settings(), celery_app, node=node, interval_s=interval,
                                  min_age_s=worker_settings().reconcile_min_age_s)
            if sent:
                log.warning("reconcile: sent again %d lost unit(s): %s", len(sent),
                            ", ".join(map(str, sent)))
        except (BrokerError, RedisError, DBAPIError) as e:   # an outage: next round
            log.warning("reconcile: %s; retrying in %.0f s", e, interval)
        except Exception:
            log.exception("reconcile failed; retrying in %.0f s", interval)
        _stop.wait(interval)
