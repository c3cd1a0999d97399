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
    from alembic import command
    from alembic.config import Config

    from store import db
    engine = create_engine(f"sqlite:///{tmp_path / 'index.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        for vid in ("a", "b"):
            conn.execute(text(
                "INSERT INTO videos (id, tenant, filename, path, sha256, size_bytes, status, "
                "notes, chunks_total, chunks_done, created_at, updated_at) VALUES (:id, "
                "'default', 'x.mp4', '/x.mp4', 'f00d', 0, 'ready', '[]', 0, 0, "
                "'2026-01-01', '2026-01-01')"), {"id": vid})
    with pytest.raises(RuntimeError, match="2 videos of the same content"):
        db.migrate(engine)
    engine.dispose()
