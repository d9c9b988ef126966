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
    def __init__(self, conn: Connection) -> None:
        self._c = conn
        self._clock = SystemClock()
        self.appended = 0  # events appended in this transaction (its unit of work announces them)

    def append(self, event: InvalidationEvent) -> None:
        self.appended += 1
        if self._c.dialect.name == "postgresql":
            # Serialise event writers so that sequence order equals commit order: a reader
            # that has seen seq N can never later find a committed event below N.
            self._c.exec_driver_sql("SELECT pg_advisory_xact_lock(7355608)")
        self._c.execute(
            insert(t.events).values(at=self._clock.now(), type=event.type.value, payload=event.payload)
        )

    def since(self, seq: int, limit: int = 1000) -> list[InvalidationEvent]:
        rows = self._c.execute(
            select(t.events).where(t.events.c.seq > seq).order_by(t.events.c.seq).limit(limit)
        )
        return [InvalidationEvent(EventType(r.type), dict(r.payload), r.seq) for r in rows]

    def latest_seq(self) -> int:
        return int(self._c.execute(select(func.coalesce(func.max(t.events.c.seq), 0))).scalar_one())
