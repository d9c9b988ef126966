"""Issue 17 over the admin REST API: ``POST /api/v1/orgs/{org}/users/{upn}/offboard`` cuts every
token of the leaver, hands their managed credential (rotated) and token watches to the successor,
answers the report; a bad body or successor is a precise 400 with nothing done; members, narrow
tokens and other organizations are refused (docs/offboarding.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tokenwarden.domain.principals import Role
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.managed import NewCredential

LEAVER = "leaver@acme.test"
HEIR = "heir@acme.test"


def _offboard(
    server: Server, upn: str = LEAVER, token: str | None = None, raw: bytes | None = None, **kwargs: Any
) -> Any:
    """POST the offboarding; ``raw``: this body sent as it is, as JSON."""
    headers = server.auth(token)
    if raw is not None:
        kwargs["content"] = raw
        headers["Content-Type"] = "application/json"
    return server.client.post(f"/api/v1/orgs/{server.org}/users/{upn}/offboard", headers=headers, **kwargs)


def _valid(server: Server, token: str) -> int:
    return server.client.get("/api/v1/validate", headers=server.auth(token)).status_code


def _managed(server: Server, owner: str, name: str = "ci-deploy") -> None:
    """A PAT of ``owner`` under rotation into the built-in store (the owner and ops as contacts),
    rotated once, so the store serves a token of the owner."""
    auth_id, _ = server.pat_for(owner, scope="vso.code", name=f"{name} token")
    new = NewCredential(
        name=name, authorization_id=auth_id, store="builtin", contacts=(owner, "ops@acme.test")
    )
    server.container.managed.add(OPERATOR, server.org, new)
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/managed-credentials/{name}/rotate",
        json={"compromised": True},
        headers=server.auth(),
    )
    assert r.status_code == 200 and r.json()["result"] == "rotated", r.text


def _served(server: Server, name: str = "ci-deploy") -> str:
    r = server.client.get(f"/api/v1/orgs/{server.org}/secrets/{name}", headers=server.auth())
    assert r.status_code == 200, r.text
    return str(r.json()["value"])


def _offboard_audit(server: Server) -> list[dict[str, Any]]:
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/audit", params={"eventType": "User.Offboard"}, headers=server.auth()
    )
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def test_offboard_with_a_successor_cuts_tokens_and_hands_over_a_rotated_credential(server: Server) -> None:
    leaver_id = server.add_member(LEAVER)
    heir_id = server.add_member(HEIR)
    _, laptop = server.pat_for(LEAVER, scope="vso.code", name="laptop")
    _managed(server, LEAVER)
    before = _served(server)
    assert _valid(server, laptop) == 200
    # a narrow admin PAT (the scope user administration needs, nothing else) is enough
    _, narrow = server.pat_for(server.admin_upn, scope="vso.tokenadministration", name="admin")

    r = _offboard(server, token=narrow, json={"successor": HEIR})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["upn"] == LEAVER and report["userId"] == leaver_id and report["org"] == server.org
    assert report["orgId"] == server.org_id and report["initiatedBy"] == "admin"
    assert report["successor"] == HEIR and report["successorChosenBy"] == "given"
    assert report["previousStatus"] == "active" and report["membershipStatus"] == "disabled"
    assert report["revokedKinds"] == ["pat", "access", "refresh", "session", "service"]
    assert report["tokensRevokedCount"] == 2  # the laptop PAT and the credential's
    [handed] = report["credentialsHandedOver"]
    assert handed["name"] == "ci-deploy" and handed["rotated"] is True
    assert handed["rotationResult"] == "rotated"
    assert report["contactsReplaced"] == 1 and report["warnings"] == []

    assert _valid(server, laptop) == 401  # the leaver's PAT is dead at once
    assert _valid(server, before) == 401
    after = _served(server)  # the store serves a token minted for the successor
    assert after != before and _valid(server, after) == 200
    shown = server.client.get(f"/api/v1/orgs/{server.org}/users/{LEAVER}", headers=server.auth()).json()
    assert shown["status"] == "disabled"
    cred, _ = server.container.managed.get(OPERATOR, server.org, "ci-deploy")
    assert cred.user_id == heir_id and list(cred.contacts) == [HEIR, "ops@acme.test"]

    [entry] = _offboard_audit(server)
    assert entry["eventType"] == "User.Offboard" and entry["targetId"] == leaver_id
    assert entry["details"]["successor"] == HEIR and entry["details"]["how"] == "given"
    assert entry["details"]["initiatedBy"] == "admin" and entry["details"]["tokensRevoked"] == 2

    # again: harmless, nothing more to cut or hand over
    again = _offboard(server)
    assert again.status_code == 200, again.text
    assert again.json()["tokensRevokedCount"] == 0 and again.json()["credentialsHandedOver"] == []
    assert _valid(server, after) == 200


@pytest.mark.parametrize("body", [None, {}, {"successor": None}])
def test_offboard_without_a_successor_warns_what_is_left(server: Server, body: dict[str, Any] | None) -> None:
    server.add_member(LEAVER)
    _, laptop = server.pat_for(LEAVER, scope="vso.code", name="laptop")
    _managed(server, LEAVER)
    r = _offboard(server) if body is None else _offboard(server, json=body)  # no body at all, too
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["successor"] is None and report["successorChosenBy"] == "none"
    assert report["membershipStatus"] == "disabled" and report["credentialsHandedOver"] == []
    [warning] = report["warnings"]
    assert "no successor: managed credentials ci-deploy still name the leaver" in warning
    assert _valid(server, laptop) == 401
    assert [e["details"]["successor"] for e in _offboard_audit(server)] == [None]


def test_the_security_contact_is_the_default_successor(server: Server) -> None:
    server.add_member(LEAVER)
    server.add_member(HEIR)
    r = server.client.patch(
        f"/api/v1/orgs/{server.org}/policy", json={"securityContact": HEIR}, headers=server.auth()
    )
    assert r.status_code == 200, r.text
    r = _offboard(server, raw=b"")  # an empty JSON body
    assert r.status_code == 200, r.text
    assert r.json()["successor"] == HEIR and r.json()["successorChosenBy"] == "securityContact"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"successor": "ghost@acme.test"},
            "invalidSuccessor",
            "successor 'ghost@acme.test' is not a member of Acme",
        ),
        ({"successor": "idle@acme.test"}, "invalidSuccessor", "successor idle@acme.test is disabled in Acme"),
        ({"successor": LEAVER}, "invalidSuccessor", "the successor cannot be the leaver"),
        ({"successor": "boss@globex.test"}, "invalidSuccessor", "'boss@globex.test' is not a member of Acme"),
        ({"successor": "  "}, "invalidSuccessor", "the successor's UPN is empty"),
        ({"successor": 5}, "invalidInput", "successor: Input should be a valid string"),
        ({"successor": ["heir@acme.test"]}, "invalidInput", "successor: Input should be a valid string"),
        ({"successor": "x" * 257}, "invalidInput", "successor: String should have at most 256 characters"),
        ({"successor": HEIR, "reason": "left"}, "invalidInput", "reason: Extra inputs are not permitted"),
        ([HEIR], "invalidInput", "Input should be a valid dictionary"),
        ("heir@acme.test", "invalidInput", "Input should be a valid dictionary"),
    ],
)
def test_a_bad_body_or_successor_is_a_precise_400_and_changes_nothing(
    server: Server, body: Any, code: str, message: str
) -> None:
    server.add_member(LEAVER)
    server.add_member(HEIR)
    server.add_member("idle@acme.test")
    server.container.directory.add_org("Globex", "boss@globex.test")
    server.client.patch(
        f"/api/v1/orgs/{server.org}/users/idle@acme.test", json={"status": "disabled"}, headers=server.auth()
    )
    _, laptop = server.pat_for(LEAVER, scope="vso.code", name="laptop")
    r = _offboard(server, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code and message in error["message"], error
    assert _valid(server, laptop) == 200
    assert _offboard_audit(server) == []


@pytest.mark.parametrize("raw", [b"{", b'{"successor": "heir@acme.test",}', b"\xff\xfe"])
def test_malformed_json_is_a_400(server: Server, raw: bytes) -> None:
    server.add_member(LEAVER)
    r = _offboard(server, raw=raw)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]


def test_an_administrator_cannot_offboard_themselves_or_an_unknown_user(server: Server) -> None:
    r = _offboard(server, upn=server.admin_upn)
    assert r.status_code == 400 and r.json()["error"]["code"] == "cannotOffboardSelf", r.text
    assert "administrators cannot offboard themselves" in r.json()["error"]["message"]
    assert _valid(server, server.admin_token) == 200
    r = _offboard(server, upn="ghost@acme.test")
    assert r.status_code == 404 and r.json()["error"]["code"] == "userNotFound", r.text
    assert _offboard_audit(server) == []


def test_a_member_a_narrow_token_and_no_token_are_refused(server: Server) -> None:
    server.add_member(LEAVER)
    server.add_member("bob@acme.test")
    _, laptop = server.pat_for(LEAVER, scope="vso.code", name="laptop")
    _, bob = server.pat_for("bob@acme.test", scope="app_token", name="everything")
    r = _offboard(server, token=bob, json={"successor": "bob@acme.test"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "accessDenied", r.text
    # before the user is looked up: a member learns nothing about who is a member
    r = _offboard(server, upn="ghost@acme.test", token=bob)
    assert r.status_code == 403 and r.json()["error"]["code"] == "accessDenied", r.text
    _, code_only = server.pat_for(server.admin_upn, scope="vso.code", name="code")
    r = _offboard(server, token=code_only)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficientScope", r.text
    r = server.client.post(f"/api/v1/orgs/{server.org}/users/{LEAVER}/offboard")
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    r = _offboard(server, token="twp_" + "A" * 49)
    assert r.status_code == 401, r.text
    assert _valid(server, laptop) == 200
    assert _offboard_audit(server) == []


def test_another_organization_is_out_of_reach(server: Server) -> None:
    boss = server.container.directory.add_org("Globex", "boss@globex.test").token.secret
    server.container.directory.add_user(OPERATOR, "Globex", "worker@globex.test")
    worker = server.container.pats.create(
        OPERATOR,
        org="Globex",
        user="worker@globex.test",
        display_name="w",
        scope="vso.code",
        valid_to=server.container.clock.now() + timedelta(days=5),
    ).secret
    url = "/api/v1/orgs/Globex/users/worker@globex.test/offboard"
    # Acme's administrator is no member of Globex: the same 404 as an unknown organization
    for org_url in (url, url.replace("Globex", "Nowhere")):
        r = server.client.post(org_url, headers=server.auth())
        assert r.status_code == 404 and r.json()["error"]["code"] == "organizationNotFound", r.text
    assert server.client.post(url).status_code == 401  # anonymous: nothing about which orgs exist
    # nor can Globex's administrator offboard Acme's people
    server.add_member(LEAVER)
    r = _offboard(server, token=boss)
    assert r.status_code == 404 and r.json()["error"]["code"] == "organizationNotFound", r.text
    # an administrator of both, with a token restricted to Acme, cannot act in Globex
    server.container.directory.add_user(OPERATOR, "Globex", server.admin_upn, role=Role.ADMIN)
    r = server.client.post(url, headers=server.auth())
    assert r.status_code == 403, r.text
    assert _valid(server, worker) == 200
    # Globex's own administrator may
    r = server.client.post(url, headers=server.auth(boss))
    assert r.status_code == 200 and r.json()["org"] == "Globex", r.text
    assert _valid(server, worker) == 401


def test_the_route_is_documented_in_openapi(server: Server) -> None:
    spec = server.client.get("/openapi.json").json()
    op = spec["paths"]["/api/v1/orgs/{org}/users/{user}/offboard"]["post"]
    assert "administration" in op["tags"] and "Offboard a member" in op["description"]
    assert {"200", "400", "401", "403"} <= set(op["responses"]) and "422" not in op["responses"]
    assert op["requestBody"].get("required", False) is False  # the body is optional
    ref = op["requestBody"]["content"]["application/json"]["schema"]
    schemas = spec["components"]["schemas"]
    name = next(s["$ref"] for s in ref.get("anyOf", [ref]) if "$ref" in s).rsplit("/", 1)[-1]
    model = schemas[name]
    assert set(model["properties"]) == {"successor"} and model["additionalProperties"] is False
