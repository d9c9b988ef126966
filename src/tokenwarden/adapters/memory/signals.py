"""Shared Signals tables in memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from tokenwarden.adapters.memory._base import SignalTables, _Repo, _set
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


class MemorySignalRepository(_Repo):
    @property
    def _t(self) -> SignalTables:
        return self.s.signal_tables

    def append_event(self, event: SecurityEvent) -> None:
        self._t.events.append(replace(event, id=len(self._t.events) + 1))
        self.j.append(lambda: self._pop(self._t.events))

    def append_events(self, events: Sequence[SecurityEvent]) -> None:
        for event in events:
            self.append_event(event)

    def events_after(self, org_id: str, stream_id: str, after_id: int, limit: int) -> list[SecurityEvent]:
        found = [
            e
            for e in self._t.events[after_id:]
            if e.org_id == org_id and (e.stream_id is None or e.stream_id == stream_id)
        ]
        return found[:limit]

    def latest_event_id(self) -> int:
        return len(self._t.events)

    def add_key(self, key: SigningKey) -> None:
        if key.kid in self._t.keys:
            raise Conflict(f"signing key {key.kid} exists")
        _set(self._t.keys, key.kid, key, self.j)

    def signing_keys(self, alg: str | None = None) -> list[SigningKey]:
        found = [k for k in self._t.keys.values() if k.status == "active" and alg in (None, k.alg)]
        return sorted(found, key=lambda k: (k.created_at, k.kid))

    def published_keys(self, now: datetime) -> list[SigningKey]:
        found = [
            k
            for k in self._t.keys.values()
            if k.status == "active" or (k.status == "retiring" and k.retire_after and k.retire_after > now)
        ]
        return sorted(found, key=lambda k: (k.created_at, k.kid))

    def retire_key(self, kid: str, retire_after: datetime) -> bool:
        key = self._t.keys.get(kid)
        if key is None or key.status != "active":
            return False
        _set(self._t.keys, kid, replace(key, status="retiring", retire_after=retire_after), self.j)
        return True

    def add_stream(self, stream: Stream) -> None:
        if stream.stream_id in self._t.streams:
            raise Conflict(f"stream {stream.stream_id} exists")
        _set(self._t.streams, stream.stream_id, stream, self.j)

    def get_stream(self, stream_id: str) -> Stream | None:
        return self._t.streams.get(stream_id)

    def streams(self, org_id: str | None = None) -> list[Stream]:
        found = [s for s in self._t.streams.values() if org_id in (None, s.org_id)]
        return sorted(found, key=lambda s: (s.created_at, s.stream_id))

    def update_stream(self, stream: Stream) -> None:
        current = self._t.streams.get(stream.stream_id)
        if current is not None:
            _set(self._t.streams, stream.stream_id, replace(stream, cursor=current.cursor), self.j)

    def delete_stream(self, stream_id: str) -> bool:
        t = self._t
        for did in [i for i, d in t.deliveries.items() if d.stream_id == stream_id]:
            self._remove(t.deliveries, did)
        for key in [k for k in t.subjects if k[0] == stream_id]:
            self._remove(t.subjects, key)
        if stream_id not in t.streams:
            return False
        self._remove(t.streams, stream_id)
        return True

    def _remove(self, d: dict[Any, Any], key: Any) -> None:
        old = d.pop(key)
        self.j.append(lambda: d.__setitem__(key, old))

    def advance_cursor(self, stream_id: str, old: int, new: int) -> bool:
        current = self._t.streams.get(stream_id)
        if current is None or current.cursor != old:
            return False
        _set(self._t.streams, stream_id, replace(current, cursor=new), self.j)
        return True

    def set_subject(self, subject: StreamSubject) -> None:
        _set(self._t.subjects, (subject.stream_id, subject.subject_key), subject, self.j)

    def subjects(self, stream_id: str) -> list[StreamSubject]:
        return sorted(
            (s for (sid, _), s in self._t.subjects.items() if sid == stream_id), key=lambda s: s.subject_key
        )

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        t = self._t
        taken = {(d.stream_id, d.event_id) for d in t.deliveries.values()}
        jtis = {d.jti for d in t.deliveries.values()}
        for d in deliveries:
            if (d.stream_id, d.event_id) in taken or d.jti in jtis:
                raise Conflict("deliveries exist already")
            taken.add((d.stream_id, d.event_id))
            jtis.add(d.jti)
        for d in deliveries:
            t.next_delivery_id[0] += 1
            _set(t.deliveries, t.next_delivery_id[0], replace(d, id=t.next_delivery_id[0]), self.j)

    def due(self, query: DueQuery) -> list[Delivery]:
        found = []
        for d in sorted(self._t.deliveries.values(), key=lambda d: d.id):
            stream = self._t.streams.get(d.stream_id)
            if (
                stream is not None
                and d.status in query.statuses
                and d.next_attempt_at is not None
                and d.next_attempt_at <= query.now
                and query.stream_id in (None, d.stream_id)
                and query.method in (None, stream.delivery_method)
                and (not query.enabled_only or stream.status == "enabled")
            ):
                found.append(d)
        return found[: query.limit]

    def claim(
        self,
        delivery_id: int,
        now: datetime,
        *,
        from_statuses: Sequence[str],
        status: str,
        next_attempt_at: datetime | None,
    ) -> bool:
        d = self._t.deliveries.get(delivery_id)
        if d is None or d.status not in from_statuses or d.next_attempt_at is None or d.next_attempt_at > now:
            return False
        claimed = replace(d, status=status, next_attempt_at=next_attempt_at, attempts=d.attempts + 1)
        _set(self._t.deliveries, delivery_id, claimed, self.j)
        return True

    def finish(
        self,
        delivery_id: int,
        *,
        status: str,
        next_attempt_at: datetime | None,
        last_error: str | None = None,
        delivered_at: datetime | None = None,
    ) -> None:
        d = self._t.deliveries.get(delivery_id)
        if d is not None:
            done = replace(
                d,
                status=status,
                next_attempt_at=next_attempt_at,
                last_error=last_error[:512] if last_error else None,
                delivered_at=delivered_at,
            )
            _set(self._t.deliveries, delivery_id, done, self.j)

    def _change(self, stream_id: str, jti: str, statuses: Sequence[str], **changes: Any) -> int:
        for did, d in self._t.deliveries.items():
            if d.stream_id == stream_id and d.jti == jti and d.status in statuses:
                _set(self._t.deliveries, did, replace(d, **changes), self.j)
                return 1
        return 0

    def ack(self, stream_id: str, jtis: Sequence[str], at: datetime) -> int:
        changed = 0
        for jti in dict.fromkeys(jtis):
            d = next((x for x in self._t.deliveries.values() if x.jti == jti), None)
            delivered_at = d.delivered_at if d is not None and d.delivered_at else at
            changed += self._change(
                stream_id,
                jti,
                (PENDING, DELIVERED),
                status=ACKED,
                next_attempt_at=None,
                delivered_at=delivered_at,
            )
        return changed

    def fail(self, stream_id: str, errors: Mapping[str, str], at: datetime) -> int:
        return sum(
            self._change(
                stream_id, jti, (PENDING, DELIVERED), status=FAILED, next_attempt_at=None, last_error=e[:512]
            )
            for jti, e in errors.items()
        )

    def drop_pending(self, stream_id: str, reason: str) -> int:
        changed = 0
        for did, d in list(self._t.deliveries.items()):
            if d.stream_id == stream_id and d.status == PENDING:
                failed = replace(d, status=FAILED, next_attempt_at=None, last_error=reason[:512])
                _set(self._t.deliveries, did, failed, self.j)
                changed += 1
        return changed

    def deliveries(self, stream_id: str) -> list[Delivery]:
        return sorted(
            (d for d in self._t.deliveries.values() if d.stream_id == stream_id), key=lambda d: d.id
        )
