"""Issue 10 over HTTP: one organization's admin cannot reach into another, a narrow or
org-restricted token cannot widen itself, Graph routes need their scope and their org's state."""

from __future__ import annotations

from datetime import timedelta

from tokenwarden.services.common import OPERATOR

from .conftest import Server


def second_org(server: Server) -> str:
    """Globex, with its own administrator; returns that administrator's full-access token."""
    return server.container.directory.add_org("Globex", "boss@globex.test").token.secret


def pat(server: Server, org: str, upn: str, scope: str, *, all_orgs: bool = False) -> tuple[str, str]:
    issued = server.container.pats.create(
        OPERATOR,
        org=org,
        user=upn,
        display_name=scope,
        scope=scope,
        valid_to=server.container.clock.now() + timedelta(days=5),
        all_orgs=all_orgs,
    )
    return issued.record.authorization_id, issued.secret


def test_another_orgs_admin_cannot_enrol_and_then_disable_our_admin(server: Server) -> None:
    boss = second_org(server)
    c = server.client
    r = c.post("/api/v1/orgs/Globex/users", json={"upn": server.admin_upn}, headers=server.auth(boss))
    assert r.status_code == 202 and r.json()["status"] == "pending", r.text
    invitation = r.json()["invitationId"]
    upn = server.admin_upn
    for method, path, body in (
        ("PATCH", f"/api/v1/orgs/Globex/users/{upn}", {"status": "disabled"}),
        ("POST", f"/api/v1/orgs/Globex/users/{upn}/revoke", {}),
        ("PUT", f"/api/v1/orgs/Globex/users/{upn}/risk", {"riskLevel": "high"}),
        ("GET", f"/api/v1/orgs/Globex/users/{upn}/pats", None),
    ):
        r = c.request(method, path, json=body, headers=server.auth(boss))
        assert r.status_code == 404, (path, r.text)
    r = c.patch(f"/api/v1/orgs/Acme/users/{upn}", json={"status": "disabled"}, headers=server.auth(boss))
    assert r.status_code == 404  # a non-member learns nothing, not even that Acme exists (issue 10)
    assert c.get("/api/v1/validate", headers=server.auth()).status_code == 200
    # Globex cannot accept on the identity's behalf; the identity itself can.
    assert c.post(f"/api/v1/invitations/{invitation}/accept", headers=server.auth(boss)).status_code == 404
    mine = c.get("/api/v1/invitations", headers=server.auth()).json()["value"]
    assert [i["invitationId"] for i in mine] == [invitation] and mine[0]["org"] == "Globex"
    r = c.post(f"/api/v1/invitations/{invitation}/accept", headers=server.auth())
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    # Now a member of Globex too: Globex disables the membership it owns, and only that one.
    r = c.patch(f"/api/v1/orgs/Globex/users/{upn}", json={"status": "disabled"}, headers=server.auth(boss))
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    assert c.get("/api/v1/validate", headers=server.auth()).status_code == 200
    r = c.get(f"/api/v1/orgs/Acme/users/{upn}", headers=server.auth())
    assert r.status_code == 200 and r.json()["status"] == "active"


def test_an_org_restricted_token_cannot_manage_another_orgs_pat(server: Server) -> None:
    second_org(server)
    server.container.directory.add_user(OPERATOR, "Globex", "bob@acme.test")
    server.container.directory.add_user(OPERATOR, "Acme", "bob@acme.test")
    globex_pat, _ = pat(server, "Globex", "bob@acme.test", "vso.code")
    _, acme_only = pat(server, "Acme", "bob@acme.test", "vso.pats_manage vso.code")
    c, h = server.client, server.auth(acme_only)
    r = c.post(f"/api/v1/orgs/Acme/pats/{globex_pat}/regenerate", headers=h)
    assert r.status_code == 404, r.text
    r = c.post(f"/api/v1/orgs/Globex/pats/{globex_pat}/regenerate", headers=h)
    assert r.status_code == 403, r.text
    orgs = c.get("/api/v1/orgs", headers=h).json()["value"]
    assert [o["name"] for o in orgs] == ["Acme"]


