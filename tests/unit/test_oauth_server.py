"""The authorization server's backend over the in-memory store: codes are one-time, refresh
tokens rotate with a short grace, reuse kills the family (and only it), every revocation mode
reaches the tokens it issued, JWTs are refused when tampered with."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.unit.conftest import FakeClock
from tokenwarden.bootstrap import Container, memory_container
from tokenwarden.domain.errors import InvalidToken
from tokenwarden.domain.oauth import GrantType, OAuthClient
from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.oauth.requests import HttpRequest
from tokenwarden.services.oauth.server import ConsentRequest
from tokenwarden.settings import Settings

ISSUER = "http://127.0.0.1:8080"
REDIRECT = "https://app.example/cb"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC) - timedelta(minutes=5))


@pytest.fixture
def c(clock: FakeClock) -> Container:
    container = memory_container(Settings(staleness_seconds=3600.0), clock=clock)
    container.directory.initialize("acme", "admin@acme.test")
    return container


@pytest.fixture
def bob(c: Container) -> User:
    return c.directory.add_user(OPERATOR, "acme", "bob@acme.test").user


def register(
    c: Container, *, public: bool = False, grants: tuple[GrantType, ...] | None = None
) -> tuple[OAuthClient, str]:
    org = c.directory.find_org("acme")
    secret = secrets.token_urlsafe(32)
    client = OAuthClient(
        client_id="app-" + secrets.token_hex(4),
        org_id=org.id,
        name="Dashboard",
        public=public,
        redirect_uris=(REDIRECT,),
        grant_types=grants or (GrantType.AUTHORIZATION_CODE, GrantType.REFRESH_TOKEN),
        scopes=("vso.code", "vso.build"),
        created_at=c.clock.now(),
        secret_hash=None if public else c.hasher.hash(secret),
        pepper_id=None if public else c.hasher.current_id,
    )
    if GrantType.CLIENT_CREDENTIALS in client.grant_types:
        principal = c.directory.add_user(OPERATOR, "acme", f"{client.client_id}@clients.acme").user
        client = client.with_changes(service_user_id=principal.id)
    with c.uow() as uow:
        uow.oauth.add_client(client)
        uow.commit()
    return client, secret


def post(form: dict[str, str], auth: tuple[str, str] | None = None) -> HttpRequest:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if auth:
        headers["authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return HttpRequest("POST", ISSUER + "/oauth2/token", headers, form={k: [v] for k, v in form.items()})


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(c: Container, client: OAuthClient, user: User, **extra: str) -> str:
    """Consent and return the code."""
    query = {"response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT, "state": "s1"}
    query.update(extra)
    http = HttpRequest(
        "GET", ISSUER + "/oauth2/authorize?" + urlencode(query), {}, query={k: [v] for k, v in query.items()}
    )
    consent = c.oauth.validate_authorization(http, ISSUER, user)
    assert isinstance(consent, ConsentRequest), consent
    status, _, headers = c.oauth.decide(
        HttpRequest("POST", http.url, {}, query=http.query, form=http.query), ISSUER, user, True, None
    )
    assert status == 302
    location = dict(headers)["Location"]
    params = parse_qs(urlsplit(location).query)
    assert params["state"] == ["s1"]
    return params["code"][0]


def exchange(
    c: Container, client: OAuthClient, secret: str, code: str, **extra: str
) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    status, body, _ = c.oauth.token(post(form, (client.client_id, secret)), ISSUER)
    return status, body if isinstance(body, dict) else json.loads(body)


def refresh(c: Container, client: OAuthClient, secret: str, token: str) -> tuple[int, dict[str, Any]]:
    status, body, _ = c.oauth.token(
        post({"grant_type": "refresh_token", "refresh_token": token}, (client.client_id, secret)), ISSUER
    )
    return status, body if isinstance(body, dict) else json.loads(body)


def test_code_flow_issues_a_jwt_the_validator_accepts_and_a_refresh_token(c: Container, bob: User) -> None:
    client, secret = register(c)
    status, body = exchange(c, client, secret, authorize(c, client, bob, scope="vso.code"))
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["scope"] == "vso.code"
    assert body["refresh_token"].startswith("twr_")
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    caller = c.validator.validate(body["access_token"], "vso.code")
    assert caller.user.id == bob.id and caller.token.kind is TokenKind.ACCESS
    with pytest.raises(Exception, match="lacks the scope"):
        c.validator.validate(body["access_token"], "vso.build")


def test_a_code_used_twice_is_refused_and_revokes_what_it_issued(c: Container, bob: User) -> None:
    client, secret = register(c)
    code = authorize(c, client, bob)
    status, first = exchange(c, client, secret, code)
    assert status == 200
    status, second = exchange(c, client, secret, code)
    assert status == 400 and second["error"] == "invalid_grant"
    for token in (first["access_token"], first["refresh_token"]):
        with pytest.raises(InvalidToken, match="revoked"):
            c.validator.validate(token)


def test_pkce_is_required_for_public_clients_and_checked(c: Container, bob: User) -> None:
    client, _ = register(c, public=True)
    query = {"response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT}
    http = HttpRequest("GET", ISSUER + "/oauth2/authorize", {}, query={k: [v] for k, v in query.items()})
    refused = c.oauth.validate_authorization(http, ISSUER, bob)
    assert not isinstance(refused, ConsentRequest)
    assert refused[0] == 302 and "error=invalid_request" in dict(refused[2])["Location"]
    verifier, challenge = pkce()
    code = authorize(c, client, bob, code_challenge=challenge, code_challenge_method="S256")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client.client_id,
    }
    status, body, _ = c.oauth.token(post({**form, "code_verifier": pkce()[0]}), ISSUER)
    assert status == 400 and body["error"] == "invalid_grant"
    code = authorize(c, client, bob, code_challenge=challenge, code_challenge_method="S256")
    status, body, _ = c.oauth.token(post({**form, "code": code, "code_verifier": verifier}), ISSUER)
    assert status == 200, body


def test_refresh_rotates_and_two_tabs_within_the_grace_both_succeed(
    c: Container, bob: User, clock: FakeClock
) -> None:
    client, secret = register(c)
    _, tokens = exchange(c, client, secret, authorize(c, client, bob))
    status, tab1 = refresh(c, client, secret, tokens["refresh_token"])
    assert status == 200 and tab1["refresh_token"] != tokens["refresh_token"]
    clock.advance(seconds=2)
    status, tab2 = refresh(c, client, secret, tokens["refresh_token"])  # the other tab, same old token
    assert status == 200, tab2
    for fresh in (tab1, tab2):
        c.validator.validate(fresh["access_token"])
    status, _ = refresh(c, client, secret, tab1["refresh_token"])
    assert status == 200


def test_reuse_after_the_grace_kills_the_family_and_only_it(
    c: Container, bob: User, clock: FakeClock
) -> None:
    client, secret = register(c)
    _, stolen = exchange(c, client, secret, authorize(c, client, bob))
    _, other_family = exchange(c, client, secret, authorize(c, client, bob))
    _, current = refresh(c, client, secret, stolen["refresh_token"])
    clock.advance(seconds=11)
    status, body = refresh(c, client, secret, stolen["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    for token in (current["access_token"], current["refresh_token"], stolen["access_token"]):
        with pytest.raises(InvalidToken, match="revoked"):
            c.validator.validate(token)
    c.validator.validate(other_family["access_token"])
    assert refresh(c, client, secret, other_family["refresh_token"])[0] == 200


def test_a_token_two_generations_old_is_theft_even_within_the_grace(c: Container, bob: User) -> None:
    client, secret = register(c)
    _, gen0 = exchange(c, client, secret, authorize(c, client, bob))
    _, gen1 = refresh(c, client, secret, gen0["refresh_token"])
    _, gen2 = refresh(c, client, secret, gen1["refresh_token"])
    status, _ = refresh(c, client, secret, gen0["refresh_token"])
    assert status == 400
    with pytest.raises(InvalidToken):
        c.validator.validate(gen2["access_token"])
    assert refresh(c, client, secret, gen2["refresh_token"])[0] == 400


def test_refresh_token_of_another_client_is_refused(c: Container, bob: User) -> None:
    client, secret = register(c)
    other, other_secret = register(c)
    _, tokens = exchange(c, client, secret, authorize(c, client, bob))
    status, body = refresh(c, other, other_secret, tokens["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    assert refresh(c, client, secret, tokens["refresh_token"])[0] == 200  # not consumed by the refusal


def test_revoke_sign_in_sessions_cuts_issued_access_and_refresh_tokens(
    c: Container, bob: User, clock: FakeClock
) -> None:
    client, secret = register(c)
    _, tokens = exchange(c, client, secret, authorize(c, client, bob))
    c.validator.validate(tokens["access_token"])
    clock.advance(seconds=1)
    c.revocation.revoke_sign_in_sessions(OPERATOR, "acme", bob.upn)
    with pytest.raises(InvalidToken, match="revoked"):
        c.validator.validate(tokens["access_token"])
    assert refresh(c, client, secret, tokens["refresh_token"])[0] == 400


def test_a_code_issued_before_a_session_revocation_cannot_be_exchanged(
    c: Container, bob: User, clock: FakeClock
) -> None:
    client, secret = register(c)
    code = authorize(c, client, bob)
    clock.advance(seconds=1)
    c.revocation.revoke_sign_in_sessions(OPERATOR, "acme", bob.upn)
    status, body = exchange(c, client, secret, code)
    assert status == 400 and body["error"] == "invalid_grant"


def test_client_credentials_returns_a_jwt_and_no_refresh_token(c: Container) -> None:
    client, secret = register(c, grants=(GrantType.CLIENT_CREDENTIALS,))
    status, body, _ = c.oauth.token(
        post({"grant_type": "client_credentials"}, (client.client_id, secret)), ISSUER
    )
    assert status == 200, body
    assert "refresh_token" not in body
    claims = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    assert claims["sub"] == client.client_id and claims["client_id"] == client.client_id
    assert claims["iss"] == ISSUER and claims["exp"] - claims["iat"] == 3600 and claims["jti"]
    c.validator.validate(body["access_token"], "vso.build")
    status, body, _ = c.oauth.token(
        post({"grant_type": "client_credentials"}, (client.client_id, "wrong")), ISSUER
    )
    assert status == 401 and body["error"] == "invalid_client"


def _tamper(jwt: str, header: dict[str, Any] | None = None, claims: dict[str, Any] | None = None) -> str:
    h, p, s = jwt.split(".")

    def enc(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    def dec(part: str) -> dict[str, Any]:
        return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))

    return ".".join(
        [
            enc({**dec(h), **(header or {})}) if header else h,
            enc({**dec(p), **(claims or {})}) if claims else p,
            s,
        ]
    )


@pytest.mark.parametrize(
    ("header", "claims"),
    [
        ({"alg": "none"}, None),
        ({"alg": "HS256"}, None),
        ({"kid": "not-a-key"}, None),
        (None, {"scope": "app_token"}),
        (None, {"exp": 4102444800}),
        ({"typ": "JWT"}, None),
    ],
)
def test_a_tampered_jwt_is_refused(
    c: Container, header: dict[str, Any] | None, claims: dict[str, Any] | None
) -> None:
    client, secret = register(c, grants=(GrantType.CLIENT_CREDENTIALS,))
    _, body, _ = c.oauth.token(post({"grant_type": "client_credentials"}, (client.client_id, secret)), ISSUER)
    forged = _tamper(body["access_token"], header, claims)
    with pytest.raises(InvalidToken):
        c.validator.validate(forged)


def test_rfc7009_revoke_a_refresh_token_revokes_its_family_and_answers_200_for_unknown(
    c: Container, bob: User
) -> None:
    client, secret = register(c)
    _, tokens = exchange(c, client, secret, authorize(c, client, bob))
    unknown = c.oauth.revoke(post({"token": "twr_nope"}, (client.client_id, secret)), ISSUER)
    assert unknown[0] == 200
    status, _, _ = c.oauth.revoke(
        post({"token": tokens["refresh_token"], "token_type_hint": "whatever"}, (client.client_id, secret)),
        ISSUER,
    )
    assert status == 200
    with pytest.raises(InvalidToken):
        c.validator.validate(tokens["access_token"])


def test_an_expired_code_is_refused(c: Container, bob: User, clock: FakeClock) -> None:
    client, secret = register(c)
    code = authorize(c, client, bob)
    clock.advance(seconds=121)  # codes live 120 s
    status, body = exchange(c, client, secret, code)
    assert status == 400 and body["error"] == "invalid_grant"


def test_an_expired_jwt_says_expired() -> None:
    """Issued by a clock two hours behind: its exp is an hour in the past for the validator."""
    late = FakeClock(datetime.now(UTC) - timedelta(hours=2))
    c = memory_container(Settings(staleness_seconds=3600.0), clock=late)
    c.directory.initialize("acme", "admin@acme.test")
    client, secret = register(c, grants=(GrantType.CLIENT_CREDENTIALS,))
    _, body, _ = c.oauth.token(post({"grant_type": "client_credentials"}, (client.client_id, secret)), ISSUER)
    with pytest.raises(InvalidToken, match="token is expired"):
        c.validator.validate(body["access_token"])


def test_a_client_disabled_in_the_store_gets_no_more_tokens(c: Container, bob: User) -> None:
    client, secret = register(c)
    _, tokens = exchange(c, client, secret, authorize(c, client, bob))
    with c.uow() as uow:
        uow.oauth.update_client(client.with_changes(disabled_at=c.clock.now()))
        uow.commit()
    status, body = refresh(c, client, secret, tokens["refresh_token"])
    assert status in (400, 401) and body["error"] in ("invalid_client", "invalid_grant")


def test_the_access_token_key_rotates_on_schedule_and_the_old_one_still_verifies(
    c: Container, clock: FakeClock
) -> None:
    client, secret = register(c, grants=(GrantType.CLIENT_CREDENTIALS,))
    _, first, _ = c.oauth.token(
        post({"grant_type": "client_credentials"}, (client.client_id, secret)), ISSUER
    )
    old_kid, _ = c.keys.active("ES256")
    clock.advance(days=31)  # the default schedule: 30 days
    c.keys._active.clear()  # the periodic re-read (every 30 s) notices the key's age
    _, second, _ = c.oauth.token(
        post({"grant_type": "client_credentials"}, (client.client_id, secret)), ISSUER
    )
    new_kid, _ = c.keys.active("ES256")
    assert new_kid != old_kid
    kids = {k.kid: k.status for k in c.keys.published()}
    assert kids[old_kid] == "retiring" and kids[new_kid] == "active"
    header = json.loads(base64.urlsafe_b64decode(second["access_token"].split(".")[0] + "=="))
    assert header["kid"] == new_kid
    c.validator.validate(first["access_token"])  # signed by the retired key: still verifies
