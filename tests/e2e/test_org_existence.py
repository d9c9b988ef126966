"""Issue 10: nobody learns whether an organization exists before authenticating, and a
non-member learns nothing an unknown name would not tell: every org-scoped route family
answers a bad credential with the same 401 and a non-member with the same 404 as an unknown
organization."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tokenwarden.domain.principals import Role
from tokenwarden.services.common import OPERATOR

ID = "12345678-1234-1234-1234-1234567890ab"
# (method, path template, json body) for every route family with the org in the path
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/orgs/{org}/pats", None),
    ("POST", "/api/v1/orgs/{org}/pats", {"displayName": "x", "scope": "vso.code"}),
    ("GET", f"/api/v1/orgs/{{org}}/pats/{ID}", None),
    ("DELETE", f"/api/v1/orgs/{{org}}/pats/{ID}", None),
    ("GET", "/api/v1/orgs/{org}/users", None),
    ("GET", "/api/v1/orgs/{org}/users/admin@acme.test", None),
    ("GET", "/api/v1/orgs/{org}/policy", None),
    ("GET", "/api/v1/orgs/{org}/revocation-rules", None),
    ("POST", "/api/v1/orgs/{org}/revocations", {"authorizationIds": [ID]}),
    ("GET", "/api/v1/orgs/{org}/audit", None),
    ("POST", "/api/v1/orgs/{org}/users/admin@acme.test/revoke", {}),
    ("GET", "/api/v1/orgs/{org}/risky-users", None),
    ("GET", "/api/v1/orgs/{org}/break-glass/preview", None),
    ("POST", "/api/v1/orgs/{org}/break-glass", {"confirm": "Acme"}),
    ("POST", f"/api/v1/orgs/{{org}}/break-glass/{ID}/approve", {"confirm": "Acme"}),
    ("GET", f"/api/v1/orgs/{{org}}/jobs/{ID}", None),
    ("GET", "/api/v1/validate?org={org}", None),
    ("GET", "/{org}/_apis/tokens/pats?api-version=7.1-preview.1", None),
    ("GET", "/{org}/_apis/tokenadmin/personalaccesstokens/aad.bm9ib2R5", None),
    ("POST", "/{org}/_apis/tokenadmin/revocationrules", {"scopes": "vso.code"}),
    ("POST", "/{org}/_apis/tokenadmin/revocations", [{"authorizationId": ID}]),
    ("GET", "/{org}/_apis/graph/users", None),
]
UNKNOWN_TOKEN = "twp_" + "A" * 49
BAD_CREDENTIALS: dict[str, dict[str, str]] = {
    "none": {},
    "unknown bearer": {"Authorization": f"Bearer {UNKNOWN_TOKEN}"},
    "unknown basic": {"Authorization": "Basic " + base64.b64encode(f":{UNKNOWN_TOKEN}".encode()).decode()},
    "garbage": {"Authorization": "Bearer nope"},
    "bad scheme": {"Authorization": "Digest x"},
}


def call(server: Server, method: str, template: str, body: Any, org: str, headers: dict[str, str]) -> Any:
    return server.client.request(method, template.format(org=org), json=body, headers=headers)


def shape(r: Any, org: str) -> tuple[int, str, str | None]:
    """Status, body with the org name as sent blanked out, and WWW-Authenticate."""
    return r.status_code, r.text.replace(org, "<org>"), r.headers.get("www-authenticate")


@pytest.mark.parametrize(("method", "template", "body"), ROUTES)
def test_bad_credentials_get_the_same_401_for_real_and_unknown_orgs(
    server: Server, method: str, template: str, body: Any
) -> None:
    for name, headers in BAD_CREDENTIALS.items():
        real = call(server, method, template, body, "Acme", headers)
        unknown = call(server, method, template, body, "Nowhere", headers)
        assert real.status_code == 401, (name, real.text)
        assert shape(real, "Acme") == shape(unknown, "Nowhere"), name


@pytest.mark.parametrize(("method", "template", "body"), ROUTES)
def test_non_members_get_the_same_404_as_for_an_unknown_org(
    server: Server, method: str, template: str, body: Any
) -> None:
    other = server.container.directory.create_org(OPERATOR, "Other")
    server.container.directory.add_user(OPERATOR, other.name, "boss@other.test", role=Role.ADMIN)
    for scope in ("app_token", "vso.code"):  # a full token, and one lacking the route's scope
        issued = server.container.pats.create(
            OPERATOR, org=other.name, user="boss@other.test", display_name="x", scope=scope, all_orgs=True
        )
        headers = {"Authorization": f"Bearer {issued.secret}"}
        real = call(server, method, template, body, "Acme", headers)
        unknown = call(server, method, template, body, "Nowhere", headers)
        assert real.status_code == 404, (scope, real.text)
        assert shape(real, "Acme") == shape(unknown, "Nowhere"), scope
        by_id = call(server, method, template, body, server.org_id, headers)
        assert shape(by_id, server.org_id) == shape(unknown, "Nowhere"), scope
        random_id = str(uuid.uuid4())
        assert shape(call(server, method, template, body, random_id, headers), random_id) == shape(
            unknown, "Nowhere"
        )


def test_members_still_get_precise_answers(server: Server) -> None:
    server.add_member("bob@acme.test")
    _, code_only = server.pat_for("bob@acme.test", scope="vso.code")
    r = server.client.get("/api/v1/orgs/Acme/pats", headers=server.auth(code_only))
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficientScope"
    r = server.client.get("/api/v1/orgs/Acme/users", headers=server.auth(code_only))
    assert r.status_code == 403
    assert server.client.get("/api/v1/orgs/Acme/pats", headers=server.auth()).status_code == 200
    r = server.client.get("/api/v1/validate?org=Acme&scope=vso.code", headers=server.auth(code_only))
    assert r.status_code == 200 and r.json()["active"] is True


def test_graph_and_ssf_answer_bad_credentials_with_401(server: Server) -> None:
    for method, path in (
        ("GET", "/graph/v1.0/me"),
        ("GET", "/graph/v1.0/users/admin@acme.test"),
        ("POST", "/graph/v1.0/users/admin@acme.test/revokeSignInSessions"),
        ("GET", "/ssf/stream"),
        ("POST", "/ssf/poll"),
        ("GET", "/ssf/status?stream_id=" + ID),
    ):
        for name, headers in BAD_CREDENTIALS.items():
            r = server.client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, name, r.text)
