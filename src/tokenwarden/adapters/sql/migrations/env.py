"""Alembic environment: runs on the connection tokenwarden hands it (or the configured URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from tokenwarden.adapters.sql.engine import make_engine
from tokenwarden.adapters.sql.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)


run_migrations_online()
