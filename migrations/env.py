"""Alembic environment: uses the caller's connection (store.db.migrate) or, from the
`alembic` command line, the database of the settings."""

from alembic import context
from sqlalchemy import create_engine

from core.config import get_settings
from store.schema import Base

target_metadata = Base.metadata


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    with create_engine(get_settings().db_url).begin() as conn:
        run(conn)
