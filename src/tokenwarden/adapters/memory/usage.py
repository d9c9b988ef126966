"""Usage records in memory (the fast unit tests' twin of the SQL table)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from tokenwarden.adapters.memory._base import _discard, _Repo, _set
from tokenwarden.domain.usage import UsageCount, UsageStats, UsageTotals

Key = tuple[str, datetime, str, str, str, str]


class MemoryUsageRepository(_Repo):
    def add_counts(self, counts: Sequence[UsageCount]) -> None:
        rows = self.s.usage
        for u in counts:
            key: Key = (u.token_id, u.bucket, u.ip, u.user_agent, u.area, u.status)
            old = rows.get(key)
            _set(rows, key, u if old is None else _with_count(old, old.count + u.count), self.j)

    def resolve(self, hashes: Sequence[bytes]) -> dict[bytes, tuple[str, str]]:
        out: dict[bytes, tuple[str, str]] = {}
        for h in hashes:
            token_id = self.s.token_by_hash.get(h)
            if token_id is not None:
                out[h] = (token_id, self.s.tokens[token_id].org_id)
        return out

    def totals(self, token_id: str, *, since: datetime, recent_since: datetime) -> UsageTotals:
        mine = [u for u in self.s.usage.values() if u.token_id == token_id and u.bucket >= since]
        per_day: Counter[str] = Counter()
        agents: Counter[str] = Counter()
        areas: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        net_count: Counter[str] = Counter()
        net_first: dict[str, datetime] = {}
        net_last: dict[str, datetime] = {}
        for u in mine:
            per_day[u.day] += u.count
            agents[u.user_agent] += u.count
            areas[u.area] += u.count
            if u.bucket >= recent_since:
                statuses[u.status] += u.count
            net_count[u.network] += u.count
            net_first[u.network] = min(net_first.get(u.network, u.bucket), u.bucket)
            net_last[u.network] = max(net_last.get(u.network, u.bucket), u.bucket)
        networks = sorted(
            ((k, n, net_first[k], net_last[k]) for k, n in net_count.items()), key=lambda x: (-x[1], x[0])
        )
        return UsageTotals(
            token_id=token_id,
            first_used=min((u.bucket for u in mine), default=None),
            last_used=max((u.bucket for u in mine), default=None),
            requests=sum(u.count for u in mine),
            per_day=sorted(per_day.items()),
            networks=networks[:100],
            user_agents=sorted(agents.items(), key=lambda x: (-x[1], x[0]))[:10],
            areas=sorted(areas.items(), key=lambda x: (-x[1], x[0]))[:20],
            statuses=dict(statuses),
            recent_since=recent_since,
        )

    def requests_since(self, token_ids: Sequence[str], since: datetime) -> dict[str, int]:
        wanted = set(token_ids)
        out: Counter[str] = Counter()
        for u in self.s.usage.values():
            if u.token_id in wanted and u.bucket >= since:
                out[u.token_id] += u.count
        return dict(out)

    def prune(self, before: datetime) -> int:
        old = [k for k, u in self.s.usage.items() if u.bucket < before]
        for key in old:
            value = self.s.usage[key]
            self.j.append(lambda k=key, v=value: self.s.usage.__setitem__(k, v))  # type: ignore[misc]
            _discard(self.s.usage, key)
        return len(old)

    def stats(
        self, token_id: str, minutes: Sequence[datetime], *, baseline_since: datetime, burst_since: datetime
    ) -> UsageStats:
        mine = [u for u in self.s.usage.values() if u.token_id == token_id]
        start = min(minutes)
        wanted = set(minutes)
        first_seen: dict[str, datetime] = {}
        per_minute: Counter[datetime] = Counter()
        for u in mine:
            first_seen[u.network] = min(first_seen.get(u.network, u.bucket), u.bucket)
            if u.bucket in wanted:
                per_minute[u.bucket] += u.count
        base = [u for u in mine if baseline_since <= u.bucket < start]
        return UsageStats(
            first_used=min((u.bucket for u in mine), default=None),
            prior_use=max((u.bucket for u in mine if u.bucket < start), default=None),
            network_first_seen=first_seen,
            minute_totals=dict(per_minute),
            baseline_minutes=len({u.bucket for u in base}),
            baseline_requests=sum(u.count for u in base),
            forbidden_recent=sum(u.count for u in mine if u.status == "403" and u.bucket >= burst_since),
        )


def _with_count(u: UsageCount, count: int) -> UsageCount:
    return UsageCount(u.token_id, u.org_id, u.bucket, u.ip, u.network, u.user_agent, u.area, u.status, count)
