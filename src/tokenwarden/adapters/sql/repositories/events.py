"""The ordered invalidation events table."""

from __future__ import annotations

from sqlalchemy import (
    Connection,
    func,
    insert,
    select,
)

from tokenwarden.adapters.sql import tables as t
from tokenwarden.domain.clock import SystemClock
from tokenwarden.domain.events import EventType, InvalidationEvent


class SqlEventRepository:
    """Events appended in a transaction are written when it commits (:meth:`flush`).

    On PostgreSQL the writers of events are serialised so that sequence order equals commit
    order (a reader that has seen seq N can never later find a committed event below N): the
    lock is held from the insert to the commit. Inserting at commit time keeps that to the
    commit itself — a refresh-token rotation appended its event first and then held the lock
    through the rest of the grant, so every rotation on every node queued behind it."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn
        self._clock = SystemClock()
        self.appended = 0  # events appended in this transaction (its unit of work announces them)
        self._pending: list[dict[str, object]] = []

    def append(self, event: InvalidationEvent) -> None:
        self.appended += 1
        self._pending.append({"at": self._clock.now(), "type": event.type.value, "payload": event.payload})

    def flush(self) -> None:
        """Write the appended events (the unit of work calls this just before it commits)."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        if self._c.dialect.name == "postgresql":
            self._c.exec_driver_sql("SELECT pg_advisory_xact_lock(7355608)")
        for row in rows:  # one by one: the sequence follows the order they were appended in
            self._c.execute(insert(t.events).values(**row))

    def since(self, seq: int, limit: int = 1000) -> list[InvalidationEvent]:
        rows = self._c.execute(
            select(t.events).where(t.events.c.seq > seq).order_by(t.events.c.seq).limit(limit)
        )
        return [InvalidationEvent(EventType(r.type), dict(r.payload), r.seq) for r in rows]

    def latest_seq(self) -> int:
        return int(self._c.execute(select(func.coalesce(func.max(t.events.c.seq), 0))).scalar_one())
