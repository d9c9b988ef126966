"""The Azure DevOps-compatible surface (docs/specs/ado-compat.md), including the official SDK."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LiveServer, Server

# The SDK reads its cache directory at import time: point it somewhere fresh first.
os.environ.setdefault("AZURE_DEVOPS_CACHE_DIR", tempfile.mkdtemp(prefix="tw-sdk-cache-"))

JSON_UTF8 = "application/json; charset=utf-8"


def soon(days: int = 10) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def test_pat_lifecycle_routes_with_mixed_casing(server: Server) -> None:
    c, h = server.client, {**server.basic(user="PAT"), "Accept": "application/json;api-version=7.1-preview.1"}
    r = c.post(
        "/acme/_apis/tokens/pats",
        json={"displayName": "sdk", "scope": "vso.code vso.packaging", "validTo": soon(), "allOrgs": False},
        headers=h,
    )
    assert r.status_code == 200 and r.headers["content-type"] == JSON_UTF8
    body = r.json()
    assert body["patTokenError"] == "none"
    pat = body["patToken"]
    assert pat["token"].startswith("twp_") and pat["targetAccounts"] == [server.org_id]
    auth_id = pat["authorizationId"]
    r = c.get(f"/ACME/_apis/Tokens/Pats?authorizationId={auth_id}&api-version=7.1-preview.1", headers=h)
    assert r.status_code == 200 and r.json()["patToken"]["token"] is None
    r = c.get("/Acme/_APIS/tokens/pats?displayFilterOption=all&sortByOption=displayName&$top=1", headers=h)
    assert r.status_code == 200
    assert len(r.json()["patTokens"]) == 1 and r.json()["continuationToken"] != ""
    r2 = c.get(
        "/Acme/_apis/tokens/pats",
        params={
            "displayFilterOption": "all",
            "sortByOption": "displayName",
            "$top": 1,
            "continuationToken": r.json()["continuationToken"],
        },
        headers=h,
    )
    assert r2.status_code == 200 and r2.json()["continuationToken"] == ""
    names = [r.json()["patTokens"][0]["displayName"], r2.json()["patTokens"][0]["displayName"]]
    assert names == sorted(names, key=str.casefold)
    r = c.put(
        "/Acme/_apis/tokens/pats",
        json={
            "authorizationId": auth_id,
            "displayName": "renamed",
            "validTo": "2026-12-20T10:00:00.5557358-07:00",
        },
        headers=h,
    )
    assert r.status_code == 200 and r.json()["patTokenError"] == "none"
    assert r.json()["patToken"]["validTo"] == "2026-12-20T17:00:00.555735Z"
    r = c.delete(f"/Acme/_apis/tokens/pats?authorizationId={auth_id}", headers=h)
    assert r.status_code == 204 and r.content == b""
    r = c.delete(f"/Acme/_apis/tokens/pats?authorizationId={auth_id}", headers=h)
    assert r.status_code == 204  # revoking twice is idempotent
    r = c.delete("/Acme/_apis/tokens/pats?authorizationId=12345678-1234-1234-1234-1234567890ab", headers=h)
    assert r.status_code == 404 and r.json()["typeKey"] == "NotFoundException"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"scope": "vso.code", "validTo": soon()}, "displayNameRequired"),
        ({"displayName": "x" * 257, "scope": "vso.code", "validTo": soon()}, "invalidDisplayName"),
        ({"displayName": "ok", "scope": "vso.unknown", "validTo": soon()}, "invalidScope"),
        ({"displayName": "ok", "scope": "vso.code", "validTo": "2020-01-01T00:00:00Z"}, "invalidValidTo"),
        ({"displayName": "ok", "scope": "vso.code", "validTo": soon(400)}, "patLifespanPolicyViolation"),
        ({"displayName": "ok", "scope": "vso.code", "validTo": "garbage"}, "invalidValidTo"),
    ],
)
def test_create_errors_answer_200_with_pat_token_error(
    server: Server, body: dict[str, object], error: str
) -> None:
    r = server.client.post("/Acme/_apis/tokens/pats", json=body, headers=server.basic())
    assert r.status_code == 200
    assert r.json()["patToken"] is None and r.json()["patTokenError"] == error
    assert r.json()["patTokenErrorMessage"]


def test_full_scope_policy_error_name(server: Server) -> None:
    server.client.patch(
        f"/api/v1/orgs/{server.org}/policy", json={"restrictFullScope": True}, headers=server.auth()
    )
    r = server.client.post(
        "/Acme/_apis/tokens/pats",
        json={"displayName": "full", "scope": "app_token", "validTo": soon()},
        headers=server.basic(),
    )
    assert r.json()["patTokenError"] == "fullScopePatPolicyViolation"


@pytest.mark.parametrize(
    ("method", "url", "content"),
    [
        ("POST", "/Acme/_apis/tokens/pats", b"{not json"),
        ("POST", "/Acme/_apis/tokens/pats", b""),
        ("PUT", "/Acme/_apis/tokens/pats", b"[1,2]"),
        ("GET", "/Acme/_apis/tokens/pats?authorizationId=nope", b""),
        ("DELETE", "/Acme/_apis/tokens/pats?authorizationId=nope", b""),
        ("GET", "/Acme/_apis/tokens/pats?api-version=3.0", b""),
        ("GET", "/Acme/_apis/tokens/pats?api-version=banana", b""),
        ("GET", "/Acme/_apis/tokens/pats?displayFilterOption=weird", b""),
        ("GET", "/Acme/_apis/tokens/pats?$top=101", b""),
        ("POST", "/Acme/_apis/tokenadmin/revocations", b'[{"authorizationId":"nope"}]'),
        ("POST", "/Acme/_apis/tokenadmin/revocations", b"[{}]"),
        ("POST", "/Acme/_apis/tokenadmin/revocationrules", b'{"createdBefore":"2020-01-01T00:00:00Z"}'),
        ("POST", "/Acme/_apis/tokenadmin/revocationrules", b'{"scopes":"vso.bogus"}'),
    ],
)
def test_bad_requests_are_400_wrapped_exceptions(
    server: Server, method: str, url: str, content: bytes
) -> None:
    r = server.client.request(
        method, url, content=content, headers={**server.basic(), "Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == JSON_UTF8
    body = r.json()
    assert body["$id"] == "1" and body["message"] and body["typeKey"] and body["eventId"] == 3000


def test_accepted_api_versions_and_ignored_headers(server: Server) -> None:
    for version in ("5.0", "6.0-preview", "7.0-preview", "7.1-preview.1", "7.2"):
        r = server.client.get(
            f"/Acme/_apis/tokens/pats?api-version={version}",
            headers={
                **server.basic(),
                "X-TFS-FedAuthRedirect": "Suppress",
                "X-VSS-ForceMsaPassThrough": "true",
                "Content-Type": "application/json",
            },
        )
        assert r.status_code == 200, (version, r.text)


def test_auth_errors_are_wrapped(server: Server) -> None:
    r = server.client.get("/Acme/_apis/tokens/pats")
    assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]
    assert r.json()["typeKey"] == "UnauthorizedRequestException"
    _, weak = server.pat_for(server.admin_upn, scope="vso.code")
    r = server.client.get("/Acme/_apis/tokens/pats", headers=server.basic(weak))
    assert r.status_code == 403 and r.json()["typeKey"] == "AccessCheckException"


def test_discovery(server: Server) -> None:
    r = server.client.options("/acme/_apis")
    assert r.status_code == 200 and r.headers["content-type"] == JSON_UTF8
    by_id = {loc["id"]: loc for loc in r.json()["value"]}
    assert by_id["e81700f7-3be2-46de-8624-2eb35882fcaa"]["routeTemplate"] == "_apis/{resource}/{areaId}"
    admin = by_id["af68438b-ed04-4407-9eb6-f1dbae3f922e"]
    assert admin["area"] == "TokenAdmin" and admin["minVersion"] == "1.0"
    assert admin["routeTemplate"] == "_apis/{area}/{resource}/{subjectDescriptor}"
    r = server.client.get("/Acme/_apis/ResourceAreas", headers=server.basic())
    assert r.json() == {"count": 0, "value": []}


def test_token_admin_and_graph_flow(server: Server) -> None:
    """Microsoft's admin script: graph users -> PATs by descriptor -> rule -> revocations."""
    server.add_member("bob@acme.test")
    bob_code_id, bob_code = server.pat_for("bob@acme.test", scope="vso.code")
    bob_work_id, bob_work = server.pat_for("bob@acme.test", scope="vso.work")
    h = {**server.basic(user="PAT"), "Content-Type": "application/json"}
    users = server.client.get("/Acme/_apis/graph/users?subjectTypes=aad,msa", headers=h)
    assert users.status_code == 200 and users.headers["content-type"] == JSON_UTF8
    bob = next(u for u in users.json()["value"] if u["principalName"] == "bob@acme.test")
    assert "X-MS-ContinuationToken" not in users.headers
    listed = server.client.get(
        f"/Acme/_apis/tokenadmin/personalaccesstokens/{bob['descriptor']}/?pageSize=1", headers=h
    )
    assert listed.status_code == 200
    first = listed.json()
    assert len(first["value"]) == 1 and first["continuationToken"]
    second = server.client.get(
        f"/Acme/_apis/TokenAdmin/PersonalAccessTokens/{bob['descriptor']}",
        params={"pageSize": 1, "continuationToken": first["continuationToken"]},
        headers=h,
    ).json()
    assert second["continuationToken"] is None
    ids = {first["value"][0]["authorizationId"], second["value"][0]["authorizationId"]}
    assert ids == {bob_code_id, bob_work_id}
    assert all(t["token"] is None and t["isValid"] for t in first["value"] + second["value"])
    # a rule on vso.code kills bob's code token only
    r = server.client.post("/Acme/_apis/tokenadmin/revocationrules", json={"scopes": "vso.code"}, headers=h)
    assert r.status_code == 201 and r.content == b""
    assert server.client.get("/api/v1/me", headers=server.auth(bob_code)).status_code == 401
    assert server.client.get("/api/v1/me", headers=server.auth(bob_work)).status_code == 200
    assert server.client.get("/api/v1/me", headers=server.auth()).status_code == 200  # app_token unaffected
    r = server.client.post(
        "/Acme/_apis/tokenadmin/revocations", json=[{"authorizationId": bob_work_id}], headers=h
    )
    assert r.status_code == 204
    assert server.client.get("/api/v1/me", headers=server.auth(bob_work)).status_code == 401
    after = server.client.get(
        f"/Acme/_apis/tokenadmin/personalaccesstokens/{bob['descriptor']}", headers=h
    ).json()
    # both are dead — one revoked by id, one by the rule — and the listing shows it
    assert {t["authorizationId"]: t["isValid"] for t in after["value"]} == {
        bob_work_id: False,
        bob_code_id: False,
    }
    r = server.client.get("/Acme/_apis/tokenadmin/personalaccesstokens/aad.bm9ib2R5", headers=h)
    assert r.status_code == 404 and r.json()["typeKey"] == "NotFoundException"


