"""Shared Signals: security events, signing keys, streams, subjects, deliveries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories._rows import (
    _delivery,
    _insert_unique,
    _stream,
    _stream_values,
)
from tokenwarden.domain.errors import Conflict
from tokenwarden.ports.signals import (
    ACKED,
    DELIVERED,
    FAILED,
    PENDING,
    Delivery,
    DueQuery,
    SecurityEvent,
    SigningKey,
    Stream,
    StreamSubject,
)


class SqlSignalRepository:
    """The Shared Signals tables: outbox, signing keys, streams, subjects, delivery queue."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn
        self._pending: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ outbox
    def append_event(self, event: SecurityEvent) -> None:
        self.append_events([event])

    def append_events(self, events: Sequence[SecurityEvent]) -> None:
        """Queue outbox rows; the unit of work writes them at commit (:meth:`flush`), under the
        events table's lock so their ids grow in commit order, held only for the commit."""
        self._pending.extend(
            {
                "created_at": e.created_at,
                "event_type": e.event_type,
                "subject": e.subject,
                "event": e.event,
                "org_id": e.org_id,
                "txn": e.txn,
                "stream_id": e.stream_id,
            }
            for e in events
        )

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        """Write the queued outbox rows (the unit of work calls this, holding the events lock)."""
        if self._pending:
            rows, self._pending = self._pending, []
            self._c.execute(insert(t.security_events), rows)

    def events_after(self, org_id: str, stream_id: str, after_id: int, limit: int) -> list[SecurityEvent]:
        c = t.security_events.c
        rows = self._c.execute(
            select(t.security_events)
            .where(
                c.id > after_id,
                c.org_id == org_id,
                or_(c.stream_id.is_(None), c.stream_id == stream_id),
            )
            .order_by(c.id)
            .limit(limit)
        )
        return [
            SecurityEvent(
                event_type=r.event_type,
                subject=dict(r.subject),
                event=dict(r.event),
                org_id=r.org_id,
                txn=r.txn,
                created_at=r.created_at,
                stream_id=r.stream_id,
                id=int(r.id),
            )
            for r in rows
        ]

    def latest_event_id(self) -> int:
        return int(self._c.execute(select(func.coalesce(func.max(t.security_events.c.id), 0))).scalar_one())

    # ------------------------------------------------------------------ keys
    def add_key(self, key: SigningKey) -> None:
        _insert_unique(
            self._c,
            t.signing_keys,
            {
                "kid": key.kid,
                "alg": key.alg,
                "public_jwk": key.public_jwk,
                "private_key": key.private_key,
                "pepper_id": key.pepper_id,
                "status": key.status,
                "created_at": key.created_at,
                "retire_after": key.retire_after,
            },
            f"signing key {key.kid} exists",
        )

    def signing_keys(self, alg: str | None = None) -> list[SigningKey]:
        k = t.signing_keys.c
        stmt = select(t.signing_keys).where(k.status == "active")
        if alg is not None:
            stmt = stmt.where(k.alg == alg)
        return [_key(r) for r in self._c.execute(stmt.order_by(k.created_at, k.kid))]

    def published_keys(self, now: datetime) -> list[SigningKey]:
        k = t.signing_keys.c
        stmt = select(t.signing_keys).where(
            (k.status == "active") | ((k.status == "retiring") & (k.retire_after > now))
        )
        return [_key(r) for r in self._c.execute(stmt.order_by(k.created_at, k.kid))]

    def retire_key(self, kid: str, retire_after: datetime) -> bool:
        k = t.signing_keys.c
        result = self._c.execute(
            update(t.signing_keys)
            .where(k.kid == kid, k.status == "active")
            .values(status="retiring", retire_after=retire_after)
        )
        return bool(result.rowcount)

    # ------------------------------------------------------------------ streams
    def add_stream(self, stream: Stream) -> None:
        values = _stream_values(stream)
        values["cursor"] = stream.cursor
        _insert_unique(self._c, t.ssf_streams, values, f"stream {stream.stream_id} exists")

    def get_stream(self, stream_id: str) -> Stream | None:
        row = self._c.execute(select(t.ssf_streams).where(t.ssf_streams.c.stream_id == stream_id)).first()
        return _stream(row) if row else None

    def streams(self, org_id: str | None = None) -> list[Stream]:
        s = t.ssf_streams.c
        stmt = select(t.ssf_streams)
        if org_id is not None:
            stmt = stmt.where(s.org_id == org_id)
        return [_stream(r) for r in self._c.execute(stmt.order_by(s.created_at, s.stream_id))]

    def update_stream(self, stream: Stream) -> None:
        values = _stream_values(stream)
        del values["stream_id"]
        self._c.execute(
            update(t.ssf_streams).where(t.ssf_streams.c.stream_id == stream.stream_id).values(**values)
        )

    def delete_stream(self, stream_id: str) -> bool:
        self._c.execute(delete(t.ssf_deliveries).where(t.ssf_deliveries.c.stream_id == stream_id))
        self._c.execute(delete(t.ssf_subjects).where(t.ssf_subjects.c.stream_id == stream_id))
        result = self._c.execute(delete(t.ssf_streams).where(t.ssf_streams.c.stream_id == stream_id))
        return bool(result.rowcount)

    def advance_cursor(self, stream_id: str, old: int, new: int) -> bool:
        s = t.ssf_streams.c
        result = self._c.execute(
            update(t.ssf_streams).where(s.stream_id == stream_id, s.cursor == old).values(cursor=new)
        )
        return result.rowcount == 1

    def set_subject(self, subject: StreamSubject) -> None:
        j = t.ssf_subjects.c
        values = {
            "subject": subject.subject,
            "status": subject.status,
            "verified": subject.verified,
            "updated_at": subject.updated_at,
        }
        changed = self._c.execute(
            update(t.ssf_subjects)
            .where(j.stream_id == subject.stream_id, j.subject_key == subject.subject_key)
            .values(**values)
        ).rowcount
        if not changed:
            self._c.execute(
                insert(t.ssf_subjects).values(
                    stream_id=subject.stream_id, subject_key=subject.subject_key, **values
                )
            )

    def subjects(self, stream_id: str) -> list[StreamSubject]:
        j = t.ssf_subjects.c
        rows = self._c.execute(select(t.ssf_subjects).where(j.stream_id == stream_id).order_by(j.subject_key))
        return [
            StreamSubject(
                stream_id=r.stream_id,
                subject_key=r.subject_key,
                subject=dict(r.subject),
                status=r.status,
                updated_at=r.updated_at,
                verified=r.verified,
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ delivery queue
    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(t.ssf_deliveries),
                    [
                        {
                            "stream_id": d.stream_id,
                            "event_id": d.event_id,
                            "jti": d.jti,
                            "set_jws": d.set_jws,
                            "status": d.status,
                            "attempts": d.attempts,
                            "created_at": d.created_at,
                            "next_attempt_at": d.next_attempt_at,
                            "delivered_at": d.delivered_at,
                            "last_error": d.last_error,
                        }
                        for d in deliveries
                    ],
                )
        except IntegrityError as exc:
            raise Conflict("deliveries exist already") from exc

    def due(self, query: DueQuery) -> list[Delivery]:
        d, s = t.ssf_deliveries.c, t.ssf_streams.c
        stmt = (
            select(t.ssf_deliveries)
            .join(t.ssf_streams, s.stream_id == d.stream_id)
            .where(d.status.in_(list(query.statuses)), d.next_attempt_at <= query.now)
        )
        if query.stream_id is not None:
            stmt = stmt.where(d.stream_id == query.stream_id)
        if query.method is not None:
            stmt = stmt.where(s.delivery_method == query.method)
        if query.enabled_only:
            stmt = stmt.where(s.status == "enabled")
        return [_delivery(r) for r in self._c.execute(stmt.order_by(d.id).limit(query.limit))]

    def claim(
        self,
        delivery_id: int,
        now: datetime,
        *,
        from_statuses: Sequence[str],
        status: str,
        next_attempt_at: datetime | None,
    ) -> bool:
        d = t.ssf_deliveries.c
        result = self._c.execute(
            update(t.ssf_deliveries)
            .where(d.id == delivery_id, d.status.in_(list(from_statuses)), d.next_attempt_at <= now)
            .values(status=status, next_attempt_at=next_attempt_at, attempts=d.attempts + 1)
        )
        return result.rowcount == 1

    def finish(
        self,
        delivery_id: int,
        *,
        status: str,
        next_attempt_at: datetime | None,
        last_error: str | None = None,
        delivered_at: datetime | None = None,
    ) -> None:
        self._c.execute(
            update(t.ssf_deliveries)
            .where(t.ssf_deliveries.c.id == delivery_id)
            .values(
                status=status,
                next_attempt_at=next_attempt_at,
                last_error=last_error[:512] if last_error else None,
                delivered_at=delivered_at,
            )
        )

    def ack(self, stream_id: str, jtis: Sequence[str], at: datetime) -> int:
        if not jtis:
            return 0
        d = t.ssf_deliveries.c
        result = self._c.execute(
            update(t.ssf_deliveries)
            .where(d.stream_id == stream_id, d.jti.in_(list(jtis)), d.status.in_([PENDING, DELIVERED]))
            .values(status=ACKED, next_attempt_at=None, delivered_at=func.coalesce(d.delivered_at, at))
        )
        return int(result.rowcount)

    def fail(self, stream_id: str, errors: Mapping[str, str], at: datetime) -> int:
        d = t.ssf_deliveries.c
        changed = 0
        for jti, error in errors.items():
            result = self._c.execute(
                update(t.ssf_deliveries)
                .where(d.stream_id == stream_id, d.jti == jti, d.status.in_([PENDING, DELIVERED]))
                .values(status=FAILED, next_attempt_at=None, last_error=error[:512])
            )
            changed += int(result.rowcount)
        return changed

    def drop_pending(self, stream_id: str, reason: str) -> int:
        d = t.ssf_deliveries.c
        result = self._c.execute(
            update(t.ssf_deliveries)
            .where(d.stream_id == stream_id, d.status == PENDING)
            .values(status=FAILED, next_attempt_at=None, last_error=reason[:512])
        )
        return int(result.rowcount)

    def deliveries(self, stream_id: str) -> list[Delivery]:
        d = t.ssf_deliveries.c
        rows = self._c.execute(select(t.ssf_deliveries).where(d.stream_id == stream_id).order_by(d.id))
        return [_delivery(r) for r in rows]


def _key(r: Row[Any]) -> SigningKey:
    return SigningKey(
        kid=r.kid,
        alg=r.alg,
        public_jwk=dict(r.public_jwk),
        private_key=bytes(r.private_key),
        pepper_id=r.pepper_id,
        created_at=r.created_at,
        status=r.status,
        retire_after=r.retire_after,
    )
