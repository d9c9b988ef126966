"""The console's paged queries in memory (issue 16)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from tokenwarden.adapters.memory._base import _cut_by_watermark, _Repo
from tokenwarden.domain.principals import Membership, User
from tokenwarden.domain.scopes import FULL_ACCESS
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.ports.alerts import CLOSED
from tokenwarden.ports.console import (
    EXPIRED,
    LIVE,
    REVOKED,
    Dashboard,
    MemberQuery,
    TokenQuery,
    descending,
    sort_key,
)


class MemoryConsoleRepository(_Repo):
    def members(self, query: MemberQuery) -> tuple[list[tuple[User, Membership]], int]:
        text = (query.text or "").casefold()
        found = []
        for (org_id, user_id), m in self.s.memberships.items():
            user = self.s.users.get(user_id)
            if org_id != query.org_id or user is None:
                continue
            if text and text not in user.upn.casefold() and text not in user.display_name.casefold():
                continue
            if query.status and m.status.value != query.status:
                continue
            if query.role and m.role.value != query.role:
                continue
            if query.risk == "any" and m.risk_level.value in ("none", "hidden"):
                continue
            if query.risk and query.risk != "any" and m.risk_level.value != query.risk:
                continue
            found.append((user, m))
        found.sort(key=lambda um: um[0].upn.casefold())
        return found[query.offset : query.offset + query.limit], len(found)

    def tokens(self, query: TokenQuery) -> tuple[list[TokenRecord], int]:
        now = query.now
        found = []
        for r in self.s.tokens.values():
            if r.org_id != query.org_id:
                continue
            if query.owner_id and r.user_id != query.owner_id:
                continue
            if query.kind and r.kind.value != query.kind:
                continue
            if query.scope and query.scope.casefold() not in (s.casefold() for s in r.scopes):
                continue
            if query.full_scope and FULL_ACCESS not in r.scopes:
                continue
            cut = r.revoked_at is not None or _cut_by_watermark(self.s, r)
            live = not cut and r.valid_to > now
            if (query.state == LIVE or query.expiring_before is not None) and not live:
                continue
            if query.state == REVOKED and not cut:
                continue
            if query.state == EXPIRED and (r.revoked_at is not None or r.valid_to > now):
                continue
            if query.expiring_before is not None and not r.valid_to < query.expiring_before:
                continue
            if query.unused_since is not None and not (r.last_used_at or r.created_at) < query.unused_since:
                continue
            found.append(r)
        sort = query.sort
        reverse = descending(sort)
        found.sort(key=lambda r: _rank(r, sort), reverse=reverse)
        seek = query.seek
        if seek is None:
            page, after_page = found[: query.limit], found
        else:
            at = (seek.key, seek.id)
            # how many rows come before the position in the listing's order (and at it)
            before = sum(1 for r in found if ((_rank(r, sort) > at) if reverse else (_rank(r, sort) < at)))
            upto = before + sum(1 for r in found if _rank(r, sort) == at)
            if seek.backward:  # the rows just before it; counted from it on
                page, after_page = found[max(0, before - query.limit) : before], found[before:]
            else:
                page, after_page = found[upto : upto + query.limit], found[upto:]
        total = len(after_page)
        if query.count_up_to is not None:
            total = min(total, query.limit + query.count_up_to)
        return page, total

    def dashboard(self, org_id: str, now: datetime, since: datetime) -> Dashboard:
        weeks = [0] * 12
        by_scope: Counter[str] = Counter()
        revoked: Counter[str] = Counter()
        for r in self.s.tokens.values():
            if r.org_id != org_id:
                continue
            if r.revoked_at is not None and r.revoked_at >= since:
                revoked[r.revoked_at.strftime("%Y-%m-%d")] += 1
            if r.revoked_at is not None or r.valid_to <= now or _cut_by_watermark(self.s, r):
                continue
            by_scope.update(set(r.scopes))
            if r.valid_to < now + timedelta(weeks=12):
                weeks[min(11, int((r.valid_to - now).total_seconds() // (7 * 86400)))] += 1
        day_from = since.strftime("%Y-%m-%d")
        requests: Counter[str] = Counter()
        for u in self.s.usage.values():
            if u.org_id == org_id and u.day >= day_from:
                requests[u.day] += u.count
        alerts = Counter(a.level for a in self.s.alerts.values() if a.org_id == org_id and a.status != CLOSED)
        return Dashboard(weeks, dict(by_scope), dict(revoked), dict(requests), dict(alerts))


def _rank(record: TokenRecord, sort: str) -> tuple[datetime, str]:
    return sort_key(record, sort), record.authorization_id
