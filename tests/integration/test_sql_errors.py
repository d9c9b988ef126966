"""Driver errors are translated to domain errors in one place (adapters/sql/errors.py)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa

from tokenwarden.adapters.sql.errors import translate
from tokenwarden.domain.errors import Conflict, InvalidInput, NotFound, Unavailable


def wrapped(cls: type[sa.DBAPIError], orig: Exception, invalidated: bool = False) -> sa.DBAPIError:
    return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (wrapped(sa.OperationalError, sqlite3.OperationalError("database is locked")), Unavailable),
        (wrapped(sa.InterfaceError, sqlite3.InterfaceError("closed")), Unavailable),
        (wrapped(sa.ProgrammingError, sqlite3.ProgrammingError("gone"), invalidated=True), Unavailable),
        (sa.TimeoutError("QueuePool limit reached"), Unavailable),
        (wrapped(sa.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")), Conflict),
        (wrapped(sa.DataError, sqlite3.DataError("value out of range")), InvalidInput),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), InvalidInput),
    ],
)
def test_driver_errors_become_domain_errors(error: BaseException, expected: type[Exception]) -> None:
    assert isinstance(translate(error), expected)


def test_bugs_and_domain_errors_are_left_alone() -> None:
    assert translate(wrapped(sa.ProgrammingError, sqlite3.ProgrammingError("syntax error"))) is None
    assert translate(NotFound("x")) is None
    assert translate(ValueError("x")) is None


def test_the_unit_of_work_translates_what_its_work_raises(tmp_path: object) -> None:
    from pathlib import Path

    from sqlalchemy import text

    from tokenwarden.adapters.sql.unit_of_work import SqlDatabase

    db = SqlDatabase(f"sqlite:///{Path(str(tmp_path)) / 'x.db'}")

    def work(error: BaseException) -> None:
        with db() as uow:
            uow._conn.execute(text("SELECT 1"))  # type: ignore[union-attr]
            raise error

    with pytest.raises(Unavailable):
        work(wrapped(sa.OperationalError, sqlite3.OperationalError("database is locked")))
    with pytest.raises(Conflict):
        work(wrapped(sa.IntegrityError, sqlite3.IntegrityError("FOREIGN KEY constraint failed")))
    db.dispose()
