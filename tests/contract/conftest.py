"""One repository contract suite, every backend: memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tokenwarden.adapters.memory.store import MemoryDatabase
from tokenwarden.adapters.sql.tables import metadata
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.ports.repositories import Database

# Every table of the schema, children first: derived from the metadata, so a new table can never
# be left out of the reset (a hand-kept list had silently missed watermarks, invitations, ...).
ALL_TABLES = tuple(table.name for table in reversed(metadata.sorted_tables))

SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
BACKENDS = ["memory", *SQL_BACKENDS]


@pytest.fixture(scope="session")
def contract_postgres(postgres_database_factory: Callable[[], str]) -> Iterator[SqlDatabase]:
    """One migrated PostgreSQL database for the contract suite (separate from ``postgres_url``)."""
    database = SqlDatabase(postgres_database_factory())
    database.upgrade()
    yield database
    database.dispose()


def _sqlite(tmp_path: Path) -> SqlDatabase:
    database = SqlDatabase(f"sqlite:///{(tmp_path / 'x.db').as_posix()}")
    database.upgrade()
    return database


def _clean_postgres(request: pytest.FixtureRequest) -> SqlDatabase:
    database: SqlDatabase = request.getfixturevalue("contract_postgres")
    with database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE TABLE {', '.join(ALL_TABLES)} RESTART IDENTITY CASCADE"))
    return database


def _open(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    backend = request.param
    if backend == "memory":
        yield MemoryDatabase()
    elif backend == "sqlite":
        database = _sqlite(tmp_path)
        yield database
        database.dispose()
    else:
        yield _clean_postgres(request)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, migrated store of each backend."""
    yield from _open(request, tmp_path)


@pytest.fixture(params=SQL_BACKENDS)
def sql_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabase]:
    """An empty, migrated SQL store (SQLite and PostgreSQL only)."""
    for database in _open(request, tmp_path):
        assert isinstance(database, SqlDatabase)
        yield database
