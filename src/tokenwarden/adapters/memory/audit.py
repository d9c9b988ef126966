"""The audit log in memory."""

from __future__ import annotations

from dataclasses import replace

from tokenwarden.adapters.memory._base import _Repo
from tokenwarden.domain.audit import AuditEntry
from tokenwarden.ports.repositories import (
    AuditQuery,
)


class MemoryAuditRepository(_Repo):
    def append(self, entry: AuditEntry) -> None:
        self.s.audit.append(replace(entry, id=len(self.s.audit) + 1))
        self.j.append(lambda: self._pop(self.s.audit))

    def query(self, query: AuditQuery) -> list[AuditEntry]:
        found = [
            e
            for e in self.s.audit
            if (e.id or 0) > query.after_id
            and (query.org_id is None or e.org_id == query.org_id)
            and (query.since is None or e.at >= query.since)
            and (query.until is None or e.at < query.until)
            and (query.actor_id is None or e.actor_id == query.actor_id)
            and (query.target_id is None or e.target_id == query.target_id)
            and (not query.event_types or e.event_type in query.event_types)
            and (query.before_id is None or (e.id or 0) < query.before_id)
        ]
        if query.newest_first:
            found.reverse()
        return found[: query.limit]
