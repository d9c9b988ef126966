"""Report counts and listings in memory: the same answers as SQL, by a scan of the tokens."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime

from tokenwarden.adapters.memory._base import _cut_by_watermark, _Repo
from tokenwarden.domain.principals import UserStatus, member_subject
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.domain.watermarks import SubjectType, mark_names_for
from tokenwarden.ports.reports import LiveFilter, ReportScope


class MemoryReportRepository(_Repo):
    def count_live(
        self, scope: ReportScope, at: datetime, filters: Mapping[str, LiveFilter]
    ) -> dict[str, int]:
        counts = dict.fromkeys(filters, 0)
        for token in self._live(scope, at):
            for name, f in filters.items():
                counts[name] += _matches(token, f)
        return counts

    def find_live(
        self, scope: ReportScope, at: datetime, where: LiveFilter, limit: int | None = None
    ) -> list[TokenRecord]:
        found = sorted(
            (x for x in self._live(scope, at) if _matches(x, where)),
            key=lambda x: (x.valid_to, x.authorization_id),
        )
        return found if limit is None else found[:limit]

    def activity(self, scope: ReportScope, start: datetime, end: datetime) -> dict[str, int]:
        counts = {"created": 0, "revoked": 0, "expired": 0}
        for x in self._mine(scope):
            counts["created"] += start <= x.created_at < end
            alive = x.valid_to > start and x.valid_from < end
            counts["revoked"] += alive and self._killed(x, scope, end) and not self._killed(x, scope, start)
            counts["expired"] += start <= x.valid_to < end and not self._killed(x, scope, x.valid_to)
        return counts

    def top_owners(self, scope: ReportScope, at: datetime, limit: int) -> list[tuple[str, str, int]]:
        counts: dict[str, int] = {}
        for x in self._live(scope, at):
            counts[x.user_id] = counts.get(x.user_id, 0) + 1
        rows = [(uid, self.s.users[uid].upn, n) for uid, n in counts.items()]
        return sorted(rows, key=lambda r: (-r[2], r[1]))[:limit]

    # ------------------------------------------------------------------ helpers
    def _mine(self, scope: ReportScope) -> Iterator[TokenRecord]:
        return (x for x in self.s.tokens.values() if x.org_id == scope.org_id and x.kind in scope.kinds)

    def _live(self, scope: ReportScope, at: datetime) -> Iterator[TokenRecord]:
        for x in self._mine(scope):
            if not (x.valid_from <= at < x.valid_to) or (x.revoked_at is not None and x.revoked_at <= at):
                continue
            member = self.s.memberships.get((x.org_id, x.user_id))
            owner = self.s.users.get(x.user_id)
            if (
                member is None
                or not member.is_active
                or owner is None
                or owner.status is not UserStatus.ACTIVE
            ):
                continue
            if _cut_by_watermark(self.s, x) or any(_catches(r, x) for r in scope.rules):
                continue
            yield x

    def _killed(self, x: TokenRecord, scope: ReportScope, at: datetime) -> bool:
        """The first revocation came before ``at``, while the token was unexpired."""
        if x.revoked_at is not None and x.revoked_at < at and x.revoked_at < x.valid_to:
            return True
        if any(x.valid_from < m < min(at, x.valid_to) for m in self._marks(x)):
            return True
        return any(r.created_at < min(at, x.valid_to) and _catches(r, x) for r in scope.rules)

    def _marks(self, x: TokenRecord) -> list[datetime]:
        marks = self.s.watermarks
        keys = [(SubjectType.USER.value, x.user_id, n) for n in mark_names_for(x.kind)]
        keys += [
            (SubjectType.MEMBER.value, member_subject(x.org_id, x.user_id), n) for n in mark_names_for(x.kind)
        ]
        keys.append((SubjectType.ORG.value, x.org_id, x.kind.value))
        if x.client_id is not None:
            keys.append((SubjectType.CLIENT.value, x.client_id, x.kind.value))
        return [m for k in keys if (m := marks.get(k)) is not None]


def _catches(rule: RevocationRule, x: TokenRecord) -> bool:
    """Literal scopes (the caller expanded implications): no catalog needed."""
    if x.valid_from >= rule.created_before or (
        rule.created_after is not None and x.valid_from < rule.created_after
    ):
        return False
    if (rule.kinds and x.kind not in rule.kinds) or (rule.user_ids and x.user_id not in rule.user_ids):
        return False
    return not rule.scopes or any(s in rule.scopes for s in x.scopes)


def _matches(x: TokenRecord, f: LiveFilter) -> bool:
    if f.kind is not None and x.kind is not f.kind:
        return False
    conds: list[bool] = []
    if f.expires_from is not None:
        conds.append(x.valid_to >= f.expires_from)
    if f.expires_before is not None:
        conds.append(x.valid_to < f.expires_before)
    if f.scope is not None:
        conds.append(f.scope in x.scopes)
    if f.lifetime_over is not None:
        conds.append(x.valid_to - x.valid_from > f.lifetime_over)
    if f.unused_since is not None:
        conds.append((x.last_used_at or x.created_at) <= f.unused_since)
    if not conds:
        return True
    return any(conds) if f.match_any else all(conds)
