"""Policy violations and the weekly report end to end (issue 12): over HTTP on SQLite and
PostgreSQL, tenancy at the door, and the CLI as a real process."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, run_cli
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.weekly_report import run_weekly_report


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_server(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue("server" if request.param == "sqlite" else "pg_server")
    return server


def test_violations_and_weekly_report_over_http(any_server: Server) -> None:
    s = any_server
    s.add_member("bob@acme.test")
    long_id, long_secret = s.pat_for("bob@acme.test", scope="vso.code", name="long", days=365)
    short_id, _ = s.pat_for("bob@acme.test", scope="vso.code", name="short", days=30)
    base = f"/api/v1/orgs/{s.org}"
    r = s.client.get(f"{base}/policy/violations", headers=s.auth())
    assert r.status_code == 200 and r.json() == {"count": 0, "value": []}
    r = s.client.patch(f"{base}/policy", json={"maxLifetimeDays": 90}, headers=s.auth())
    assert r.status_code == 200, r.text
    r = s.client.get(f"{base}/policy/violations", headers=s.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 1
    [item] = body["value"]
    assert set(item) == {
        "authorizationId",
        "displayName",
        "owner",
        "scope",
        "validFrom",
        "validTo",
        "violations",
    }
    assert (item["authorizationId"], item["owner"], item["displayName"]) == (long_id, "bob@acme.test", "long")
    [v] = item["violations"]
    assert v["code"] == "lifetime"
    assert v["message"] == "lifetime 365 days exceeds the organization's maximum of 90 days"
    assert v["fix"].startswith("validTo shortened to ")

    r = s.client.get(f"{base}/reports/weekly", headers=s.auth())
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["counts"]["live"] == 3  # + the initial admin token
    assert report["counts"]["created"] == 3 and report["counts"]["violations"] == 1
    assert report["counts"]["longLived"] == 1 and report["longLived"][0]["id"] == long_id
    assert [x["id"] for x in report["expiringSoon"]] == [short_id]
    assert long_secret not in r.text and "secret" not in r.text.lower()

    # a watermark (revoke every token of bob) kills both without touching revoked_at
    s.container.revocation.revoke_user(OPERATOR, s.org, "bob@acme.test")
    after = s.client.get(f"{base}/reports/weekly", headers=s.auth()).json()
    assert after["counts"]["live"] == 1 and after["counts"]["violations"] == 0
    assert after["counts"]["revoked"] == 2
    assert s.client.get(f"{base}/policy/violations", headers=s.auth()).json()["count"] == 0

    # a week that ended before anything existed
    end = (s.container.clock.now() - timedelta(days=30)).isoformat().replace("+00:00", "Z")
    old = s.client.get(f"{base}/reports/weekly", params={"end": end}, headers=s.auth()).json()
    assert old["counts"]["live"] == 0 and old["period"]["end"].startswith(end[:19])


def test_only_the_organizations_admins_see_its_report(server: Server) -> None:
    s = server
    base = f"/api/v1/orgs/{s.org}"
    s.add_member("bob@acme.test")
    _, bob = s.pat_for("bob@acme.test", scope="vso.tokenadministration")
    beta = s.container.directory.add_org("Beta", "boss@beta.test")
    boss = beta.token.secret
    for path in ("/reports/weekly", "/policy/violations"):
        assert s.client.get(base + path).status_code == 401
        member = s.client.get(base + path, headers=s.auth(bob))
        assert member.status_code == 403, member.text
        other = s.client.get(base + path, headers=s.auth(boss))
        assert other.status_code == 404, other.text
        assert other.json()["error"]["code"] == "organizationNotFound"
        own = s.client.get(f"/api/v1/orgs/Beta{path}", headers=s.auth(boss))
        assert own.status_code == 200, own.text
    beta_report = s.client.get("/api/v1/orgs/Beta/reports/weekly", headers=s.auth(boss)).json()
    assert beta_report["counts"]["live"] == 1  # its own admin token, none of Acme's
    assert {u["upn"] for u in beta_report["topUsers"]} == {"boss@beta.test"}


def test_a_bad_end_is_a_client_error(server: Server) -> None:
    r = server.client.get(f"/api/v1/orgs/{server.org}/reports/weekly?end=yesterday", headers=server.auth())
    assert r.status_code == 400, r.text
    future = (server.container.clock.now() + timedelta(days=2)).isoformat()
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/reports/weekly", params={"end": future}, headers=server.auth()
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidEnd", r.text


def test_cli_policy_check_and_weekly_report(
    cli_env: tuple[dict[str, str], SqlDatabase, str], tmp_path: Path
) -> None:
    env, _, _ = cli_env

    def cli(*args: str) -> str:
        r = run_cli(list(args), env, tmp_path)
        assert r.returncode == 0, r.stderr
        return r.stdout

    cli("user", "add", "bob@acme.test", "--org", "Acme")
    made = [
        json.loads(
            cli(
                "pat", "create", "--user", "bob@acme.test", "--org", "Acme", "--name", name,
                "--scope", "vso.code", "--days", days, "--json",
            )
        )
        for name, days in (("long", "365"), ("short", "30"))
    ]  # fmt: skip
    secrets = [p["token"] for p in made]
    assert json.loads(cli("policy", "check", "--org", "Acme", "--json")) == {"count": 0, "value": []}
    cli("policy", "set", "--org", "Acme", "--max-lifetime-days", "90")
    checked = json.loads(cli("policy", "check", "--org", "Acme", "--json"))
    assert checked["count"] == 1 and checked["value"][0]["authorizationId"] == made[0]["authorizationId"]
    assert checked["value"][0]["violations"][0]["message"] == (
        "lifetime 365 days exceeds the organization's maximum of 90 days"
    )
    text = cli("policy", "check", "--org", "Acme")
    assert "lifetime 365 days exceeds" in text and made[0]["authorizationId"] in text

    report = json.loads(cli("report", "weekly", "--org", "Acme", "--json"))
    assert report["counts"]["live"] == 3 and report["counts"]["violations"] == 1
    assert [v["id"] for v in report["violations"]] == [made[0]["authorizationId"]]
    rows = list(csv.DictReader(io.StringIO(cli("report", "weekly", "--org", "Acme", "--csv"))))
    sections = {(r["section"], r["id"]) for r in rows}
    assert ("longLived", made[0]["authorizationId"]) in sections
    assert ("violations", made[0]["authorizationId"]) in sections
    assert ("expiringSoon", made[1]["authorizationId"]) in sections
    human = cli("report", "weekly", "--org", "Acme")
    assert "counts" in human and "bob@acme.test" in human
    ended = json.loads(cli("report", "weekly", "--org", "Acme", "--json", "--end", "2020-01-08T00:00:00Z"))
    assert ended["period"] == {"start": "2020-01-01T00:00:00Z", "end": "2020-01-08T00:00:00Z"}
    assert ended["counts"]["live"] == 0
    for out in (text, human, json.dumps(report), json.dumps(checked)):
        assert not any(secret in out for secret in secrets)
    both = run_cli(["report", "weekly", "--org", "Acme", "--json", "--csv"], env, tmp_path)
    assert both.returncode == 2
    bad = run_cli(["report", "weekly", "--org", "Acme", "--end", "soon"], env, tmp_path)
    assert bad.returncode == 2 and "--end" in bad.stderr


def test_weekly_emails_enqueue_once_per_week_on_a_real_database(any_server: Server) -> None:
    s = any_server
    s.add_member("bob@acme.test", role="admin")
    s.pat_for("bob@acme.test", scope="vso.code", days=365)
    c = s.container
    first = run_weekly_report(c.uow, c.clock, c.catalog, base_url="https://tw.example")
    again = run_weekly_report(c.uow, c.clock, c.catalog, org_id=s.org, base_url="https://tw.example")
    assert first == {"orgs": 1, "enqueued": 2} and again == {"orgs": 1, "enqueued": 0}
    with c.uow() as uow:
        messages = uow.outbox.find(org_id=s.org_id)
    assert sorted(m.destination for m in messages) == ["admin@acme.test", "bob@acme.test"]
    week = c.clock.now().isocalendar()
    assert {m.dedupe_key.rsplit(":", 1)[0] for m in messages} == {
        f"weekly-report:{s.org_id}:{week.year}-W{week.week:02d}"
    }
    report = messages[0].payload["report"]
    assert report["counts"]["live"] == 2 and report["counts"]["longLived"] == 1
    assert messages[0].payload["recipient"]["role"] == "admin"
