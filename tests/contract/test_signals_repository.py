"""The SignalRepository contract (outbox, signing keys, streams, subjects, delivery queue) on
every backend. PostgreSQL shares one database across tests: ids and names are unique per test
and assertions are relative to what each test wrote."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.principals import Organization
from tokenwarden.ports.repositories import Database
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

T0 = datetime(2026, 11, 23, 8, 0, 0, 123456, tzinfo=UTC)
PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"


def new_org(db: Database) -> str:
    org = Organization(id=str(uuid.uuid4()), name=f"o{uuid.uuid4().hex[:12]}", created_at=T0)
    with db() as uow:
        uow.orgs.add(org)
        uow.commit()
    return org.id


def event(org_id: str | None, n: int = 0, stream_id: str | None = None) -> SecurityEvent:
    return SecurityEvent(
        event_type="https://schemas.openid.net/secevent/caep/event-type/session-revoked",
        subject={"format": "email", "email": f"u{n}@acme.test"},
        event={"event_timestamp": 1, "initiating_entity": "admin", "n": n},
        org_id=org_id,
        txn=f"txn-{n}",
        created_at=T0,
        stream_id=stream_id,
    )


def stream(org_id: str, method: str = POLL, **changes: object) -> Stream:
    base = Stream(
        stream_id=str(uuid.uuid4()),
        org_id=org_id,
        iss="https://tw.example",
        aud=("https://rs.example", "urn:x"),
        events_requested=("a", "b"),
        delivery_method=method,
        created_at=T0,
        updated_at=T0,
        endpoint_url="https://rs.example/events" if method == PUSH else None,
        authorization_header="p1.c2VhbGVk" if method == PUSH else None,
        description="test stream",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def delivery(stream_id: str, event_id: int, at: datetime = T0) -> Delivery:
    return Delivery(
        stream_id=stream_id,
        event_id=event_id,
        jti=uuid.uuid4().hex,
        set_jws=f"h.p{event_id}.s",
        status=PENDING,
        created_at=at,
        next_attempt_at=at,
    )


def test_outbox_is_ordered_filtered_by_org_and_stream_and_transactional(db: Database) -> None:
    org, other = new_org(db), new_org(db)
    sid = str(uuid.uuid4())
    with db() as uow:
        start = uow.signals.latest_event_id()
        uow.signals.append_event(event(org, 1))
        uow.signals.append_event(event(other, 2))
        uow.signals.append_event(event(org, 3, stream_id=sid))
        uow.signals.append_event(event(org, 4, stream_id=str(uuid.uuid4())))
        uow.signals.append_event(event(org, 5))
        uow.commit()
    with db() as uow:
        uow.signals.append_event(event(org, 6))  # rolled back: never seen
    with db() as uow:
        assert uow.signals.latest_event_id() == start + 5
        found = uow.signals.events_after(org, sid, start, 100)
        assert [e.event["n"] for e in found] == [1, 3, 5]
        assert [e.id for e in found] == sorted(e.id for e in found)
        assert found[0].subject == {"format": "email", "email": "u1@acme.test"}
        assert found[0].created_at == T0 and found[0].txn == "txn-1" and found[1].stream_id == sid
        assert [e.event["n"] for e in uow.signals.events_after(org, sid, found[0].id, 1)] == [3]


def test_signing_keys(db: Database) -> None:
    kids = [f"kid-{uuid.uuid4().hex}" for _ in range(2)]
    with db() as uow:
        for i, kid in enumerate(kids):
            uow.signals.add_key(
                SigningKey(
                    kid=kid,
                    alg="RS256" if i == 0 else "EdDSA",
                    public_jwk={"kty": "RSA", "kid": kid},
                    private_key=b"\x00sealed\xff",
                    pepper_id="p1",
                    created_at=T0 + timedelta(seconds=i),
                )
            )
        uow.commit()
    with db() as uow:
        rsa = [k for k in uow.signals.signing_keys("RS256") if k.kid in kids]
        assert [k.kid for k in rsa] == kids[:1]
        assert rsa[0].private_key == b"\x00sealed\xff" and rsa[0].public_jwk == {"kty": "RSA", "kid": kids[0]}
        assert [k.kid for k in uow.signals.signing_keys() if k.kid in kids] == kids
        with pytest.raises(Conflict):
            uow.signals.add_key(rsa[0])


def test_streams_crud_cursor_and_subjects(db: Database) -> None:
    org = new_org(db)
    s = stream(org, PUSH, cursor=7)
    with db() as uow:
        uow.signals.add_stream(s)
        uow.signals.add_stream(stream(org, created_at=T0 + timedelta(seconds=1)))
        uow.commit()
    with db() as uow:
        assert uow.signals.get_stream(s.stream_id) == s
        listed = uow.signals.streams(org)
        assert len(listed) == 2 and listed[0].stream_id == s.stream_id
        with pytest.raises(Conflict):
            uow.signals.add_stream(s)
    changed = replace(s, status="paused", cursor=99)
    with db() as uow:
        uow.signals.update_stream(changed)
        assert not uow.signals.advance_cursor(s.stream_id, 6, 10)
        assert uow.signals.advance_cursor(s.stream_id, 7, 10)
        assert not uow.signals.advance_cursor(s.stream_id, 7, 11)  # the other node lost
        uow.signals.set_subject(
            StreamSubject(s.stream_id, "k1", {"format": "opaque", "id": "x"}, "added", T0)
        )
        uow.signals.set_subject(
            StreamSubject(s.stream_id, "k1", {"format": "opaque", "id": "x"}, "removed", T0)
        )
        uow.signals.set_subject(
            StreamSubject(s.stream_id, "k2", {"format": "opaque", "id": "y"}, "added", T0, True)
        )
        uow.commit()
    with db() as uow:
        got = uow.signals.get_stream(s.stream_id)
        assert got is not None and got.status == "paused" and got.cursor == 10  # update never moves it
        subjects = uow.signals.subjects(s.stream_id)
        assert [(x.subject_key, x.status, x.verified) for x in subjects] == [
            ("k1", "removed", None),
            ("k2", "added", True),
        ]
        uow.signals.add_deliveries([delivery(s.stream_id, 1)])
        assert uow.signals.delete_stream(s.stream_id)
        assert not uow.signals.delete_stream(s.stream_id)
        uow.commit()
    with db() as uow:
        assert uow.signals.get_stream(s.stream_id) is None
        assert uow.signals.subjects(s.stream_id) == [] and uow.signals.deliveries(s.stream_id) == []


def test_delivery_queue_due_claim_finish(db: Database) -> None:
    org = new_org(db)
    push, poll, paused = stream(org, PUSH), stream(org, POLL), stream(org, PUSH, status="paused")
    with db() as uow:
        for s in (push, poll, paused):
            uow.signals.add_stream(s)
        uow.signals.add_deliveries([delivery(push.stream_id, 1), delivery(push.stream_id, 2)])
        uow.signals.add_deliveries([delivery(poll.stream_id, 1), delivery(paused.stream_id, 1)])
        uow.commit()
    with db() as uow, pytest.raises(Conflict):
        uow.signals.add_deliveries([delivery(push.stream_id, 2)])  # one SET per (stream, event)
    now = T0 + timedelta(seconds=1)

    def due_push() -> list[Delivery]:
        with db() as uow:
            return [
                d for d in uow.signals.due(DueQuery(now=now, limit=50, method=PUSH)) if d.stream_id in ids
            ]

    ids = {push.stream_id, paused.stream_id}
    first, second = due_push()
    assert (first.event_id, second.event_id) == (1, 2) and first.stream_id == push.stream_id
    lease = now + timedelta(seconds=60)
    with db() as uow:
        assert uow.signals.claim(
            first.id, now, from_statuses=[PENDING], status=PENDING, next_attempt_at=lease
        )
        uow.commit()
    with db() as uow:  # a second node: the row is no longer due
        assert not uow.signals.claim(
            first.id, now, from_statuses=[PENDING], status=PENDING, next_attempt_at=lease
        )
    assert [d.event_id for d in due_push()] == [2]
    with db() as uow:
        uow.signals.finish(first.id, status=DELIVERED, next_attempt_at=None, delivered_at=now)
        uow.signals.finish(
            second.id, status=PENDING, next_attempt_at=now + timedelta(hours=1), last_error="503"
        )
        uow.commit()
    assert due_push() == []
    with db() as uow:
        rows = {d.event_id: d for d in uow.signals.deliveries(push.stream_id)}
    assert rows[1].status == DELIVERED and rows[1].attempts == 1 and rows[1].delivered_at == now
    assert rows[2].status == PENDING and rows[2].last_error == "503" and rows[2].attempts == 0


def test_poll_ack_fail_and_drop(db: Database) -> None:
    org = new_org(db)
    s = stream(org, POLL)
    rows = [delivery(s.stream_id, n) for n in (1, 2, 3, 4)]
    with db() as uow:
        uow.signals.add_stream(s)
        uow.signals.add_deliveries(rows)
        uow.commit()
    now = T0 + timedelta(seconds=5)
    query = DueQuery(now=now, limit=10, statuses=(PENDING, DELIVERED), stream_id=s.stream_id)
    with db() as uow:
        due = uow.signals.due(query)
        assert [d.jti for d in due] == [r.jti for r in rows]
        assert uow.signals.claim(
            due[0].id, now, from_statuses=(PENDING, DELIVERED), status=DELIVERED, next_attempt_at=None
        )
        assert uow.signals.ack(s.stream_id, [rows[0].jti, rows[1].jti, "unknown"], now) == 2
        assert uow.signals.ack(s.stream_id, [rows[0].jti], now) == 0  # acked once
        assert uow.signals.fail(s.stream_id, {rows[2].jti: "invalid_key: no"}, now) == 1
        assert uow.signals.drop_pending(s.stream_id, "stream disabled") == 1
        uow.commit()
    with db() as uow:
        got = {d.jti: d for d in uow.signals.deliveries(s.stream_id)}
        assert uow.signals.due(query) == []
    assert got[rows[0].jti].status == ACKED and got[rows[1].jti].status == ACKED
    assert got[rows[1].jti].delivered_at == now
    assert got[rows[2].jti].status == FAILED and got[rows[2].jti].last_error == "invalid_key: no"
    assert got[rows[3].jti].status == FAILED and got[rows[3].jti].last_error == "stream disabled"
