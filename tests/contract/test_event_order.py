"""Event sequence order is commit order (every SQL backend), and an open transaction that has
appended events does not hold back the other writers of events until it ends: the events are
written, under PostgreSQL's event lock, when it commits (issue 11 benchmarks: a refresh-token
rotation held that lock through the whole grant, so rotations queued on every node)."""

from __future__ import annotations

import threading

import pytest

from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.domain.events import EventType, InvalidationEvent


def event(user: str) -> InvalidationEvent:
    return InvalidationEvent(EventType.USER_CHANGED, {"user_id": user})


def test_events_are_written_in_commit_order(sql_db: SqlDatabase) -> None:
    with sql_db() as uow:
        for user in ("a", "b", "c"):
            uow.events.append(event(user))
        uow.commit()
    with sql_db() as uow:  # appended, never committed: never written
        uow.events.append(event("rolled-back"))
    with sql_db.reader() as uow:
        seen = uow.events.since(0)
    assert [e.payload["user_id"] for e in seen] == ["a", "b", "c"]
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)


def test_an_open_transaction_with_events_does_not_hold_back_other_writers(sql_db: SqlDatabase) -> None:
    if sql_db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time whatever it writes")
    first = sql_db()
    first.__enter__()
    try:
        first.events.append(event("first"))
        done = threading.Event()

        def second() -> None:
            with sql_db() as uow:
                uow.events.append(event("second"))
                uow.commit()
            done.set()

        writer = threading.Thread(target=second)
        writer.start()
        assert done.wait(5), "the second writer waited for the first transaction"
        first.commit()
    finally:
        first.__exit__(None, None, None)
        writer.join(10)
    with sql_db.reader() as uow:
        seen = uow.events.since(0)
    assert [e.payload["user_id"] for e in seen] == ["second", "first"]  # as they committed
