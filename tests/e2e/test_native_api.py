"""The native REST API over a real SQLite file: every route, good and bad input, no 500s."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import Server


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def soon(days: int = 10) -> str:
    return iso(datetime.now(UTC) + timedelta(days=days))


def create(server: Server, token: str | None = None, **body: object) -> dict[str, object]:
    payload = {"displayName": "ci", "scope": "vso.code", "validTo": soon(), **body}
    r = server.client.post(f"/api/v1/orgs/{server.org}/pats", json=payload, headers=server.auth(token))
    assert r.status_code == 201, r.text
    data: dict[str, object] = r.json()
    return data


def test_me_with_basic_and_bearer(server: Server) -> None:
    for headers in (server.auth(), server.basic(), server.basic(user="PAT")):
        r = server.client.get("/api/v1/me", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["upn"] == server.admin_upn
        assert r.json()["orgs"][0]["role"] == "admin"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + "dXNlcg=="},  # "user" without a password
        {"Authorization": "Digest abc"},
        {"Authorization": "Bearer twp_" + "A" * 49},  # right length, bad checksum
    ],
)
def test_bad_credentials_are_401_with_challenge(server: Server, headers: dict[str, str]) -> None:
    r = server.client.get("/api/v1/me", headers=headers)
    assert r.status_code == 401
    assert "Bearer" in r.headers["www-authenticate"]
    assert r.json()["error"]["message"]


def test_pat_lifecycle(server: Server) -> None:
    pat = create(server, displayName="deploy", scope="vso.code_write vso.pats")
    secret = str(pat["token"])
    assert secret.startswith("twp_")
    auth_id = pat["authorizationId"]
    # The new token works and carries only what it was given.
    assert server.client.get("/api/v1/me", headers=server.auth(secret)).status_code == 200
    listed = server.client.get(f"/api/v1/orgs/{server.org}/pats", headers=server.auth()).json()
    assert auth_id in [p["authorizationId"] for p in listed["value"]]
    assert all(p["token"] is None for p in listed["value"])
    got = server.client.get(f"/api/v1/orgs/{server.org}/pats/{auth_id}", headers=server.auth())
    assert got.json()["displayName"] == "deploy" and got.json()["token"] is None
    # update
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/pats/{auth_id}",
        json={"displayName": "deploy-2", "scope": "vso.code"},
        headers=server.auth(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["displayName"] == "deploy-2" and r.json()["scope"] == "vso.code"
    # regenerate: old secret dies, new one works, id unchanged
    r = server.client.post(f"/api/v1/orgs/{server.org}/pats/{auth_id}/regenerate", headers=server.auth())
    assert r.status_code == 200
    new_secret = r.json()["token"]
    assert r.json()["authorizationId"] == auth_id and new_secret != secret
    assert server.client.get("/api/v1/me", headers=server.auth(secret)).status_code == 401
    assert server.client.get("/api/v1/me", headers=server.auth(new_secret)).status_code == 200
    # revoke
    r = server.client.delete(f"/api/v1/orgs/{server.org}/pats/{auth_id}", headers=server.auth())
    assert r.status_code == 204
    assert server.client.get("/api/v1/me", headers=server.auth(new_secret)).status_code == 401
    revoked = server.client.get(
        f"/api/v1/orgs/{server.org}/pats?filter=revoked", headers=server.auth()
    ).json()
    assert [p["authorizationId"] for p in revoked["value"]] == [auth_id]
    # updating a revoked PAT fails with a precise error
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/pats/{auth_id}", json={"displayName": "x"}, headers=server.auth()
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "failedToUpdateAccessToken"


def test_last_used_is_recorded_without_a_write_on_the_hot_path(server: Server) -> None:
    pat = create(server, scope="vso.pats")
    server.client.get("/api/v1/me", headers=server.auth(str(pat["token"])))
    deadline = time.monotonic() + 5
    used = None
    while time.monotonic() < deadline:
        got = server.client.get(
            f"/api/v1/orgs/{server.org}/pats/{pat['authorizationId']}", headers=server.auth()
        )
        used = got.json()["lastUsedAt"]
        if used:
            break
        time.sleep(0.1)
    assert used is not None
    assert got.json()["lastUsedIp"] == "testclient"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"displayName": "", "scope": "vso.code"}, 400, "displayNameRequired"),
        ({"displayName": "x" * 10_000, "scope": "vso.code"}, 400, "invalidDisplayName"),
        ({"displayName": "a\u0000b", "scope": "vso.code"}, 400, "invalidDisplayName"),
        ({"displayName": "ok", "scope": "vso.nope"}, 400, "invalidScope"),
        ({"displayName": "ok", "scope": ""}, 400, "invalidScope"),
        (
            {"displayName": "ok", "scope": "vso.code", "validTo": "2001-01-01T00:00:00Z"},
            400,
            "invalidValidTo",
        ),
        (
            {"displayName": "ok", "scope": "vso.code", "validTo": "2999-01-01T00:00:00Z"},
            403,
            "patLifespanPolicyViolation",
        ),
        ({"displayName": "ok", "scope": "vso.code", "validTo": "not a date"}, 400, "invalidInput"),
        ({"displayName": "ok", "scope": "vso.code", "surprise": 1}, 400, "invalidInput"),
        ({"displayName": 5, "scope": "vso.code"}, 400, "invalidInput"),
    ],
)
def test_create_rejects_bad_input_precisely(
    server: Server, body: dict[str, object], status: int, code: str
) -> None:
    r = server.client.post(f"/api/v1/orgs/{server.org}/pats", json=body, headers=server.auth())
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", b"null", b"\xff\xfe", b'{"displayName": "a", "scope": "vso.code",}']
)
def test_malformed_json_is_400(server: Server, raw: bytes) -> None:
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/pats",
        content=raw,
        headers={**server.auth(), "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]


def test_non_uuid_and_unknown_ids(server: Server) -> None:
    for path in ("not-a-uuid", "12345678-1234-1234-1234-1234567890ab"):
        r = server.client.get(f"/api/v1/orgs/{server.org}/pats/{path}", headers=server.auth())
        assert r.status_code in (400, 404)
        assert r.json()["error"]["code"] in ("invalidAuthorizationId", "authorizationNotFound")
    r = server.client.get(f"/api/v1/orgs/{server.org}/pats/not-a-uuid", headers=server.auth())
    assert r.status_code == 400


def test_wrong_org_and_unknown_org(server: Server) -> None:
    r = server.client.get("/api/v1/orgs/Nowhere/pats", headers=server.auth())
    assert r.status_code == 404 and r.json()["error"]["code"] == "organizationNotFound"
    r = server.client.get("/api/v1/orgs/Nowhere/pats")
    assert r.status_code == 401  # anonymous callers learn nothing about which orgs exist


def test_another_users_token_is_invisible(server: Server) -> None:
    server.add_member("bob@acme.test")
    bob_id, bob_secret = server.pat_for("bob@acme.test", scope="vso.pats_manage")
    admin_pat = create(server)
    for method, url in (
        ("GET", f"/api/v1/orgs/{server.org}/pats/{admin_pat['authorizationId']}"),
        ("PATCH", f"/api/v1/orgs/{server.org}/pats/{admin_pat['authorizationId']}"),
        ("DELETE", f"/api/v1/orgs/{server.org}/pats/{admin_pat['authorizationId']}"),
        ("POST", f"/api/v1/orgs/{server.org}/pats/{admin_pat['authorizationId']}/regenerate"),
    ):
        kwargs = {"json": {"displayName": "stolen"}} if method == "PATCH" else {}
        r = server.client.request(method, url, headers=server.auth(bob_secret), **kwargs)
        assert r.status_code == 404, (method, r.text)
    # and the admin's token still works
    assert server.client.get("/api/v1/me", headers=server.auth(str(admin_pat["token"]))).status_code == 200
    # an admin may revoke bob's token
    r = server.client.delete(f"/api/v1/orgs/{server.org}/pats/{bob_id}", headers=server.auth())
    assert r.status_code == 204
    assert server.client.get("/api/v1/me", headers=server.auth(bob_secret)).status_code == 401


def test_scope_is_enforced_403(server: Server) -> None:
    pat = create(server, scope="vso.code")
    r = server.client.get(f"/api/v1/orgs/{server.org}/pats", headers=server.auth(str(pat["token"])))
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficientScope"


def test_members_cannot_administer(server: Server) -> None:
    server.add_member("bob@acme.test")
    _, bob = server.pat_for("bob@acme.test", scope="app_token")
    for method, url, body in (
        ("GET", f"/api/v1/orgs/{server.org}/users", None),
        ("POST", f"/api/v1/orgs/{server.org}/users", {"upn": "eve@acme.test"}),
        ("GET", f"/api/v1/orgs/{server.org}/policy", None),
        ("PATCH", f"/api/v1/orgs/{server.org}/policy", {"restrictFullScope": True}),
        ("GET", f"/api/v1/orgs/{server.org}/audit", None),
        ("POST", f"/api/v1/orgs/{server.org}/revocation-rules", {"scopes": "vso.code"}),
        ("POST", f"/api/v1/orgs/{server.org}/revocations", {"authorizationIds": [str(server.org_id)]}),
    ):
        r = server.client.request(method, url, json=body, headers=server.auth(bob))
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["error"]["code"] == "accessDenied"


def test_policies_are_enforced(server: Server) -> None:
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/policy",
        json={"maxLifetimeDays": 7, "restrictFullScope": True},
        headers=server.auth(),
    )
    assert r.status_code == 200 and r.json()["maxLifetimeDays"] == 7
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/pats",
        json={"displayName": "x", "scope": "vso.code", "validTo": soon(8)},
        headers=server.auth(),
    )
    assert r.json()["error"]["code"] == "patLifespanPolicyViolation"
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/pats",
        json={"displayName": "x", "scope": "app_token", "validTo": soon(3)},
        headers=server.auth(),
    )
    assert r.json()["error"]["code"] == "fullScopePatPolicyViolation"
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/policy", json={"disablePatCreation": True}, headers=server.auth()
    )
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/pats",
        json={"displayName": "x", "scope": "vso.code", "validTo": soon(3)},
        headers=server.auth(),
    )
    assert r.json()["error"]["code"] == "disablePatCreationPolicyViolation"
    for bad in (
        {"maxLifetimeDays": 0},
        {"maxLifetimeDays": 366},
        {},
        {"creationAllowlist": ["ghost@acme.test"]},
    ):
        r = server.client.patch(f"/api/v1/orgs/{server.org}/policy", json=bad, headers=server.auth())
        assert 400 <= r.status_code < 500, (bad, r.text)


def test_disabling_a_user_kills_their_tokens_at_once(server: Server) -> None:
    server.add_member("carol@acme.test")
    _, secret = server.pat_for("carol@acme.test", scope="vso.pats")
    assert server.client.get("/api/v1/me", headers=server.auth(secret)).status_code == 200
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/users/carol@acme.test", json={"status": "disabled"}, headers=server.auth()
    )
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    assert server.client.get("/api/v1/me", headers=server.auth(secret)).status_code == 401


def test_revocation_rule_and_bulk_revocations(server: Server) -> None:
    code = create(server, scope="vso.code")
    full = create(server, scope="app_token")
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/revocation-rules", json={"scopes": "vso.code"}, headers=server.auth()
    )
    assert r.status_code == 201, r.text
    assert server.client.get("/api/v1/me", headers=server.auth(str(code["token"]))).status_code == 401
    assert server.client.get("/api/v1/me", headers=server.auth(str(full["token"]))).status_code == 200
    other = create(server, scope="vso.work")
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/revocations",
        json={"authorizationIds": [other["authorizationId"], "not-a-uuid"]},
        headers=server.auth(),
    )
    assert r.status_code == 400
    assert server.client.get("/api/v1/me", headers=server.auth(str(other["token"]))).status_code == 200
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/revocations",
        json={"authorizationIds": [other["authorizationId"]]},
        headers=server.auth(),
    )
    assert r.status_code == 200 and r.json() == {"revoked": 1}
    assert server.client.get("/api/v1/me", headers=server.auth(str(other["token"]))).status_code == 401
    future = iso(datetime.now(UTC) + timedelta(days=1))
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/revocation-rules",
        json={"scopes": "vso.code", "createdBefore": future},
        headers=server.auth(),
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidCreatedBefore"
    r = server.client.post(f"/api/v1/orgs/{server.org}/revocation-rules", json={}, headers=server.auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "createdBeforeRequired"


def test_audit_log_json_and_csv(server: Server) -> None:
    pat = create(server, displayName="audited")
    server.client.delete(f"/api/v1/orgs/{server.org}/pats/{pat['authorizationId']}", headers=server.auth())
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/audit",
        params={"target": pat["authorizationId"]},
        headers=server.auth(),
    )
    assert r.status_code == 200
    events = [e["eventType"] for e in r.json()["value"]]
    assert events == ["Token.PatRevokeEvent", "Token.PatCreateEvent"]  # newest first
    assert all(e["actorUpn"] == server.admin_upn and e["ip"] == "testclient" for e in r.json()["value"])
    assert str(pat["token"]) not in r.text
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/audit",
        params={"eventType": "Token.PatRevokeEvent", "format": "csv"},
        headers=server.auth(),
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("id,at,eventType") and len(lines) == 2
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/audit", params={"since": "yesterday"}, headers=server.auth()
    )
    assert r.status_code == 400


def test_health_metrics_openapi(server: Server) -> None:
    h = server.client.get("/health").json()
    assert h["status"] == "ok" and h["database"] is True and h["version"]
    m = server.client.get("/metrics")
    assert m.status_code == 200 and "tokenwarden_cache_tokens" in m.text
    spec = server.client.get("/openapi.json").json()
    assert "/api/v1/orgs/{org}/pats" in spec["paths"]


def test_members_management(server: Server) -> None:
    server.add_member("dave@acme.test")
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/users", json={"upn": "dave@acme.test"}, headers=server.auth()
    )
    assert r.status_code == 409
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/users", json={"upn": "not an upn"}, headers=server.auth()
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidUserId"
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/users/DAVE@acme.test", json={"role": "admin"}, headers=server.auth()
    )
    assert r.status_code == 200 and r.json()["role"] == "admin"
    users = server.client.get(f"/api/v1/orgs/{server.org}/users", headers=server.auth()).json()
    assert {u["upn"] for u in users["value"]} == {"admin@acme.test", "dave@acme.test"}
    assert (
        server.client.delete(
            f"/api/v1/orgs/{server.org}/users/dave@acme.test", headers=server.auth()
        ).status_code
        == 204
    )
    assert (
        server.client.get(
            f"/api/v1/orgs/{server.org}/users/dave@acme.test", headers=server.auth()
        ).status_code
        == 404
    )
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/users/admin@acme.test", json={"status": "disabled"}, headers=server.auth()
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "cannotDisableSelf"


def test_validate_route_for_resource_servers(server: Server) -> None:
    pat = create(server, scope="vso.code_write")
    token = str(pat["token"])
    url = f"/api/v1/validate?scope=vso.code&org={server.org}"
    first = server.client.get(url, headers=server.auth(token))  # cache miss: answered from a thread
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["active"] is True and body["upn"] == server.admin_upn and body["scope"] == "vso.code_write"
    again = server.client.get(url, headers=server.basic(token))  # cache hit: answered in memory
    assert again.json() == body
    r = server.client.get(f"/api/v1/validate?scope=vso.work&org={server.org}", headers=server.auth(token))
    assert r.status_code == 403 and r.json()["active"] is False
    assert r.json()["error"]["code"] == "insufficientScope"
    r = server.client.get("/api/v1/validate?org=Nowhere", headers=server.auth(token))
    assert r.status_code == 404
    r = server.client.get("/api/v1/validate")
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    r = server.client.get("/api/v1/validate", headers=server.auth("twp_" + "x" * 49))
    assert r.status_code == 401 and r.json() == {
        "active": False,
        "error": {"code": "invalidToken", "message": r.json()["error"]["message"]},
    }
    server.client.delete(f"/api/v1/orgs/{server.org}/pats/{pat['authorizationId']}", headers=server.auth())
    r = server.client.get(url, headers=server.auth(token))
    assert r.status_code == 401 and r.json()["active"] is False
