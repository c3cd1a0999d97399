"""Engine, sessions and schema migration. The caller owns the transaction.

A database that cannot be reached (refused, dropped, timed out) surfaces as
core.errors.TransientError from here, the one place that knows the driver's errors: the API
answers it with 503, tasks retry it."""

import fcntl
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.errors import TransientError
from store.pool import engine_options, starved_as_transient

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
_engines: dict[str, Engine] = {}
_health_engines: dict[str, Engine] = {}
_lock = threading.Lock()
MIGRATE_LOCK_KEY = 0x6368726F6E6F  # Postgres advisory lock id ("chrono")
# An outage or a hiccup, not a bug: worth a retry. (IntegrityError is not here: callers
# catch it to settle races.) psycopg's own error is added where psycopg is loaded: a process
# on SQLite never imports it (a third of a second of a command line's start).
DATABASE_DOWN = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)
REVISION = re.compile(r"""^(down_)?revision\s*=\s*["']?([\w.-]+)""", re.M)


def _down_errors() -> tuple:
    psycopg = sys.modules.get("psycopg")
    return DATABASE_DOWN + (psycopg.OperationalError,) if psycopg else DATABASE_DOWN


@contextmanager
def transient_errors() -> Iterator[None]:
    """Database outages as TransientError, with the driver's error as the cause; a starved
    pool says so (busy, not down)."""
    try:
        with starved_as_transient():
            yield
    except _down_errors() as e:
        raise TransientError(f"the database is unavailable: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from e


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets readers (search, status) run while a worker writes; foreign keys for cascades.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def get_engine(settings: Settings) -> Engine:
    """One engine per URL per process, migrated to head on first use."""
    url = settings.db_url
    with _lock, transient_errors():
        if url not in _engines:
            if url.startswith("sqlite"):
                settings.home.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": 30},
                                       **engine_options(settings))
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, **engine_options(settings))
            migrate(engine)
            _engines[url] = engine
        return _engines[url]


def migrate(engine: Engine) -> None:
    """Upgrade to head, one process at a time: the API and every worker start together and
    each migrates; the others wait for the lock, then find the schema at head. A database
    already at head is left alone without loading alembic (half a second of every
    command-line search)."""
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Held to the end of this transaction, which holds the (transactional) DDL.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def head_revision() -> str | None:
    """The one revision of migrations/versions that no other revises; None when that is not
    plain to see from the files (then alembic decides)."""
    revisions, revised = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for down, rev in REVISION.findall(path.read_text()):
            (revised if down else revisions).add(rev)
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:      # no such table yet; an outage shows again in the upgrade
        return False
    return [r[0] for r in rows] == [head]


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield      # closing the file releases the lock


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with transient_errors():
        factory = sessionmaker(get_engine(settings), expire_on_commit=False)
        with factory() as session, session.begin():
            yield session


def ping(settings: Settings, *, timeout_s: float = 2.0) -> None:
    """Raise TransientError unless the database answers, within about `timeout_s`. Its own
    one-connection engine, never migrated: a health check must not queue behind the
    requests that share the main pool, nor run a migration."""
    with transient_errors(), _health_engine(settings, timeout_s).connect() as conn:
        conn.execute(text("SELECT 1"))


def _health_engine(settings: Settings, timeout_s: float) -> Engine:
    url = settings.db_url
    if not engine_options(settings):        # SQLite in memory: only the one engine sees it
        return get_engine(settings)
    with _lock:
        if url not in _health_engines:
            if url.startswith("sqlite"):
                args = {"timeout": timeout_s}
            else:
                args = {"connect_timeout": max(1, round(timeout_s))}
            _health_engines[url] = create_engine(url, pool_size=1, max_overflow=0,
                                                 pool_timeout=timeout_s, pool_pre_ping=True,
                                                 connect_args=args)
        return _health_engines[url]
