"""The Microsoft Graph-shaped surface (specs/identity-compat.md), including the official msgraph-sdk."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.conftest import LiveServer, Server
from tokenwarden.domain import token_format
from tokenwarden.domain.errors import Unavailable
from tokenwarden.domain.principals import Role
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.services.common import OPERATOR

V1, BETA = "/graph/v1.0", "/graph/beta"
MARKS = "signInSessionsValidFromDateTime,refreshTokensValidFromDateTime"
GRAPH_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    503: "serviceNotAvailable",
}


def enc(upn: str) -> str:
    """Percent-encode a path segment the way the Graph SDK does (@ → %40, + → %2B, UTF-8)."""
    return quote(upn, safe="")


def assert_graph_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert set(err) == {"code", "message", "innerError"}
    assert err["code"] == (code or GRAPH_CODES[status]) and err["message"]
    inner = err["innerError"]
    assert inner["request-id"] == r.headers["request-id"]
    uuid.UUID(inner["request-id"])
    assert inner["date"].endswith("Z") and datetime.fromisoformat(inner["date"])
    return dict(err)


def iso(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def marks(server: Server, who: str, token: str | None = None) -> dict[str, Any]:
    path = f"{V1}/me" if who == "me" else f"{V1}/users/{enc(who)}"
    r = server.client.get(path, params={"$select": MARKS}, headers=server.auth(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def mint(server: Server, upn: str, kind: TokenKind) -> str:
    """A session/refresh/access-kind token straight into the store (OAuth issuance is elsewhere)."""
    c = server.container
    secret = token_format.generate(TokenKind.SESSION if kind is TokenKind.ACCESS else kind)
    now = c.clock.now()
    with c.uow() as uow:
        user = uow.users.by_upn(upn)
        assert user is not None
        uow.tokens.add(
            TokenRecord(
                authorization_id=str(uuid.uuid4()),
                kind=kind,
                user_id=user.id,
                org_id=server.org_id,
                display_name=kind.value,
                scopes=("vso.code",),
                target_orgs=(server.org_id,),
                secret_hash=c.hasher.hash(secret),
                pepper_id=c.hasher.current_id,
                valid_from=now,
                valid_to=now + timedelta(hours=1),
                created_at=now,
            )
        )
        uow.commit()
    return secret


def works(server: Server, token: str) -> bool:
    r = server.client.get("/api/v1/validate", headers=server.auth(token))
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


# ---------------------------------------------------------------------- revokeSignInSessions
def test_revoke_sign_in_sessions_with_encoded_upns_and_ids(server: Server) -> None:
    c = server.client
    plus = "al+ice@acme.test"
    uni = "jürgen.müller@acme.test"
    plus_id = server.add_member(plus)
    server.add_member(uni)
    paths = [
        f"{V1}/users/{enc(plus)}/revokeSignInSessions",  # al%2Bice%40acme.test
        f"{V1}/users/al+ice@acme.test/revokeSignInSessions",  # a literal + stays +
        f"{V1}/users/{enc(plus.upper())}/revokeSignInSessions",  # case-insensitive UPN
        f"{V1}/users/{plus_id}/revokeSignInSessions",  # by id
        f"{V1}/users/{enc(uni)}/revokeSignInSessions",  # UTF-8, percent-encoded
        f"{V1}/users/{enc('JÜRGEN.MÜLLER@ACME.TEST')}/revokeSignInSessions",
        f"{V1}/Users/{enc(plus)}/RevokeSignInSessions",  # Graph paths are case-insensitive
    ]
    for path in paths:
        r = c.post(path, headers=server.auth())  # no body, no Content-Type
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {
            "@odata.context": "http://testserver/graph/v1.0/$metadata#Edm.Boolean",
            "value": True,
        }
        assert "request-id" in r.headers
    r = c.post(f"{BETA}/users/{enc(uni)}/revokeSignInSessions", headers=server.auth())
    assert r.status_code == 200
    assert r.json()["@odata.context"] == "http://testserver/graph/beta/$metadata#Edm.Boolean"
    # a space is not a plus: "al ice@..." is nobody
    r = c.post(f"{V1}/users/al%20ice%40acme.test/revokeSignInSessions", headers=server.auth())
    assert_graph_error(r, 404)
    # decoded once: %2540 is a literal "%40", not "@"
    r = c.post(f"{V1}/users/al%2Bice%2540acme.test/revokeSignInSessions", headers=server.auth())
    assert_graph_error(r, 404)
    odd = server.add_member("pct%41@acme.test")
    server.add_member("pctA@acme.test")
    r = c.get(f"{V1}/users/{enc('pct%41@acme.test')}", headers=server.auth())  # pct%2541%40acme.test
    assert r.status_code == 200 and r.json()["id"] == odd


def test_revoke_sign_in_sessions_kills_sessions_not_pats_and_is_idempotent(server: Server) -> None:
    upn = "bob@acme.test"
    server.add_member(upn)
    _, pat = server.pat_for(upn, scope="vso.code")
    session, refresh, access = (
        mint(server, upn, k) for k in (TokenKind.SESSION, TokenKind.REFRESH, TokenKind.ACCESS)
    )
    assert all(works(server, t) for t in (pat, session, refresh, access))
    before = marks(server, upn)
    created = iso(before["signInSessionsValidFromDateTime"])
    assert set(before) == {
        "@odata.context",
        "id",
        "signInSessionsValidFromDateTime",
        "refreshTokensValidFromDateTime",
    }
    assert before["refreshTokensValidFromDateTime"] == before["signInSessionsValidFromDateTime"]
    assert created <= datetime.now(UTC)

    t0 = datetime.now(UTC)
    for _ in range(2):  # idempotent: the SDK retries POSTs
        r = server.client.post(f"{V1}/users/{enc(upn)}/revokeSignInSessions", headers=server.auth())
        assert r.status_code == 200 and r.json()["value"] is True
    after = marks(server, upn)
    moved = iso(after["signInSessionsValidFromDateTime"])
    assert moved > created and moved >= t0 - timedelta(seconds=1)
    # a sign-in-session revocation also kills refresh tokens, so that watermark follows
    assert after["refreshTokensValidFromDateTime"] == after["signInSessionsValidFromDateTime"]
    assert works(server, pat), "PATs are not affected by revokeSignInSessions"
    assert not works(server, session) and not works(server, refresh) and not works(server, access)
    fresh = mint(server, upn, TokenKind.SESSION)
    assert works(server, fresh), "a sign-in after the revocation works"
    audit = server.client.get(
        f"/api/v1/orgs/{server.org}/audit",
        params={"eventType": "Token.SignInSessionsRevokeEvent"},
        headers=server.auth(),
    ).json()["value"]
    assert len(audit) == 2 and audit[0]["details"]["upn"] == upn


def test_me_revoke_sign_in_sessions_for_a_member(server: Server) -> None:
    upn = "carol@acme.test"
    server.add_member(upn)
    _, narrow = server.pat_for(upn, scope="vso.code")
    r = server.client.post(f"{V1}/me/revokeSignInSessions", headers=server.auth(narrow))
    assert r.status_code == 403 and "graph.users_manage" in r.text  # Graph routes need their scope
    _, pat = server.pat_for(upn, scope="graph.users_manage")
    session = mint(server, upn, TokenKind.SESSION)
    for base in (V1, BETA):
        r = server.client.post(f"{base}/me/revokeSignInSessions", headers=server.auth(pat))
        assert r.status_code == 200 and r.json()["value"] is True
    assert not works(server, session) and works(server, pat)
    r = server.client.get(f"{V1}/me", headers=server.auth(pat))
    assert r.status_code == 200 and r.json()["userPrincipalName"] == upn


# ---------------------------------------------------------------------- invalidateAllRefreshTokens
def test_invalidate_all_refresh_tokens(server: Server) -> None:
    upn = "dave@acme.test"
    server.add_member(upn)
    _, pat = server.pat_for(upn, scope="graph.users_manage")
    session, refresh, access = (
        mint(server, upn, k) for k in (TokenKind.SESSION, TokenKind.REFRESH, TokenKind.ACCESS)
    )
    before = marks(server, upn)
    for base in (BETA, V1):
        r = server.client.post(f"{base}/users/{enc(upn)}/invalidateAllRefreshTokens", headers=server.auth())
        assert r.status_code == 204 and r.content == b""
    after = marks(server, upn)
    assert iso(after["refreshTokensValidFromDateTime"]) > iso(before["refreshTokensValidFromDateTime"])
    assert after["signInSessionsValidFromDateTime"] == before["signInSessionsValidFromDateTime"]
    assert not works(server, refresh) and not works(server, session)
    assert works(server, access) and works(server, pat)
    r = server.client.post(f"{BETA}/me/invalidateAllRefreshTokens", headers=server.auth(pat))
    assert r.status_code == 204
    r = server.client.post(f"{V1}/me/invalidateAllRefreshTokens", headers=server.auth(pat))
    assert r.status_code == 204
    assert iso(marks(server, "me", pat)["refreshTokensValidFromDateTime"]) >= iso(
        after["refreshTokensValidFromDateTime"]
    )


# ---------------------------------------------------------------------- GET user and $select
def test_get_user_and_select_variants(server: Server) -> None:
    c, h = server.client, server.auth()
    upn = "Erin.Example@acme.test"
    uid = server.add_member(upn)
    r = c.get(f"{V1}/users/{enc(upn.lower())}", headers={**h, "ConsistencyLevel": "eventual"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["@odata.context"] == "http://testserver/graph/v1.0/$metadata#users/$entity"
    assert body["id"] == uid and body["userPrincipalName"] == upn and body["displayName"]
    assert iso(body["signInSessionsValidFromDateTime"]) == iso(body["refreshTokensValidFromDateTime"])
    assert set(body) == {
        "@odata.context",
        "id",
        "userPrincipalName",
        "displayName",
        "signInSessionsValidFromDateTime",
        "refreshTokensValidFromDateTime",
    }
    for query in (
        f"$select={MARKS}",
        f"%24select={MARKS}",
        "%24select=signInSessionsValidFromDateTime%2CrefreshTokensValidFromDateTime",
        "$select=SignInSessionsValidFromDateTime, refreshtokensvalidfromdatetime&$top=5&$count=true",
    ):
        r = c.get(f"{BETA}/users/{uid}?{query}", headers=h)
        assert r.status_code == 200, (query, r.text)
        assert set(r.json()) == {"@odata.context", "id", *MARKS.split(",")}, query
        assert r.json()["@odata.context"].startswith("http://testserver/graph/beta/$metadata#users(id,")
    r = c.get(f"{V1}/users/{uid}?$select=displayName", headers=h)
    assert set(r.json()) == {"@odata.context", "id", "displayName"}
    r = c.get(f"{V1}/me?%24select=userPrincipalName", headers=h)
    assert r.json()["userPrincipalName"] == server.admin_upn and "displayName" not in r.json()
    err = assert_graph_error(c.get(f"{V1}/users/{uid}?$select=id,passwordProfile", headers=h), 400)
    assert "passwordProfile" in err["message"]
    assert_graph_error(c.get(f"{V1}/users/{uid}?$select=id&%24select=displayName", headers=h), 400)


# ---------------------------------------------------------------------- risky users
def risky(server: Server, query: str = "", token: str | None = None) -> list[dict[str, Any]]:
    r = server.client.get(f"{V1}/identityProtection/riskyUsers{query}", headers=server.auth(token))
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def test_risky_users_confirm_dismiss_filters_and_audit(server: Server) -> None:
    c, h = server.client, server.auth()
    frank = server.add_member("frank@acme.test")
    server.add_member("grace@acme.test")
    assert risky(server) == []
    # the body is JSON without a Content-Type header; ids and UPNs both work
    r = c.post(
        f"{V1}/identityProtection/riskyUsers/confirmCompromised",
        content=b'{"userIds": ["%s", "GRACE@acme.test"]}' % frank.encode(),
        headers=h,
    )
    assert r.status_code == 204 and r.content == b""
    listed = risky(server, "?$filter=riskLevel eq 'high'")
    assert [u["userPrincipalName"] for u in listed] == ["frank@acme.test", "grace@acme.test"]
    entry = listed[0]
    assert set(entry) == {
        "id",
        "userPrincipalName",
        "userDisplayName",
        "riskLevel",
        "riskState",
        "riskLastUpdatedDateTime",
        "isDeleted",
        "isProcessing",
        "riskDetail",
    }
    assert entry["id"] == frank and entry["riskLevel"] == "high"
    assert entry["riskState"] == "confirmedCompromised"
    assert entry["riskDetail"] == "adminConfirmedUserCompromised"
    assert entry["isDeleted"] is False and entry["isProcessing"] is False
    assert iso(entry["riskLastUpdatedDateTime"]) <= datetime.now(UTC)
    # the other filter syntaxes, %24filter, $count/$top, and no filter at all
    assert risky(server, "?%24filter=riskLevel%20eq%20microsoft.graph.riskLevel%27high%27") == listed
    assert risky(server, "?$filter=riskLevel+eq+'high'&$top=10") == listed
    assert risky(server, "?$filter=riskLevel eq 'low' or riskLevel eq 'high'") == listed
    assert risky(server, "?$filter=riskLevel eq 'medium'") == []
    assert risky(server) == listed
    r = c.get(f"{BETA}/identityProtection/riskyUsers?$count=true&$select=riskLevel", headers=h)
    assert r.json()["@odata.count"] == 2
    assert r.json()["value"][0] == {"id": listed[0]["id"], "riskLevel": "high"}

    r = c.post(f"{BETA}/identityProtection/riskyUsers/dismiss", json={"userIds": [frank]}, headers=h)
    assert r.status_code == 204
    assert [u["userPrincipalName"] for u in risky(server)] == ["grace@acme.test"]
    dismissed = risky(server, "?$filter=riskState eq 'dismissed'")
    assert [(u["id"], u["riskLevel"], u["riskState"], u["riskDetail"]) for u in dismissed] == [
        (frank, "none", "dismissed", "adminDismissedAllRiskForUser")
    ]
    audit = c.get(
        f"/api/v1/orgs/{server.org}/audit", params={"eventType": "User.RiskChange"}, headers=h
    ).json()["value"]
    changes = sorted(
        (e["details"]["upn"], e["details"]["riskLevel"], e["details"]["riskState"]) for e in audit
    )
    assert changes == [
        ("frank@acme.test", "high", "confirmedCompromised"),
        ("frank@acme.test", "none", "dismissed"),
        ("grace@acme.test", "high", "confirmedCompromised"),
    ]
    assert {e["actorUpn"] for e in audit} == {server.admin_upn}
    assert {e["targetId"] for e in audit} == {frank, listed[1]["id"]}


def test_risky_users_bad_requests(server: Server) -> None:
    c, h = server.client, server.auth()
    frank = server.add_member("frank@acme.test")
    base = f"{V1}/identityProtection/riskyUsers"
    for query in (
        "?$filter=riskLevel eq 'HIGHEST'",
        "?$filter=displayName eq 'x'",
        "?$filter=riskLevel ne 'high'",
        "?$filter=riskLevel eq 'high' and riskState eq 'atRisk'",
        "?$select=id,password",
    ):
        assert_graph_error(c.get(base + query, headers=h), 400)
    for body in (b"", b"{", b"[]", b'{"userIds": []}', b'{"userIds": [1]}', b'{"ids": ["x"]}'):
        assert_graph_error(c.post(f"{base}/confirmCompromised", content=body, headers=h), 400)
    # one unknown user rejects the whole batch and changes nothing
    r = c.post(f"{base}/confirmCompromised", json={"userIds": [frank, "nobody@acme.test"]}, headers=h)
    assert_graph_error(r, 404)
    assert risky(server) == []


# ---------------------------------------------------------------------- errors
def test_authentication_errors_are_graph_shaped(server: Server) -> None:
    c = server.client
    path = f"{V1}/users/{enc(server.admin_upn)}/revokeSignInSessions"
    _, pat = server.pat_for(server.admin_upn, scope="vso.code")
    cases = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer " + pat[:-1] + ("A" if pat[-1] != "A" else "B")},
        server.basic(pat),  # Graph clients use Bearer only
    ]
    for headers in cases:
        r = c.post(path, headers={**headers, "client-request-id": "abc-123"})
        assert_graph_error(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["client-request-id"] == "abc-123"
        assert r.json()["error"]["innerError"]["client-request-id"] == "abc-123"
    assert_graph_error(c.get(f"{V1}/me"), 401)
    assert_graph_error(c.get(f"{V1}/identityProtection/riskyUsers"), 401)
    assert_graph_error(c.post(f"{V1}/identityProtection/riskyUsers/dismiss", content=b"{"), 401)
    # a revoked PAT is an invalid token
    auth_id, revoked = server.pat_for(server.admin_upn, scope="vso.code")
    server.container.pats.revoke(OPERATOR, auth_id)
    assert_graph_error(c.get(f"{V1}/me", headers=server.auth(revoked)), 401)


def test_client_request_id_is_echoed_on_success(server: Server) -> None:
    cid = str(uuid.uuid4())
    r = server.client.get(f"{V1}/me", headers={**server.auth(), "client-request-id": cid})
    assert r.status_code == 200 and r.headers["client-request-id"] == cid
    uuid.UUID(r.headers["request-id"])
    r = server.client.get(f"{V1}/me", headers=server.auth())
    assert "client-request-id" not in r.headers


def test_member_cannot_use_admin_routes(server: Server) -> None:
    c = server.client
    server.add_member("henry@acme.test")
    server.add_member("ivy@acme.test")
    _, pat = server.pat_for("henry@acme.test", scope="graph.users_manage")
    h = server.auth(pat)
    ivy = enc("ivy@acme.test")
    for method, path in (
        ("POST", f"{V1}/users/{ivy}/revokeSignInSessions"),
        ("POST", f"{BETA}/users/{ivy}/invalidateAllRefreshTokens"),
        ("GET", f"{V1}/users/{ivy}?$select={MARKS}"),
        ("GET", f"{V1}/identityProtection/riskyUsers"),
    ):
        assert_graph_error(c.request(method, path, headers=h), 403)
    for action in ("confirmCompromised", "dismiss"):
        r = c.post(
            f"{V1}/identityProtection/riskyUsers/{action}", json={"userIds": ["ivy@acme.test"]}, headers=h
        )
        assert_graph_error(r, 403)
    # ... not even on themselves: risk is an administrator's call
    r = c.post(
        f"{V1}/identityProtection/riskyUsers/dismiss", json={"userIds": ["henry@acme.test"]}, headers=h
    )
    assert_graph_error(r, 403)
    # self-service by UPN is allowed, like /me
    r = c.post(f"{V1}/users/{enc('HENRY@acme.test')}/revokeSignInSessions", headers=h)
    assert r.status_code == 200


def test_not_found_and_routing_errors(server: Server) -> None:
    c, h = server.client, server.auth()
    assert_graph_error(c.post(f"{V1}/users/{enc('nobody@acme.test')}/revokeSignInSessions", headers=h), 404)
    assert_graph_error(c.get(f"{V1}/users/{uuid.uuid4()}", headers=h), 404)
    assert_graph_error(c.post(f"{BETA}/users/nobody/invalidateAllRefreshTokens", headers=h), 404)
    # an administrator of another organization does not see Acme's users
    server.container.directory.create_org(OPERATOR, "Other")
    server.container.directory.add_user(OPERATOR, "Other", "olga@other.test", role=Role.ADMIN)
    server.add_member("jack@acme.test")
    olga = issue_pat(server, "Other", "olga@other.test")
    assert_graph_error(
        c.post(f"{V1}/users/{enc('jack@acme.test')}/revokeSignInSessions", headers=server.auth(olga)), 404
    )
    assert risky(server, token=olga) == []
    # unknown paths, wrong methods and versions: still Graph-shaped
    assert_graph_error(c.get(f"{V1}/groups", headers=h), 404)
    assert_graph_error(c.get(f"{V1}/users/x/revokeSignInSessions/extra", headers=h), 404)
    r = c.get(f"{V1}/users/{enc(server.admin_upn)}/revokeSignInSessions", headers=h)
    assert_graph_error(r, 405, "BadRequest")
    assert r.headers["allow"] == "POST"
    assert_graph_error(c.delete(f"{V1}/me", headers=h), 405, "BadRequest")
    assert_graph_error(c.get("/graph/v2.0/me", headers=h), 400)


def issue_pat(server: Server, org: str, upn: str, scope: str = "graph.users_manage") -> str:
    issued = server.container.pats.create(
        OPERATOR,
        org=org,
        user=upn,
        display_name="t",
        scope=scope,
        valid_to=server.container.clock.now() + timedelta(days=5),
    )
    return issued.secret


def test_store_down_is_503_with_retry_after(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_: Any, **__: Any) -> Any:
        raise Unavailable("database unavailable: OperationalError")

    monkeypatch.setattr(server.container.revocation, "revoke_sign_in_sessions", down)
    r = server.client.post(f"{V1}/me/revokeSignInSessions", headers=server.auth())
    assert_graph_error(r, 503)
    assert r.headers["retry-after"].isdigit()

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(server.container.revocation, "user_marks", boom)
    assert_graph_error(server.client.get(f"{V1}/me", headers=server.auth()), 500, "generalException")


# ---------------------------------------------------------------------- the official SDK
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_msgraph_sdk_against_a_live_server(live_server: LiveServer) -> None:
    pytest.importorskip("msgraph")
    from azure.core.credentials import AccessToken
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
    from msgraph_core.authentication import AzureIdentityAuthenticationProvider

    class PatCredential:
        """An azure.core TokenCredential that hands out a tokenwarden PAT as the access token."""

        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken(live_server.admin_token, int(datetime.now(UTC).timestamp()) + 3600)

    base = live_server.base_url
    upn = "sdk+user@acme.test"
    r = httpx.post(
        f"{base}/api/v1/orgs/{live_server.org}/users",
        json={"upn": upn},
        headers={"Authorization": f"Bearer {live_server.admin_token}"},
    )
    assert r.status_code == 201, r.text
    # uvicorn, not just the test client, decodes the user segment exactly once
    r = httpx.post(
        f"{base}/api/v1/orgs/{live_server.org}/users",
        json={"upn": "pct%41@acme.test"},
        headers={"Authorization": f"Bearer {live_server.admin_token}"},
    )
    odd = r.json()["id"]
    r = httpx.get(
        f"{base}/graph/v1.0/users/pct%2541%40acme.test",
        headers={"Authorization": f"Bearer {live_server.admin_token}"},
    )
    assert r.status_code == 200 and r.json()["id"] == odd
    host = httpx.URL(base).host
    auth = AzureIdentityAuthenticationProvider(
        PatCredential(), scopes=["https://graph.microsoft.com/.default"], allowed_hosts=[host]
    )
    client = GraphServiceClient(request_adapter=GraphRequestAdapter(auth))
    client.request_adapter.base_url = f"{base}/graph/v1.0"

    async def scenario() -> tuple[Any, Any, Any]:
        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
            select=["signInSessionsValidFromDateTime", "refreshTokensValidFromDateTime"]
        )
        config = RequestConfiguration(query_parameters=query)
        before = await client.users.by_user_id(upn).get(request_configuration=config)
        revoked = await client.users.by_user_id(upn).revoke_sign_in_sessions.post()
        after = await client.users.by_user_id(upn).get(request_configuration=config)
        return before, revoked, after

    before, revoked, after = asyncio.run(scenario())
    assert revoked is not None and revoked.value is True
    assert before.sign_in_sessions_valid_from_date_time is not None
    assert after.user_principal_name is None and after.id
    assert after.sign_in_sessions_valid_from_date_time > before.sign_in_sessions_valid_from_date_time
    # v1.0's User model has no refreshTokensValidFromDateTime (beta does): it lands in additional_data
    # (kiota turns ISO-8601 strings in additional_data into datetimes)
    refresh = after.additional_data["refreshTokensValidFromDateTime"]
    assert refresh == after.sign_in_sessions_valid_from_date_time
    assert after.sign_in_sessions_valid_from_date_time.tzinfo is not None
