"""The console's paged queries in SQL (issue 16): filters and counts in the database, so a page
of an organization with 10,000 members and 100,000 tokens costs one page of rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, and_, func, or_, select

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories._rows import _cut_by_watermark, _membership, _token, _user
from tokenwarden.domain.principals import Membership, User
from tokenwarden.domain.scopes import FULL_ACCESS
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.ports.alerts import CLOSED
from tokenwarden.ports.console import (
    DORMANT,
    EXPIRED,
    EXPIRY,
    LIVE,
    REVOKED,
    Dashboard,
    MemberQuery,
    TokenQuery,
    descending,
)

WEEK: Final = 7 * 86400


def _like_text(value: str) -> str:
    escaped = value.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _has_scope(column: Any, scope: str) -> Any:
    padded = " " + column + " "
    return padded.like(_like_text(f" {scope} "), escape="\\")


_Bound = tuple[datetime, bool]  # a value of the sort key and whether the bound is strict


def _sort_key(sort: str) -> Any:
    """What ``sort`` orders by, as the (org_id, key, id) indexes spell it."""
    c = t.tokens.c
    if sort == EXPIRY:
        return c.valid_to
    if sort == DORMANT:
        return func.coalesce(c.last_used_at, c.created_at)  # ix_tokens_org_last_active
    return c.created_at


def _past(
    key: Any, value: datetime, row_id: str, *, towards_greater: bool, inclusive: bool
) -> tuple[_Bound, Any]:
    """Rows after ``(value, row_id)`` in ascending (``towards_greater``) or descending order:
    a bound of the key (for the index range) and the tie-breaker on the id."""
    c = t.tokens.c
    if towards_greater:
        tie = c.id >= row_id if inclusive else c.id > row_id
        return (value, False), or_(key > value, tie)
    tie = c.id <= row_id if inclusive else c.id < row_id
    return (value, False), or_(key < value, tie)


def _tightest(bounds: list[_Bound], *, lower: bool) -> _Bound | None:
    if not bounds:
        return None
    # the greatest lower (least upper) value; at the same value the strict bound
    return max(bounds, key=lambda b: (b[0], b[1])) if lower else min(bounds, key=lambda b: (b[0], not b[1]))


def _bounds(key: Any, lower: list[_Bound], upper: list[_Bound]) -> list[Any]:
    out = []
    low, high = _tightest(lower, lower=True), _tightest(upper, lower=False)
    if low is not None:
        out.append(key > low[0] if low[1] else key >= low[0])
    if high is not None:
        out.append(key < high[0] if high[1] else key <= high[0])
    return out


class SqlConsoleRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def members(self, query: MemberQuery) -> tuple[list[tuple[User, Membership]], int]:
        m, u = t.memberships.c, t.users.c
        where: list[Any] = [m.org_id == query.org_id]
        if query.text:
            pattern = _like_text(query.text)
            where.append(
                or_(
                    u.upn_key.like(pattern, escape="\\"),
                    func.lower(u.display_name).like(pattern, escape="\\"),
                )
            )
        if query.status:
            where.append(m.status == query.status)
        if query.role:
            where.append(m.role == query.role)
        if query.risk == "any":
            where.append(m.risk_level.notin_(("none", "hidden")))
        elif query.risk:
            where.append(m.risk_level == query.risk)
        joined = t.memberships.join(t.users, u.id == m.user_id)
        total = int(self._c.execute(select(func.count()).select_from(joined).where(*where)).scalar_one())
        ids = [
            str(r[0])
            for r in self._c.execute(
                select(u.id)
                .select_from(joined)
                .where(*where)
                .order_by(u.upn_key)
                .offset(query.offset)
                .limit(query.limit)
            )
        ]
        if not ids:
            return [], total
        users = {r.id: _user(r) for r in self._c.execute(select(t.users).where(u.id.in_(ids)))}
        members = {
            r.user_id: _membership(r)
            for r in self._c.execute(
                select(t.memberships).where(m.org_id == query.org_id, m.user_id.in_(ids))
            )
        }
        return [(users[i], members[i]) for i in ids if i in users and i in members], total

    def tokens(self, query: TokenQuery) -> tuple[list[TokenRecord], int]:
        c = t.tokens.c
        sort = query.sort
        key = _sort_key(sort)
        where: list[Any] = [c.org_id == query.org_id]
        # bounds of the sort key, kept apart: only the tightest lower and upper one is written,
        # so the planner starts and ends its range scan of the (org_id, key, id) index there
        lower: list[_Bound] = []
        upper: list[_Bound] = []
        if query.owner_id:
            where.append(c.user_id == query.owner_id)
        if query.kind:
            where.append(c.kind == query.kind)
        if query.scope:
            where.append(_has_scope(c.scopes, query.scope))
        if query.full_scope:
            where.append(_has_scope(c.scopes, FULL_ACCESS))
        if query.state == LIVE or query.expiring_before is not None:
            where += [c.revoked_at.is_(None), ~_cut_by_watermark(c)]
            if sort == EXPIRY:
                lower.append((query.now, True))
            else:
                where.append(c.valid_to > query.now)
        elif query.state == REVOKED:
            where.append(or_(c.revoked_at.is_not(None), _cut_by_watermark(c)))
        elif query.state == EXPIRED:
            where.append(and_(c.revoked_at.is_(None), c.valid_to <= query.now))
        if query.expiring_before is not None:  # the sort is EXPIRY
            upper.append((query.expiring_before, True))
        if query.unused_since is not None:
            if sort == DORMANT:
                upper.append((query.unused_since, True))
            else:
                where.append(_sort_key(DORMANT) < query.unused_since)
        down = descending(sort)
        seek = query.seek
        counted_where, counted_lower, counted_upper = list(where), list(lower), list(upper)
        page_where, page_lower, page_upper = where, lower, upper
        backward = seek is not None and seek.backward
        if seek is not None:
            # the page: the rows past the position (backward: before it, read in reverse)
            towards_greater = down == seek.backward
            bound, residual = _past(key, seek.key, seek.id, towards_greater=towards_greater, inclusive=False)
            (page_lower if towards_greater else page_upper).append(bound)
            page_where.append(residual)
            # the count: the rows after the page in the listing's order
            later = not down
            bound, residual = _past(key, seek.key, seek.id, towards_greater=later, inclusive=seek.backward)
            (counted_lower if later else counted_upper).append(bound)
            counted_where.append(residual)
        counted = select(c.id).where(*counted_where, *_bounds(key, counted_lower, counted_upper))
        if query.count_up_to is not None:  # stop scanning once that many more are found
            counted = counted.limit(query.limit + query.count_up_to)
        total = int(self._c.execute(select(func.count()).select_from(counted.subquery())).scalar_one())
        read_down = down != backward
        order = (key.desc(), c.id.desc()) if read_down else (key.asc(), c.id.asc())
        rows = self._c.execute(
            select(t.tokens)
            .where(*page_where, *_bounds(key, page_lower, page_upper))
            .order_by(*order)
            .limit(query.limit)
        )
        records = [_token(r) for r in rows]
        return (records[::-1] if backward else records), total

    def dashboard(self, org_id: str, now: datetime, since: datetime) -> Dashboard:
        c = t.tokens.c
        live = and_(c.org_id == org_id, c.revoked_at.is_(None), c.valid_to > now, ~_cut_by_watermark(c))
        horizon = now + timedelta(weeks=12)
        weeks = [0] * 12
        for (valid_to,) in self._c.execute(select(c.valid_to).where(live, c.valid_to < horizon)):
            weeks[min(11, int((valid_to - now).total_seconds() // WEEK))] += 1
        by_scope: dict[str, int] = {}
        for scopes, n in self._c.execute(select(c.scopes, func.count()).where(live).group_by(c.scopes)):
            for scope in str(scopes).split():
                by_scope[scope] = by_scope.get(scope, 0) + int(n)
        revoked: dict[str, int] = {}
        q = select(c.revoked_at).where(c.org_id == org_id, c.revoked_at >= since)
        for (at,) in self._c.execute(q):
            day = at.strftime("%Y-%m-%d")
            revoked[day] = revoked.get(day, 0) + 1
        u = t.token_usage.c
        day_from = since.strftime("%Y-%m-%d")
        requests = {
            str(day): int(n)
            for day, n in self._c.execute(
                select(u.day, func.sum(u.count)).where(u.org_id == org_id, u.day >= day_from).group_by(u.day)
            )
        }
        a = t.alerts.c
        alerts = {
            str(level): int(n)
            for level, n in self._c.execute(
                select(a.level, func.count()).where(a.org_id == org_id, a.status != CLOSED).group_by(a.level)
            )
        }
        return Dashboard(weeks, by_scope, revoked, requests, alerts)
