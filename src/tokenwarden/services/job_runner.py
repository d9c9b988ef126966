"""Scheduled jobs: one run at a time per job across every node, with a history.

A run takes the job's lease in the database (compare-and-set on ``job_state``), renews it from
a heartbeat thread while it works, and gives it back when done; a node that dies stops renewing,
so its lease runs out (``lease_seconds``) and the next node takes over, marking the dead run
``interrupted``. A scheduled run is for a *slot* (the cron instant it fires for): a slot already
recorded as done is not run again, so several nodes firing at 08:00 give one run. Work inside
a run is idempotent (notices are claimed once), so a run repeated after a crash sends nothing
twice.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from croniter import croniter

from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.errors import Conflict, InvalidInput, NotFound
from tokenwarden.ports.lifecycle import JobRun
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import new_id, reading

log = logging.getLogger(__name__)

DEFAULT_SCHEDULE = "0 8 * * *"  # daily at 08:00 UTC


class LeaseLost(Exception):
    """Another node took the job over (this one stalled past its lease): stop at once."""


@dataclass
class JobContext:
    """What a job body gets: its run id, an optional organization, and ``check()`` to call
    between chunks (raises LeaseLost once the lease is gone)."""

    run_id: str
    org_id: str | None
    trigger: str
    _lost: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        if self._lost.is_set():
            raise LeaseLost("the job's lease was lost: another node has taken it over")


JobBody = Callable[[JobContext], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    description: str
    body: JobBody
    schedule: str = DEFAULT_SCHEDULE


def check_cron(expr: str, what: str) -> str:
    """A five-field cron expression croniter accepts (UTC), or InvalidInput naming ``what``."""
    text = " ".join(expr.split())
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise InvalidInput(
            f"{what}: {expr!r:.80} is not a cron expression (five fields: minute hour day month weekday, "
            "e.g. '0 8 * * *')",
            code="invalidCron",
        )
    return text


def parse_schedules(value: str, known: Sequence[str]) -> dict[str, str]:
    """``"expiry-notifications=0 8 * * *; weekly-report=0 8 * * 1"`` -> name -> cron."""
    out: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        name, sep, expr = part.partition("=")
        name = name.strip()
        if not sep:
            raise InvalidInput(f"job schedule {part.strip()!r:.80} must be NAME=CRON", code="invalidCron")
        if name not in known:
            raise InvalidInput(
                f"job schedule for unknown job {name!r:.60}; jobs: {', '.join(known)}", code="invalidCron"
            )
        out[name] = check_cron(expr, f"schedule of {name}")
    return out


class JobBusy(Conflict):
    def __init__(self, name: str, holder: str | None, until: datetime | None) -> None:
        super().__init__(
            f"job {name} is already running (held by {holder or 'another node'} until {iso_z(until)})",
            code="jobRunning",
        )


class JobRunner:
    """Runs registered jobs under their lease and records each run."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        specs: Sequence[JobSpec],
        *,
        node: str | None = None,
        lease_seconds: float = 60.0,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._specs = {s.name: s for s in specs}
        self.node = node or f"{socket.gethostname()}:{id(self):x}"[:128]
        self._lease = timedelta(seconds=lease_seconds)

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def spec(self, name: str) -> JobSpec:
        spec = self._specs.get(name)
        if spec is None:
            raise NotFound(f"no job named {name!r:.60}; jobs: {', '.join(self._specs)}", code="jobNotFound")
        return spec

    # ------------------------------------------------------------------ schedule
    def latest_slot(self, name: str, now: datetime) -> datetime:
        """The latest cron instant at or before ``now``."""
        slot: datetime = croniter(self.spec(name).schedule, now).get_prev(datetime)
        return slot

    def due_slot(self, name: str, now: datetime) -> datetime | None:
        """The latest cron instant at or before ``now`` if it has not been run yet."""
        slot = self.latest_slot(name, now)
        with reading(self._uow) as uow:
            lease = uow.jobs.lease(name)
        if lease is not None and lease.last_slot is not None and lease.last_slot >= slot:
            return None
        return slot

    def next_run(self, name: str, now: datetime) -> datetime:
        result: datetime = croniter(self.spec(name).schedule, now).get_next(datetime)
        return result

    # ------------------------------------------------------------------ run
    def run(
        self,
        name: str,
        *,
        trigger: str = "manual",
        org_id: str | None = None,
        slot: datetime | None = None,
        on_started: Callable[[str], None] | None = None,
    ) -> JobRun | None:
        """Run the job now in this thread. A ``schedule`` run for a slot already done elsewhere
        returns None; a completed run records ``slot`` as done. Raises JobBusy when another
        node holds the lease."""
        spec = self.spec(name)
        run_id = new_id()
        now = self._clock.now()
        with self._uow() as uow:
            if not uow.jobs.try_lease(name, self.node, run_id, now, now + self._lease):
                lease = uow.jobs.lease(name)
                raise JobBusy(name, lease.holder if lease else None, lease.lease_until if lease else None)
            lease = uow.jobs.lease(name)
            done_slot = lease.last_slot if lease is not None else None
            if trigger == "schedule" and slot is not None and done_slot is not None and done_slot >= slot:
                uow.jobs.release(name, self.node)
                uow.commit()
                return None
            uow.jobs.interrupt(name, except_run=run_id, at=now)
            run = JobRun(run_id, name, trigger, self.node, now, slot=slot, org_id=org_id)
            uow.jobs.start_run(run)
            uow.commit()
        if on_started is not None:
            on_started(run_id)
        ctx = JobContext(run_id, org_id, trigger)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(name, ctx, stop), daemon=True)
        beat.start()
        status, error, counts = "completed", None, {}
        try:
            counts = spec.body(ctx)
        except LeaseLost as exc:
            status, error = "interrupted", str(exc)
        except Exception as exc:  # recorded in the run's history; the scheduler goes on
            log.exception("job %s failed", name)
            status, error = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
        finally:
            stop.set()
            beat.join(timeout=5)
        done = self._clock.now()
        with self._uow() as uow:
            uow.jobs.finish_run(run_id, status=status, at=done, counts=counts, error=error)
            if not ctx._lost.is_set():
                uow.jobs.release(name, self.node, slot=slot if status == "completed" else None)
            uow.commit()
        return JobRun(run_id, name, trigger, self.node, now, status, done, counts, error, slot, org_id)

    def _heartbeat(self, name: str, ctx: JobContext, stop: threading.Event) -> None:
        every = max(1.0, self._lease.total_seconds() / 3)
        while not stop.wait(every):
            try:
                with self._uow() as uow:
                    ok = uow.jobs.renew(name, self.node, self._clock.now() + self._lease)
                    uow.commit()
            except Exception as exc:  # the database is away: the lease may run out
                log.warning("could not renew the lease of job %s: %s", name, exc)
                continue
            if not ok:
                ctx._lost.set()
                return

    # ------------------------------------------------------------------ status
    def status(self, *, limit: int = 10) -> list[dict[str, Any]]:
        """Per job: schedule, next run, lease holder, recent runs (newest first)."""
        now = self._clock.now()
        out = []
        with reading(self._uow) as uow:
            for name, spec in self._specs.items():
                lease = uow.jobs.lease(name)
                held = lease is not None and lease.holder is not None and (lease.lease_until or now) >= now
                out.append(
                    {
                        "name": name,
                        "description": spec.description,
                        "schedule": spec.schedule,
                        "nextRun": iso_z(self.next_run(name, now)),
                        "running": held,
                        "runningOn": lease.holder if held and lease else None,
                        "lastSlot": iso_z(lease.last_slot) if lease else None,
                        "runs": [run_dict(r) for r in uow.jobs.runs(name, limit)],
                    }
                )
        return out


