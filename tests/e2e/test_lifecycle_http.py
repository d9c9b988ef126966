"""Lifecycle end to end over a real SQLite file and the HTTP API, with a clock the test moves:
dormant tokens warned then revoked, policy enforcement, owner self-service (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import Server, make_settings
from tests.unit.conftest import FakeClock
from tokenwarden.bootstrap import build
from tokenwarden.domain.clock import iso_z
from tokenwarden.http.app import create_app
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.dormancy import DormancyJob
from tokenwarden.services.job_runner import JobContext
from tokenwarden.services.policy_enforcement import PolicyEnforcementJob


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC) - timedelta(hours=1))


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[Server]:
    container = build(make_settings(tmp_path), create_pepper=True, clock=clock)
    container.database.upgrade()
    result = container.directory.initialize("Acme", "admin@acme.test")
    with TestClient(create_app(container), base_url="http://testserver") as client:
        yield Server(client, container, "Acme", result.org.id, "admin@acme.test", result.token.secret)


def outbox(s: Server, template: str) -> list[OutboxMessage]:
    with s.container.uow() as uow:
        return [m for m in uow.outbox.find(org_id=s.org_id, limit=1000) if m.template == template]


def run(job: DormancyJob | PolicyEnforcementJob, name: str) -> dict[str, object]:
    return job.run(JobContext(name, None, "manual"))


def audit(s: Server, event: str, token: str | None = None) -> list[dict[str, object]]:
    r = s.client.get(f"/api/v1/orgs/{s.org}/audit", params={"eventType": event}, headers=s.auth(token))
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def test_dormant_token_warned_then_revoked_and_refused(server: Server, clock: FakeClock) -> None:
    s = server
    r = s.client.patch(f"/api/v1/orgs/{s.org}/policy", json={"dormantRevokeDays": 30}, headers=s.auth())
    assert r.status_code == 200 and r.json()["dormantRevokeDays"] == 30
    s.add_member("bob@acme.test")
    idle_id, idle = s.pat_for("bob@acme.test", days=300, name="idle")
    busy_id, busy = s.pat_for("bob@acme.test", days=300, name="busy")
    job = DormancyJob(s.container.uow, clock, s.container.catalog, base_url="https://tw.example")
    start = clock.now()
    clock.current = start + timedelta(days=23, seconds=1)
    with s.container.uow() as uow:  # "busy" was used yesterday
        record = uow.tokens.get(busy_id)
        assert record is not None
        uow.tokens.update(record.with_changes(last_used_at=clock.now() - timedelta(days=1)))
        uow.commit()
    run(job, "r1")
    warned = {m.payload["tokens"][0]["id"]: m for m in outbox(s, "dormant-warning")}
    assert busy_id not in warned and warned[idle_id].destination == "bob@acme.test"
    assert warned[idle_id].payload["tokens"][0]["revokeAt"] == iso_z(clock.now() + timedelta(days=7))

    clock.advance(days=6, hours=23)  # 30 days idle, but the warning is not 7 days old yet
    run(job, "r2")
    assert revoked_at(s, idle_id) is None  # (using it now would start a new idle period)

    clock.advance(hours=1)
    run(job, "r3")
    assert revoked_at(s, idle_id) == clock.now()
    refused = s.client.get(f"/api/v1/orgs/{s.org}/pats", headers=s.auth(idle))
    assert refused.status_code == 401
    assert s.client.get(f"/api/v1/orgs/{s.org}/pats", headers=s.auth(busy)).status_code == 200
    [entry] = s.container.audit.query(
        OPERATOR, s.org, AuditQuery(event_types=("Token.PatSystemRevokeEvent",), target_id=idle_id)
    )
    assert entry.details["reason"] == "dormant" and entry.actor_upn == "tokenwarden-system"
    told = [m for m in outbox(s, "dormant-revoked") if m.payload["tokens"][0]["id"] == idle_id]
    assert [m.destination for m in told] == ["bob@acme.test"]


def revoked_at(s: Server, auth_id: str) -> datetime | None:
    with s.container.uow() as uow:
        record = uow.tokens.get(auth_id)
    assert record is not None
    return record.revoked_at


def test_policy_enforcement_over_http(server: Server, clock: FakeClock) -> None:
    s = server
    bob = s.add_member("bob@acme.test")
    s.add_member("eve@acme.test")
    long_id, _ = s.pat_for("bob@acme.test", days=300, name="long")
    full_id, full = s.pat_for("bob@acme.test", scope="app_token", days=30, name="full")
    _, eve = s.pat_for("eve@acme.test", scope="vso.tokenadministration", days=30)
    # the admin's first token is full scope: enforcement revokes it too, so keep a narrower one
    _, adm = s.pat_for(s.admin_upn, scope="vso.tokenadministration vso.auditlog", days=60)
    other = s.container.directory.add_org("Globex", "boss@globex.test")
    r = s.client.patch(
        f"/api/v1/orgs/{s.org}/users/bob@acme.test", json={"email": "bob@example.org"}, headers=s.auth()
    )
    assert r.status_code == 200, r.text
    r = s.client.patch(
        f"/api/v1/orgs/{s.org}/policy",
        json={"maxLifetimeDays": 90, "restrictFullScope": True},
        headers=s.auth(),
    )
    assert r.status_code == 200, r.text
    url = f"/api/v1/orgs/{s.org}/policy/enforce"
    assert s.client.post(url, json={"graceDays": 7}, headers=s.auth(eve)).status_code == 403  # a member
    assert s.client.post(url, json={"graceDays": 7}, headers=s.auth(other.token.secret)).status_code == 404
    for bad in (-1, 1000, "soon"):
        r = s.client.post(url, json={"graceDays": bad}, headers=s.auth())
        assert r.status_code == 400, r.text
    r = s.client.post(url, json={"graceDays": 14}, headers=s.auth())
    assert r.status_code == 202, r.text
    enforcement = r.json()
    assert enforcement["status"] == "pending" and enforcement["counts"]["tokens"] >= 2
    told = {m.payload["tokens"][0]["id"]: m for m in outbox(s, "policy-violation")}
    assert told[long_id].destination == "bob@example.org" and told[full_id].destination == "bob@example.org"
    assert told[full_id].payload["tokens"][0]["action"] == "will be revoked"
    listed = s.client.get(f"/api/v1/orgs/{s.org}/policy/enforcements", headers=s.auth()).json()
    assert [e["id"] for e in listed["value"]] == [enforcement["id"]]
    assert s.client.get(f"/api/v1/orgs/{s.org}/policy/enforcements", headers=s.auth(eve)).status_code == 403

    clock.advance(days=14)
    counts = run(PolicyEnforcementJob(s.container.uow, clock, s.container.catalog), "r1")
    assert counts["enforcements"] == 1 and counts["revoked"] >= 1 and counts["shortened"] >= 1
    assert s.client.get(f"/api/v1/orgs/{s.org}/pats", headers=s.auth(full)).status_code == 401
    pats = s.client.get(f"/api/v1/orgs/{s.org}/users/{bob}/pats", headers=s.auth(other.token.secret))
    assert pats.status_code == 404  # another organization's admin sees nothing of Acme
    assert s.client.get(f"/api/v1/orgs/{s.org}/pats", headers=s.auth()).status_code == 401  # app_token
    pats = s.client.get(f"/api/v1/orgs/{s.org}/users/{bob}/pats", headers=s.auth(adm)).json()["value"]
    shortened = next(p for p in pats if p["authorizationId"] == long_id)
    valid_from = datetime.fromisoformat(shortened["validFrom"])
    assert datetime.fromisoformat(shortened["validTo"]) == valid_from + timedelta(days=90)
    revoked = {e["targetId"]: e for e in audit(s, "Token.PatSystemRevokeEvent", adm)}
    assert revoked[full_id]["details"]["reason"] == "policy"  # type: ignore[index]
    updates = [e for e in audit(s, "Token.PatUpdateEvent", adm) if e["targetId"] == long_id]
    assert updates[0]["details"]["reason"] == "policy"  # type: ignore[index]
    assert audit(s, "Policy.EnforcementEvent", adm)[0]["targetId"] == enforcement["id"]


def test_self_service_extend_watchers_and_notifications(server: Server, clock: FakeClock) -> None:
    s = server
    s.add_member("bob@acme.test")
    pat_id, bob = s.pat_for("bob@acme.test", scope="vso.pats_manage vso.profile_write", days=20)
    short_id, _ = s.pat_for("bob@acme.test", days=1, name="short")
    base = f"/api/v1/orgs/{s.org}/pats/{pat_id}"
    r = s.client.post(f"{base}/extend", json={"days": 10}, headers=s.auth(bob))
    assert r.status_code == 200, r.text
    assert r.json()["validTo"] == iso_z(clock.now() + timedelta(days=10))
    target = clock.now() + timedelta(days=12)
    r = s.client.post(f"{base}/extend", json={"validTo": iso_z(target)}, headers=s.auth(bob))
    assert r.status_code == 200 and r.json()["validTo"] == iso_z(target)
    assert s.client.post(f"{base}/extend", json={}, headers=s.auth(bob)).status_code == 400
    s.client.patch(f"/api/v1/orgs/{s.org}/policy", json={"maxLifetimeDays": 30}, headers=s.auth())
    r = s.client.post(f"{base}/extend", json={"days": 31}, headers=s.auth(bob))
    assert r.status_code == 403 and r.json()["error"]["code"] == "patLifespanPolicyViolation"
    clock.advance(days=2)
    r = s.client.post(f"/api/v1/orgs/{s.org}/pats/{short_id}/extend", json={"days": 5}, headers=s.auth(bob))
    assert r.status_code == 400 and r.json()["error"]["code"] == "expiredPatCannotBeExtended"

    w = f"{base}/watchers"
    r = s.client.post(w, json={"address": "not-an-email"}, headers=s.auth(bob))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidEmail"
    for i in range(20):
        assert s.client.post(w, json={"address": f"w{i}@example.org"}, headers=s.auth(bob)).status_code == 201
    r = s.client.post(w, json={"address": "w20@example.org"}, headers=s.auth(bob))
    assert r.status_code == 400 and r.json()["error"]["code"] == "tooManyWatchers"
    assert s.client.delete(f"{w}/w3@example.org", headers=s.auth(bob)).status_code == 204
    assert s.client.delete(f"{w}/w3@example.org", headers=s.auth(bob)).status_code == 404
    listed = s.client.get(w, headers=s.auth(bob)).json()
    assert listed["count"] == 19 and "w3@example.org" not in listed["value"]
    assert s.client.get(w, headers=s.auth()).status_code == 200  # the org's admin may look too
    assert len(audit(s, "Token.WatchersChangeEvent")) == 21

    r = s.client.patch(
        "/api/v1/me/notifications", json={"email": "bob@example.org", "digest": True}, headers=s.auth(bob)
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "upn": "bob@acme.test",
        "email": "bob@example.org",
        "address": "bob@example.org",
        "digest": True,
    }
    r = s.client.patch("/api/v1/me/notifications", json={"email": "nope"}, headers=s.auth(bob))
    assert r.status_code == 400
    r = s.client.patch("/api/v1/me/notifications", json={"email": ""}, headers=s.auth(bob))
    assert r.json()["address"] == "bob@acme.test"
