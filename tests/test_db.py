"""Schema migrations: the API and several workers starting at once on an empty database, and
an upgrade that cannot apply (duplicate content) stopping with a reason."""

import multiprocessing
import uuid

import pytest
from sqlalchemy import create_engine, inspect, text

from conftest import PG_ADMIN, _admin


def _migrate(url: str, barrier) -> None:
    from store import db
    engine = create_engine(url)
    barrier.wait()
    db.migrate(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.db'}"
        return
    name = f"chronoscope_empty_{uuid.uuid4().hex[:8]}"
    admin = _admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_concurrent_first_migrations_all_succeed(empty_url):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_migrate, args=(empty_url, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    engine = create_engine(empty_url)
    assert {"videos", "segments", "chunks", "api_keys"} <= set(inspect(engine).get_table_names())
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_duplicate_content_stops_the_upgrade_with_a_reason(tmp_path):
    """A database that already holds two videos of one content (made before the unique
    index) is not silently changed: the upgrade stops and says what to do."""
    from store import db
    engine = _sqlite_at(tmp_path, "0002")
    with engine.begin() as conn:
        for vid in ("a", "b"):
            conn.execute(text(
                "INSERT INTO videos (id, tenant, filename, path, sha256, size_bytes, status, "
                "notes, chunks_total, chunks_done, created_at, updated_at) VALUES (:id, "
                "'default', 'x.mp4', '/x.mp4', 'f00d', 0, 'ready', '[]', 0, 0, "
                "'2026-01-01', '2026-01-01')"), {"id": vid})
    with pytest.raises(RuntimeError, match="2 videos of the same content"):
        db.migrate(engine)
    engine.dispose()


def _alembic_config():
    from alembic.config import Config

    from store import db
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    return cfg


def _sqlite_at(tmp_path, revision: str):
    """A new SQLite database upgraded by alembic to `revision`."""
    from alembic import command
    engine = create_engine(f"sqlite:///{tmp_path / 'index.db'}")
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


def test_the_head_read_from_the_files_is_alembics_head():
    from alembic.script import ScriptDirectory

    from store import db
    assert db.head_revision() == ScriptDirectory.from_config(_alembic_config()).get_current_head()


def test_an_older_schema_is_upgraded_and_one_at_head_is_left_alone(tmp_path):
    """The cheap version check skips only a database at head: one at 0005 still gets the
    0006 columns."""
    from store import db
    engine = _sqlite_at(tmp_path, "0005")
    assert "container" not in {c["name"] for c in inspect(engine).get_columns("videos")}
    db.migrate(engine)
    assert "container" in {c["name"] for c in inspect(engine).get_columns("videos")}
    with engine.begin() as conn:      # a schema at head is not touched: not even re-stamped
        conn.execute(text("DROP TABLE shots"))
    db.migrate(engine)
    assert "shots" not in inspect(engine).get_table_names()
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).all() == \
               [(db.head_revision(),)]
    engine.dispose()
