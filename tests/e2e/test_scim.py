"""SCIM 2.0 at /scim/v2/{org} over a real app and SQLite file: the request sequences Entra ID and
Okta really send, the provisioning-token-only door, tenancy, deactivation as offboarding, the
admin group, and bad input -- each answered with its SCIM error."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, make_settings, start
from tokenwarden.domain.principals import Role, UserStatus
from tokenwarden.services.common import OPERATOR

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
ENTRA_GROUP_URN = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


@dataclass
class Scim:
    server: Server
    token: str

    @property
    def base(self) -> str:
        return f"/scim/v2/{self.server.org}"

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
        h = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json", **headers}
        return self.server.client.request(method, self.base + path, json=body, headers=h)

    def create_user(self, user_name: str, **extra: Any) -> dict[str, Any]:
        r = self.call("POST", "/Users", {"schemas": [USER], "userName": user_name, "active": True, **extra})
        assert r.status_code == 201, r.text
        return dict(r.json())


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


@pytest.fixture
def scim_server(tmp_path: Path) -> Iterator[Scim]:
    for server in start(make_settings(tmp_path)):
        token = server.container.scim.create_token(OPERATOR, server.org).secret
        yield Scim(server, token)


def assert_error(r: httpx.Response, status: int, scim_type: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/scim+json")
    body = r.json()
    assert body["schemas"] == [ERROR] and body["status"] == str(status)
    assert body.get("scimType") == scim_type, body
    return dict(body)


def member(scim: Scim, upn: str) -> tuple[Role, UserStatus] | None:
    with scim.server.container.uow() as uow:
        user = uow.users.by_upn(upn)
        m = uow.users.membership(scim.server.org_id, user.id) if user else None
    return (m.role, m.status) if m else None


# ---------------------------------------------------------------------- Entra ID
def test_entra_sequence(scim_server: Scim) -> None:
    """What Entra's provisioning service sends: a probe filter, a create with the enterprise
    extension, capitalised ops, string booleans, filtered paths, a path-less PATCH."""
    s = scim_server
    probe = s.call("GET", "/Users?filter=userName+eq+%22ada%40contoso.test%22")
    assert probe.status_code == 200 and probe.json()["totalResults"] == 0
    created = s.create_user(
        "ada@contoso.test",
        schemas=[USER, ENTERPRISE],
        externalId="ext-ada",
        name={"givenName": "Ada", "familyName": "Lovelace", "formatted": "Ada Lovelace"},
        emails=[{"primary": True, "type": "work", "value": "ada@contoso.test"}],
        **{ENTERPRISE: {"department": "Eng", "employeeNumber": "7"}},
    )
    assert created["meta"]["resourceType"] == "User" and created["meta"]["location"].endswith(created["id"])
    assert member(s, "ada@contoso.test") == (Role.MEMBER, UserStatus.ACTIVE)
    found = s.call("GET", '/Users?filter=externalId eq "ext-ada"').json()
    assert [u["id"] for u in found["Resources"]] == [created["id"]]

    r = s.call(
        "PATCH",
        f"/Users/{created['id']}",
        patch(
            {"op": "Replace", "path": "displayName", "value": "Ada L."},
            {"op": "Add", "path": 'emails[type eq "home"].value', "value": "ada@home.test"},
            {"op": "Replace", "value": {"name.givenName": "Augusta", f"{ENTERPRISE}:manager": "nobody"}},
        ),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["displayName"] == "Ada L." and body["name"]["givenName"] == "Augusta"
    assert {"type": "home", "value": "ada@home.test"} in body["emails"]
    assert body[ENTERPRISE]["manager"]["value"] == "nobody"
    assert body[ENTERPRISE]["department"] == "Eng"

    r = s.call(
        "PATCH", f"/Users/{created['id']}", patch({"op": "Replace", "path": "active", "value": "False"})
    )
    assert r.status_code == 200 and r.json()["active"] is False
    assert member(s, "ada@contoso.test") == (Role.MEMBER, UserStatus.DISABLED)

    group = s.call(
        "POST",
        "/Groups",
        {"schemas": [GROUP, ENTRA_GROUP_URN], "displayName": "Engineers", "externalId": "g-1"},
    )
    assert group.status_code == 201, group.text
    gid = group.json()["id"]
    r = s.call(
        "PATCH",
        f"/Groups/{gid}",
        patch({"op": "Add", "path": "members", "value": [{"value": created["id"]}]}),
    )
    assert r.status_code == 200 and [m["value"] for m in r.json()["members"]] == [created["id"]]
    r = s.call(
        "PATCH",
        f"/Groups/{gid}",
        patch({"op": "Remove", "path": "members", "value": [{"value": created["id"]}]}),
    )
    assert r.status_code == 200 and "members" not in r.json()
    listed = s.call("GET", '/Groups?excludedAttributes=members&filter=displayName eq "engineers"').json()
    assert [g["id"] for g in listed["Resources"]] == [gid]


# ---------------------------------------------------------------------- Okta
def test_okta_sequence(scim_server: Scim) -> None:
    """What Okta sends: @okta.local addresses, PUT for every update (carrying id, meta and
    groups), active=false for deactivation, group member removal by filter."""
    s = scim_server
    body = {
        "schemas": [USER],
        "userName": "bob@example.test",
        "name": {"givenName": "Bob", "familyName": "Stone"},
        "emails": [{"primary": True, "value": "bob@okta.local", "type": "work"}],
        "displayName": "Bob Stone",
        "locale": "en-US",
        "externalId": "00u1",
        "groups": [],
        "password": "never-stored-1A!",
        "active": True,
    }
    r = s.call("POST", "/Users", body)
    assert r.status_code == 201, r.text
    user = r.json()
    assert "password" not in user and user["emails"][0]["value"] == "bob@okta.local"
    page = s.call("GET", "/Users?startIndex=1&count=100").json()
    assert page["totalResults"] == 1 and page["itemsPerPage"] == 1
    put = {**user, "displayName": "Robert Stone", "groups": [], "active": True}
    r = s.call("PUT", f"/Users/{user['id']}", put, **{"If-Match": user["meta"]["version"]})
    assert r.status_code == 200 and r.json()["displayName"] == "Robert Stone"
    stale = s.call("PUT", f"/Users/{user['id']}", put, **{"If-Match": user["meta"]["version"]})
    assert_error(stale, 412)
    r = s.call("PUT", f"/Users/{user['id']}", {**put, "active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    assert member(s, "bob@example.test") == (Role.MEMBER, UserStatus.DISABLED)

    g = s.call(
        "POST", "/Groups", {"schemas": [GROUP], "displayName": "Ops", "members": [{"value": user["id"]}]}
    )
    assert g.status_code == 201 and len(g.json()["members"]) == 1
    r = s.call(
        "PATCH",
        f"/Groups/{g.json()['id']}",
        patch(
            {"op": "replace", "value": {"id": g.json()["id"], "displayName": "Operations"}},
            {"op": "remove", "path": f'members[value eq "{user["id"]}"]'},
        ),
    )
    assert r.status_code == 200, r.text
    assert r.json()["displayName"] == "Operations" and "members" not in r.json()


# ---------------------------------------------------------------------- deactivation
def test_deactivation_kills_every_token_and_reactivation_does_not_revive_them(scim_server: Scim) -> None:
    s = scim_server
    created = s.create_user("leaver@acme.test")
    _, pat = s.server.pat_for("leaver@acme.test", scope="vso.code")
    assert s.server.client.get("/api/v1/validate", headers=s.server.auth(pat)).status_code == 200
    r = s.call("PATCH", f"/Users/{created['id']}", patch({"op": "replace", "path": "active", "value": False}))
    assert r.status_code == 200
    assert s.server.client.get("/api/v1/validate", headers=s.server.auth(pat)).status_code == 401
    r = s.call("PATCH", f"/Users/{created['id']}", patch({"op": "replace", "path": "active", "value": True}))
    assert r.status_code == 200 and r.json()["active"] is True
    assert member(s, "leaver@acme.test") == (Role.MEMBER, UserStatus.ACTIVE)
    assert s.server.client.get("/api/v1/validate", headers=s.server.auth(pat)).status_code == 401
    # DELETE: offboarded and the membership removed; the identity stays for the audit trail
    assert s.call("DELETE", f"/Users/{created['id']}").status_code == 204
    assert member(s, "leaver@acme.test") is None
    assert_error(s.call("GET", f"/Users/{created['id']}"), 404)


# ---------------------------------------------------------------------- groups and admins
def test_admin_group_promotes_and_demotes_only_whom_it_appointed(scim_server: Scim) -> None:
    s = scim_server
    s.server.container.scim.configure(OPERATOR, s.server.org, "TW Admins")
    alice = s.create_user("alice@acme.test")
    s.server.add_member("carol@acme.test", role="admin")  # appointed by hand
    carol = s.create_user("carol@acme.test")  # adopted: already a member of this organization
    g = s.call(
        "POST",
        "/Groups",
        {
            "schemas": [GROUP],
            "displayName": "tw admins",
            "members": [{"value": alice["id"]}, {"value": carol["id"]}],
        },
    )
    assert g.status_code == 201, g.text
    assert member(s, "alice@acme.test") == (Role.ADMIN, UserStatus.ACTIVE)
    r = s.call("PATCH", f"/Groups/{g.json()['id']}", patch({"op": "remove", "path": "members"}))
    assert r.status_code == 200, r.text
    assert member(s, "alice@acme.test") == (Role.MEMBER, UserStatus.ACTIVE)
    assert member(s, "carol@acme.test") == (Role.ADMIN, UserStatus.ACTIVE)


# ---------------------------------------------------------------------- the door and tenancy
def test_only_this_organizations_provisioning_token_gets_in(scim_server: Scim) -> None:
    s = scim_server
    c = s.server.client
    for headers in (
        {},
        s.server.auth(),
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {s.token}"},
    ):
        assert_error(c.get(f"{s.base}/Users", headers=headers), 401)
    other = s.server.container.directory.add_org("Globex", "boss@globex.test")
    globex_token = s.server.container.scim.create_token(OPERATOR, "Globex").secret
    assert_error(c.get(f"{s.base}/Users", headers={"Authorization": f"Bearer {globex_token}"}), 401)
    assert_error(c.get("/scim/v2/NoSuchOrg/Users", headers={"Authorization": f"Bearer {s.token}"}), 401)
    # Globex's user is invisible through Acme's URL, and Globex's identities cannot be taken over
    globex = Scim(s.server, globex_token)
    globex.server = s.server
    r = c.post(
        f"/scim/v2/{other.org.name}/Users",
        json={"schemas": [USER], "userName": "eve@globex.test"},
        headers={"Authorization": f"Bearer {globex_token}"},
    )
    assert r.status_code == 201, r.text
    assert_error(s.call("GET", f"/Users/{r.json()['id']}"), 404)
    assert_error(
        s.call("POST", "/Users", {"schemas": [USER], "userName": "boss@globex.test"}), 409, "uniqueness"
    )
    # a revoked provisioning token stops at once
    record = s.server.container.scim.tokens(OPERATOR, s.server.org)[0]
    s.server.container.scim.revoke_token(OPERATOR, s.server.org, record.authorization_id)
    assert_error(s.call("GET", "/Users"), 401)


def test_bad_input_gets_its_scim_error(scim_server: Scim) -> None:
    s = scim_server
    user = s.create_user("x@acme.test")
    assert_error(
        s.call("POST", "/Users", {"schemas": [USER], "userName": "y@acme.test", "shoeSize": 4}),
        400,
        "invalidSyntax",
    )
    assert_error(s.call("GET", "/Users?filter=userName eq"), 400, "invalidFilter")
    assert_error(s.call("GET", '/Users?filter=title co "x"'), 400, "invalidFilter")
    assert_error(
        s.call("PATCH", f"/Users/{user['id']}", patch({"op": "replace", "path": "id", "value": "z"})),
        400,
        "mutability",
    )
    assert_error(
        s.call("PATCH", f"/Users/{user['id']}", patch({"op": "explode", "path": "title"})),
        400,
        "invalidValue",
    )
    assert_error(s.call("POST", "/Users", {"schemas": [USER], "userName": "X@ACME.test"}), 409, "uniqueness")
    assert_error(s.call("POST", "/Users", [1, 2]), 400, "invalidSyntax")
    r = s.server.client.post(
        f"{s.base}/Users", content=b"{not json", headers={"Authorization": f"Bearer {s.token}"}
    )
    assert_error(r, 400, "invalidValue")
    assert_error(
        s.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "G", "members": [{"value": "nobody"}]}),
        400,
        "invalidValue",
    )
    assert_error(s.call("GET", "/Users?count=abc"), 400, "invalidValue")
    assert_error(s.call("GET", "/Nothing"), 404)
    assert_error(s.call("DELETE", "/Schemas"), 405)
    not_modified = s.call("GET", f"/Users/{user['id']}", **{"If-None-Match": user["meta"]["version"]})
    assert not_modified.status_code == 304


# ---------------------------------------------------------------------- the compliance checker
@pytest.mark.slow
def test_scim2_tester_finds_no_failure(tmp_path: Path) -> None:
    """scim2-tester (through scim2-cli) against a live `tokenwarden serve`: discovery, every
    resource operation, every writable attribute, filters, PATCH; its exit code is 0 only
    when no check failed."""
    from tests.e2e.conftest import live, run_cli

    for server in live(tmp_path):
        made = run_cli(["scim", "token", "create", "--org", server.org, "--json"], server.env, tmp_path)
        assert made.returncode == 0, made.stderr
        token = json.loads(made.stdout)["token"]
        env = {**server.env, "SCIM_CLI_HEADERS": f"Authorization: Bearer {token}", "NO_COLOR": "1"}
        exe = Path(sys.executable).parent / "scim2"
        result = subprocess.run(
            [str(exe), "--url", f"{server.base_url}/scim/v2/{server.org}", "test"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        report = result.stdout + result.stderr
        failures = [line for line in report.splitlines() if line.startswith(("ERROR", "CRITICAL", "FAIL"))]
        assert result.returncode == 0 and not failures, report[-4000:]
        assert report.count("SUCCESS") >= 100, report[-2000:]  # it really ran its checks


def test_the_enterprise_manager_is_the_leavers_successor_and_writes_are_audited(scim_server: Scim) -> None:
    from tokenwarden.domain.audit import AuditEventType
    from tokenwarden.ports.repositories import AuditQuery

    s = scim_server
    boss = s.create_user("boss@acme.test")
    leaver = s.create_user(
        "quitter@acme.test", schemas=[USER, ENTERPRISE], **{ENTERPRISE: {"manager": {"value": boss["id"]}}}
    )
    deactivate = patch({"op": "Replace", "path": "active", "value": "False"})
    r = s.call("PATCH", f"/Users/{leaver['id']}", deactivate)
    assert r.status_code == 200, r.text
    with s.server.container.uow() as uow:
        entries = uow.audit.query(AuditQuery(org_id=s.server.org_id, limit=1000))
    events = [e.event_type for e in entries]
    assert events.count(AuditEventType.SCIM_USER_CREATE.value) == 2
    assert AuditEventType.SCIM_USER_PATCH.value in events
    [offboard] = [e for e in entries if e.event_type == AuditEventType.USER_OFFBOARD.value]
    assert offboard.details["successor"] == "boss@acme.test", offboard.details
    assert all(s.token not in str(e.details) for e in entries)  # the provisioning secret never
