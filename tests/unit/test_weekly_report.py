"""The weekly report over the in-memory store (issue 12): counts that honour watermarks,
organization scoping, the lists, and the outbox messages for the administrators."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.unit.conftest import FakeClock, actor_of
from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import Forbidden, InvalidInput
from tokenwarden.domain.principals import Role, User, UserStatus
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult
from tokenwarden.services.messages import render_email
from tokenwarden.services.weekly_report import report_csv, run_weekly_report, weekly_report_messages


def pat(container: Container, upn: str, days: int, scope: str = "vso.code", org: str = "acme") -> str:
    issued = container.pats.create(
        OPERATOR,
        org=org,
        user=upn,
        display_name=f"{upn} {days}d",
        scope=scope,
        valid_to=container.clock.now() + timedelta(days=days),
    )
    return issued.record.authorization_id


def test_counts_and_lists_of_a_week(container: Container, admin: Actor, bob: User, clock: FakeClock) -> None:
    soon = pat(container, "bob@acme.test", 20)
    long_ = pat(container, "bob@acme.test", 200)
    full = pat(container, "bob@acme.test", 60, scope="app_token")
    clock.advance(hours=1)
    report = container.weekly_report.build(admin, "acme")
    counts = report["counts"]
    # + the initial admin token (app_token, 90 days)
    assert counts["live"] == 4 and counts["created"] == 4
    assert counts["expiringNext30Days"] == 1 and [r["id"] for r in report["expiringSoon"]] == [soon]
    assert report["expiringSoon"][0]["daysLeft"] == 19
    assert report["expiringSoon"][0]["owner"] == "bob@acme.test"
    assert counts["longLived"] == 1 and [r["id"] for r in report["longLived"]] == [long_]
    assert counts["fullScope"] == 2 and full in {r["id"] for r in report["fullScope"]}
    assert counts["dormant"] == 0 and counts["violations"] == 0 and counts["revoked"] == 0
    assert report["topUsers"] == [
        {"upn": "bob@acme.test", "tokens": 3},
        {"upn": "admin@acme.test", "tokens": 1},
    ]
    weeks = report["expiringPerWeek"]
    assert len(weeks) == 12 and all(date.fromisoformat(w["weekStart"]).weekday() == 0 for w in weeks)
    # 20 and 60 days fall in the 12 weeks from this Monday; 90 and 200 days do not
    assert sum(w["count"] for w in weeks) == 2
    for row in report["fullScope"] + report["longLived"] + report["expiringSoon"]:
        assert not {"token", "secretHash", "secret_hash"} & set(row)


def test_a_user_watermark_kills_tokens_and_they_are_not_counted_live(
    container: Container, admin: Actor, bob: User, clock: FakeClock
) -> None:
    pat(container, "bob@acme.test", 20)
    pat(container, "bob@acme.test", 200)
    clock.advance(seconds=1)
    before = container.weekly_report.build(admin, "acme")["counts"]
    container.revocation.revoke_user(admin, "acme", "bob@acme.test")  # revoked_at stays NULL
    clock.advance(seconds=1)
    report = container.weekly_report.build(admin, "acme")
    assert before["live"] == 3 and report["counts"]["live"] == 1
    assert report["counts"]["revoked"] == 2  # killed this week by the watermark
    assert report["counts"]["expiringNext30Days"] == 0 and report["expiringSoon"] == []
    assert report["topUsers"] == [{"upn": "admin@acme.test", "tokens": 1}]


def test_dormant_uses_the_policy_or_sixty_days(
    container: Container, admin: Actor, bob: User, clock: FakeClock
) -> None:
    pat(container, "bob@acme.test", 365)
    clock.advance(days=61)
    report = container.weekly_report.build(admin, "acme")
    # bob's PAT and the initial admin token (90 days): never used, so their creation counts
    assert report["policy"]["dormantDays"] == 60
    assert report["counts"]["dormant"] == 2
    container.policies.update(OPERATOR, "acme", dormant_revoke_days=90)
    report = container.weekly_report.build(admin, "acme")
    assert (report["policy"]["dormantDays"], report["counts"]["dormant"]) == (90, 0)


def test_violations_follow_the_policy(container: Container, admin: Actor, bob: User) -> None:
    long_ = pat(container, "bob@acme.test", 365)
    pat(container, "bob@acme.test", 30)
    container.policies.update(OPERATOR, "acme", max_lifetime_days=90)
    report = container.weekly_report.build(admin, "acme")
    assert report["counts"]["violations"] == 1
    assert [v["id"] for v in report["violations"]] == [long_]
    assert report["violations"][0]["violations"][0]["code"] == "lifetime"


def test_the_report_is_one_organizations(container: Container, admin: Actor, bob: User) -> None:
    other = container.directory.add_org("beta", "boss@beta.test")
    pat(container, "boss@beta.test", 200, org="beta")
    pat(container, "boss@beta.test", 20, org="beta")
    report = container.weekly_report.build(admin, "acme")
    assert report["counts"]["live"] == 1 and report["org"]["name"] == "acme"
    assert {u["upn"] for u in report["topUsers"]} == {"admin@acme.test"}
    with pytest.raises(Forbidden):
        container.weekly_report.build(actor_of(other.admin), "acme")
    with pytest.raises(Forbidden):
        container.weekly_report.build(actor_of(bob), "acme")
    assert container.weekly_report.build(actor_of(other.admin), "beta")["counts"]["live"] == 3


def test_the_period_ends_at_end_and_never_in_the_future(
    container: Container, admin: Actor, clock: FakeClock
) -> None:
    end = clock.now() - timedelta(days=1)
    report = container.weekly_report.build(admin, "acme", end=end)
    assert datetime.fromisoformat(report["period"]["end"]) == end
    assert datetime.fromisoformat(report["period"]["start"]) == end - timedelta(days=7)
    assert report["counts"]["live"] == 0 and report["counts"]["created"] == 0  # before init
    with pytest.raises(InvalidInput):
        container.weekly_report.build(admin, "acme", end=clock.now() + timedelta(minutes=1))


def test_csv_has_a_section_column_and_neutralises_formulas(
    container: Container, admin: Actor, bob: User
) -> None:
    container.pats.create(
        OPERATOR,
        org="acme",
        user="bob@acme.test",
        display_name="=HYPERLINK(1)",
        scope="vso.code",
        valid_to=container.clock.now() + timedelta(days=10),
    )
    text = report_csv(container.weekly_report.build(admin, "acme"))
    lines = text.splitlines()
    assert lines[0].startswith("section,id,kind,displayName,owner")
    assert any(line.startswith("expiringSoon,") and "'=HYPERLINK(1)" in line for line in lines)
    assert any(line.startswith("fullScope,") for line in lines)  # the admin's app_token PAT


# ---------------------------------------------------------------------- delivery


NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # ISO week 2026-W49


def test_messages_one_per_address_with_a_weekly_dedupe_key() -> None:
    report = {"counts": {"live": 3}}
    messages = weekly_report_messages(
        report,
        org_id="o1",
        org_name="acme",
        admins=[
            ("Admin@Acme.test", "admin@acme.test"),
            ("admin@acme.test", "other@acme.test"),
            ("b@x.test", "b"),
        ],
        now=NOW,
        base_url="https://tw.example",
    )
    assert [m.dedupe_key for m in messages] == [
        "weekly-report:o1:2026-W49:admin@acme.test",
        "weekly-report:o1:2026-W49:b@x.test",
    ]
    m = messages[0]
    assert (m.channel, m.template, m.destination, m.org_id) == (
        "email",
        "weekly-report",
        "Admin@Acme.test",
        "o1",
    )
    assert m.payload == {
        "org": {"id": "o1", "name": "acme"},
        "recipient": {"address": "Admin@Acme.test", "role": "admin"},
        "baseUrl": "https://tw.example",
        "report": report,
    }
    assert m.created_at == m.next_attempt_at == NOW and m.status == "pending"
    later = weekly_report_messages(
        report,
        org_id="o1",
        org_name="acme",
        admins=[("b@x.test", "b")],
        now=NOW + timedelta(days=4),
        base_url=None,
    )
    assert later[0].dedupe_key == "weekly-report:o1:2026-W49:b@x.test"  # Sunday 6 Dec is still W49


def test_run_enqueues_once_per_admin_per_week(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    container.directory.set_role(OPERATOR, "acme", "bob@acme.test", Role.ADMIN)
    container.directory.add_org("beta", "boss@beta.test")
    first = run_weekly_report(
        container.uow, clock, container.catalog, base_url="https://tw.example", run_id="r1"
    )
    assert first == {"orgs": 2, "enqueued": 3}
    with container.uow() as uow:
        messages = uow.outbox.find(limit=10)
    assert sorted(m.destination for m in messages) == ["admin@acme.test", "bob@acme.test", "boss@beta.test"]
    assert {(m.template, m.channel, m.run_id, m.status) for m in messages} == {
        ("weekly-report", "email", "r1", "pending")
    }
    clock.advance(minutes=5)  # a restart, a second node: the same week again
    assert run_weekly_report(container.uow, clock, container.catalog, base_url=None) == {
        "orgs": 2,
        "enqueued": 0,
    }
    only = run_weekly_report(container.uow, clock, container.catalog, org_id=init.org.id, base_url=None)
    assert only == {"orgs": 1, "enqueued": 0}
    acme = [m for m in messages if m.org_id == init.org.id]
    assert len(acme) == 2
    assert all(m.payload["report"]["org"]["name"] == "acme" for m in acme)
    assert all(m.payload["report"]["counts"]["live"] == 1 for m in acme)  # beta's tokens not in acme's
    clock.advance(days=7)  # next week: new keys
    assert run_weekly_report(container.uow, clock, container.catalog, base_url=None)["enqueued"] == 3


def test_a_disabled_admin_gets_no_report(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    container.directory.set_role(OPERATOR, "acme", "bob@acme.test", Role.ADMIN)
    container.directory.set_status(OPERATOR, "acme", "bob@acme.test", UserStatus.DISABLED)
    assert (
        run_weekly_report(container.uow, clock, container.catalog, org_id="acme", base_url=None)["enqueued"]
        == 1
    )


def test_the_enqueued_report_renders(container: Container, admin: Actor, bob: User) -> None:
    pat(container, "bob@acme.test", 365)
    container.policies.update(OPERATOR, "acme", max_lifetime_days=90)
    report = container.weekly_report.build(admin, "acme")
    [message] = weekly_report_messages(
        report, org_id="o", org_name="acme", admins=[("a@x.test", "a")], now=NOW, base_url=None
    )
    rendered = render_email("weekly-report", message.payload, message_id="m")
    assert "lifetime 365 days exceeds the organization's maximum of 90 days" in rendered.text
    assert "lifetime 365 days exceeds" in rendered.html and "'code'" not in rendered.text


def test_a_past_week_sees_a_token_revoked_since_as_live(
    container: Container, admin: Actor, bob: User, clock: FakeClock
) -> None:
    soon = pat(container, "bob@acme.test", 20)
    clock.advance(days=2)
    container.pats.revoke(OPERATOR, soon, "no longer needed")
    clock.advance(seconds=1)  # the week is [end - 7 days, end): end itself belongs to the next
    past = container.weekly_report.build(admin, "acme", end=clock.now() - timedelta(days=1))
    assert past["counts"]["live"] == 2 and past["counts"]["revoked"] == 0
    assert [r["id"] for r in past["expiringSoon"]] == [soon]  # the list agrees with the count
    now = container.weekly_report.build(admin, "acme")
    assert now["counts"]["live"] == 1 and now["counts"]["revoked"] == 1 and now["expiringSoon"] == []
