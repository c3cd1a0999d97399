"""The broker: the Celery configuration every process shares, a send-only app for the API,
and the one place where broker outages (Redis, kombu) become core.errors.TransientError."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from celery import Celery
from kombu import Queue
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.config import WorkerSettings, get_settings
from core.errors import TransientError
from workers.names import CPU, GPU, QUEUE_OF, QUEUES

BROKER_DOWN = (KombuOperationalError, RedisConnectionError, RedisTimeoutError,
               ConnectionError, TimeoutError)
# kombu's Redis transport keeps priorities 3, 6 and 9 of a queue in lists of their own.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


@contextmanager
def transient_errors() -> Iterator[None]:
    """Broker outages as TransientError, with the client's error as the cause."""
    try:
        yield
    except BROKER_DOWN as e:
        raise TransientError(f"the broker is unavailable: {type(e).__name__}: {e}") from e


def create_app(broker_url: str, worker: WorkerSettings) -> Celery:
    app = Celery("chronoscope", broker=broker_url or None, set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"],
        task_ignore_result=True,         # state lives in the database, not in a result backend
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,    # long tasks: a worker holds no more than it runs
        task_queues=(Queue(CPU), Queue(GPU)), task_default_queue=CPU,
        task_routes={name: {"queue": queue} for name, queue in QUEUE_OF.items()},
        broker_transport_options={"visibility_timeout": worker.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,   # ride out a broker restart
        worker_send_task_events=True, task_send_sent_event=True,   # for Flower
        worker_hijack_root_logger=False,
    )
    return app


@lru_cache
def producer(broker_url: str) -> Celery:
    """An app that only sends (the API process): tasks are sent by name."""
    return create_app(broker_url, get_settings().worker)


def send_task(app: Celery, task: str, args: tuple) -> None:
    with transient_errors():
        app.send_task(task, args=args, queue=QUEUE_OF[task])


def ping(app: Celery) -> None:
    """Raise TransientError unless the broker answers."""
    with transient_errors(), app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def queue_lengths(app: Celery) -> dict[str, int]:
    with transient_errors(), app.connection_for_read() as conn:
        client = conn.default_channel.client
        return {q: sum(client.llen(q + suffix) for suffix in PRIORITY_SUFFIXES)
                for q in QUEUES}


def queued_messages(app: Celery) -> Iterator[bytes]:
    """The raw messages waiting in the Redis lists of our queues."""
    with transient_errors(), app.connection_for_read() as conn:
        client = conn.default_channel.client
        for queue in QUEUES:
            for suffix in PRIORITY_SUFFIXES:
                yield from client.lrange(queue + suffix, 0, -1)


def take_lock(app: Celery, name: str, holder: str, ttl_ms: int) -> bool:
    """A Redis lock that expires by itself; True when this caller got it."""
    with transient_errors(), app.connection_for_write() as conn:
        return bool(conn.default_channel.client.set(name, holder, nx=True, px=ttl_ms))
