"""Lifecycle jobs, webhooks, the outbox and the new policy fields over HTTP (issue 12), with
an attacker's eye: another organization's admin, a member, hostile input."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tokenwarden.services.common import OPERATOR

from .conftest import Server


def globex(server: Server) -> str:
    return server.container.directory.add_org("Globex", "boss@globex.test").token.secret


def wait_run(server: Server, name: str, run_id: str, token: str | None = None) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = server.client.get(f"/api/v1/jobs/{name}/runs/{run_id}", headers=server.auth(token))
        assert r.status_code == 200, r.text
        if r.json()["status"] != "running":
            return r.json()  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("the run did not finish")


def test_admin_runs_a_job_for_their_org_and_sees_its_counts(server: Server) -> None:
    server.container.pats.create(
        OPERATOR,
        org="Acme",
        user=server.admin_upn,
        display_name="soon",
        scope="vso.code",
        valid_to=server.container.clock.now() + timedelta(days=6),
    )
    r = server.client.post("/api/v1/jobs/expiry-notifications/run", headers=server.auth())
    assert r.status_code == 202, r.text
    run = wait_run(server, "expiry-notifications", r.json()["id"])
    assert run["status"] == "completed" and run["org"] == server.org_id
    counts = run["counts"]
    assert isinstance(counts, dict) and counts["warned"] == 1
    listing = server.client.get("/api/v1/jobs", headers=server.auth()).json()
    names = {j["name"] for j in listing["value"]}
    assert "expiry-notifications" in names
    job = next(j for j in listing["value"] if j["name"] == "expiry-notifications")
    assert job["schedule"] == "0 8 * * *" and job["runs"][0]["counts"]["warned"] == 1
    # the audit log says who asked for it
    audit = server.client.get("/api/v1/orgs/Acme/audit", headers=server.auth()).json()["value"]
    [asked] = [e for e in audit if e["eventType"] == "Jobs.RunRequestedEvent"]
    assert asked["actorUpn"] == server.admin_upn and asked["details"] == {"runId": r.json()["id"]}


def test_other_orgs_see_no_counts_and_cannot_reach_ours(server: Server) -> None:
    boss = globex(server)
    r = server.client.post("/api/v1/jobs/expiry-notifications/run", headers=server.auth())
    run_id = r.json()["id"]
    wait_run(server, "expiry-notifications", run_id)
    # Globex's admin: Acme's manual run is not listed at all (not even that it happened);
    # Acme itself is not reachable
    mine = server.client.get("/api/v1/jobs", headers=server.auth(boss)).json()
    job = next(j for j in mine["value"] if j["name"] == "expiry-notifications")
    assert run_id not in {x["id"] for x in job["runs"]}
    ours = server.client.get("/api/v1/jobs", headers=server.auth()).json()
    assert run_id in {x["id"] for j in ours["value"] for x in j["runs"]}
    assert (
        server.client.get(
            f"/api/v1/jobs/expiry-notifications/runs/{run_id}", headers=server.auth(boss)
        ).status_code
        == 404
    )
    assert server.client.get("/api/v1/jobs?org=Acme", headers=server.auth(boss)).status_code == 404
    assert server.client.get("/api/v1/orgs/Acme/webhooks", headers=server.auth(boss)).status_code == 404
    assert server.client.get("/api/v1/orgs/Acme/notifications", headers=server.auth(boss)).status_code == 404


def test_members_and_unknown_jobs(server: Server) -> None:
    server.add_member("mia@acme.test")
    _, member = server.pat_for("mia@acme.test", scope="vso.tokenadministration")
    assert server.client.get("/api/v1/jobs", headers=server.auth(member)).status_code in (400, 403)
    assert (
        server.client.post(
            "/api/v1/jobs/expiry-notifications/run?org=Acme", headers=server.auth(member)
        ).status_code
        == 403
    )
    r = server.client.post("/api/v1/jobs/nope/run", headers=server.auth())
    assert r.status_code == 404 and r.json()["error"]["code"] == "jobNotFound"
    assert server.client.get("/api/v1/jobs").status_code == 401


def test_webhook_registration(server: Server) -> None:
    c = server.client
    for url, code in (
        ("ftp://example.com/x", "invalidWebhookUrl"),
        ("http://169.254.169.254/latest", "invalidWebhookUrl"),
        ("http://127.0.0.1:9/x", "invalidWebhookUrl"),  # loopback: not allow-listed here
    ):
        r = c.post("/api/v1/orgs/Acme/webhooks", json={"url": url}, headers=server.auth())
        assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
    r = c.post(
        "/api/v1/orgs/Acme/webhooks",
        json={"url": "https://hooks.example.com/tw", "events": ["nope"]},
        headers=server.auth(),
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidWebhookEvents"
    r = c.post(
        "/api/v1/orgs/Acme/webhooks",
        json={"url": "https://hooks.example.com/tw", "events": ["token.expiring"]},
        headers=server.auth(),
    )
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_")
    listed = c.get("/api/v1/orgs/Acme/webhooks", headers=server.auth()).json()["value"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert c.delete(f"/api/v1/orgs/Acme/webhooks/{hook['id']}", headers=server.auth()).status_code == 204
    assert c.delete(f"/api/v1/orgs/Acme/webhooks/{hook['id']}", headers=server.auth()).status_code == 404
    # the secret is never stored in clear
    with server.container.database.engine.connect() as conn:  # type: ignore[attr-defined]
        raw = b"".join(bytes(row[0]) for row in conn.exec_driver_sql("SELECT secret FROM webhooks"))
    assert hook["secret"].encode() not in raw


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"expiryWarningDays": [7, 14]}, "decreasing"),
        ({"expiryWarningDays": [30, -1]}, "1..365"),
        ({"expiryWarningDays": []}, "1 to 8"),
        ({"expiryWarningDays": [400]}, "1..365"),
        ({"expiryWarningDays": [True]}, "valid integer"),  # JSON true is not 1 day
        ({"dormantRevokeDays": 3}, "dormantRevokeDays"),
        ({"securityContact": "not-an-address"}, "email"),
    ],
)
def test_policy_lifecycle_fields_bad_input(server: Server, body: dict[str, object], needle: str) -> None:
    r = server.client.patch("/api/v1/orgs/Acme/policy", json=body, headers=server.auth())
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_policy_lifecycle_fields(server: Server) -> None:
    r = server.client.patch(
        "/api/v1/orgs/Acme/policy",
        json={"expiryWarningDays": [21, 3], "dormantRevokeDays": 60, "securityContact": "sec@acme.test"},
        headers=server.auth(),
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["expiryWarningDays"] == [21, 3] and got["dormantRevokeDays"] == 60
    r = server.client.patch(
        "/api/v1/orgs/Acme/policy",
        json={"dormantRevokeDays": 0, "securityContact": ""},
        headers=server.auth(),
    )
    assert r.json()["dormantRevokeDays"] is None and r.json()["securityContact"] is None


def test_notifications_listing_and_replay_stay_in_the_org(server: Server) -> None:
    from tokenwarden.ports.lifecycle import OutboxMessage

    boss = globex(server)
    now = server.container.clock.now()
    with server.container.uow() as uow:
        globex_id = uow.orgs.by_name("Globex").id  # type: ignore[union-attr]
        uow.outbox.enqueue(
            [
                OutboxMessage(
                    "k1",
                    "email",
                    "a@acme.test",
                    "expiry-warning",
                    {},
                    now,
                    now,
                    org_id=server.org_id,
                    status="dead",
                ),
                OutboxMessage(
                    "k2",
                    "email",
                    "b@globex.test",
                    "expiry-warning",
                    {},
                    now,
                    now,
                    org_id=globex_id,
                    status="dead",
                ),
            ]
        )
        uow.commit()
    dead = server.client.get("/api/v1/orgs/Acme/notifications?status=dead", headers=server.auth()).json()[
        "value"
    ]
    assert [d["to"] for d in dead] == ["a@acme.test"]
    theirs = server.client.get(
        "/api/v1/orgs/Globex/notifications?status=dead", headers=server.auth(boss)
    ).json()["value"]
    r = server.client.post(
        "/api/v1/orgs/Acme/notifications/replay", json={"ids": [theirs[0]["id"]]}, headers=server.auth()
    )
    assert r.json() == {"replayed": [], "count": 0}
    r = server.client.post(
        "/api/v1/orgs/Acme/notifications/replay", json={"ids": [dead[0]["id"]]}, headers=server.auth()
    )
    assert r.json()["count"] == 1
    assert (
        server.client.get("/api/v1/orgs/Acme/notifications?status=bogus", headers=server.auth()).status_code
        == 400
    )
    assert (
        server.client.post(
            "/api/v1/orgs/Acme/notifications/replay", json={"ids": []}, headers=server.auth()
        ).status_code
        == 400
    )


def test_weekly_report_end_out_of_range_is_a_400(server: Server) -> None:
    r = server.client.get("/api/v1/orgs/Acme/reports/weekly?end=0001-01-01T00:00:00Z", headers=server.auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidEnd"
