"""The audit log in memory, chained like the SQL one (entries are sealed as they are appended)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from tokenwarden.adapters.memory._base import _Repo, _set
from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.audit_chain import GENESIS, ChainCheckpoint, ChainHead, chain_of, seal
from tokenwarden.ports.repositories import AuditQuery


class MemoryAuditRepository(_Repo):
    def append(self, entry: AuditEntry) -> None:
        chain = chain_of(entry.org_id)
        head = self.s.audit_heads.get(chain, ChainHead(chain, 0, GENESIS))
        sealed = seal(replace(entry, id=len(self.s.audit) + 1), head.seq + 1, head.hash)
        self.s.audit.append(sealed)
        self.j.append(lambda: self._pop(self.s.audit))
        _set(self.s.audit_heads, chain, ChainHead(chain, head.seq + 1, sealed.hash or ""), self.j)

    def query(self, query: AuditQuery) -> list[AuditEntry]:
        found = [
            e
            for e in self.s.audit
            if (e.id or 0) > query.after_id
            and (query.org_id is None or e.org_id == query.org_id)
            and (query.since is None or e.at >= query.since)
            and (query.until is None or e.at < query.until)
            and (query.actor_id is None or e.actor_id == query.actor_id)
            and (query.actor_upn is None or (e.actor_upn or "").casefold() == query.actor_upn.casefold())
            and (query.target_id is None or e.target_id == query.target_id)
            and (not query.event_types or e.event_type in query.event_types)
            and (query.before_id is None or (e.id or 0) < query.before_id)
        ]
        if query.newest_first:
            found.reverse()
        return found[: query.limit]

    def heads(self) -> list[ChainHead]:
        return [self.s.audit_heads[c] for c in sorted(self.s.audit_heads)]

    def chain_entries(
        self,
        chain: str,
        *,
        after_id: int = 0,
        limit: int = 5000,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEntry]:
        found = [
            e
            for e in self.s.audit
            if chain_of(e.org_id) == chain
            and (e.id or 0) > after_id
            and (since is None or e.at >= since)
            and (until is None or e.at < until)
        ]
        return found[:limit]

    def add_checkpoint(self, checkpoint: ChainCheckpoint) -> None:
        self.s.audit_checkpoints.append(replace(checkpoint, id=len(self.s.audit_checkpoints) + 1))
        self.j.append(lambda: self._pop(self.s.audit_checkpoints))

    def checkpoints(
        self, chain: str, *, from_seq: int | None = None, to_seq: int | None = None
    ) -> list[ChainCheckpoint]:
        return sorted(
            (
                c
                for c in self.s.audit_checkpoints
                if c.chain == chain
                and (from_seq is None or c.seq >= from_seq)
                and (to_seq is None or c.seq <= to_seq)
            ),
            key=lambda c: (c.seq, c.id or 0),
        )

    def last_checkpoint(self, chain: str) -> ChainCheckpoint | None:
        found = self.checkpoints(chain)
        return found[-1] if found else None
