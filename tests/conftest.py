"""Shared fixtures: settings against both databases (a SQLite file and the local Postgres),
and the sample media. Nothing here fakes a component: the databases are real."""

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from core.config import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
PG_ADMIN = os.environ.get("CHRONOSCOPE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _admin():
    return create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_template():
    """A migrated template database; each test gets a copy of it (fast and isolated)."""
    from store.db import migrate
    name = f"chronoscope_tmpl_{uuid.uuid4().hex[:8]}"
    admin = _admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    migrate(engine)
    engine.dispose()
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_template):
    name = f"chronoscope_test_{uuid.uuid4().hex[:8]}"
    admin = _admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    from store import db
    engine = db._engines.pop(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", None)
    if engine is not None:
        engine.dispose()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request, tmp_path) -> Settings:
    """Settings on a fresh database of each kind, with its own data directory."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    return Settings(home=tmp_path / "home", database_url=url)


@pytest.fixture
def sqlite_settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture(scope="session")
def media() -> Path:
    assert MEDIA.is_dir(), f"sample media not found at {MEDIA}"
    return MEDIA
