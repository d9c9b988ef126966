"""Native revocation routes over a real SQLite file: every mode, bad input, non-admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import Server


def valid(server: Server, token: str) -> int:
    return server.client.get("/api/v1/validate", headers=server.auth(token)).status_code


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def test_lookup_and_revoke_by_value(server: Server) -> None:
    server.add_member("leaky@acme.test")
    auth_id, secret = server.pat_for("leaky@acme.test", scope="vso.code")
    server.client.get("/api/v1/validate", headers=server.auth(secret))
    r = server.client.post("/api/v1/orgs/Acme/tokens/lookup", json={"token": secret}, headers=server.auth())
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["authorizationId"] == auth_id and found["owner"]["upn"] == "leaky@acme.test"
    assert found["scope"] == "vso.code" and found["revokedAt"] is None
    assert secret not in r.text.replace(f'"token":"{secret}"', "")  # never echoed back
    r = server.client.post(
        "/api/v1/orgs/Acme/tokens/revoke-by-value",
        json={"token": secret, "reason": "found on pastebin"},
        headers=server.auth(),
    )
    assert r.status_code == 200 and r.json()["revokeReason"] == "found on pastebin"
    assert valid(server, secret) == 401
    audit = server.client.get(
        "/api/v1/orgs/Acme/audit", params={"target": auth_id}, headers=server.auth()
    ).json()
    kinds = [e["eventType"] for e in audit["value"]]
    assert "Token.LookupByValueEvent" in kinds and "Token.PatRevokeEvent" in kinds
    assert secret not in str(audit)


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        ("not-a-token", 400, "invalidToken"),
        ("twp_" + "A" * 49, 400, "invalidToken"),  # bad checksum
    ],
)
def test_lookup_rejects_garbage(server: Server, token: str, status: int, code: str) -> None:
    r = server.client.post("/api/v1/orgs/Acme/tokens/lookup", json={"token": token}, headers=server.auth())
    assert r.status_code == status and r.json()["error"]["code"] == code


def test_lookup_of_an_unknown_well_formed_token_is_404(server: Server) -> None:
    from tokenwarden.domain import token_format
    from tokenwarden.domain.tokens import TokenKind

    r = server.client.post(
        "/api/v1/orgs/Acme/tokens/lookup",
        json={"token": token_format.generate(TokenKind.PAT)},
        headers=server.auth(),
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "tokenNotFound"


def test_revoke_a_users_tokens_by_kind_and_reenable_does_not_resurrect(server: Server) -> None:
    server.add_member("kim@acme.test")
    _, pat = server.pat_for("kim@acme.test", scope="vso.code")
    r = server.client.post(
        "/api/v1/orgs/Acme/users/kim@acme.test/revoke",
        json={"kinds": ["session", "refresh"]},
        headers=server.auth(),
    )
    assert r.status_code == 200 and r.json()["kinds"] == ["session", "refresh"]
    assert valid(server, pat) == 200  # PATs were not asked for
    r = server.client.post(
        "/api/v1/orgs/Acme/users/kim@acme.test/revoke", json={"kinds": ["bogus"]}, headers=server.auth()
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidKind"
    r = server.client.post("/api/v1/orgs/Acme/users/kim@acme.test/revoke", headers=server.auth())
    assert r.status_code == 200 and r.json()["revoked"] == {"pat": 1} and r.json()["total"] == 1
    assert valid(server, pat) == 401
    # the listing says so, with when and why
    pats = server.client.get("/api/v1/orgs/Acme/users/kim@acme.test/pats", headers=server.auth()).json()
    assert pats["value"][0]["state"] == "revoked" and "owner" in pats["value"][0]["revokeReason"]
    # disable + re-enable must not bring old tokens back
    _, pat2 = server.pat_for("kim@acme.test", scope="vso.code")
    server.client.patch(
        "/api/v1/orgs/Acme/users/kim@acme.test", json={"status": "disabled"}, headers=server.auth()
    )
    server.client.patch(
        "/api/v1/orgs/Acme/users/kim@acme.test", json={"status": "active"}, headers=server.auth()
    )
    assert valid(server, pat2) == 401
    _, pat3 = server.pat_for("kim@acme.test", scope="vso.code")
    assert valid(server, pat3) == 200
    r = server.client.post("/api/v1/orgs/Acme/users/ghost@acme.test/revoke", headers=server.auth())
    assert r.status_code == 404


def test_risk_and_risky_users(server: Server) -> None:
    server.add_member("low@acme.test")
    server.add_member("high@acme.test")
    _, low = server.pat_for("low@acme.test", scope="vso.code")
    _, high = server.pat_for("high@acme.test", scope="vso.code")
    for upn, level in (("low@acme.test", "low"), ("high@acme.test", "high")):
        r = server.client.put(
            f"/api/v1/orgs/Acme/users/{upn}/risk", json={"riskLevel": level}, headers=server.auth()
        )
        assert r.status_code == 200 and r.json()["riskLevel"] == level and r.json()["riskState"] == "atRisk"
    r = server.client.put(
        "/api/v1/orgs/Acme/users/low@acme.test/risk", json={"riskLevel": "HIGH"}, headers=server.auth()
    )
    assert r.status_code == 400
    listed = server.client.get(
        "/api/v1/orgs/Acme/risky-users?minRiskLevel=medium", headers=server.auth()
    ).json()
    assert [u["upn"] for u in listed["value"]] == ["high@acme.test"]
    r = server.client.post(
        "/api/v1/orgs/Acme/risky-users/revoke", json={"minRiskLevel": "high"}, headers=server.auth()
    )
    assert r.status_code == 200 and r.json()["users"] == 1 and r.json()["revoked"] == {"pat": 1}
    assert valid(server, high) == 401 and valid(server, low) == 200
    r = server.client.post(
        "/api/v1/orgs/Acme/risky-users/revoke", json={"minRiskLevel": "none"}, headers=server.auth()
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidRiskLevel"


def test_rules_with_ranges_kinds_users_and_implied_scopes(server: Server) -> None:
    server.add_member("r1@acme.test")
    server.add_member("r2@acme.test")
    _, r1_write = server.pat_for("r1@acme.test", scope="vso.code_write")
    _, r2_code = server.pat_for("r2@acme.test", scope="vso.code")
    r = server.client.post(
        "/api/v1/orgs/Acme/revocation-rules",
        json={"scopes": "vso.code", "users": ["r2@acme.test"], "kinds": ["session"]},
        headers=server.auth(),
    )
    assert r.status_code == 201, r.text
    assert valid(server, r2_code) == 200  # the rule is for sessions only
    r = server.client.post(
        "/api/v1/orgs/Acme/revocation-rules",
        json={"scopes": "vso.code", "users": ["r2@acme.test"]},
        headers=server.auth(),
    )
    assert r.status_code == 201 and r.json()["userIds"]
    assert valid(server, r2_code) == 401
    assert valid(server, r1_write) == 200  # literal match: vso.code_write is not vso.code
    rules = server.client.get("/api/v1/orgs/Acme/revocation-rules", headers=server.auth()).json()
    assert [r["kinds"] for r in rules["value"]] == [["session"], None]
    r = server.client.post(
        "/api/v1/orgs/Acme/revocation-rules",
        json={"scopes": "vso.code", "matchImplied": True},
        headers=server.auth(),
    )
    assert r.status_code == 201
    assert valid(server, r1_write) == 401
    assert valid(server, server.admin_token) == 401  # app_token implies vso.code: the admin is caught too


def test_rule_bad_input(server: Server) -> None:
    now = datetime.now(UTC)
    for body, code in (
        (
            {"scopes": "vso.code", "createdAfter": iso(now), "createdBefore": iso(now - timedelta(hours=1))},
            "invalidDateRange",
        ),
        ({"scopes": "vso.code", "createdBefore": iso(now + timedelta(days=1))}, "invalidCreatedBefore"),
        ({"scopes": "vso.code", "users": ["ghost@acme.test"]}, "userNotFound"),
        ({"scopes": "vso.code", "kinds": ["nope"]}, "invalidKind"),
        ({}, "createdBeforeRequired"),  # no scopes: every token, so the date must be explicit
        ({"scopes": "vso.nope", "createdBefore": iso(now)}, "invalidScope"),
    ):
        r = server.client.post("/api/v1/orgs/Acme/revocation-rules", json=body, headers=server.auth())
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == code
    assert server.client.get("/api/v1/orgs/Acme/revocation-rules", headers=server.auth()).json()["count"] == 0


def test_break_glass_single_admin(server: Server) -> None:
    server.add_member("m@acme.test")
    _, member = server.pat_for("m@acme.test", scope="vso.code")
    preview = server.client.get("/api/v1/orgs/Acme/break-glass/preview", headers=server.auth()).json()
    assert preview["tokensByKind"]["pat"] == 2 and preview["total"] == 2
    assert {o["upn"] for o in preview["topOwners"]} == {"admin@acme.test", "m@acme.test"}
    for confirm in (None, "acme", "Acme "):
        r = server.client.post(
            "/api/v1/orgs/Acme/break-glass", json={"confirm": confirm}, headers=server.auth()
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "confirmationMismatch"
    assert valid(server, member) == 200  # nothing half-applied
    r = server.client.post("/api/v1/orgs/Acme/break-glass", json={"confirm": "Acme"}, headers=server.auth())
    assert r.status_code == 200 and r.json()["status"] == "executed" and r.json()["total"] == 2
    recovery = r.json()["recoveryToken"]["token"]
    assert valid(server, member) == 401 and valid(server, server.admin_token) == 401
    assert valid(server, recovery) == 200
    # the admin can carry on: add a member and issue them a token through the recovery token
    r = server.client.get(
        "/api/v1/orgs/Acme/audit?eventType=Token.BreakGlassReportEvent", headers=server.auth(recovery)
    )
    assert r.status_code == 200 and r.json()["value"][0]["details"]["revoked"] == {"pat": 2}


def test_break_glass_two_person_rule(server: Server) -> None:
    second = "second@acme.test"
    server.add_member(second, role="admin")
    _, second_token = server.pat_for(second, scope="vso.tokenadministration")
    r = server.client.patch(
        "/api/v1/orgs/Acme/policy",
        json={"breakGlassTwoPerson": True, "breakGlassApprovalMinutes": 5},
        headers=server.auth(),
    )
    assert r.status_code == 200 and r.json()["breakGlassTwoPerson"] is True
    r = server.client.post("/api/v1/orgs/Acme/break-glass", json={"confirm": "Acme"}, headers=server.auth())
    assert r.status_code == 200 and r.json()["status"] == "pending" and r.json()["recoveryToken"] is None
    request_id = r.json()["requestId"]
    assert valid(server, server.admin_token) == 200  # nothing happens before approval
    r = server.client.post(
        f"/api/v1/orgs/Acme/break-glass/{request_id}/approve", json={"confirm": "Acme"}, headers=server.auth()
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "sameApprover"
    r = server.client.post(
        "/api/v1/orgs/Acme/break-glass/not-a-uuid/approve",
        json={"confirm": "Acme"},
        headers=server.auth(second_token),
    )
    assert r.status_code == 400
    r = server.client.post(
        f"/api/v1/orgs/Acme/break-glass/{request_id}/approve",
        json={"confirm": "Acme"},
        headers=server.auth(second_token),
    )
    assert r.status_code == 200 and r.json()["status"] == "executed"
    assert valid(server, server.admin_token) == 401 and valid(server, second_token) == 401
    assert valid(server, r.json()["recoveryToken"]["token"]) == 200
    _, second_again = server.pat_for(second, scope="vso.tokenadministration")
    again = server.client.post(
        f"/api/v1/orgs/Acme/break-glass/{request_id}/approve",
        json={"confirm": "Acme"},
        headers=server.auth(second_again),
    )
    assert again.status_code == 409  # executed already (the recovery token may not approve at all)


def test_non_admins_get_403_everywhere(server: Server) -> None:
    server.add_member("plain@acme.test")
    _, plain = server.pat_for("plain@acme.test", scope="app_token")
    for method, url, body in (
        ("POST", "/api/v1/orgs/Acme/tokens/lookup", {"token": plain}),
        ("POST", "/api/v1/orgs/Acme/tokens/revoke-by-value", {"token": plain}),
        ("POST", "/api/v1/orgs/Acme/users/admin@acme.test/revoke", {}),
        ("PUT", "/api/v1/orgs/Acme/users/admin@acme.test/risk", {"riskLevel": "high"}),
        ("GET", "/api/v1/orgs/Acme/risky-users", None),
        ("POST", "/api/v1/orgs/Acme/risky-users/revoke", {}),
        ("GET", "/api/v1/orgs/Acme/break-glass/preview", None),
        ("POST", "/api/v1/orgs/Acme/break-glass", {"confirm": "Acme"}),
        ("GET", "/api/v1/orgs/Acme/revocation-rules", None),
    ):
        r = server.client.request(method, url, json=body, headers=server.auth(plain))
        assert r.status_code == 403, (url, r.text)
    assert valid(server, server.admin_token) == 200


def test_openapi_and_metrics_reflect_the_server(server: Server) -> None:
    spec = server.client.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "basic"}
    ops = [op for path in spec["paths"].values() for op in path.values()]
    assert all("422" not in op["responses"] for op in ops)
    create = spec["paths"]["/api/v1/orgs/{org}/pats"]["post"]
    assert {"400", "401", "403"} <= set(create["responses"])
    server.client.get("/api/v1/validate", headers=server.auth())
    server.client.get("/api/v1/validate")
    metrics = server.client.get("/metrics").text
    assert 'tokenwarden_http_requests_total{method="GET",status="401"}' in metrics


def test_break_glass_on_another_organization_is_refused_and_changes_nothing(server: Server) -> None:
    other = server.container.directory.add_org("Other", "boss@other.test")
    other_token = other.token.secret
    assert valid(server, other_token) == 200
    # Acme's admin is no member of Other: the same 404 as an unknown organization (issue 10)
    for method, url, body in (
        ("GET", "/api/v1/orgs/Other/break-glass/preview", None),
        ("POST", "/api/v1/orgs/Other/break-glass", {"confirm": "Other"}),
        ("POST", "/api/v1/orgs/Other/users/boss@other.test/revoke", {}),
    ):
        r = server.client.request(method, url, json=body, headers=server.auth())
        assert r.status_code == 404 and r.json()["error"]["code"] == "organizationNotFound", (url, r.text)
    # even an admin of both orgs cannot use an Acme-only token on Other
    server.container.directory.add_org("Third", "admin@acme.test")
    r = server.client.post("/api/v1/orgs/Third/break-glass", json={"confirm": "Third"}, headers=server.auth())
    assert r.status_code == 403
    assert valid(server, other_token) == 200 and valid(server, server.admin_token) == 200
    # Other's own admin may, and it touches Other only
    r = server.client.post(
        "/api/v1/orgs/Other/break-glass", json={"confirm": "Other"}, headers=server.auth(other_token)
    )
    assert r.status_code == 200 and r.json()["total"] == 1
    assert valid(server, other_token) == 401 and valid(server, server.admin_token) == 200


def test_rule_without_scopes_preview_then_delete_restores(server: Server) -> None:
    server.add_member("s1@acme.test")
    server.add_member("s2@acme.test")
    _, code = server.pat_for("s1@acme.test", scope="vso.code")
    _, work = server.pat_for("s1@acme.test", scope="vso.work")
    _, other = server.pat_for("s2@acme.test", scope="vso.work")
    server.client.delete("/api/v1/orgs/Acme/pats/" + server.pat_for("s1@acme.test")[0], headers=server.auth())
    cut = datetime.now(UTC)
    body = {"createdBefore": iso(cut), "users": ["s1@acme.test"]}
    url = "/api/v1/orgs/Acme/revocation-rules"
    r = server.client.post(url + "/preview", json=body, headers=server.auth())
    assert r.status_code == 200, r.text
    assert r.json()["liveTokens"] == 2 and r.json()["byKind"] == {"pat": 2}  # not the revoked one
    assert r.json()["rule"]["scopes"] is None
    assert server.client.get(url, headers=server.auth()).json()["count"] == 0  # a dry run stores nothing
    r = server.client.post(url, json=body, headers=server.auth())
    assert r.status_code == 201 and r.json()["scopes"] is None
    rule_id = r.json()["id"]
    assert valid(server, code) == 401 and valid(server, work) == 401  # every scope
    assert valid(server, other) == 200 and valid(server, server.admin_token) == 200
    again = server.client.post(url + "/preview", json=body, headers=server.auth()).json()
    assert again["liveTokens"] == 0  # already cut: not live
    r = server.client.delete(f"{url}/{rule_id}?dryRun=true", headers=server.auth())
    assert r.status_code == 200 and r.json()["restoredTokens"] == 2 and r.json()["deleted"] is False
    assert valid(server, code) == 401
    r = server.client.delete(f"{url}/{rule_id}", headers=server.auth())
    assert r.status_code == 200 and r.json()["restoredTokens"] == 2 and r.json()["deleted"] is True
    assert valid(server, code) == 200 and valid(server, work) == 200  # the tokens it cut are back
    assert server.client.get(url, headers=server.auth()).json()["count"] == 0
    assert server.client.delete(f"{url}/{rule_id}", headers=server.auth()).status_code == 404
    audit = server.client.get(
        "/api/v1/orgs/Acme/audit?eventType=Token.RevocationRuleDeleteEvent", headers=server.auth()
    ).json()["value"]
    assert len(audit) == 1 and audit[0]["targetId"] == rule_id
    assert audit[0]["details"]["restoredTokens"] == 2 and audit[0]["details"]["allScopes"] is True


def test_ado_rule_route_still_requires_scopes(server: Server) -> None:
    r = server.client.post(
        "/Acme/_apis/tokenadmin/revocationrules",
        json={"createdBefore": iso(datetime.now(UTC))},
        headers=server.auth(),
    )
    assert r.status_code == 400
