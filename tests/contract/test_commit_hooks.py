"""The one after-commit mechanism: a unit of work that committed invalidation events runs the
database's commit hooks once it ends; nothing else does (every backend)."""

from __future__ import annotations

import pytest

from tokenwarden.domain.events import EventType, InvalidationEvent
from tokenwarden.ports.repositories import Database


@pytest.fixture
def calls(db: Database) -> list[int]:
    seen: list[int] = []
    db.on_commit(lambda events: seen.append(len(seen)))
    return seen


def event() -> InvalidationEvent:
    return InvalidationEvent(EventType.USER_CHANGED, {"user_id": "u"})


def test_a_commit_with_events_runs_the_hooks_once_after_the_unit_of_work(
    db: Database, calls: list[int]
) -> None:
    with db() as uow:
        uow.events.append(event())
        uow.events.append(event())
        uow.commit()
        assert calls == []  # not while the unit of work still holds its transaction or lock
    assert calls == [0]
    with db.reader() as uow:
        assert uow.events.latest_seq() >= 2


def test_the_hook_gets_the_committed_events_with_their_sequence_numbers(db: Database) -> None:
    got: list[list[InvalidationEvent]] = []
    db.on_commit(lambda events: got.append(list(events)))
    with db() as uow:
        uow.events.append(InvalidationEvent(EventType.USER_CHANGED, {"user_id": "a"}))
        uow.events.append(InvalidationEvent(EventType.TOKEN_REVOKED, {"hashes": ["00" * 16]}))
        uow.commit()
    assert len(got) == 1
    first, second = got[0]
    assert (first.type, first.payload) == (EventType.USER_CHANGED, {"user_id": "a"})
    assert (second.type, second.payload) == (EventType.TOKEN_REVOKED, {"hashes": ["00" * 16]})
    assert second.seq == first.seq + 1
    with db.reader() as uow:
        stored = uow.events.since(first.seq - 1)
    assert [(e.seq, e.type) for e in stored] == [(first.seq, first.type), (second.seq, second.type)]


def test_no_events_or_no_commit_runs_no_hook(db: Database, calls: list[int]) -> None:
    with db() as uow:  # a commit without invalidation events
        uow.commit()
    with db() as uow:  # events appended, then rolled back
        uow.events.append(event())

    def fail_before_commit() -> None:
        with db() as uow:
            uow.events.append(event())
            raise RuntimeError("the work failed before commit")

    with pytest.raises(RuntimeError):
        fail_before_commit()
    assert calls == []


def test_a_failure_after_the_commit_still_announces(db: Database, calls: list[int]) -> None:
    def fail_after_commit() -> None:
        with db() as uow:
            uow.events.append(event())
            uow.commit()
            raise RuntimeError("after the commit")

    with pytest.raises(RuntimeError):
        fail_after_commit()
    assert calls == [0]
