"""The Celery app over Redis, on top of the flow: queues and routes come from
`workers.broker`, what to run next from `workers.flow`.

Late acks with reject-on-worker-lost: a task whose worker dies is delivered again rather than
lost. Redis keeps an unacked message invisible for the visibility timeout, and loses every
message when it restarts without persistence, so each worker also runs `flow.reconcile` on
start and then periodically: the database says what remains to do, and whatever no queue and
no live worker holds is sent again (every step is idempotent, so a duplicate costs only time).
"""

import logging
import os
import threading

from celery import Celery
from celery import signals as celery_signals

from core.config import WorkerSettings, get_settings
from core.errors import TransientError
from workers import flow
from workers.broker import create_app

log = logging.getLogger(__name__)


def worker_settings() -> WorkerSettings:
    return get_settings().worker


app = create_app(get_settings().broker_url, worker_settings())
app.conf.imports = ("workers.tasks",)


def run_worker(queues: list[str], *, concurrency: int, loglevel: str) -> None:
    # Gossip and mingle only chatter between workers; chronoscope coordinates through the
    # database, and without them a worker starts faster and rides out a broker restart.
    app.worker_main(["worker", "-Q", ",".join(queues), "-c", str(concurrency),
                     "-n", f"{'-'.join(queues)}.{os.getpid()}@%h", "-l", loglevel,
                     "--without-gossip", "--without-mingle"])


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
    node = f"{os.uname().nodename}:{os.getpid()}"
    while not _stop.is_set():
        try:
            sent = flow.reconcile(get_settings(), celery_app, node=node, interval_s=interval,
                                  min_age_s=worker_settings().reconcile_min_age_s)
            if sent:
                log.warning("reconcile: sent again %d lost unit(s): %s", len(sent),
                            ", ".join(map(str, sent)))
        except TransientError as e:   # an outage: next round
            log.warning("reconcile: %s; retrying in %.0f s", e, interval)
        except Exception:
            log.exception("reconcile failed; retrying in %.0f s", interval)
        _stop.wait(interval)
