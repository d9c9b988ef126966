"""The ordered invalidation events table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    func,
    insert,
    select,
)

from tokenwarden.adapters.sql import tables as t
from tokenwarden.domain.clock import SystemClock
from tokenwarden.domain.events import INTENT_TYPES, EventType, InvalidationEvent
from tokenwarden.ports.repositories import IntentHook, run_intent_hooks

EVENTS_LOCK = 7355608  # PostgreSQL advisory lock of the writers of events and outbox rows


class SqlEventRepository:
    """Events appended in a transaction are written when it commits (:meth:`flush`).

    On PostgreSQL the writers of events are serialised so that sequence order equals commit
    order (a reader that has seen seq N can never later find a committed event below N): the
    lock is held from the insert to the commit. Inserting at commit time keeps that to the
    commit itself — a refresh-token rotation appended its event first and then held the lock
    through the rest of the grant, so every rotation on every node queued behind it."""

    def __init__(self, conn: Connection, intent_hooks: Sequence[IntentHook] = ()) -> None:
        self._c = conn
        self._intent_hooks = intent_hooks
        self.intents: list[InvalidationEvent] = []  # announced before commit (see IntentHook)
        self._clock = SystemClock()
        self.appended = 0  # events appended in this transaction (its unit of work announces them)
        self._pending: list[dict[str, object]] = []
        self._locked = False
        self.written: list[InvalidationEvent] = []  # flushed, with their sequence numbers

    def append(self, event: InvalidationEvent) -> None:
        self.appended += 1
        self._pending.append({"at": self._clock.now(), "type": event.type.value, "payload": event.payload})
        if event.type in INTENT_TYPES and self._intent_hooks:
            self.intents.append(event)
            run_intent_hooks(self._intent_hooks, [event], withdrawn=False)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def lock_order(self) -> None:
        """On PostgreSQL, take the writers' lock (held to the commit; once per transaction):
        events — and the Shared Signals outbox — get ids in commit order."""
        if self._c.dialect.name == "postgresql" and not self._locked:
            self._c.exec_driver_sql(f"SELECT pg_advisory_xact_lock({EVENTS_LOCK})")
            self._locked = True

    def flush(self) -> None:
        """Write the appended events (the unit of work calls this just before it commits)."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        self.lock_order()
        for row in rows:  # one by one: the sequence follows the order they were appended in
            key = self._c.execute(insert(t.events).values(**row)).inserted_primary_key
            if key is None:  # every dialect we support reports it; never announce a guessed number
                raise RuntimeError("the database did not report the event's sequence number")
            self.written.append(InvalidationEvent(EventType(str(row["type"])), _payload_of(row), int(key[0])))

    def committed(self) -> list[InvalidationEvent]:
        """After the commit: the events it wrote (and a fresh start for the next transaction)."""
        written, self.written = self.written, []
        self.appended = 0
        self._locked = False
        self.intents = []
        return written

    def since(self, seq: int, limit: int = 1000) -> list[InvalidationEvent]:
        rows = self._c.execute(
            select(t.events).where(t.events.c.seq > seq).order_by(t.events.c.seq).limit(limit)
        )
        return [InvalidationEvent(EventType(r.type), dict(r.payload), r.seq) for r in rows]

    def latest_seq(self) -> int:
        return int(self._c.execute(select(func.coalesce(func.max(t.events.c.seq), 0))).scalar_one())


def _payload_of(row: dict[str, object]) -> dict[str, Any]:
    payload = row["payload"]
    return dict(payload) if isinstance(payload, dict) else {}
