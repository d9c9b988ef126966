"""Break-glass requests in memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from tokenwarden.adapters.memory._base import _Repo, _set
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.domain.watermarks import CLIENT_REMOVED, SubjectType, effective_cutoffs
from tokenwarden.ports.repositories import (
    BreakGlassRequest,
)


class MemoryBreakGlassRepository(_Repo):
    def add(self, request: BreakGlassRequest) -> None:
        _set(self.s.break_glass, request.id, request, self.j)

    def get(self, request_id: str) -> BreakGlassRequest | None:
        return self.s.break_glass.get(request_id)

    def update(self, request: BreakGlassRequest) -> None:
        _set(self.s.break_glass, request.id, request, self.j)

    def find(self, org_id: str) -> list[BreakGlassRequest]:
        return sorted(
            (r for r in self.s.break_glass.values() if r.org_id == org_id), key=lambda r: r.requested_at
        )

    def top_owners(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        return self._top(org_id, now, limit, lambda t: t.user_id)

    def count_live(
        self, org_id: str, *, now: datetime, issued_before: datetime, org_marks: Mapping[str, datetime]
    ) -> dict[str, int]:
        marks: dict[str, dict[str, float]] = {}
        for (st, subject, kind), at in self.s.watermarks.items():
            if st == SubjectType.USER.value:
                key = subject
            elif st == SubjectType.MEMBER.value and subject.startswith(f"{org_id}:"):
                key = subject.split(":", 1)[1]
            else:
                continue
            mine = marks.setdefault(key, {})
            mine[kind] = max(at.timestamp(), mine.get(kind, float("-inf")))
        cutoffs = {user_id: effective_cutoffs(m) for user_id, m in marks.items()}
        counts: dict[str, int] = {}
        for t in self.s.tokens.values():
            if t.org_id != org_id or t.revoked_at is not None or t.valid_to <= now:
                continue
            if t.valid_from >= issued_before:
                continue
            mark = org_marks.get(t.kind.value)
            if mark is not None and t.valid_from < mark:
                continue
            cutoff = cutoffs.get(t.user_id, {}).get(t.kind)
            if cutoff is not None and t.valid_from.timestamp() < cutoff:
                continue
            if t.client_id is not None and any(  # its OAuth client disabled (per kind) or removed
                (m := self.s.watermarks.get((SubjectType.CLIENT.value, t.client_id, name))) is not None
                and t.valid_from < m
                for name in (t.kind.value, CLIENT_REMOVED)
            ):
                continue
            counts[t.kind.value] = counts.get(t.kind.value, 0) + 1
        return counts

    def top_clients(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        return self._top(org_id, now, limit, lambda t: t.client_id)

    def _top(
        self, org_id: str, now: datetime, limit: int, key: Callable[[TokenRecord], str | None]
    ) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        for t in self.s.tokens.values():
            k = key(t)
            if t.org_id == org_id and t.revoked_at is None and t.valid_to > now and k is not None:
                counts[k] = counts.get(k, 0) + 1
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
