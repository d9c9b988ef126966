"""The same HTTP flows on PostgreSQL (the production backend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import Server


def test_pat_lifecycle_rule_and_disable_on_postgres(pg_server: Server) -> None:
    s = pg_server
    valid_to = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    r = s.client.post(
        f"/api/v1/orgs/{s.org}/pats",
        json={"displayName": "pg", "scope": "vso.code", "validTo": valid_to},
        headers=s.auth(),
    )
    assert r.status_code == 201, r.text
    pat = r.json()
    assert s.client.get("/api/v1/validate?scope=vso.code", headers=s.auth(pat["token"])).status_code == 200
    r = s.client.patch(
        f"/api/v1/orgs/{s.org}/pats/{pat['authorizationId']}", json={"displayName": "pg2"}, headers=s.auth()
    )
    assert r.status_code == 200 and r.json()["displayName"] == "pg2"
    r = s.client.post(
        "/Acme/_apis/tokenadmin/revocationrules", json={"scopes": "vso.code"}, headers=s.basic()
    )
    assert r.status_code == 201
    assert s.client.get("/api/v1/validate", headers=s.auth(pat["token"])).status_code == 401
    s.add_member("pg.user@acme.test")
    _, secret = s.pat_for("pg.user@acme.test", scope="vso.work")
    assert s.client.get("/api/v1/validate", headers=s.auth(secret)).status_code == 200
    r = s.client.patch(
        f"/api/v1/orgs/{s.org}/users/pg.user@acme.test", json={"status": "disabled"}, headers=s.auth()
    )
    assert r.status_code == 200
    assert s.client.get("/api/v1/validate", headers=s.auth(secret)).status_code == 401
    audit = s.client.get(
        f"/api/v1/orgs/{s.org}/audit", params={"eventType": "User.Disable"}, headers=s.auth()
    )
    assert [e["details"]["upn"] for e in audit.json()["value"]] == ["pg.user@acme.test"]
    health = s.client.get("/health").json()
    assert health["database"] is True and health["eventSeq"] > 0
