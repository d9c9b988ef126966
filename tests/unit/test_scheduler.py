"""The scheduler over the in-memory store and a controllable clock: cron slots run once across
nodes, start-up runs stand for the current slot, a dead holder's lease is taken over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.conftest import FakeClock
from tokenwarden.adapters.memory.store import MemoryDatabase
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.services.job_runner import (
    JobBusy,
    JobContext,
    JobRunner,
    JobSpec,
    Scheduler,
    check_cron,
    parse_schedules,
)

T0 = datetime(2026, 12, 7, 7, 59, 50, tzinfo=UTC)  # a Monday, just before 08:00


def counting(calls: list[str]) -> Any:
    def body(ctx: JobContext) -> dict[str, Any]:
        calls.append(ctx.trigger)
        return {"done": len(calls)}

    return body


def nodes(n: int, clock: FakeClock, calls: list[str]) -> tuple[MemoryDatabase, list[JobRunner]]:
    db = MemoryDatabase()
    spec = JobSpec("daily", "test job", counting(calls), "0 8 * * *")
    return db, [JobRunner(db, clock, [spec], node=f"node-{i}", lease_seconds=30) for i in range(n)]


def test_a_slot_runs_once_whatever_the_number_of_nodes() -> None:
    clock, calls = FakeClock(T0), []
    db, runners = nodes(3, clock, calls)
    schedulers = [Scheduler(r, clock) for r in runners]
    for s in schedulers:
        s.tick()
    # before 08:00 the latest slot is yesterday's, never run: one node runs it
    assert calls == ["schedule"]
    clock.advance(seconds=15)  # 08:00:05
    for s in schedulers:
        s.tick()
    assert calls == ["schedule", "schedule"]  # today's 08:00, once
    clock.advance(hours=3)
    for s in schedulers:
        s.tick()
    assert len(calls) == 2
    with db.reader() as uow:
        runs = uow.jobs.runs("daily")
    assert [r.slot for r in runs] == [
        datetime(2026, 12, 7, 8, tzinfo=UTC),
        datetime(2026, 12, 6, 8, tzinfo=UTC),
    ]


def test_startup_run_stands_for_the_current_slot() -> None:
    clock, calls = FakeClock(T0 + timedelta(hours=2)), []
    _, [runner] = nodes(1, clock, calls)
    scheduler = Scheduler(runner, clock)
    scheduler.startup()
    scheduler.tick()
    assert calls == ["startup"]


def test_a_dead_holders_lease_is_taken_over() -> None:
    clock, calls = FakeClock(T0), []
    db, [a, b] = nodes(2, clock, calls)
    with db() as uow:  # node-0 took the lease and died without renewing it
        uow.jobs.try_lease("daily", a.node, "dead-run", clock.now(), clock.now() + timedelta(seconds=30))
        uow.commit()
    with pytest.raises(JobBusy):
        b.run("daily")
    clock.advance(seconds=31)
    run = b.run("daily")
    assert run is not None and run.status == "completed" and calls == ["manual"]


def test_a_failing_job_is_recorded_and_the_slot_stays_due() -> None:
    clock = FakeClock(T0 + timedelta(minutes=1))
    db = MemoryDatabase()

    def boom(ctx: JobContext) -> dict[str, Any]:
        raise RuntimeError("smtp exploded")

    runner = JobRunner(db, clock, [JobSpec("daily", "x", boom, "0 8 * * *")], node="n")
    Scheduler(runner, clock).tick()
    with db.reader() as uow:
        [run] = uow.jobs.runs("daily")
    assert run.status == "failed" and run.error == "RuntimeError: smtp exploded"
    assert runner.due_slot("daily", clock.now()) is not None  # retried next tick


@pytest.mark.parametrize("expr", ["61 * * * *", "* * *", "every day", "0 8 * * * *", ""])
def test_invalid_cron(expr: str) -> None:
    with pytest.raises(InvalidInput, match="cron"):
        check_cron(expr, "schedule of x")


def test_parse_schedules() -> None:
    assert parse_schedules("a=0 9 * * *; b = */5 * * * *", ["a", "b"]) == {
        "a": "0 9 * * *",
        "b": "*/5 * * * *",
    }
    with pytest.raises(InvalidInput, match="unknown job"):
        parse_schedules("zzz=0 9 * * *", ["a"])
    with pytest.raises(InvalidInput, match="NAME=CRON"):
        parse_schedules("0 9 * * *", ["a"])
