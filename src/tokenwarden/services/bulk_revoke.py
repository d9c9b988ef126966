"""Revoke the tokens of a list of users (a CSV) as a resumable, idempotent job.

The job id is a digest of the organization, the normalized rows, the kinds, the dry-run flag and
a run number, so submitting the same input again while its job is interrupted (pending or
running) finds that job and resumes it, and submitting it after its job completed starts the next
run — a new job, which also revokes the tokens those users created since. Every row becomes an item
(one set-based insert); a run takes the Pending items in chunks, and each chunk — watermarks
raised with one set-based write, items marked, one audit entry, one invalidation event — is one
transaction: a crash leaves every chunk either fully applied or not at all, and no user is
processed twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.csv_users import UserRow, parse_user_csv
from tokenwarden.domain.errors import Conflict, NotFound
from tokenwarden.domain.principals import Organization, normalize_upn
from tokenwarden.domain.spreadsheet import safe_cell
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import BulkJob, BulkJobItem, UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_org, reading, require_admin
from tokenwarden.services.revocation import raise_member_marks
from tokenwarden.services.signals import emit_sessions_revoked

JOB_TYPE = "revoke_users"
PENDING, SUCCESS, FAILED, SKIPPED = "Pending", "Success", "Failed", "Skipped"
ITEM_STATUSES = (PENDING, SUCCESS, FAILED, SKIPPED)
CHUNK_SIZE = 500

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
    def done(self) -> int:
        return self.total - self.counts.get(PENDING, 0)


@dataclass(frozen=True, slots=True)
class Submission:
    job: BulkJob
    resumed: bool  # the same input's job was interrupted: this is that job, resumed
    previous: BulkJob | None = None  # the last completed run of the same input, if any


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
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._chunk = chunk_size

    def create_or_resume(
        self,
        actor: Actor,
        org: str,
        csv_bytes: bytes,
        kinds: Sequence[TokenKind],
        dry_run: bool = False,
        source_name: str | None = None,
    ) -> Submission:
        """Parse the input (InvalidInput naming the line if malformed: nothing is created) and
        resume the job of an identical submission that has not completed, or else create a new
        job (the next run when the input was processed before) with every row as an item."""
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
        rows = parse_user_csv(csv_bytes)  # outside any transaction: never holds a write lock
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
                if existing.status != "completed":
                    return Submission(existing, resumed=True, previous=previous)
                previous, run = existing, run + 1
        job = BulkJob(
            id=job_id,
            org_id=the_org.id,
            type=JOB_TYPE,
            status="pending",
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
                uow.bulk_jobs.add(job, [_item(job_id, row, now) for row in rows])
            except Conflict:
                pass  # an identical submission won the race: resume it
            else:
                uow.commit()
                return Submission(job, resumed=False, previous=previous)
        with self._uow() as uow:
            raced = uow.bulk_jobs.get(job_id)
        if raced is None:
            raise Conflict(f"bulk job {job_id} could not be created", code="jobConflict")
        return Submission(raced, resumed=True, previous=previous)

    def run(
        self, actor: Actor, job_id: str, progress: Progress | None = None, *, chunk_size: int | None = None
    ) -> JobStatus:
        """Process every Pending item, one transaction per chunk; safe to call again after a
        crash (or concurrently: runners of one job take turns on its lock)."""
        chunk = max(1, chunk_size or self._chunk)
        revoked_here = 0
        while True:
            now = self._clock.now()
            with self._uow() as uow:
                job = uow.bulk_jobs.claim(job_id, now)
                if job is None:
                    raise NotFound(f"bulk job {job_id!r:.40} not found", code="jobNotFound")
                the_org = _job_org(uow, job)
                require_admin(uow, actor, the_org.id)
                items = uow.bulk_jobs.pending(job_id, chunk)
                if not items:
                    uow.bulk_jobs.set_status(job_id, "completed", now)
                    uow.commit()
                    break
                revoked_here += self._chunk_of(uow, actor, job, the_org, items, now)
                uow.commit()
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
        """Counts per item status and the job's state (pending | running | completed)."""
        with self._uow() as uow:
            job, the_org = self._visible_job(uow, actor, job_id, org)
            counts = dict.fromkeys(ITEM_STATUSES, 0)
            counts.update(uow.bulk_jobs.counts(job_id))
            return JobStatus(job, the_org.name, counts)

    def results(self, actor: Actor, job_id: str, org: str | None = None) -> list[BulkJobItem]:
        """One row per input row, in input order (Pending where not processed yet)."""
        with self._uow() as uow:
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
