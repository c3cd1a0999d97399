"""Engine, sessions and schema migration. The caller owns the transaction.

A database that cannot be reached (refused, dropped, timed out) surfaces as
core.errors.TransientError from here, the one place that knows the driver's errors: the API
answers it with 503, tasks retry it."""

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
import psycopg
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from core.config import Settings
from core.errors import TransientError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()
MIGRATE_LOCK_KEY = 0x6368726F6E6F  # Postgres advisory lock id ("chrono")
# An outage or a hiccup, not a bug: worth a retry. (IntegrityError is not here: callers
# catch it to settle races.)
DATABASE_DOWN = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout,
                 psycopg.OperationalError)


@contextmanager
def transient_errors() -> Iterator[None]:
    """Database outages as TransientError, with the driver's error as the cause."""
    try:
        yield
    except DATABASE_DOWN as e:
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
                engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            migrate(engine)
            _engines[url] = engine
        return _engines[url]


def migrate(engine: Engine) -> None:
    """Upgrade to head, one process at a time: the API and every worker start together and
    each migrates; the others wait for the lock, then find the schema at head."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Held to the end of this transaction, which holds the (transactional) DDL.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


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


def ping(settings: Settings) -> None:
    """Raise TransientError unless the database answers."""
    with transient_errors(), get_engine(settings).connect() as conn:
        conn.execute(text("SELECT 1"))
