"""Schema migration when the API and several workers start at once on an empty database."""

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
