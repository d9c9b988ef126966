"""Usage records in SQL: batched upserts that add to existing counts (issue 14)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from tokenwarden.adapters.sql import tables as t
from tokenwarden.domain.usage import UsageCount, UsageStats, UsageTotals

_KEY = ["token_id", "bucket", "ip", "user_agent", "area", "status"]
# ids per statement: well under SQLite's bound-parameter limit
_CHUNK = 500


class SqlUsageRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add_counts(self, counts: Sequence[UsageCount]) -> None:
        if not counts:
            return
        dialect = postgresql if self._c.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(t.token_usage)
        stmt = stmt.on_conflict_do_update(
            index_elements=_KEY, set_={"count": t.token_usage.c.count + stmt.excluded.count}
        )
        rows = [
            {
                "token_id": u.token_id,
                "org_id": u.org_id,
                "bucket": u.bucket,
                "day": u.day,
                "ip": u.ip,
                "network": u.network,
                "user_agent": u.user_agent,
                "area": u.area,
                "status": u.status,
                "count": u.count,
            }
            for u in counts
        ]
        self._c.execute(stmt, rows)

    def resolve(self, hashes: Sequence[bytes]) -> dict[bytes, tuple[str, str]]:
        c = t.tokens.c
        found: dict[bytes, tuple[str, str]] = {}
        unique = list(dict.fromkeys(hashes))
        for i in range(0, len(unique), _CHUNK):
            stmt = select(c.secret_hash, c.id, c.org_id).where(c.secret_hash.in_(unique[i : i + _CHUNK]))
            for row in self._c.execute(stmt):
                found[bytes(row.secret_hash)] = (str(row.id), str(row.org_id))
        return found

    def totals(self, token_id: str, *, since: datetime, recent_since: datetime) -> UsageTotals:
        c = t.token_usage.c
        mine = (c.token_id == token_id, c.bucket >= since)
        total = func.sum(c.count)
        first, last, requests = self._c.execute(
            select(func.min(c.bucket), func.max(c.bucket), total).where(*mine)
        ).one()
        per_day = self._c.execute(select(c.day, total).where(*mine).group_by(c.day).order_by(c.day))
        networks = self._c.execute(
            select(c.network, total, func.min(c.bucket), func.max(c.bucket))
            .where(*mine)
            .group_by(c.network)
            .order_by(total.desc(), c.network)
            .limit(100)
        )
        agents = self._c.execute(
            select(c.user_agent, total)
            .where(*mine)
            .group_by(c.user_agent)
            .order_by(total.desc(), c.user_agent)
            .limit(10)
        )
        areas = self._c.execute(
            select(c.area, total).where(*mine).group_by(c.area).order_by(total.desc(), c.area).limit(20)
        )
        statuses = self._c.execute(
            select(c.status, total).where(c.token_id == token_id, c.bucket >= recent_since).group_by(c.status)
        )
        return UsageTotals(
            token_id=token_id,
            first_used=first,
            last_used=last,
            requests=int(requests or 0),
            per_day=[(str(d), int(n)) for d, n in per_day],
            networks=[(str(n), int(k), f, la) for n, k, f, la in networks],
            user_agents=[(str(a), int(n)) for a, n in agents],
            areas=[(str(a), int(n)) for a, n in areas],
            statuses={str(s): int(n) for s, n in statuses},
            recent_since=recent_since,
        )

    def requests_since(self, token_ids: Sequence[str], since: datetime) -> dict[str, int]:
        c = t.token_usage.c
        out: dict[str, int] = {}
        ids = list(dict.fromkeys(token_ids))
        for i in range(0, len(ids), _CHUNK):
            stmt = (
                select(c.token_id, func.sum(c.count))
                .where(c.token_id.in_(ids[i : i + _CHUNK]), c.bucket >= since)
                .group_by(c.token_id)
            )
            out.update({str(k): int(n) for k, n in self._c.execute(stmt)})
        return out

    def prune(self, before: datetime) -> int:
        result = self._c.execute(delete(t.token_usage).where(t.token_usage.c.bucket < before))
        return int(result.rowcount or 0)

    def stats(
        self, token_id: str, minutes: Sequence[datetime], *, baseline_since: datetime, burst_since: datetime
    ) -> UsageStats:
        c = t.token_usage.c
        mine = c.token_id == token_id
        start = min(minutes)
        total = func.sum(c.count)
        first, prior = self._c.execute(
            select(func.min(c.bucket), func.max(c.bucket).filter(c.bucket < start)).where(mine)
        ).one()
        networks = self._c.execute(
            select(c.network, func.min(c.bucket)).where(mine).group_by(c.network).limit(1000)
        )
        per_minute = self._c.execute(
            select(c.bucket, total).where(mine, c.bucket.in_(list(minutes)[:_CHUNK])).group_by(c.bucket)
        )
        base_minutes, base_requests = self._c.execute(
            select(func.count(func.distinct(c.bucket)), total).where(
                mine, c.bucket >= baseline_since, c.bucket < start
            )
        ).one()
        forbidden = self._c.execute(
            select(total).where(mine, c.status == "403", c.bucket >= burst_since)
        ).scalar()
        return UsageStats(
            first_used=first,
            prior_use=prior,
            network_first_seen={str(n): f for n, f in networks},
            minute_totals={b: int(n) for b, n in per_minute},
            baseline_minutes=int(base_minutes or 0),
            baseline_requests=int(base_requests or 0),
            forbidden_recent=int(forbidden or 0),
        )
