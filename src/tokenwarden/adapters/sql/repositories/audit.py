"""The append-only audit log."""

from __future__ import annotations

from sqlalchemy import (
    Connection,
    insert,
    select,
)

from tokenwarden.adapters.sql import tables as t
from tokenwarden.domain.audit import AuditEntry
from tokenwarden.ports.repositories import AuditQuery


class SqlAuditRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def append(self, entry: AuditEntry) -> None:
        self._c.execute(
            insert(t.audit_log).values(
                at=entry.at,
                event_type=entry.event_type,
                org_id=entry.org_id,
                actor_id=entry.actor_id,
                actor_upn=entry.actor_upn,
                target_type=entry.target_type,
                target_id=entry.target_id,
                ip=entry.ip,
                details=entry.details,
            )
        )

    def query(self, query: AuditQuery) -> list[AuditEntry]:
        c = t.audit_log.c
        stmt = select(t.audit_log).where(c.id > query.after_id)
        if query.org_id is not None:
            stmt = stmt.where(c.org_id == query.org_id)
        if query.since is not None:
            stmt = stmt.where(c.at >= query.since)
        if query.until is not None:
            stmt = stmt.where(c.at < query.until)
        if query.actor_id is not None:
            stmt = stmt.where(c.actor_id == query.actor_id)
        if query.target_id is not None:
            stmt = stmt.where(c.target_id == query.target_id)
        if query.event_types:
            stmt = stmt.where(c.event_type.in_(query.event_types))
        if query.before_id is not None:
            stmt = stmt.where(c.id < query.before_id)
        order = c.id.desc() if query.newest_first else c.id
        rows = self._c.execute(stmt.order_by(order).limit(query.limit))
        return [
            AuditEntry(
                id=r.id,
                at=r.at,
                event_type=r.event_type,
                org_id=r.org_id,
                actor_id=r.actor_id,
                actor_upn=r.actor_upn,
                target_type=r.target_type,
                target_id=r.target_id,
                ip=r.ip,
                details=dict(r.details or {}),
            )
            for r in rows
        ]
