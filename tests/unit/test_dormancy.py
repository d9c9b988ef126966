"""The dormant-tokens job over the in-memory store with a clock that moves only when told."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.unit.conftest import FakeClock, actor_of
from tokenwarden.bootstrap import Container
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import InvalidToken
from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.directory import InitResult
from tokenwarden.services.dormancy import DormancyJob
from tokenwarden.services.job_runner import JobContext
from tokenwarden.services.pats import IssuedPat

DAYS = 30  # dormant_revoke_days: warned at 23 days idle, revoked at 30 (and 7 days after the warning)


def ctx(run: str = "run-1", org_id: str | None = None) -> JobContext:
    return JobContext(run, org_id, "manual")


@pytest.fixture
def job(container: Container, clock: FakeClock, init: InitResult) -> DormancyJob:
    container.policies.update(OPERATOR, "acme", dormant_revoke_days=DAYS)
    container.pats.revoke(OPERATOR, init.token.record.authorization_id)  # only the test's tokens count
    return DormancyJob(container.uow, clock, container.catalog, base_url="https://tw.example")


def issue(container: Container, user: User, name: str = "ci") -> IssuedPat:
    return container.pats.create(
        actor_of(user),
        org="acme",
        user=user.id,
        display_name=name,
        scope="vso.code",
        lifetime=timedelta(days=300),
    )


def record(container: Container, auth_id: str) -> TokenRecord:
    with container.uow() as uow:
        found = uow.tokens.get(auth_id)
    assert found is not None
    return found


def used_at(container: Container, auth_id: str, at: datetime) -> None:
    with container.uow() as uow:
        current = uow.tokens.get(auth_id)
        assert current is not None
        uow.tokens.update(current.with_changes(last_used_at=at))
        uow.commit()


def outbox(container: Container, template: str | None = None) -> list[OutboxMessage]:
    with container.uow() as uow:
        found = uow.outbox.find(limit=1000)
    return [m for m in found if template is None or m.template == template]


def system_revokes(container: Container) -> list[dict[str, object]]:
    entries = container.audit.query(
        OPERATOR, "acme", AuditQuery(event_types=(AuditEventType.PAT_SYSTEM_REVOKE.value,))
    )
    return [{"target": e.target_id, "actor": e.actor_upn, **e.details} for e in entries]


def test_warned_seven_days_before_then_revoked_no_earlier_than_seven_days_after_the_warning(
    container: Container, clock: FakeClock, job: DormancyJob, bob: User
) -> None:
    pat = issue(container, bob)
    created = pat.record.created_at
    container.validator.validate(pat.secret)  # works today

    clock.current = created + timedelta(days=DAYS - 7) - timedelta(seconds=1)
    assert job.run(ctx())["warned"] == 0  # idle for less than 23 days: nothing yet

    clock.current = created + timedelta(days=DAYS - 7, seconds=1)
    counts = job.run(ctx())
    assert counts["warned"] == 1 and counts["revoked"] == 0
    warning = outbox(container, "dormant-warning")
    assert [m.destination for m in warning] == ["bob@acme.test"]
    entry = warning[0].payload["tokens"][0]
    assert entry["id"] == pat.record.authorization_id
    assert entry["lastUsedAt"] is None  # never used: counted from creation
    # N days after the last activity, but never less than 7 days after the warning
    assert entry["revokeAt"] == iso_z(max(created + timedelta(days=DAYS), clock.current + timedelta(days=7)))
    warned_at = clock.current

    assert job.run(ctx("run-2"))["warned"] == 0  # warned once per period of inactivity

    clock.current = warned_at + timedelta(days=7) - timedelta(seconds=1)  # 30 days idle, warning 7d-1s old
    assert clock.current - created >= timedelta(days=DAYS)
    assert job.run(ctx("run-3"))["revoked"] == 0
    assert record(container, pat.record.authorization_id).revoked_at is None
    container.validator.validate(pat.secret)

    clock.current = warned_at + timedelta(days=7)
    counts = job.run(ctx("run-4"))
    assert counts["revoked"] == 1
    revoked = record(container, pat.record.authorization_id)
    assert revoked.revoked_at == clock.current and revoked.revoked_by == "system"
    assert revoked.revoke_reason == "dormant"
    [entry_audit] = system_revokes(container)
    assert entry_audit["target"] == pat.record.authorization_id and entry_audit["reason"] == "dormant"
    assert entry_audit["actor"] == "tokenwarden-system"
    with pytest.raises(InvalidToken):
        container.validator.validate(pat.secret)  # every node refuses it at once (event applied)
    told = outbox(container, "dormant-revoked")
    assert [m.destination for m in told] == ["bob@acme.test"]
    assert told[0].payload["tokens"][0]["reason"] == "dormant"

    clock.advance(days=1)
    assert job.run(ctx("run-5")) == {"orgs": 1, "scanned": 0, "warned": 0, "revoked": 0, "enqueued": 0}


def test_a_late_first_warning_still_gives_seven_days(
    container: Container, clock: FakeClock, job: DormancyJob, bob: User
) -> None:
    pat = issue(container, bob)
    clock.current = pat.record.created_at + timedelta(days=60)  # the job never ran before
    counts = job.run(ctx())
    assert counts == {**counts, "warned": 1, "revoked": 0}
    entry = outbox(container, "dormant-warning")[0].payload["tokens"][0]
    assert entry["revokeAt"] == iso_z(clock.current + timedelta(days=7))
    clock.advance(days=6, hours=23)
    assert job.run(ctx("run-2"))["revoked"] == 0
    clock.advance(hours=1)
    assert job.run(ctx("run-3"))["revoked"] == 1


def test_a_used_token_is_not_revoked_and_a_new_idle_period_is_warned_again(
    container: Container, clock: FakeClock, job: DormancyJob, bob: User
) -> None:
    pat = issue(container, bob)
    busy = issue(container, bob, "busy")
    start = pat.record.created_at
    used_at(container, busy.record.authorization_id, start + timedelta(days=20))
    clock.current = start + timedelta(days=24)
    assert job.run(ctx())["warned"] == 1  # only the idle one
    used_at(container, pat.record.authorization_id, start + timedelta(days=25))  # used after its warning
    clock.current = start + timedelta(days=35)
    counts = job.run(ctx("run-2"))
    assert counts["revoked"] == 0 and counts["warned"] == 0  # idle 10 and 15 days: nothing
    assert record(container, pat.record.authorization_id).revoked_at is None
    container.validator.validate(pat.secret)
    # idle again for 23 days since that use: a fresh warning, not the old one's revocation
    clock.current = start + timedelta(days=25 + 23, seconds=1)
    counts = job.run(ctx("run-3"))
    assert counts["revoked"] == 0 and counts["warned"] == 2
    keys = {m.payload["tokens"][0]["lastUsedAt"] for m in outbox(container, "dormant-warning")}
    assert iso_z(start + timedelta(days=25)) in keys


def test_tokens_dead_in_effect_and_orgs_without_the_policy_are_skipped(
    container: Container, clock: FakeClock, job: DormancyJob, bob: User, carol: User
) -> None:
    pat = issue(container, bob)
    issue(container, carol)
    clock.advance(seconds=1)
    container.revocation.revoke_user(OPERATOR, "acme", bob.upn)  # a watermark: dead without revoked_at
    other = container.directory.add_org("globex", "admin@globex.test")
    clock.current = pat.record.created_at + timedelta(days=40)
    counts = job.run(ctx())
    assert counts["warned"] == 1  # carol's; bob's is dead by the watermark, globex has no policy
    assert [m.destination for m in outbox(container, "dormant-warning")] == ["carol@acme.test"]
    assert other.org.name == "globex"
    assert job.run(ctx("run-2", org_id=other.org.id))["orgs"] == 0


def test_owner_email_watchers_and_security_contact_hear_the_warning(
    container: Container, clock: FakeClock, job: DormancyJob, bob: User
) -> None:
    pat = issue(container, bob)
    container.token_care.set_contact(actor_of(bob), bob.upn, "bob.private@example.org", None)
    container.token_care.add_watcher(actor_of(bob), pat.record.authorization_id, "team@example.org")
    container.policies.update(OPERATOR, "acme", security_contact="soc@example.org")
    clock.current = pat.record.created_at + timedelta(days=24)
    job.run(ctx())
    assert {m.destination for m in outbox(container, "dormant-warning")} == {
        "bob.private@example.org",
        "team@example.org",
        "soc@example.org",
    }


def test_a_token_that_expires_before_its_revocation_would_is_not_warned(
    container: Container, clock: FakeClock, job: DormancyJob, bob: User
) -> None:
    pat = container.pats.create(
        actor_of(bob),
        org="acme",
        user=bob.id,
        display_name="s",
        scope="vso.code",
        lifetime=timedelta(days=25),
    )
    clock.current = pat.record.created_at + timedelta(days=24)
    assert job.run(ctx())["warned"] == 0  # its expiry warnings speak for it