def test_token_admin_needs_an_admin(server: Server) -> None:
    server.add_member("bob@acme.test")
    _, bob = server.pat_for("bob@acme.test", scope="app_token")
    for method, url, body in (
        ("GET", "/Acme/_apis/graph/users", None),
        ("POST", "/Acme/_apis/tokenadmin/revocationrules", {"scopes": "vso.code"}),
        ("POST", "/Acme/_apis/tokenadmin/revocations", [{"authorizationId": server.org_id}]),
    ):
        r = server.client.request(method, url, json=body, headers=server.basic(bob))
        assert r.status_code == 403, (url, r.text)
        assert r.json()["typeKey"] == "AccessCheckException"


def test_graph_users_paging_header(server: Server) -> None:
    for i in range(3):
        server.add_member(f"user{i}@acme.test")
    import tokenwarden.http.compat.ado as ado

    size = ado.GRAPH_PAGE_SIZE
    ado.GRAPH_PAGE_SIZE = 2
    try:
        r = server.client.get("/Acme/_apis/graph/users", headers=server.basic())
        token = r.headers["X-MS-ContinuationToken"]
        assert r.json()["count"] == 2
        r2 = server.client.get(f"/Acme/_apis/graph/users?continuationToken={token}", headers=server.basic())
        assert r2.json()["count"] == 2 and "X-MS-ContinuationToken" not in r2.headers
    finally:
        ado.GRAPH_PAGE_SIZE = size


