"""Jobs as an organization's administrator sees them (the HTTP API): every job's schedule and
state, but counts and errors only of runs for their own organization — a run over every
organization would tell one tenant about the others — and runs started for it alone."""

from __future__ import annotations

import threading
from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import DomainError, NotFound, Unavailable
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, reading, require_admin
from tokenwarden.services.job_runner import JobRunner

START_WAIT_SECONDS = 10.0


def _visible(run: dict[str, Any], org_id: str) -> dict[str, Any]:
    if run["org"] == org_id:
        return run
    hidden = "see `tokenwarden jobs status`" if run["error"] else None
    return {**run, "counts": None, "error": hidden, "org": None}


class JobsAdmin:
    def __init__(self, runner: JobRunner, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._runner = runner
        self._uow = uow
        self._clock = clock

    def _require_admin(self, actor: Actor, org_id: str) -> None:
        with reading(self._uow) as uow:
            require_admin(uow, actor, org_id)

    def status(self, actor: Actor, org_id: str) -> list[dict[str, Any]]:
        self._require_admin(actor, org_id)
        jobs = self._runner.status(limit=10)
        for job in jobs:
            # scheduled runs (every organization's) without their figures, and this
            # organization's own; another organization's manual runs are not shown at all
            job["runs"] = [_visible(r, org_id) for r in job["runs"] if r["org"] in (None, org_id)]
            job["runningOn"] = None  # node names are the operator's business
        return jobs

    def run_of(self, actor: Actor, org_id: str, name: str, run_id: str) -> dict[str, Any]:
        self._runner.spec(name)
        self._require_admin(actor, org_id)
        for job in self._runner.status(limit=100):
            if job["name"] == name:
                for run in job["runs"]:
                    if run["id"] == run_id and run["org"] == org_id:
                        return dict(run)
        raise NotFound(f"no run {run_id!r:.60} of {name} for this organization", code="jobRunNotFound")

    def start(self, actor: Actor, org_id: str, name: str) -> str:
        """Start a run for ``org_id`` in a background thread; its id once it holds the lease.
        JobBusy (409) while another run holds the job."""
        self._runner.spec(name)
        self._require_admin(actor, org_id)
        started = threading.Event()
        box: dict[str, Any] = {}

        def on_started(run_id: str) -> None:
            box["id"] = run_id
            started.set()

        def work() -> None:
            try:
                self._runner.run(name, trigger="manual", org_id=org_id, on_started=on_started)
            except Exception as exc:  # JobBusy, or the database away; a started run records its own
                box["error"] = exc
            finally:
                started.set()

        threading.Thread(target=work, name=f"tw-job-{name}", daemon=True).start()
        started.wait(START_WAIT_SECONDS)
        if "id" not in box:
            exc = box.get("error")
            if isinstance(exc, DomainError):
                raise exc
            raise Unavailable("the job could not be started: see the server log")
        with self._uow() as uow:
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.JOB_RUN,
                org_id=org_id,
                target_type="job",
                target_id=name,
                details={"runId": box["id"]},
            )
            uow.commit()
        return str(box["id"])
