"""Expiry warnings over the in-memory store with a controllable clock (issue 12)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.conftest import FakeClock
from tokenwarden.bootstrap import Container
from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.directory import InitResult
from tokenwarden.services.expiry import warning_threshold
from tokenwarden.services.job_runner import JobBusy

DAYS = (31, 30, 15, 14, 8, 7, 2, 1, 0, -1)


def new_pat(container: Container, owner: User, name: str, scope: str = "vso.code") -> TokenRecord:
    return container.pats.create(OPERATOR, org="acme", user=owner.upn, display_name=name, scope=scope).record


def make_tokens(container: Container, clock: FakeClock, owner: User) -> dict[int, TokenRecord]:
    """One PAT per entry of DAYS, expiring that many days from now (less a minute: the run
    happens a moment after)."""
    made = {}
    for d in DAYS:
        issued = container.pats.create(
            OPERATOR, org="acme", user=owner.upn, display_name=f"d{d}", scope="vso.code"
        )
        record = issued.record
        with container.uow() as uow:
            moved = record.with_changes(valid_to=clock.now() + timedelta(days=d, minutes=-1))
            uow.tokens.update(moved)
            uow.commit()
        made[d] = moved
    return made


def outbox(container: Container) -> list[OutboxMessage]:
    with container.uow() as uow:
        return uow.outbox.find(limit=1000)


def by_token(messages: list[OutboxMessage], template: str) -> dict[str, list[int | None]]:
    found: dict[str, list[int | None]] = {}
    for m in sorted(messages, key=lambda m: m.id or 0):  # oldest first
        if m.template != template:
            continue
        for entry in m.payload["tokens"]:
            found.setdefault(entry["displayName"], []).append(entry["threshold"])
    return found


def test_the_most_urgent_threshold_only() -> None:
    assert warning_threshold(31.0, (30, 14, 7, 1)) is None
    assert warning_threshold(29.9, (30, 14, 7, 1)) == 30
    assert warning_threshold(10.0, (30, 14, 7, 1)) == 14
    assert warning_threshold(0.5, (30, 14, 7, 1)) == 1


def test_exact_set_of_warnings_once_each(container: Container, clock: FakeClock, init: InitResult) -> None:
    owner = init.admin
    make_tokens(container, clock, owner)
    run = container.jobs.run("expiry-notifications")
    assert run is not None and run.status == "completed", run
    messages = outbox(container)
    warned = by_token(messages, "expiry-warning")
    assert warned == {"d30": [30], "d15": [30], "d14": [14], "d8": [14], "d7": [7], "d2": [7], "d1": [1]}
    expired = by_token(messages, "token-expired")
    assert set(expired) == {"d0", "d-1"}
    assert {m.destination for m in messages} == {owner.upn}  # no email set: the UPN
    assert run.counts["warned"] == 7 and run.counts["expired"] == 2
    # no SMTP configured: the messages wait, nothing is lost
    assert run.counts["messages"] == {"pending": 9}
    # a second run (a restart, another node) decides nothing new
    again = container.jobs.run("expiry-notifications")
    assert again is not None and again.counts["warned"] == 0 and again.counts["expired"] == 0
    assert len(outbox(container)) == len(messages)
    # a week later d30 (now 23 days out) stays quiet, d14 (7 days) gets its 7-day warning
    clock.advance(days=7)
    container.jobs.run("expiry-notifications")
    later = by_token(outbox(container), "expiry-warning")
    assert later["d14"] == [14, 7] and later["d30"] == [30] and later["d8"] == [14, 1]


def test_expired_event_recorded_once(container: Container, clock: FakeClock, init: InitResult) -> None:
    make_tokens(container, clock, init.admin)
    container.jobs.run("expiry-notifications")
    container.jobs.run("expiry-notifications")
    with container.uow() as uow:
        entries = uow.audit.query(AuditQuery(event_types=("Token.PatExpiredEvent",)))
    assert sorted(e.details["displayName"] for e in entries) == ["d-1", "d0"]
    assert all(e.actor_upn == "tokenwarden-system" for e in entries)


def test_recipients_watchers_contact_and_digest(
    container: Container, clock: FakeClock, init: InitResult, bob: User
) -> None:
    container.policies.update(OPERATOR, "acme", security_contact="sec@acme.test")
    with container.uow() as uow:
        uow.users.update(bob.with_changes(email="bob.builder@mail.test", notify_digest=True))
        uow.commit()
    a = container.pats.create(OPERATOR, org="acme", user=bob.upn, display_name="a", scope="vso.code").record
    b = container.pats.create(OPERATOR, org="acme", user=bob.upn, display_name="b", scope="vso.code").record
    with container.uow() as uow:
        for rec in (a, b):
            uow.tokens.update(rec.with_changes(valid_to=clock.now() + timedelta(days=6)))
        uow.lifecycle.add_watcher(a.authorization_id, "team@acme.test", None, clock.now())
        uow.commit()
    container.jobs.run("expiry-notifications")
    messages = outbox(container)
    to = sorted((m.destination, len(m.payload["tokens"]), m.payload["digest"]) for m in messages)
    # bob chose the digest: one message for both; the watcher hears of its token; the security
    # contact gets one digest per run
    assert to == [
        ("bob.builder@mail.test", 2, True),
        ("sec@acme.test", 2, True),
        ("team@acme.test", 1, False),
    ]


def test_extended_token_is_warned_again(container: Container, clock: FakeClock, init: InitResult) -> None:
    rec = container.pats.create(
        OPERATOR, org="acme", user=init.admin.upn, display_name="x", scope="vso.code"
    ).record
    with container.uow() as uow:
        uow.tokens.update(rec.with_changes(valid_to=clock.now() + timedelta(days=5)))
        uow.commit()
    container.jobs.run("expiry-notifications")
    with container.uow() as uow:
        uow.tokens.update(rec.with_changes(valid_to=clock.now() + timedelta(days=20)))
        uow.commit()
    container.jobs.run("expiry-notifications")
    assert by_token(outbox(container), "expiry-warning") == {"x": [7, 30]}


def test_revoked_and_dead_by_watermark_are_not_warned(
    container: Container, clock: FakeClock, init: InitResult, bob: User
) -> None:
    rec = container.pats.create(OPERATOR, org="acme", user=bob.upn, display_name="x", scope="vso.code").record
    with container.uow() as uow:
        uow.tokens.update(rec.with_changes(valid_to=clock.now() + timedelta(days=5)))
        uow.commit()
    clock.advance(seconds=1)
    container.revocation.revoke_user(OPERATOR, "acme", bob.upn)
    container.jobs.run("expiry-notifications")
    assert by_token(outbox(container), "expiry-warning") == {}


def test_renewal_blocked_by_policy_is_said(container: Container, clock: FakeClock, init: InitResult) -> None:
    rec = container.pats.create(
        OPERATOR, org="acme", user=init.admin.upn, display_name="x", scope="app_token"
    ).record
    with container.uow() as uow:
        uow.tokens.update(rec.with_changes(valid_to=clock.now() + timedelta(days=3)))
        uow.commit()
    container.policies.update(OPERATOR, "acme", restrict_full_scope=True)
    container.jobs.run("expiry-notifications")
    [m] = [m for m in outbox(container) if m.template == "expiry-warning"]
    assert "full-scope" in m.payload["tokens"][0]["renewalBlocked"]


def test_job_lease_refuses_a_second_run(container: Container) -> None:
    with container.uow() as uow:
        now = container.clock.now()
        assert uow.jobs.try_lease("expiry-notifications", "other-node", "r0", now, now + timedelta(minutes=1))
        uow.commit()
    with pytest.raises(JobBusy):
        container.jobs.run("expiry-notifications")