@pytest.mark.slow
def test_official_azure_devops_sdk_token_admin_client(live_server: LiveServer, tmp_path: Path) -> None:
    """Drive the real `azure-devops` TokenAdminClient against a running server."""
    from azure.devops.connection import Connection
    from azure.devops.v7_1.token_admin.models import TokenAdminRevocation, TokenAdminRevocationRule
    from msrest.authentication import BasicAuthentication

    base, h = live_server.base_url, {"Authorization": f"Bearer {live_server.admin_token}"}
    r = httpx.post(f"{base}/api/v1/orgs/Acme/users", json={"upn": "sdk.user@acme.test"}, headers=h)
    assert r.status_code == 201, r.text
    descriptor = r.json()["descriptor"]
    bob = f"{base}/Acme/_apis/tokens/pats"
    # give sdk.user two PATs through the ADO PAT route, authenticating as sdk.user
    from tests.e2e.conftest import run_cli

    issued = run_cli(
        [
            "pat",
            "create",
            "--user",
            "sdk.user@acme.test",
            "--org",
            "Acme",
            "--name",
            "boot",
            "--scope",
            # a token only mints what it holds itself
            "vso.pats_manage vso.code vso.packaging_write",
            "--days",
            "5",
            "--json",
        ],
        live_server.env,
        tmp_path,
    )
    assert issued.returncode == 0, issued.stderr
    import json

    user_pat = json.loads(issued.stdout)["token"]
    created = {}
    for scope in ("vso.code", "vso.packaging_write"):
        r = httpx.post(
            bob,
            json={"displayName": scope, "scope": scope, "validTo": soon(), "allOrgs": False},
            auth=("", user_pat),
        )
        created[scope] = r.json()["patToken"]
    connection = Connection(base_url=f"{base}/Acme", creds=BasicAuthentication("", live_server.admin_token))
    client = connection.clients_v7_1.get_token_admin_client()
    page = client.list_personal_access_tokens(descriptor)
    listed = {t.authorization_id: t for t in page.value}
    assert set(listed) >= {p["authorizationId"] for p in created.values()}
    assert all(t.is_valid and t.token is None for t in listed.values())
    client.create_revocation_rule(
        TokenAdminRevocationRule(scopes="vso.code", created_before=datetime.now(UTC))
    )
    code = httpx.get(f"{base}/api/v1/me", auth=("", created["vso.code"]["token"]))
    assert code.status_code == 401
    pkg = created["vso.packaging_write"]
    assert httpx.get(f"{base}/api/v1/me", auth=("", pkg["token"])).status_code == 200
    client.revoke_authorizations([TokenAdminRevocation(authorization_id=pkg["authorizationId"])])
    assert httpx.get(f"{base}/api/v1/me", auth=("", pkg["token"])).status_code == 401
    after = {t.authorization_id: t.is_valid for t in client.list_personal_access_tokens(descriptor).value}
    assert after[pkg["authorizationId"]] is False
