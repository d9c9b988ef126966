"""WatermarkRepository.raise_to on every backend: one call inserts every missing (subject, kind)
pair, raises the lower ones and never lowers a mark (issue 15 made it one statement)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tokenwarden.ports.repositories import Database

T = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_raise_inserts_raises_and_never_lowers(db: Database) -> None:
    subjects = [f"org:{i:04d}" for i in range(1200)]
    with db() as uow:
        uow.watermarks.raise_to("member", subjects[:2], ["pat"], T + timedelta(hours=1))
        uow.commit()
    with db() as uow:  # duplicates in the input are applied once
        uow.watermarks.raise_to("member", [*subjects, subjects[0]], ["pat", "session", "pat"], T)
        uow.commit()
    with db.reader() as uow:
        assert uow.watermarks.for_subject("member", subjects[0]) == {
            "pat": T + timedelta(hours=1),  # not lowered
            "session": T,
        }
        assert uow.watermarks.for_subject("member", subjects[-1]) == {"pat": T, "session": T}
        assert len(uow.watermarks.for_type("member")) == 1200
    with db() as uow:
        uow.watermarks.raise_to("member", subjects, ["session"], T + timedelta(hours=2))
        uow.commit()
    with db.reader() as uow:
        marks = uow.watermarks.for_type("member")
        assert {m["session"] for m in marks.values()} == {T + timedelta(hours=2)}
        assert marks[subjects[5]]["pat"] == T  # other kinds untouched
        assert uow.watermarks.for_type("user") == {}  # other subject types untouched


def test_raise_with_nothing_to_raise_is_a_no_op(db: Database) -> None:
    with db() as uow:
        uow.watermarks.raise_to("member", [], ["pat"], T)
        uow.watermarks.raise_to("member", ["x"], [], T)
        uow.commit()
    with db.reader() as uow:
        assert uow.watermarks.for_type("member") == {}
