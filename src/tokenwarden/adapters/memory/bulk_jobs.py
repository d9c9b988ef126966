"""Bulk jobs in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from tokenwarden.adapters.memory._base import _cut_by_watermark, _Repo, _set
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.principals import (
    normalize_upn,
)
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.ports.repositories import (
    BulkJob,
    BulkJobItem,
    UpnMatch,
)


class MemoryBulkJobRepository(_Repo):
    def add(self, job: BulkJob, items: Sequence[BulkJobItem]) -> None:
        if job.id in self.s.bulk_jobs:
            raise Conflict(f"bulk job {job.id} exists")
        _set(self.s.bulk_jobs, job.id, job, self.j)
        self.add_items(items)

    def add_items(self, items: Sequence[BulkJobItem]) -> None:
        for item in items:
            key = (item.job_id, item.line_no)
            if key in self.s.bulk_items:
                raise Conflict(f"bulk job {item.job_id} already has line {item.line_no}")
            _set(self.s.bulk_items, key, item, self.j)

    def get(self, job_id: str) -> BulkJob | None:
        return self.s.bulk_jobs.get(job_id)

    def claim_creation(self, job_id: str, at: datetime) -> int | None:
        job = self.s.bulk_jobs.get(job_id)
        if job is None or job.status != "creating":
            return None
        _set(self.s.bulk_jobs, job_id, replace(job, updated_at=at), self.j)
        return max((line for (jid, line) in self.s.bulk_items if jid == job_id), default=0)

    def claim(self, job_id: str, at: datetime) -> BulkJob | None:
        job = self.s.bulk_jobs.get(job_id)
        if job is None:
            return None
        status = job.status if job.status in ("completed", "creating") else "running"
        claimed = replace(job, status=status, updated_at=at)
        _set(self.s.bulk_jobs, job_id, claimed, self.j)
        return claimed

    def set_status(self, job_id: str, status: str, at: datetime) -> None:
        job = self.s.bulk_jobs.get(job_id)
        if job is not None:
            _set(self.s.bulk_jobs, job_id, replace(job, status=status, updated_at=at), self.j)

    def pending(self, job_id: str, limit: int) -> list[BulkJobItem]:
        return [i for i in self.items(job_id) if i.status == "Pending"][:limit]

    def finish_items(self, items: Sequence[BulkJobItem]) -> int:
        changed = 0
        for item in items:
            key = (item.job_id, item.line_no)
            current = self.s.bulk_items.get(key)
            if current is not None and current.status == "Pending":
                done = replace(
                    current,
                    status=item.status,
                    error=item.error,
                    revoked_count=item.revoked_count,
                    processed_at=item.processed_at,
                )
                _set(self.s.bulk_items, key, done, self.j)
                changed += 1
        return changed

    def items(self, job_id: str) -> list[BulkJobItem]:
        return sorted(
            (i for (jid, _), i in self.s.bulk_items.items() if jid == job_id), key=lambda i: i.line_no
        )

    def counts(self, job_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (jid, _), item in self.s.bulk_items.items():
            if jid == job_id:
                counts[item.status] = counts.get(item.status, 0) + 1
        return counts

    def match_upns(self, org_id: str, upn_keys: Sequence[str]) -> dict[str, UpnMatch]:
        wanted = set(upn_keys)
        return {
            normalize_upn(u.upn): UpnMatch(u.id, (org_id, u.id) in self.s.memberships, u.upn)
            for u in self.s.users.values()
            if normalize_upn(u.upn) in wanted
        }

    def live_tokens_per_user(
        self,
        user_ids: Sequence[str],
        kinds: Sequence[str],
        issued_before: datetime,
        now: datetime,
        *,
        org_id: str,
    ) -> dict[str, int]:
        wanted, kind_set = set(user_ids), set(kinds)
        counts: dict[str, int] = {}
        for t in self.s.tokens.values():
            if (
                t.user_id in wanted
                and t.org_id == org_id
                and t.kind.value in kind_set
                and t.revoked_at is None
                and t.valid_to > now
                and t.valid_from < issued_before
                and not self._cut_by_watermark(t)
            ):
                counts[t.user_id] = counts.get(t.user_id, 0) + 1
        return counts

    def _cut_by_watermark(self, token: TokenRecord) -> bool:
        return _cut_by_watermark(self.s, token)
