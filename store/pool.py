"""How big the database connection pool is, and what a request that finds it empty gets.

The pool must hold what the API runs at once: every search in flight (at most
`api.max_concurrent_searches`, each with up to two connections: the request's session and
the search's own) plus the other sync routes, each in one of the threadpool's threads. Its
timeout is short, so a starved request fails fast with TransientError (the API answers 503 +
Retry-After) instead of hanging for SQLAlchemy's default 30 s.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc

from core.config import Settings
from core.errors import TransientError

# Starlette runs sync routes and dependencies in anyio's threadpool, 40 threads by default:
# no more requests than that can hold a connection at once.
THREADPOOL = 40
CONNECTIONS_PER_SEARCH = 2
SPARE = 4            # healthz, metrics, listings alongside a full search load
MIN_OVERFLOW = 10


def pool_size(settings: Settings) -> int:
    if settings.database.pool_size is not None:
        return settings.database.pool_size
    return CONNECTIONS_PER_SEARCH * settings.api.max_concurrent_searches + SPARE


def max_overflow(settings: Settings) -> int:
    if settings.database.max_overflow is not None:
        return settings.database.max_overflow
    return max(MIN_OVERFLOW, THREADPOOL - settings.api.max_concurrent_searches)


def engine_options(settings: Settings) -> dict:
    """Keyword arguments for `create_engine(settings.db_url, **engine_options(settings))`.
    SQLite in memory keeps SQLAlchemy's single-connection pool, which takes no sizes."""
    url = settings.db_url
    if url.startswith("sqlite") and (url in ("sqlite://", "sqlite:///:memory:")
                                     or ":memory:" in url):
        return {}
    options = {"pool_size": pool_size(settings), "max_overflow": max_overflow(settings),
               "pool_timeout": settings.database.pool_timeout_s}
    if not url.startswith("sqlite"):
        options["pool_pre_ping"] = True
    return options


@contextmanager
def starved_as_transient() -> Iterator[None]:
    """Turn "no free connection within pool_timeout" into TransientError (503, retry later);
    wrap where a session is opened (store.db.session_scope, the engine's connect)."""
    try:
        yield
    except exc.TimeoutError as e:       # QueuePool limit reached, connection timed out
        raise TransientError("the database is busy (no free connection); retry in a few "
                             "seconds") from e
