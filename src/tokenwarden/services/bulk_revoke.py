"""Revoke the tokens of a list of users (a CSV) as a resumable, idempotent job.

The job id is a digest of the organization, the normalized rows, the kinds, the dry-run flag and
a run number, so submitting the same input again while its job is interrupted (creating, pending
or running) finds that job and resumes it, and submitting it after its job completed starts the
next run — a new job, which also revokes the tokens those users created since. Every row becomes
an item, stored a chunk per transaction (set-based) while the job is ``creating``: a job never
runs on part of its input, and a crash while its rows are stored leaves a ``creating`` job that
the same input completes. A run takes the Pending items in chunks, and each chunk — watermarks
raised with one set-based write, items marked, one audit entry, one invalidation event — is one
transaction: a crash leaves every chunk either fully applied or not at all, and no user is
processed twice.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.csv_users import UserRow, parse_user_csv
from tokenwarden.domain.errors import Conflict, NotFound
from tokenwarden.domain.principals import Organization, normalize_upn
from tokenwarden.domain.spreadsheet import safe_cell
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import BulkJob, BulkJobItem, UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, StepUpCheck, audit, get_org, no_step_up, reading, require_admin
from tokenwarden.services.revocation import raise_member_marks
from tokenwarden.services.signals import emit_sessions_revoked

JOB_TYPE = "revoke_users"
PENDING, SUCCESS, FAILED, SKIPPED = "Pending", "Success", "Failed", "Skipped"
ITEM_STATUSES = (PENDING, SUCCESS, FAILED, SKIPPED)
# Job states: rows still being stored (not runnable) -> runnable -> being run -> done.
CREATING, READY, RUNNING, COMPLETED = "creating", "pending", "running", "completed"
CHUNK_SIZE = 500  # rows applied per transaction
STORE_CHUNK_SIZE = 2_000  # rows stored per transaction while a job is created
MIN_PAUSE, MAX_PAUSE = 0.002, 0.1  # seconds the write lock is left free between two chunks

Progress = Callable[[int, int], object]


@dataclass(frozen=True, slots=True)
class JobStatus:
    job: BulkJob
    org_name: str
    counts: dict[str, int]
    revoked: int = 0

    @property
    def state(self) -> str:
        return self.job.status

    @property
    def total(self) -> int:
        return self.job.total

    @property
    def stored(self) -> int:
        """Rows stored so far: the total once the job is created, fewer while ``creating``."""
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        """Rows with their result: processed, or settled when stored (Failed, Skipped)."""
        return self.stored - self.counts.get(PENDING, 0)


@dataclass(frozen=True, slots=True)
class Submission:
    job: BulkJob
    resumed: bool  # the same input's job was interrupted: this is that job, resumed
    previous: BulkJob | None = None  # the last completed run of the same input, if any
    # The parsed input, for storing the rows a job that is still ``creating`` lacks.
    rows: tuple[UserRow, ...] = field(default=(), repr=False, compare=False)


def job_id_for(
    org_id: str, rows: Sequence[UserRow], kinds: Sequence[TokenKind], dry_run: bool, run: int = 0
) -> str:
    """Deterministic id: the same input for the same organization and run number is the same job
    (run 0 hashes exactly as ids did before run numbers existed)."""
    digest = hashlib.sha256()
    digest.update(f"{JOB_TYPE}\0{org_id}\0{','.join(sorted(k.value for k in kinds))}\0{dry_run}\0".encode())
    if run:
        digest.update(f"run {run}\0".encode())
    for row in rows:
        digest.update(f"{row.line_no}\0{normalize_upn(row.upn)}\n".encode())
    return digest.hexdigest()[:32]


class BulkRevokeService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        chunk_size: int = CHUNK_SIZE,
        store_chunk_size: int = STORE_CHUNK_SIZE,
        yield_ratio: float = 0.0,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        """``yield_ratio``: for a database that lets one writer in at a time (SQLite), where a
        writer that finds the lock taken polls for it at growing intervals (up to 100 ms): after
        each chunk, leave the write lock free that many times as long as the chunk held it
        (bounded by MIN_PAUSE and MAX_PAUSE). A job that took the lock again right after each
        commit kept an urgent revocation waiting for seconds. 0 never pauses (PostgreSQL locks
        rows, not the database)."""
        self._uow = uow
        self._clock = clock
        self._chunk = chunk_size
        self._store_chunk = store_chunk_size
        self._yield_ratio = yield_ratio
        self._sleep = sleep
        self.step_up: StepUpCheck = no_step_up  # bulk revocation needs a fresh second factor

    @property
    def yield_ratio(self) -> float:
        return self._yield_ratio

    def _let_others_write(self, held: float) -> None:
        """Between two chunks: give writers waiting for the lock their turn."""
        if self._yield_ratio > 0:
            self._sleep(min(MAX_PAUSE, max(MIN_PAUSE, held * self._yield_ratio)))

    def create_or_resume(
        self,
        actor: Actor,
        org: str,
        csv_bytes: bytes,
        kinds: Sequence[TokenKind],
        dry_run: bool = False,
        source_name: str | None = None,
        progress: Progress | None = None,
    ) -> Submission:
        """Parse the input (InvalidInput naming the line if malformed: nothing is created) and
        resume the job of an identical submission that has not completed, or else create a new
        job (the next run when the input was processed before); return once every row is
        stored and the job can run (``submit`` + ``store_rows``)."""
        submission = self.submit(actor, org, csv_bytes, kinds, dry_run, source_name)
        return self.store_rows(actor, submission, progress)

    def submit(
        self,
        actor: Actor,
        org: str,
        csv_bytes: bytes,
        kinds: Sequence[TokenKind],
        dry_run: bool = False,
        source_name: str | None = None,
    ) -> Submission:
        """Parse the input and find the job of an identical submission that has not completed
        (resumed), or record a new job in state ``creating`` — not runnable until
        ``store_rows`` has stored its last row."""
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            if not dry_run:
                self.step_up(uow, actor, the_org.id)
        rows = tuple(parse_user_csv(csv_bytes))  # outside any transaction: never holds a write lock
        kinds = tuple(dict.fromkeys(kinds))
        now = self._clock.now()
        previous: BulkJob | None = None
        with reading(self._uow) as uow:
            run = 0
            while True:
                job_id = job_id_for(the_org.id, rows, kinds, dry_run, run)
                existing = uow.bulk_jobs.get(job_id)
                if existing is None:
                    break
                if existing.status != COMPLETED:
                    return Submission(existing, resumed=True, previous=previous, rows=rows)
                previous, run = existing, run + 1
        job = BulkJob(
            id=job_id,
            org_id=the_org.id,
            type=JOB_TYPE,
            status=CREATING if rows else READY,
            kinds=tuple(k.value for k in kinds),
            dry_run=dry_run,
            created_by=actor.user_id,
            created_at=now,
            updated_at=now,
            total=len(rows),
            source_name=(source_name or None) and source_name[:256],
        )
        with self._uow() as uow:
            try:
                uow.bulk_jobs.add(job, [])  # the rows follow, one short transaction per chunk
            except Conflict:
                pass  # an identical submission won the race: resume it
            else:
                uow.commit()
                return Submission(job, resumed=False, previous=previous, rows=rows)
        with reading(self._uow) as uow:
            raced = uow.bulk_jobs.get(job_id)
        if raced is None:
            raise Conflict(f"bulk job {job_id} could not be created", code="jobConflict")
        return Submission(raced, resumed=True, previous=previous, rows=rows)

    def store_rows(
        self, actor: Actor, submission: Submission, progress: Progress | None = None
    ) -> Submission:
        """Store the rows a ``creating`` job lacks, ``store_chunk_size`` per transaction, so a
        large input never holds the write lock for long; the transaction that stores the last
        row makes the job ``pending`` (runnable). Safe after a crash (the stored rows are never
        stored again) and concurrently (creators of one job take turns on its row)."""
        job = submission.job
        if job.status != CREATING:
            return submission
        line_nos = [r.line_no for r in submission.rows]
        while True:
            now = self._clock.now()
            with self._uow() as uow:
                began = time.perf_counter()  # the write lock is held from here to the commit
                last = uow.bulk_jobs.claim_creation(job.id, now)
                if last is None:  # complete (another creator stored the rest), or gone
                    break
                require_admin(uow, actor, job.org_id)
                start = bisect.bisect_right(line_nos, last)
                chunk = submission.rows[start : start + self._store_chunk]
                uow.bulk_jobs.add_items([_item(job.id, row, now) for row in chunk])
                stored = start + len(chunk)
                if stored >= len(submission.rows):
                    uow.bulk_jobs.set_status(job.id, READY, now)
                uow.commit()
                held = time.perf_counter() - began
            if progress is not None:
                progress(stored, job.total)
            if stored >= len(submission.rows):
                break
            self._let_others_write(held)
        with reading(self._uow) as uow:
            current = uow.bulk_jobs.get(job.id)
        if current is None:
            raise NotFound(f"bulk job {job.id!r:.40} not found", code="jobNotFound")
        return replace(submission, job=current)

    def run(
        self, actor: Actor, job_id: str, progress: Progress | None = None, *, chunk_size: int | None = None
    ) -> JobStatus:
        """Process every Pending item, one transaction per chunk; safe to call again after a
        crash (or concurrently: runners of one job take turns on its lock). A job whose rows
        are not all stored yet (``creating``) never runs: Conflict ``jobNotReady``."""
        chunk = max(1, chunk_size or self._chunk)
        revoked_here = 0
        while True:
            now = self._clock.now()
            with self._uow() as uow:
                began = time.perf_counter()
                job = uow.bulk_jobs.claim(job_id, now)
                if job is None:
                    raise NotFound(f"bulk job {job_id!r:.40} not found", code="jobNotFound")
                the_org = _job_org(uow, job)
                require_admin(uow, actor, the_org.id)
                if job.status == CREATING:
                    stored = sum(uow.bulk_jobs.counts(job_id).values())
                    raise Conflict(
                        f"bulk job {job_id} is still being created ({stored} of {job.total} rows "
                        "stored) and never runs on part of its input: submit the same input again "
                        "to finish creating it",
                        code="jobNotReady",
                    )
                items = uow.bulk_jobs.pending(job_id, chunk)
                if not items:
                    uow.bulk_jobs.set_status(job_id, COMPLETED, now)
                    uow.commit()
                    break
                revoked_here += self._chunk_of(uow, actor, job, the_org, items, now)
                uow.commit()
                held = time.perf_counter() - began
            self._let_others_write(held)
            if progress is not None:  # counted after the commit: not while holding the write lock
                with reading(self._uow) as uow:
                    counts = uow.bulk_jobs.counts(job_id)
                progress(job.total - counts.get(PENDING, 0), job.total)
        status = self.status(actor, job_id)
        return replace(status, revoked=revoked_here)

    def _chunk_of(
        self,
        uow: UnitOfWork,
        actor: Actor,
        job: BulkJob,
        org: Organization,
        items: Sequence[BulkJobItem],
        now: datetime,
    ) -> int:
        matches = uow.bulk_jobs.match_upns(org.id, [normalize_upn(i.upn) for i in items])
        members = [m for m in (matches.get(normalize_upn(i.upn)) for i in items) if m and m.is_member]
        member_ids = [m.user_id for m in members]
        live = (
            uow.bulk_jobs.live_tokens_per_user(member_ids, job.kinds, now, now, org_id=org.id)
            if member_ids
            else {}
        )
        finished: list[BulkJobItem] = []
        for item in items:
            match = matches.get(normalize_upn(item.upn))
            if match is None or not match.is_member:
                # One answer for "no such identity" and "someone else's": an organization's
                # results never tell whether a UPN exists elsewhere.
                error = f"not a member of {org.name}"
                finished.append(replace(item, status=FAILED, error=error, processed_at=now))
            else:
                count = live.get(match.user_id, 0)
                finished.append(replace(item, status=SUCCESS, revoked_count=count, processed_at=now))
        if member_ids and not job.dry_run:
            raise_member_marks(uow, org.id, member_ids, job.kinds, now)
            # Resource servers hear of it too: one CAEP session-revoked per user, one write.
            emit_sessions_revoked(
                uow,
                self._clock,
                users=list(dict.fromkeys((m.upn, m.user_id) for m in members)),
                org_id=org.id,
                initiating_entity="admin",
                reason_admin=f"bulk revocation job {job.id}",
            )
        uow.bulk_jobs.finish_items(finished)
        revoked = sum(live.values())
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.BULK_REVOKE_JOB,
            org_id=org.id,
            target_type="bulkJob",
            target_id=job.id,
            details={
                "jobId": job.id,
                "firstLine": items[0].line_no,
                "lastLine": items[-1].line_no,
                "rows": len(items),
                "users": len(member_ids),
                "userIds": member_ids,
                "failed": len(items) - len(member_ids),
                "kinds": list(job.kinds),
                "revoked": revoked,
                "dryRun": job.dry_run,
                "source": job.source_name,
            },
        )
        return revoked

    def status(self, actor: Actor, job_id: str, org: str | None = None) -> JobStatus:
        """Counts per item status and the job's state (creating | pending | running | completed).
        A read: polling a job's status never waits for (or holds) the write lock."""
        with reading(self._uow) as uow:
            job, the_org = self._visible_job(uow, actor, job_id, org)
            counts = dict.fromkeys(ITEM_STATUSES, 0)
            counts.update(uow.bulk_jobs.counts(job_id))
            return JobStatus(job, the_org.name, counts)

    def results(self, actor: Actor, job_id: str, org: str | None = None) -> list[BulkJobItem]:
        """One row per input row, in input order (Pending where not processed yet); a read."""
        with reading(self._uow) as uow:
            self._visible_job(uow, actor, job_id, org)
            return uow.bulk_jobs.items(job_id)

    @staticmethod
    def _visible_job(
        uow: UnitOfWork, actor: Actor, job_id: str, org: str | None
    ) -> tuple[BulkJob, Organization]:
        wanted = get_org(uow, org) if org is not None else None
        if wanted is not None:
            require_admin(uow, actor, wanted.id)  # before saying whether the job exists
        job = uow.bulk_jobs.get(job_id)
        if job is None or job.type != JOB_TYPE or (wanted is not None and wanted.id != job.org_id):
            raise NotFound(f"bulk job {job_id!r:.40} not found", code="jobNotFound")
        the_org = wanted or _job_org(uow, job)
        require_admin(uow, actor, the_org.id)
        return job, the_org


def _job_org(uow: UnitOfWork, job: BulkJob) -> Organization:
    the_org = uow.orgs.get(job.org_id)
    if the_org is None:
        raise NotFound(f"organization of bulk job {job.id} not found", code="organizationNotFound")
    return the_org


def _item(job_id: str, row: UserRow, at: datetime) -> BulkJobItem:
    if row.error is not None:
        return BulkJobItem(job_id, row.line_no, row.upn, FAILED, row.error, 0, at)
    if row.duplicate_of is not None:
        return BulkJobItem(
            job_id, row.line_no, row.upn, SKIPPED, f"duplicate of line {row.duplicate_of}", 0, at
        )
    return BulkJobItem(job_id, row.line_no, row.upn, PENDING)


RESULT_COLUMNS = ("UserPrincipalName", "Status", "Error", "RevokedCount")
_cell = safe_cell  # neutralise spreadsheet formulas in echoed input (OWASP CSV injection)


def results_csv(rows: Sequence[BulkJobItem]) -> str:
    """The results file: one row per input row, in input order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    writer.writerows((_cell(r.upn), r.status, _cell(r.error or ""), r.revoked_count) for r in rows)
    return buf.getvalue()
