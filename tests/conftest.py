"""Fixtures shared by every test layer.

``postgres_url``: a fresh, empty PostgreSQL database for the whole test session (dropped at the
end), as a SQLAlchemy URL. The admin connection defaults to ``host=127.0.0.1 user=postgres
dbname=postgres`` and can be changed with ``TW_TEST_POSTGRES_DSN`` (a libpq conninfo string).

When the server cannot be reached, tests that need it are skipped with the reason — except when
the ``CI`` environment variable is set: there they FAIL, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

DEFAULT_ADMIN_DSN = "host=127.0.0.1 user=postgres dbname=postgres"


def _admin_dsn() -> str:
    return os.environ.get("TW_TEST_POSTGRES_DSN", DEFAULT_ADMIN_DSN)


def _sqlalchemy_url(dsn: str, database: str) -> str:
    info = conninfo_to_dict(dsn)
    url = URL.create(
        "postgresql+psycopg",
        username=str(info.get("user", "postgres")),
        password=str(info["password"]) if info.get("password") else None,
        host=str(info.get("host", "127.0.0.1")),
        port=int(info.get("port", 5432)),
        database=database,
    )
    return url.render_as_string(hide_password=False)


def _admin_connection() -> psycopg.Connection:
    """An autocommit connection to the maintenance database, or skip/fail as the rule says."""
    dsn = _admin_dsn()
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        reason = f"PostgreSQL not reachable with {dsn!r}: {type(exc).__name__}: {str(exc).strip()[:200]}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: PostgreSQL tests must run, never skip)", pytrace=False)
        print(f"\n[tokenwarden tests] skipping PostgreSQL tests: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_database_factory() -> Iterator[Callable[[], str]]:
    """Create fresh empty databases named ``tw_test_<hex>``; all are dropped at session end."""
    admin = _admin_connection()  # skips (or fails in CI) once for the whole session
    created: list[str] = []

    def make() -> str:
        name = f"tw_test_{secrets.token_hex(6)}"
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return _sqlalchemy_url(_admin_dsn(), name)

    yield make
    with admin:
        for name in created:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def postgres_url(postgres_database_factory: Callable[[], str]) -> str:
    """SQLAlchemy URL of a fresh, empty (no schema) PostgreSQL database for this session."""
    return postgres_database_factory()
