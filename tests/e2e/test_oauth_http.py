"""The OAuth endpoints over HTTP on a real SQLite file: metadata, client credentials,
introspection (the thin door) and revocation, with their standard errors."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import Server, make_settings
from tokenwarden.bootstrap import build
from tokenwarden.domain.oauth import GrantType, OAuthClient
from tokenwarden.http.app import create_app
from tokenwarden.services.common import OPERATOR


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """The e2e app addressed by a loopback name: OAuth refuses plain http elsewhere."""
    container = build(make_settings(tmp_path), create_pepper=True)
    container.database.upgrade()
    result = container.directory.initialize("Acme", "admin@acme.test")
    with TestClient(create_app(container), base_url="http://localhost") as client:
        yield Server(client, container, "Acme", result.org.id, "admin@acme.test", result.token.secret)


def register(
    server: Server, grants: tuple[GrantType, ...] = (GrantType.CLIENT_CREDENTIALS,)
) -> tuple[str, str]:
    c = server.container
    secret = secrets.token_urlsafe(32)
    client_id = "svc-" + secrets.token_hex(4)
    principal = c.directory.add_user(OPERATOR, server.org, f"{client_id}@clients.acme").user
    with c.uow() as uow:
        uow.oauth.add_client(
            OAuthClient(
                client_id=client_id,
                org_id=server.org_id,
                name="CI",
                public=False,
                redirect_uris=("https://ci.example/cb",),
                grant_types=grants,
                scopes=("vso.code", "vso.build"),
                created_at=c.clock.now(),
                secret_hash=c.hasher.hash(secret),
                pepper_id=c.hasher.current_id,
                service_user_id=principal.id,
            )
        )
        uow.commit()
    return client_id, secret


def token(server: Server, client_id: str, secret: str, **form: str) -> dict[str, object]:
    r = server.client.post(
        "/oauth2/token", data={"grant_type": "client_credentials", **form}, auth=(client_id, secret)
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


def test_metadata_names_every_endpoint_from_the_request_base_url(server: Server) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        meta = server.client.get(path).json()
        assert meta["issuer"] == "http://localhost"
        assert meta["token_endpoint"] == "http://localhost/oauth2/token"
        assert meta["introspection_endpoint"] == "http://localhost/oauth2/introspect"
        assert meta["revocation_endpoint"] == "http://localhost/oauth2/revoke"
        assert meta["jwks_uri"] == "http://localhost/.well-known/jwks.json"
        assert meta["code_challenge_methods_supported"] == ["S256"]


def test_client_credentials_jwt_verifies_with_the_published_key_and_opens_the_api(server: Server) -> None:
    from joserfc import jwt
    from joserfc.jwk import KeySet

    client_id, secret = register(server)
    body = token(server, client_id, secret, scope="vso.build")
    assert body["scope"] == "vso.build" and "refresh_token" not in body
    keys = KeySet.import_key_set(server.client.get("/.well-known/jwks.json").json())
    verified = jwt.decode(str(body["access_token"]), keys, algorithms=["ES256"])
    assert verified.header["typ"] == "at+jwt"
    assert verified.claims["client_id"] == client_id and verified.claims["iss"] == "http://localhost"
    r = server.client.get(
        "/api/v1/validate", params={"scope": "vso.build"}, headers=server.auth(str(body["access_token"]))
    )
    assert r.status_code == 200 and r.json()["kind"] == "access"


def test_introspection_answers_active_then_exactly_inactive_after_revocation(server: Server) -> None:
    client_id, secret = register(server)
    access = str(token(server, client_id, secret)["access_token"])
    r = server.client.post("/oauth2/introspect", data={"token": access}, auth=(client_id, secret))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["active"] is True and body["client_id"] == client_id and body["token_use"] == "access_token"
    assert body["scope"] == "vso.code vso.build" and body["exp"] > body["iat"]
    r = server.client.post("/oauth2/revoke", data={"token": access}, auth=(client_id, secret))
    assert r.status_code == 200
    r = server.client.post("/oauth2/introspect", data={"token": access}, auth=(client_id, secret))
    assert r.json() == {"active": False}
    r = server.client.post("/oauth2/introspect", data={"token": "garbage"}, auth=(client_id, secret))
    assert r.json() == {"active": False}


def test_an_admin_pat_introspects_the_orgs_tokens_and_a_narrow_pat_cannot(server: Server) -> None:
    client_id, secret = register(server)
    access = str(token(server, client_id, secret)["access_token"])
    admin_pat = server.pat_for(server.admin_upn, scope="app_token")[1]
    r = server.client.post("/oauth2/introspect", data={"token": access}, headers=server.auth(admin_pat))
    assert r.json()["active"] is True
    narrow = server.pat_for(server.admin_upn, scope="vso.code")[1]
    r = server.client.post("/oauth2/introspect", data={"token": access}, headers=server.auth(narrow))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"data": {"token": "x"}}, 401, "invalid_client"),
        (
            {"content": b'{"token": "x"}', "headers": {"content-type": "application/json"}},
            400,
            "invalid_request",
        ),
    ],
)
def test_introspection_refuses_unauthenticated_and_non_form_requests(
    server: Server, kwargs: dict[str, object], status: int, error: str
) -> None:
    r = server.client.post("/oauth2/introspect", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == status and r.json()["error"] == error


def test_token_endpoint_errors_are_rfc6749_bodies(server: Server) -> None:
    client_id, secret = register(server)
    r = server.client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, "nope")
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = server.client.post("/oauth2/token", data={"grant_type": "password"}, auth=(client_id, secret))
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = server.client.post("/oauth2/token", json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = server.client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "vso.release"},
        auth=(client_id, secret),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_an_org_watermark_as_break_glass_raises_stops_already_issued_access_tokens(server: Server) -> None:
    client_id, secret = register(server)
    access = str(token(server, client_id, secret)["access_token"])
    c = server.container
    import time

    time.sleep(0.01)
    with c.uow() as uow:
        uow.watermarks.raise_to("org", [server.org_id], ["access"], c.clock.now())
        from tokenwarden.domain.events import EventType, InvalidationEvent

        uow.events.append(InvalidationEvent(EventType.ORG_CHANGED, {"org_id": server.org_id}))
        uow.commit()
    r = server.client.get("/api/v1/validate", headers=server.auth(access))
    assert r.status_code == 401 and r.json()["error"]["message"] == "token is revoked"


def test_the_hot_doors_answer_in_front_of_the_framework_stack(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Introspection and validate never enter FastAPI's middleware stack (it cost more than
    the decision: BENCHMARKS.md, issue 11); what a door does not serve still reaches it."""
    from fastapi import FastAPI

    client_id, secret = register(server)
    access = str(token(server, client_id, secret)["access_token"])
    entered: list[str] = []
    original = FastAPI.__call__

    async def watched(self: FastAPI, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            entered.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", watched)
    r = server.client.post("/oauth2/introspect", data={"token": access}, auth=(client_id, secret))
    assert r.status_code == 200 and r.json()["active"] is True
    assert r.headers["cache-control"] == "no-store"
    r = server.client.get("/api/v1/validate?scope=vso.code", headers=server.auth(access))
    assert r.status_code == 200 and r.json()["kind"] == "access"
    r = server.client.post("/oauth2/introspect", content=b"x" * (20 * 1024), auth=(client_id, secret))
    assert r.status_code == 413  # bodies stay bounded in front too
    assert entered == []
    r = server.client.post("/api/v1/validate", headers=server.auth(access))
    assert r.status_code == 405  # not the door's: the framework answers
    assert entered == ["/api/v1/validate"]
