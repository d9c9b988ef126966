"""The OAuth client registry over HTTP (issue 11, part 2): ``/api/v1/orgs/{org}/clients``.

Admins of the organization only; another organization's admin gets the 404 of an unknown
organization; a narrow token cannot register a wider client; every bad field is a precise 400;
the secret is shown once and stored only as a keyed hash; removing a client kills its tokens."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tokenwarden.domain import token_format
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.services.common import OPERATOR, new_id

from .conftest import Server

CB = "https://app.example/callback"


def register(server: Server, token: str | None = None, **body: Any) -> Any:
    payload = {"name": "Dashboard", "redirectUris": [CB], **body}
    return server.client.post(f"/api/v1/orgs/{server.org}/clients", json=payload, headers=server.auth(token))


def error(r: Any) -> tuple[str, str]:
    e = r.json()["error"]
    return e["code"], e["message"]


def test_register_list_get_patch_rotate_delete(server: Server, tmp_path: Path) -> None:
    c, base = server.client, f"/api/v1/orgs/{server.org}/clients"
    r = register(server, scope="vso.code vso.build", grantTypes=["authorization_code", "refresh_token"])
    assert r.status_code == 201, r.text
    created = r.json()
    secret, cid = created["clientSecret"], created["clientId"]
    assert secret.startswith("twcs_") and cid.startswith("c_")
    assert created["redirectUris"] == [CB] and created["scope"] == "vso.code vso.build"
    assert created["grantTypes"] == ["authorization_code", "refresh_token"]
    assert created["public"] is False and created["status"] == "active" and created["orgId"] == server.org_id
    # shown once: no read ever returns it again
    got = c.get(f"{base}/{cid}", headers=server.auth())
    assert got.status_code == 200 and "clientSecret" not in got.json()
    assert {k: v for k, v in created.items() if k != "clientSecret"} == got.json()
    listed = c.get(base, headers=server.auth()).json()
    assert listed["count"] == 1 and listed["value"] == [got.json()]
    # stored only as a keyed hash: neither the row nor the database file holds the secret
    container = server.container
    with container.uow() as uow:
        row = uow.oauth.get_client(cid)
    assert row is not None and row.secret_hash == container.hasher.hash(secret) and row.pepper_id
    from tokenwarden.adapters.sql import tables as t

    engine = container.database.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        raw = conn.execute(select(t.oauth_clients).where(t.oauth_clients.c.client_id == cid)).one()
    assert all(secret not in str(value) for value in raw) and bytes(raw.secret_hash) != secret.encode()
    data = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("tw.db*"))
    assert cid.encode() in data and secret.encode() not in data
    # change
    r = c.patch(
        f"{base}/{cid}",
        json={"name": "Renamed", "redirectUris": [CB, "http://127.0.0.1:9000/cb"], "scope": "vso.code"},
        headers=server.auth(),
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["name"] == "Renamed"
        and r.json()["scope"] == "vso.code"
        and len(r.json()["redirectUris"]) == 2
    )
    r = c.patch(f"{base}/{cid}", json={"status": "disabled"}, headers=server.auth())
    assert r.status_code == 200 and r.json()["status"] == "disabled" and r.json()["disabledAt"]
    assert container.clients.authenticate(cid, secret) is None
    r = c.patch(f"{base}/{cid}", json={"status": "active"}, headers=server.auth())
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert container.clients.authenticate(cid, secret) is not None
    # rotate: the new secret once, the old one dead
    r = c.post(f"{base}/{cid}/secret", headers=server.auth())
    assert r.status_code == 200 and r.json()["clientSecret"] != secret
    assert container.clients.authenticate(cid, secret) is None
    assert container.clients.authenticate(cid, r.json()["clientSecret"]) is not None
    # remove
    assert c.delete(f"{base}/{cid}", headers=server.auth()).status_code == 204
    assert c.get(f"{base}/{cid}", headers=server.auth()).status_code == 404
    assert c.delete(f"{base}/{cid}", headers=server.auth()).status_code == 404
    audit = c.get(f"/api/v1/orgs/{server.org}/audit?target={cid}", headers=server.auth()).json()["value"]
    assert [e["eventType"] for e in audit] == [
        "OAuth.ClientDeleteEvent",
        "OAuth.ClientSecretRotateEvent",
        "OAuth.ClientEnableEvent",
        "OAuth.ClientDisableEvent",
        "OAuth.ClientUpdateEvent",
        "OAuth.ClientCreateEvent",
    ]
    assert secret not in str(audit)


def test_a_public_client_gets_no_secret(server: Server) -> None:
    r = register(server, public=True)
    assert r.status_code == 201 and "clientSecret" not in r.json() and r.json()["public"] is True
    r2 = server.client.post(
        f"/api/v1/orgs/{server.org}/clients/{r.json()['clientId']}/secret", headers=server.auth()
    )
    assert r2.status_code == 400 and error(r2)[0] == "publicClient"


def test_client_credentials_create_a_service_principal_listed_as_such(server: Server) -> None:
    r = register(server, grantTypes=["client_credentials"], redirectUris=[])
    assert r.status_code == 201, r.text
    principal, cid = r.json()["serviceUserId"], r.json()["clientId"]
    users = server.client.get(f"/api/v1/orgs/{server.org}/users", headers=server.auth()).json()["value"]
    found = next(u for u in users if u["id"] == principal)
    assert found["identitySource"] == "service" and found["role"] == "member" and found["status"] == "active"
    assert found["upn"] == f"{cid}@clients.acme"
    # the Azure DevOps Graph users listing holds users only
    ado = server.client.get(
        f"/{server.org}/_apis/graph/users?api-version=7.1-preview.1", headers=server.basic()
    ).json()["value"]
    assert principal not in {u["originId"] for u in ado}
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/users/{found['upn']}", json={"role": "admin"}, headers=server.auth()
    )
    assert r.status_code == 409 and error(r)[0] == "servicePrincipal"
    r = server.client.delete(f"/api/v1/orgs/{server.org}/clients/{cid}", headers=server.auth())
    assert r.status_code == 204
    users = server.client.get(f"/api/v1/orgs/{server.org}/users", headers=server.auth()).json()["value"]
    assert next(u for u in users if u["id"] == principal)["status"] == "disabled"


def test_only_admins_of_the_organization(server: Server) -> None:
    c, base = server.client, f"/api/v1/orgs/{server.org}/clients"
    cid = register(server).json()["clientId"]
    server.add_member("member@acme.test")
    _, member = server.pat_for("member@acme.test", scope="app_token")
    for method, path, body in (
        ("POST", base, {"name": "x", "redirectUris": [CB]}),
        ("GET", base, None),
        ("GET", f"{base}/{cid}", None),
        ("PATCH", f"{base}/{cid}", {"name": "mine"}),
        ("POST", f"{base}/{cid}/secret", None),
        ("DELETE", f"{base}/{cid}", None),
    ):
        r = c.request(method, path, json=body, headers=server.auth(member))
        assert r.status_code == 403, (method, path, r.text)
        assert error(r) == ("accessDenied", "organization administrators only")
    # an admin's token without the administration scope is told which scope it lacks
    _, narrow = server.pat_for(server.admin_upn, scope="vso.code")
    r = c.get(base, headers=server.auth(narrow))
    assert r.status_code == 403 and "vso.tokenadministration" in error(r)[1]
    assert c.get(base).status_code == 401


def test_another_organizations_admin_is_told_nothing(server: Server) -> None:
    c = server.client
    cid = register(server).json()["clientId"]
    boss = server.container.directory.add_org("Globex", "boss@globex.test").token.secret
    for method, path, body in (
        ("GET", "/api/v1/orgs/Acme/clients", None),
        ("POST", "/api/v1/orgs/Acme/clients", {"name": "x", "redirectUris": [CB]}),
        ("GET", f"/api/v1/orgs/Acme/clients/{cid}", None),
        ("PATCH", f"/api/v1/orgs/Acme/clients/{cid}", {"status": "disabled"}),
        ("DELETE", f"/api/v1/orgs/Acme/clients/{cid}", None),
    ):
        r = c.request(method, path, json=body, headers=server.auth(boss))
        assert r.status_code == 404 and error(r)[0] == "organizationNotFound", (method, path, r.text)
    for method, path, body in (  # through its own organization, acme's client does not exist
        ("GET", f"/api/v1/orgs/Globex/clients/{cid}", None),
        ("PATCH", f"/api/v1/orgs/Globex/clients/{cid}", {"status": "disabled"}),
        ("POST", f"/api/v1/orgs/Globex/clients/{cid}/secret", None),
        ("DELETE", f"/api/v1/orgs/Globex/clients/{cid}", None),
    ):
        r = c.request(method, path, json=body, headers=server.auth(boss))
        assert r.status_code == 404 and error(r)[0] == "clientNotFound", (method, path, r.text)
    assert c.get("/api/v1/orgs/Globex/clients", headers=server.auth(boss)).json() == {"value": [], "count": 0}
    assert server.container.clients.get_active(cid) is not None  # untouched


def test_a_narrow_token_cannot_register_a_wider_client(server: Server) -> None:
    _, narrow = server.pat_for(server.admin_upn, scope="vso.tokenadministration vso.code")
    r = register(server, narrow, scope="vso.code vso.code_write")
    assert r.status_code == 403
    assert error(r) == ("scopeEscalation", "this token cannot grant scopes it does not hold: vso.code_write")
    r = register(server, narrow, scope="vso.code")
    assert r.status_code == 201, r.text
    cid = r.json()["clientId"]
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/clients/{cid}", json={"scope": "app_token"}, headers=server.auth(narrow)
    )
    assert r.status_code == 403 and error(r)[0] == "scopeEscalation"
    assert server.client.get(f"/api/v1/orgs/{server.org}/clients", headers=server.auth()).json()["count"] == 1


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"redirectUris": ["/callback"]}, "invalidRedirectUri", "redirect URI must be absolute"),
        ({"redirectUris": ["https://app.example/cb#x"]}, "invalidRedirectUri", "must not contain a fragment"),
        ({"redirectUris": ["http://app.example/cb"]}, "invalidRedirectUri", "must use https"),
        (
            {"redirectUris": ["javascript:alert(1)"]},
            "invalidRedirectUri",
            "scheme 'javascript' is not allowed",
        ),
        (
            {"redirectUris": [f"https://app.example/{i}" for i in range(21)]},
            "tooManyRedirectUris",
            "at most 20 redirect URIs, got 21",
        ),
        ({"redirectUris": []}, "redirectUriRequired", "needs at least one redirect URI"),
        ({"grantTypes": ["password"]}, "invalidGrantType", "unknown grant type 'password'"),
        ({"grantTypes": []}, "invalidGrantType", "at least one grant"),
        ({"scope": "vso.code vso.bogus"}, "invalidScope", "unknown scope(s): vso.bogus"),
        ({"scope": ""}, "invalidScope", "at least one scope is required"),
        (
            {"public": True, "grantTypes": ["client_credentials"]},
            "invalidGrantType",
            "public client cannot use",
        ),
        ({"name": " "}, "invalidClientName", "name is required"),
        ({"name": "n" * 129}, "invalidClientName", "longer than 128"),
        ({"secret": "mine"}, "invalidInput", "secret: Extra inputs are not permitted"),
        ({"redirectUris": "https://app.example/cb"}, "invalidInput", "redirectUris"),
    ],
)
def test_bad_input_is_a_precise_400(server: Server, body: dict[str, Any], code: str, message: str) -> None:
    r = register(server, **body)
    assert r.status_code == 400, r.text
    got_code, got_message = error(r)
    assert got_code == code and message in got_message, r.text


def test_bad_patches(server: Server) -> None:
    base = f"/api/v1/orgs/{server.org}/clients"
    cid = register(server).json()["clientId"]
    for body, message in (
        ({}, "no field to change"),
        ({"redirectUris": []}, "needs at least one redirect URI"),
        ({"redirectUris": ["http://evil.example/cb"]}, "must use https"),
        ({"status": "gone"}, "status"),
        ({"public": True}, "public: Extra inputs are not permitted"),
    ):
        r = server.client.patch(f"{base}/{cid}", json=body, headers=server.auth())
        assert r.status_code == 400 and message in error(r)[1], (body, r.text)
    r = server.client.patch(f"{base}/c_nope", json={"name": "x"}, headers=server.auth())
    assert r.status_code == 404 and error(r)[0] == "clientNotFound"


def test_removing_or_disabling_a_client_stops_its_tokens_at_once(server: Server) -> None:
    container, c = server.container, server.client
    r = register(server, scope="vso.code")
    cid = r.json()["clientId"]
    admin = container.directory.get_member(OPERATOR, server.org, server.admin_upn)[0]

    def issue() -> str:
        """A refresh token of the client for the admin (as the authorization server stores it)."""
        secret = token_format.generate(TokenKind.REFRESH)
        now = container.clock.now()
        record = TokenRecord(
            authorization_id=new_id(),
            kind=TokenKind.REFRESH,
            user_id=admin.id,
            org_id=server.org_id,
            display_name="Dashboard (refresh token)",
            scopes=("vso.code",),
            target_orgs=(server.org_id,),
            secret_hash=container.hasher.hash(secret),
            pepper_id=container.hasher.current_id,
            valid_from=now,
            valid_to=now + timedelta(days=1),
            created_at=now,
            client_id=cid,
        )
        with container.uow() as uow:
            uow.tokens.add(record)
            uow.commit()
        return secret

    url = f"/api/v1/validate?scope=vso.code&org={server.org}"
    first = issue()
    assert c.get(url, headers=server.auth(first)).status_code == 200
    assert (
        c.patch(
            f"/api/v1/orgs/{server.org}/clients/{cid}", json={"status": "disabled"}, headers=server.auth()
        ).status_code
        == 200
    )
    assert c.get(url, headers=server.auth(first)).status_code == 401
    c.patch(f"/api/v1/orgs/{server.org}/clients/{cid}", json={"status": "active"}, headers=server.auth())
    second = issue()
    assert c.get(url, headers=server.auth(second)).status_code == 200
    assert c.get(url, headers=server.auth(first)).status_code == 401  # enabling brings nothing back
    assert c.delete(f"/api/v1/orgs/{server.org}/clients/{cid}", headers=server.auth()).status_code == 204
    assert c.get(url, headers=server.auth(second)).status_code == 401
    assert c.get(url, headers=server.auth()).status_code == 200  # the admin's PAT is no client's


@pytest.mark.postgres
def test_the_registry_on_postgresql(pg_server: Server) -> None:
    c, base = pg_server.client, f"/api/v1/orgs/{pg_server.org}/clients"
    r = register(pg_server, grantTypes=["authorization_code", "client_credentials"], scope="vso.code")
    assert r.status_code == 201, r.text
    cid, secret = r.json()["clientId"], r.json()["clientSecret"]
    assert pg_server.container.clients.authenticate(cid, secret) is not None
    for odd in ("c_%00", "%E2%80%AE", "x" * 300):  # never reaches the driver: a 404, not a 5xx
        assert c.get(f"{base}/{odd}", headers=pg_server.auth()).status_code == 404
    assert pg_server.container.clients.authenticate("c_\x00", secret) is None
    assert c.delete(f"{base}/{cid}", headers=pg_server.auth()).status_code == 204
    assert pg_server.container.clients.authenticate(cid, secret) is None


def test_registered_through_the_api_used_at_the_token_endpoint_cut_by_the_api(tmp_path: Path) -> None:
    """The whole path over HTTP: register, get a client-credentials JWT from /oauth2/token, use
    it; disable the client — the JWT and the secret stop at once; remove it — for good."""
    from fastapi.testclient import TestClient

    from tests.e2e.conftest import make_settings
    from tokenwarden.bootstrap import build
    from tokenwarden.http.app import create_app

    container = build(make_settings(tmp_path), create_pepper=True)
    container.database.upgrade()
    admin = container.directory.initialize("Acme", "admin@acme.test").token.secret
    auth = {"Authorization": f"Bearer {admin}"}
    with TestClient(create_app(container), base_url="http://localhost") as c:  # OAuth: loopback http only
        r = c.post(
            "/api/v1/orgs/Acme/clients",
            json={"name": "CI", "grantTypes": ["client_credentials"], "scope": "vso.code vso.build"},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        cid, secret = r.json()["clientId"], r.json()["clientSecret"]

        def token() -> Any:
            return c.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))

        r = token()
        assert r.status_code == 200, r.text
        jwt = r.json()["access_token"]
        check = "/api/v1/validate?scope=vso.build&org=Acme"
        assert c.get(check, headers={"Authorization": f"Bearer {jwt}"}).status_code == 200
        introspected = c.post("/oauth2/introspect", data={"token": jwt}, auth=(cid, secret)).json()
        assert introspected["active"] is True and introspected["client_id"] == cid
        assert (
            c.patch(f"/api/v1/orgs/Acme/clients/{cid}", json={"status": "disabled"}, headers=auth).status_code
            == 200
        )
        assert c.get(check, headers={"Authorization": f"Bearer {jwt}"}).status_code == 401
        assert token().status_code == 401 and token().json()["error"] == "invalid_client"
        assert (
            c.patch(f"/api/v1/orgs/Acme/clients/{cid}", json={"status": "active"}, headers=auth).status_code
            == 200
        )
        fresh = token().json()["access_token"]
        assert c.get(check, headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
        assert c.get(check, headers={"Authorization": f"Bearer {jwt}"}).status_code == 401  # stays dead
        assert c.delete(f"/api/v1/orgs/Acme/clients/{cid}", headers=auth).status_code == 204
        assert c.get(check, headers={"Authorization": f"Bearer {fresh}"}).status_code == 401
        assert token().status_code == 401