def test_a_pat_cannot_patch_itself_to_full_access(server: Server) -> None:
    server.add_member("carol@acme.test")
    auth_id, secret = pat(server, "Acme", "carol@acme.test", "vso.pats_manage")
    c, h = server.client, server.auth(secret)
    for change in ({"scope": "app_token"}, {"allOrgs": True}):
        r = c.patch(f"/api/v1/orgs/Acme/pats/{auth_id}", json=change, headers=h)
        assert r.status_code == 403 and r.json()["error"]["code"] == "scopeEscalation", r.text
    r = c.post("/api/v1/orgs/Acme/pats", json={"displayName": "x", "scope": "app_token"}, headers=h)
    assert r.status_code == 403
    r = c.put(
        "/Acme/_apis/tokens/pats?api-version=7.1-preview.1",
        json={"authorizationId": auth_id, "scope": "app_token"},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["patToken"] is None and r.json()["patTokenError"]
    r = c.get(f"/api/v1/orgs/Acme/pats/{auth_id}", headers=h)
    assert r.json()["scope"] == "vso.pats_manage" and r.json()["allOrgs"] is False


def test_graph_routes_need_a_scope_and_obey_the_orgs_break_glass(server: Server) -> None:
    server.add_member("dan@acme.test")
    _, code = pat(server, "Acme", server.admin_upn, "vso.code", all_orgs=True)
    c = server.client
    r = c.post("/graph/v1.0/users/dan@acme.test/revokeSignInSessions", headers=server.auth(code))
    assert r.status_code == 403 and "graph.users_manage" in r.text
    r = c.post(
        "/graph/v1.0/identityProtection/riskyUsers/confirmCompromised",
        json={"userIds": ["dan@acme.test"]},
        headers=server.auth(code),
    )
    assert r.status_code == 403
    _, graph = pat(server, "Acme", server.admin_upn, "graph.users_manage", all_orgs=True)
    r = c.post("/graph/v1.0/users/dan@acme.test/revokeSignInSessions", headers=server.auth(graph))
    assert r.status_code == 200
    r = c.post("/api/v1/orgs/Acme/break-glass", json={"confirm": "Acme"}, headers=server.auth())
    assert r.status_code == 200, r.text
    r = c.post("/graph/v1.0/users/dan@acme.test/revokeSignInSessions", headers=server.auth(graph))
    assert r.status_code == 401


def test_validate_without_org_answers_for_the_tokens_own_org(server: Server) -> None:
    r = server.client.get("/api/v1/validate", headers=server.auth())
    assert r.status_code == 200 and r.json()["orgId"] == server.org_id


def test_removing_a_member_ends_their_tokens_here(server: Server) -> None:
    server.add_member("erin@acme.test")
    _, secret = pat(server, "Acme", "erin@acme.test", "vso.code")
    c = server.client
    assert c.get("/api/v1/validate", headers=server.auth(secret)).status_code == 200
    assert c.delete("/api/v1/orgs/Acme/users/erin@acme.test", headers=server.auth()).status_code == 204
    r = c.get("/api/v1/validate", headers=server.auth(secret))
    assert r.status_code == 401 and "revoked" in r.text


def test_a_leaked_token_is_found_in_any_org_i_administer_from_a_pasted_line(server: Server) -> None:
    import base64

    boss = second_org(server)
    server.container.directory.add_user(OPERATOR, "Globex", "gus@globex.test")
    _, leaked = pat(server, "Globex", "gus@globex.test", "vso.code")
    c = server.client
    line = f'10.0.0.1 - "GET /repo HTTP/1.1" Authorization: Bearer {leaked} 200'
    # Acme's admin administers nothing where this token lives: not found, and nothing echoed.
    r = c.post("/api/v1/tokens/lookup", json={"token": line}, headers=server.auth())
    assert r.status_code == 404 and leaked not in r.text
    basic = base64.b64encode(f"ci:{leaked}".encode()).decode()
    r = c.post("/api/v1/tokens/lookup", json={"token": f"Basic {basic}"}, headers=server.auth(boss))
    assert r.status_code == 200 and r.json()["owner"]["upn"] == "gus@globex.test", r.text
    assert r.json()["state"] == "active" and leaked not in r.text
    r = c.post("/api/v1/tokens/lookup", json={"token": "no token here twp_xyz"}, headers=server.auth(boss))
    assert r.status_code == 400 and "no tokenwarden token" in r.text
    r = c.post("/api/v1/tokens/revoke-by-value", json={"token": line}, headers=server.auth(boss))
    assert r.status_code == 200 and r.json()["state"] == "revoked" and r.json()["revokedCause"] == "direct"
    assert c.get("/api/v1/validate", headers=server.auth(leaked)).status_code == 401
