"""The authorization endpoint over HTTP with a real browser session (cookies, CSRF): consent
leads to a code; Deny to access_denied; what cannot be trusted to a redirect — an unknown
client, a redirect URI not registered exactly — is a page for the user, never a redirect."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.conftest import Server
from tests.e2e.signin_helpers import ALICE, csrf_of, signed_in, start_server
from tokenwarden.services.common import OPERATOR

REDIRECT = "https://app.example/cb"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path, base_url="http://localhost")


@pytest.fixture
def client_id(server: Server) -> str:
    registered = server.container.clients.register(
        OPERATOR, server.org, name="Dashboard", redirect_uris=[REDIRECT], scope="vso.code", public=True
    )
    return registered.client.client_id


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def params(client_id: str, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "vso.code",
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def consent_form(server: Server, query: dict[str, str]) -> dict[str, str]:
    page = server.client.get("/oauth2/authorize", params=query)
    assert page.status_code == 200, page.text
    assert 'value="allow"' in page.text and 'value="deny"' in page.text
    return {**query, "csrf_token": csrf_of(page.text)}


def test_signed_out_users_are_sent_to_sign_in_and_come_back(server: Server, client_id: str) -> None:
    r = server.client.get("/oauth2/authorize", params=params(client_id, pkce()[1]))
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")


def test_allow_redirects_with_a_code_that_exchanges_with_pkce(server: Server, client_id: str) -> None:
    signed_in(server.client)
    verifier, challenge = pkce()
    form = consent_form(server, params(client_id, challenge))
    r = server.client.post("/oauth2/authorize", data={**form, "decision": "allow"})
    assert r.status_code == 302, r.text
    location = urlsplit(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    got = parse_qs(location.query)
    assert got["state"] == ["xyz"]
    token = server.client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": got["code"][0],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    caller = server.container.validator.validate(token.json()["access_token"], "vso.code")
    assert caller.user.upn == ALICE


def test_deny_redirects_with_access_denied(server: Server, client_id: str) -> None:
    signed_in(server.client)
    form = consent_form(server, params(client_id, pkce()[1]))
    r = server.client.post("/oauth2/authorize", data={**form, "decision": "deny"})
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["access_denied"]


def test_consent_without_its_csrf_token_is_refused(server: Server, client_id: str) -> None:
    signed_in(server.client)
    form = consent_form(server, params(client_id, pkce()[1]))
    del form["csrf_token"]
    r = server.client.post("/oauth2/authorize", data={**form, "decision": "allow"})
    assert r.status_code == 403 and "location" not in r.headers


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://evil.example/cb", REDIRECT + "/extra", REDIRECT + "?x=1", "https://app.example/CB"],
)
def test_a_redirect_uri_not_registered_exactly_is_a_page_never_a_redirect(
    server: Server, client_id: str, redirect_uri: str
) -> None:
    signed_in(server.client)
    r = server.client.get("/oauth2/authorize", params=params(client_id, pkce()[1], redirect_uri=redirect_uri))
    assert r.status_code == 400 and "location" not in r.headers
    assert "text/html" in r.headers["content-type"]


def test_an_unknown_client_is_a_page(server: Server) -> None:
    signed_in(server.client)
    r = server.client.get("/oauth2/authorize", params=params("c_" + "0" * 32, pkce()[1]))
    assert r.status_code == 400 and "location" not in r.headers


def test_a_public_client_without_pkce_gets_invalid_request_at_its_redirect_uri(
    server: Server, client_id: str
) -> None:
    signed_in(server.client)
    query = params(client_id, "")
    del query["code_challenge"], query["code_challenge_method"]
    r = server.client.get("/oauth2/authorize", params=query)
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["invalid_request"]


def test_a_member_of_another_org_cannot_authorize_the_app(server: Server, client_id: str) -> None:
    server.container.directory.add_org("Globex", "gadmin@globex.test")
    server.container.accounts.set_password(OPERATOR, "gadmin@globex.test", "plum-anchor-meadow-42")
    signed_in(server.client, "gadmin@globex.test")
    r = server.client.get("/oauth2/authorize", params=params(client_id, pkce()[1]))
    assert r.status_code == 302  # to the app's registered redirect URI, with no code
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["access_denied"]


def test_an_authorization_request_with_too_many_parameters_is_a_page_not_a_500(
    server: Server, client_id: str
) -> None:
    signed_in(server.client)
    query = {**params(client_id, pkce()[1]), **{f"x{i}": "1" for i in range(60)}}
    r = server.client.get("/oauth2/authorize", params=query)
    assert r.status_code == 400 and "text/html" in r.headers["content-type"]
