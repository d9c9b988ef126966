"""Driver errors become domain errors here, and only here (ory/hydra's ``HandleError``).

Nothing above the SQL adapter ever sees a SQLAlchemy or DBAPI exception: the unit of work runs
every repository call, commit and rollback through :func:`translate`.

* a lost or refused connection, a pool time-out, a lock that never came (SQLite's "database is
  locked"), a server shutting down → ``Unavailable`` (the HTTP layer answers 503 + Retry-After);
* a constraint violation → ``Conflict``;
* a value the database cannot store (out of range, malformed for the column) → ``InvalidInput``.

Anything else (a programming error such as bad SQL) is left alone: it is a bug, not an outage.
"""

from __future__ import annotations

from sqlalchemy import exc as sa

from tokenwarden.domain.errors import Conflict, DomainError, InvalidInput, Unavailable


def translate(error: BaseException) -> DomainError | None:
    """The domain error for a driver error, or None when ``error`` is not one to translate."""
    if isinstance(error, DomainError):
        return None
    if isinstance(error, sa.DBAPIError) and error.connection_invalidated:
        return Unavailable(f"database unavailable: {_kind(error)}")
    if isinstance(error, sa.IntegrityError):
        return Conflict("the change conflicts with data already stored")
    if isinstance(error, sa.DataError):
        return InvalidInput("a value is out of range or malformed for storage")
    if isinstance(error, (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError, sa.TimeoutError)):
        return Unavailable(f"database unavailable: {_kind(error)}")
    if isinstance(error, OverflowError):  # sqlite3 refuses integers past 64 bits before the driver
        return InvalidInput("a number is too large to be stored")
    return None


def kind_of(error: BaseException) -> str:
    """The driver's exception class name (for messages that must not leak SQL)."""
    return _kind(error)


def _kind(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    return type(orig).__name__ if orig is not None else type(error).__name__
