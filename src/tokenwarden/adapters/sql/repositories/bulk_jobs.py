"""Resumable bulk jobs (CSV revocation) and their items."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    update,
)

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories._rows import (
    _cut_by_watermark,
    _insert_unique,
    _item,
    _item_values,
    _job,
    _job_values,
)
from tokenwarden.ports.repositories import BulkJob, BulkJobItem, UpnMatch


class SqlBulkJobRepository:
    _IN_CHUNK = 500  # bound the number of bind parameters per statement

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, job: BulkJob, items: Sequence[BulkJobItem]) -> None:
        _insert_unique(self._c, t.bulk_jobs, _job_values(job), f"bulk job {job.id} exists")
        self.add_items(items)

    def add_items(self, items: Sequence[BulkJobItem]) -> None:
        if items:
            self._c.execute(insert(t.bulk_job_items), [_item_values(i) for i in items])

    def get(self, job_id: str) -> BulkJob | None:
        row = self._c.execute(select(t.bulk_jobs).where(t.bulk_jobs.c.id == job_id)).first()
        return _job(row) if row else None

    def claim_creation(self, job_id: str, at: datetime) -> int | None:
        j, i = t.bulk_jobs.c, t.bulk_job_items.c
        # The UPDATE takes the row lock on PostgreSQL (SQLite writers already take turns).
        changed = self._c.execute(
            update(t.bulk_jobs).where(j.id == job_id, j.status == "creating").values(updated_at=at)
        ).rowcount
        if not changed:
            return None
        last = self._c.execute(select(func.max(i.line_no)).where(i.job_id == job_id)).scalar()
        return int(last or 0)

    def claim(self, job_id: str, at: datetime) -> BulkJob | None:
        j = t.bulk_jobs.c
        # The UPDATE takes the row lock on PostgreSQL (SQLite writers already take turns).
        changed = self._c.execute(
            update(t.bulk_jobs)
            .where(j.id == job_id)
            .values(
                updated_at=at,
                status=case((j.status.in_(("completed", "creating")), j.status), else_=literal("running")),
            )
        ).rowcount
        return self.get(job_id) if changed else None

    def set_status(self, job_id: str, status: str, at: datetime) -> None:
        self._c.execute(
            update(t.bulk_jobs).where(t.bulk_jobs.c.id == job_id).values(status=status, updated_at=at)
        )

    def pending(self, job_id: str, limit: int) -> list[BulkJobItem]:
        i = t.bulk_job_items.c
        rows = self._c.execute(
            select(t.bulk_job_items)
            .where(i.job_id == job_id, i.status == "Pending")
            .order_by(i.line_no)
            .limit(limit)
        )
        return [_item(r) for r in rows]

    def finish_items(self, items: Sequence[BulkJobItem]) -> int:
        if not items:
            return 0
        i = t.bulk_job_items.c
        stmt = (
            update(t.bulk_job_items)
            .where(i.job_id == bindparam("b_job"), i.line_no == bindparam("b_line"), i.status == "Pending")
            .values(
                status=bindparam("b_status"),
                error=bindparam("b_error"),
                revoked_count=bindparam("b_count"),
                processed_at=bindparam("b_at"),
            )
        )
        result = self._c.execute(
            stmt,
            [
                {
                    "b_job": it.job_id,
                    "b_line": it.line_no,
                    "b_status": it.status,
                    "b_error": it.error,
                    "b_count": it.revoked_count,
                    "b_at": it.processed_at,
                }
                for it in items
            ],
        )
        return int(result.rowcount)

    def items(self, job_id: str) -> list[BulkJobItem]:
        i = t.bulk_job_items.c
        rows = self._c.execute(select(t.bulk_job_items).where(i.job_id == job_id).order_by(i.line_no))
        return [_item(r) for r in rows]

    def counts(self, job_id: str) -> dict[str, int]:
        i = t.bulk_job_items.c
        rows = self._c.execute(select(i.status, func.count()).where(i.job_id == job_id).group_by(i.status))
        return {r[0]: int(r[1]) for r in rows}

    def match_upns(self, org_id: str, upn_keys: Sequence[str]) -> dict[str, UpnMatch]:
        u, m = t.users.c, t.memberships.c
        found: dict[str, UpnMatch] = {}
        keys = list(dict.fromkeys(upn_keys))
        for start in range(0, len(keys), self._IN_CHUNK):
            stmt = (
                select(u.upn_key, u.id, u.upn, m.user_id.label("member"))
                .select_from(t.users.outerjoin(t.memberships, and_(m.user_id == u.id, m.org_id == org_id)))
                .where(u.upn_key.in_(keys[start : start + self._IN_CHUNK]))
            )
            for r in self._c.execute(stmt):
                found[r.upn_key] = UpnMatch(r.id, r.member is not None, r.upn)
        return found

    def live_tokens_per_user(
        self,
        user_ids: Sequence[str],
        kinds: Sequence[str],
        issued_before: datetime,
        now: datetime,
        *,
        org_id: str,
    ) -> dict[str, int]:
        c = t.tokens.c
        counts: dict[str, int] = {}
        ids = list(dict.fromkeys(user_ids))
        for start in range(0, len(ids), self._IN_CHUNK):
            stmt = (
                select(c.user_id, func.count())
                .where(
                    c.user_id.in_(ids[start : start + self._IN_CHUNK]),
                    c.org_id == org_id,
                    c.kind.in_(list(kinds)),
                    c.revoked_at.is_(None),
                    c.valid_to > now,
                    c.valid_from < issued_before,
                    ~_cut_by_watermark(c),
                )
                .group_by(c.user_id)
            )
            counts.update({r[0]: int(r[1]) for r in self._c.execute(stmt)})
        return counts