def run_dict(run: JobRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "job": run.name,
        "trigger": run.trigger,
        "node": run.node,
        "startedAt": iso_z(run.started_at),
        "finishedAt": iso_z(run.finished_at),
        "status": run.status,
        "counts": run.counts,
        "error": run.error,
        "slot": iso_z(run.slot),
        "org": run.org_id,
    }


class Scheduler:
    """Fires due jobs: once at start-up, then at each cron slot. One thread; a job that is
    running elsewhere is skipped (its holder does the slot)."""

    def __init__(self, runner: JobRunner, clock: Clock, *, tick_seconds: float = 15.0) -> None:
        self._runner = runner
        self._clock = clock
        self._tick = tick_seconds

    def startup(self) -> None:
        """Run every job once; each run also stands for the latest slot, so the first tick
        does not repeat it."""
        now = self._clock.now()
        for name in self._runner.names:
            self._fire(name, "startup", self._runner.latest_slot(name, now))

    def tick(self) -> None:
        now = self._clock.now()
        for name in self._runner.names:
            try:
                slot = self._runner.due_slot(name, now)
            except Exception as exc:
                log.warning("job %s: could not read its schedule state: %s", name, exc)
                continue
            if slot is not None:
                self._fire(name, "schedule", slot)

    def _fire(self, name: str, trigger: str, slot: datetime | None) -> None:
        with contextlib.suppress(JobBusy):
            try:
                self._runner.run(name, trigger=trigger, slot=slot)
            except JobBusy:
                raise
            except Exception as exc:  # the database is away: try again next tick
                log.warning("job %s could not start: %s", name, exc)

    def loop(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (the server's scheduler thread)."""
        self.startup()
        while not stop.wait(self._tick):
            self.tick()
