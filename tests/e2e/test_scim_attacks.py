"""An attacker's pass on SCIM 2.0 at /scim/v2/{org}: tenancy between two organizations, the
provisioning-token-only door, hostile bodies, filters and paging, ETags, re-provisioning after a
DELETE, admin-group escalation, read-only attributes. Each probe asserts what RFC 7643/7644 (and
docs/scim.md, docs/compat.md) say the answer is; nothing may ever answer 500.

One server (a real app over a SQLite file) serves the whole module; every test uses names of its
own, so the order of the tests does not matter."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import Server, make_settings, start
from tokenwarden.domain.errors import DomainError
from tokenwarden.domain.principals import Role, UserStatus
from tokenwarden.services.common import OPERATOR

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ADMIN_GROUP = "TW Admins"

_seq = itertools.count(1)


def uniq(prefix: str, domain: str = "acme.test") -> str:
    return f"{prefix}-{next(_seq)}@{domain}"


@dataclass
class Door:
    """One organization's SCIM endpoint as a provisioning client sees it."""

    client: TestClient
    org: str
    token: str

    @property
    def base(self) -> str:
        return f"/scim/v2/{self.org}"

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        org: str | None = None,
        content: bytes | None = None,
        **headers: str,
    ) -> httpx.Response:
        h = {"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/scim+json"}
        h.update(headers)
        url = f"/scim/v2/{org or self.org}{path}"
        if content is not None:
            r = self.client.request(method, url, content=content, headers=h)
        else:
            r = self.client.request(method, url, json=body, headers=h)
        assert r.status_code != 500, f"{method} {url} -> 500: {r.text[:500]}"
        return r

    def create_user(self, user_name: str, **extra: Any) -> dict[str, Any]:
        r = self.call("POST", "/Users", {"schemas": [USER], "userName": user_name, "active": True, **extra})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def create_group(self, name: str, *members: str, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [GROUP], "displayName": name, **extra}
        if members:
            body["members"] = [{"value": m} for m in members]
        r = self.call("POST", "/Groups", body)
        assert r.status_code == 201, r.text
        return dict(r.json())


@dataclass
class World:
    server: Server
    acme: Door
    globex: Door
    globex_id: str

    def validate(self, secret: str, org: str = "Acme") -> int:
        r = self.server.client.get(f"/api/v1/validate?org={org}", headers=self.server.auth(secret))
        return r.status_code

    def membership(self, upn: str, org_id: str | None = None) -> tuple[Role, UserStatus] | None:
        with self.server.container.uow() as uow:
            user = uow.users.by_upn(upn)
            m = uow.users.membership(org_id or self.server.org_id, user.id) if user else None
        return (m.role, m.status) if m else None


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def err(r: httpx.Response, status: int, *scim_types: str | None) -> dict[str, Any]:
    """``r`` is a SCIM Error of ``status`` whose ``scimType`` is one of ``scim_types`` (none given:
    no scimType)."""
    assert r.status_code == status, f"{r.status_code}: {r.text[:600]}"
    assert r.headers["content-type"].startswith("application/scim+json"), r.headers
    body = r.json()
    assert body["schemas"] == [ERROR], body
    assert body["status"] == str(status), body
    allowed = scim_types or (None,)
    assert body.get("scimType") in allowed, body
    return dict(body)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("scim_attacks")
    for server in start(make_settings(tmp)):
        c = server.container
        globex = c.directory.add_org("Globex", "boss@globex.test")
        acme_token = c.scim.create_token(OPERATOR, server.org).secret
        globex_token = c.scim.create_token(OPERATOR, "Globex").secret
        yield World(
            server,
            Door(server.client, server.org, acme_token),
            Door(server.client, "Globex", globex_token),
            globex.org.id,
        )


# ====================================================================== tenancy
def test_acme_token_on_globex_urls_is_refused_without_leaking(world: World) -> None:
    """Org A's provisioning token on /scim/v2/B/...: every operation 401, nothing of B in the
    answer, and B's user untouched."""
    a, b = world.acme, world.globex
    name = uniq("victim", "globex.test")
    victim = b.create_user(name, displayName="Victim Globex")
    vid = victim["id"]
    group = b.create_group(f"globex-grp-{next(_seq)}", vid)
    attempts = [
        ("GET", "/Users", None),
        ("GET", f'/Users?filter=userName eq "{name}"', None),
        ("GET", f"/Users/{vid}", None),
        ("PUT", f"/Users/{vid}", {"schemas": [USER], "userName": name, "active": False}),
        ("PATCH", f"/Users/{vid}", patch({"op": "replace", "path": "active", "value": False})),
        ("DELETE", f"/Users/{vid}", None),
        ("POST", "/Users", {"schemas": [USER], "userName": uniq("planted", "globex.test")}),
        ("GET", "/Groups", None),
        ("GET", f"/Groups/{group['id']}", None),
        ("PATCH", f"/Groups/{group['id']}", patch({"op": "remove", "path": "members"})),
        ("DELETE", f"/Groups/{group['id']}", None),
        ("POST", "/Users/.search", {"schemas": [SEARCH], "filter": f'id eq "{vid}"'}),
        ("POST", "/.search", {"schemas": [SEARCH]}),
        ("GET", "/ServiceProviderConfig", None),
    ]
    for method, path, body in attempts:
        for org in ("Globex", world.globex_id):  # by name and by id
            r = a.call(method, path, body, org=org)
            assert r.status_code in (401, 403, 404), (method, path, r.status_code, r.text)
            err(r, r.status_code, None)
            assert vid not in r.text and name not in r.text and "Victim" not in r.text, r.text
    # B's user and group are as B wrote them
    r = b.call("GET", f"/Users/{vid}")
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    assert r.json()["meta"]["version"] == victim["meta"]["version"]
    g = b.call("GET", f"/Groups/{group['id']}")
    assert g.status_code == 200 and [m["value"] for m in g.json()["members"]] == [vid]
    assert world.membership(name, world.globex_id) == (Role.MEMBER, UserStatus.ACTIVE)
    listing = b.call("GET", "/Users?count=1000").json()
    assert all(not u["userName"].startswith("planted-") for u in listing["Resources"])


def test_the_refusal_is_the_same_whether_the_org_exists_or_not(world: World) -> None:
    a = world.acme
    real = a.call("GET", "/Users", org="Globex")
    ghost = a.call("GET", "/Users", org="NoSuchOrg-xyz")
    err(real, 401)
    err(ghost, 401)
    assert real.json() == ghost.json()
    assert real.headers.get("www-authenticate") == ghost.headers.get("www-authenticate")


def test_acme_ids_are_404_through_globex_url_with_globex_token(world: World) -> None:
    a, b = world.acme, world.globex
    name = uniq("acme-only")
    user = a.create_user(name)
    group = a.create_group(f"acme-grp-{next(_seq)}", user["id"])
    uid, gid = user["id"], group["id"]
    err(b.call("GET", f"/Users/{uid}"), 404)
    err(b.call("PUT", f"/Users/{uid}", {"schemas": [USER], "userName": name, "active": False}), 404)
    err(b.call("PATCH", f"/Users/{uid}", patch({"op": "replace", "path": "active", "value": False})), 404)
    err(b.call("DELETE", f"/Users/{uid}"), 404)
    err(b.call("GET", f"/Groups/{gid}"), 404)
    err(b.call("PATCH", f"/Groups/{gid}", patch({"op": "remove", "path": "members"})), 404)
    err(b.call("DELETE", f"/Groups/{gid}"), 404)
    for flt in (f'id eq "{uid}"', f'userName eq "{name}"'):
        r = b.call("GET", f"/Users?filter={flt}")
        assert r.status_code == 200 and r.json()["totalResults"] == 0, r.text
    r = b.call("POST", "/.search", {"schemas": [SEARCH], "filter": f'id eq "{gid}"'})
    assert r.status_code == 200 and r.json()["totalResults"] == 0, r.text
    # Acme's user and group are untouched
    assert a.call("GET", f"/Users/{uid}").json()["active"] is True
    assert [m["value"] for m in a.call("GET", f"/Groups/{gid}").json()["members"]] == [uid]


def test_a_group_cannot_hold_members_of_another_organization(world: World) -> None:
    a, b = world.acme, world.globex
    outsider = b.create_user(uniq("outsider", "globex.test"))
    insider = a.create_user(uniq("insider"))
    oid = outsider["id"]
    r = a.call(
        "POST", "/Groups", {"schemas": [GROUP], "displayName": "x-tenant", "members": [{"value": oid}]}
    )
    err(r, 400, "invalidValue")
    group = a.create_group(f"acme-x-{next(_seq)}", insider["id"])
    gid = group["id"]
    add = patch({"op": "add", "path": "members", "value": [{"value": oid}]})
    err(a.call("PATCH", f"/Groups/{gid}", add), 400, "invalidValue")
    put = {"schemas": [GROUP], "displayName": group["displayName"], "members": [{"value": oid}]}
    err(a.call("PUT", f"/Groups/{gid}", put), 400, "invalidValue")
    nested = patch({"op": "add", "path": "members", "value": [{"value": gid, "type": "Group"}]})
    err(a.call("PATCH", f"/Groups/{gid}", nested), 400, "invalidValue")
    r = a.call("GET", f"/Groups/{gid}")
    assert [m["value"] for m in r.json()["members"]] == [insider["id"]]
    assert r.json()["meta"]["version"] == group["meta"]["version"]  # every refused write left no trace
    # Globex's user shows no Acme group
    assert "groups" not in b.call("GET", f"/Users/{oid}").json()


@pytest.mark.parametrize("how", ["deactivate", "delete"])
def test_offboarding_in_one_org_leaves_the_identity_alone_in_another(world: World, how: str) -> None:
    """An identity Acme provisioned and the operator also enrolled in Globex: Acme's
    deactivation or DELETE offboards it in Acme only; its Globex PAT (and an all-orgs PAT, in
    Globex) keeps working, its Globex membership stays."""
    a = world.acme
    name = uniq(f"shared-{how}")
    user = a.create_user(name)
    c = world.server.container
    c.directory.add_user(OPERATOR, "Globex", name)
    days = c.clock.now() + timedelta(days=5)
    globex_pat = c.pats.create(
        OPERATOR, org="Globex", user=name, display_name="globex", scope="vso.code", valid_to=days
    ).secret
    everywhere = c.pats.create(
        OPERATOR, org="Acme", user=name, display_name="all", scope="vso.code", valid_to=days, all_orgs=True
    ).secret
    assert world.validate(globex_pat, "Globex") == 200
    assert world.validate(everywhere, "Acme") == 200 and world.validate(everywhere, "Globex") == 200
    if how == "delete":
        assert a.call("DELETE", f"/Users/{user['id']}").status_code == 204
        assert world.membership(name) is None
    else:
        off = patch({"op": "replace", "path": "active", "value": False})
        assert a.call("PATCH", f"/Users/{user['id']}", off).status_code == 200
        assert world.membership(name) == (Role.MEMBER, UserStatus.DISABLED)
    assert world.validate(everywhere, "Acme") == 401
    assert world.membership(name, world.globex_id) == (Role.MEMBER, UserStatus.ACTIVE)
    assert world.validate(globex_pat, "Globex") == 200
    assert world.validate(everywhere, "Globex") == 200


# ====================================================================== the door
def test_other_credentials_are_401(world: World) -> None:
    a = world.acme
    s = world.server
    member = uniq("pat-holder")
    s.add_member(member)
    _, member_pat = s.pat_for(member, scope="vso.code")
    bad_checksum = a.token[:-1] + ("A" if a.token[-1] != "A" else "B")
    for header in (
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer twc_" + "0" * 40,
        f"Bearer {bad_checksum}",
        f"Basic {a.token}",
        f"Token {a.token}",
        f"Bearer {s.admin_token}",  # full-access admin PAT
        f"Bearer {member_pat}",
        f"Bearer {a.token} extra",
        "Bearer \u00e9\u00e9".encode(),
    ):
        headers: dict[str, str | bytes] = {} if header is None else {"Authorization": header}
        for method, path, body in (
            ("GET", "/Users", None),
            ("POST", "/Users", {"schemas": [USER], "userName": uniq("nope")}),
            ("GET", "/ServiceProviderConfig", None),
        ):
            r = s.client.request(method, f"{a.base}{path}", json=body, headers=headers)
            err(r, 401)
            assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers


def test_a_pat_carrying_the_scim_scope_is_not_a_provisioning_token(world: World) -> None:
    s = world.server
    try:
        _, pat = s.pat_for(s.admin_upn, scope="scim.provision")
    except DomainError:
        return  # the catalog refuses to mint it at all: nothing to probe
    err(world.acme.call("GET", "/Users", token=pat), 401)


def test_a_revoked_provisioning_token_is_401_at_once(world: World) -> None:
    c = world.server.container
    issued = c.scim.create_token(OPERATOR, "Acme")
    a = world.acme
    assert a.call("GET", "/Users?count=1", token=issued.secret).status_code == 200
    c.scim.revoke_token(OPERATOR, "Acme", issued.record.authorization_id)
    err(a.call("GET", "/Users?count=1", token=issued.secret), 401)
    err(a.call("POST", "/Users", {"schemas": [USER], "userName": uniq("late")}, token=issued.secret), 401)
    assert a.call("GET", "/Users?count=1").status_code == 200  # the other token lives on


def test_the_provisioning_token_opens_no_other_api(world: World) -> None:
    s, a = world.server, world.acme
    for method, path, body in (
        ("GET", "/api/v1/orgs/Acme/users", None),
        ("GET", "/api/v1/orgs/Acme/audit", None),
        ("GET", "/Acme/_apis/tokens/pats?api-version=7.1-preview.1", None),
        (
            "POST",
            "/Acme/_apis/tokens/pats?api-version=7.1-preview.1",
            {"displayName": "x", "scope": "vso.code"},
        ),
        ("GET", "/graph/v1.0/me", None),
    ):
        r = s.client.request(method, path, json=body, headers=s.auth(a.token))
        assert r.status_code in (401, 403), (method, path, r.status_code, r.text)
    r = s.client.get("/api/v1/validate?org=Acme&scope=vso.code", headers=s.auth(a.token))
    assert r.status_code in (401, 403), r.text


def test_the_provisioning_token_reaches_nothing_but_scim(world: World) -> None:
    s, a = world.server, world.acme
    for path in ("/api/v1/me", "/api/v1/orgs"):
        r = s.client.get(path, headers=s.auth(a.token))
        assert r.status_code in (401, 403), (path, r.status_code, r.text)


def test_an_unauthenticated_body_is_refused_before_it_is_parsed(world: World) -> None:
    """Authentication comes first: without a credential, a broken body is 401 too (a client
    without a token learns nothing of how the body is parsed)."""
    s, a = world.server, world.acme
    for path in ("/Users", "/Groups", "/Users/.search", "/.search"):
        r = s.client.post(
            f"{a.base}{path}", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        err(r, 401)


# ====================================================================== hostile bodies
def test_bodies_that_are_not_a_json_object(world: World) -> None:
    a = world.acme
    for raw in (b"{not json", b"\xff\xfe\x00", b"<xml/>", b"null", b"", b"   "):
        r = a.call("POST", "/Users", content=raw)
        # RFC 7644 Table 9 names invalidSyntax; docs/compat.md chose invalidValue for malformed JSON
        err(r, 400, "invalidSyntax", "invalidValue")
    for body in ([1, 2], [{"schemas": [USER], "userName": uniq("arr")}], "a string", 42, True):
        err(a.call("POST", "/Users", body), 400, "invalidSyntax")
    user = a.create_user(uniq("target"))
    for method in ("PUT", "PATCH"):
        err(a.call(method, f"/Users/{user['id']}", [1]), 400, "invalidSyntax")
        err(a.call(method, f"/Users/{user['id']}", content=b"{"), 400, "invalidSyntax", "invalidValue")
    # a lone surrogate is valid JSON but no text
    r = a.call(
        "POST", "/Users", content=b'{"schemas":["' + USER.encode() + b'"],"userName":"\\ud800@a.test"}'
    )
    err(r, 400, "invalidValue", "invalidSyntax")


def test_a_huge_body_is_413(world: World) -> None:
    a = world.acme
    big = json.dumps({"schemas": [USER], "userName": uniq("huge"), "nickName": "x" * (5 * 1024 * 1024)})
    r = a.call("POST", "/Users", content=big.encode())
    err(r, 413)

    def chunks() -> Iterator[bytes]:
        data = big.encode()
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    h = {"Authorization": f"Bearer {a.token}", "Content-Type": "application/scim+json"}
    r = world.server.client.post(f"{a.base}/Users", content=chunks(), headers=h)
    err(r, 413)
    assert (
        a.call("GET", f'/Users?filter=userName eq "{json.loads(big)["userName"]}"').json()["totalResults"]
        == 0
    )


def test_deeply_nested_json_is_400(world: World) -> None:
    a = world.acme
    user = a.create_user(uniq("deep-target"))
    for depth in (50_000, 900, 200):
        nested_list = "[" * depth + "]" * depth
        nested_obj = '{"a":' * depth + "1" + "}" * depth
        for deep in (nested_list, nested_obj):
            top = f'{{"schemas":["{USER}"],"userName":"{uniq("deep")}","nickName":{deep}}}'
            err(a.call("POST", "/Users", content=top.encode()), 400, "invalidValue", "invalidSyntax")
            ext = f'{{"schemas":["{USER}"],"userName":"{uniq("deep")}","name":{{"givenName":{deep}}}}}'
            err(a.call("POST", "/Users", content=ext.encode()), 400, "invalidValue", "invalidSyntax")
            op = f'{{"schemas":["{PATCH}"],"Operations":[{{"op":"replace","value":{{"nickName":{deep}}}}}]}}'
            r = a.call("PATCH", f"/Users/{user['id']}", content=op.encode())
            err(r, 400, "invalidValue", "invalidSyntax")
    assert a.call("GET", f"/Users/{user['id']}").json()["meta"]["version"] == user["meta"]["version"]


def test_unknown_attributes_are_invalid_syntax(world: World) -> None:
    a = world.acme
    for extra in (
        {"shoeSize": 4},
        {"name": {"givenName": "A", "shoeSize": 4}},
        {"emails": [{"value": "a@a.test", "shoeSize": 4}]},
    ):
        body = {"schemas": [USER], "userName": uniq("unknown"), **extra}
        err(a.call("POST", "/Users", body), 400, "invalidSyntax")
    evil = "urn:evil:params:scim:schemas:extension:x:2.0:User"
    body = {"schemas": [USER, evil], "userName": uniq("unknown"), evil: {"isAdmin": True}}
    r = a.call("POST", "/Users", body)
    err(r, 400, "invalidSyntax", "invalidValue")


def test_wrong_types_are_invalid_value(world: World) -> None:
    a = world.acme
    for extra in (
        {"userName": 12345},
        {"userName": ["a@a.test"]},
        {"userName": {"value": "a@a.test"}},
        {"userName": True},
        {"active": "maybe"},
        {"active": 2},
        {"active": [True]},
        {"emails": "a@a.test"},
        {"name": "Ada"},
        {"displayName": {"a": 1}},
    ):
        body = {"schemas": [USER], "userName": uniq("types"), **extra}
        r = a.call("POST", "/Users", body)
        err(r, 400, "invalidValue")
    user = a.create_user(uniq("types-target"))
    for op in (
        {"op": "replace", "path": "active", "value": "maybe"},
        {"op": "replace", "path": "userName", "value": 42},
        {"op": "replace", "path": "emails", "value": "x"},
    ):
        err(a.call("PATCH", f"/Users/{user['id']}", patch(op)), 400, "invalidValue")
    assert a.call("GET", f"/Users/{user['id']}").json()["meta"]["version"] == user["meta"]["version"]


def test_schemas_of_the_wrong_type_is_refused(world: World) -> None:
    a = world.acme
    err(
        a.call("POST", "/Users", {"schemas": USER, "userName": uniq("str")}),
        400,
        "invalidSyntax",
        "invalidValue",
    )
    err(
        a.call("POST", "/Users", {"schemas": [1], "userName": uniq("int")}),
        400,
        "invalidSyntax",
        "invalidValue",
    )


def test_missing_schemas_is_refused(world: World) -> None:
    a = world.acme
    for schemas in (None, [], ["urn:example:not-a-user"]):
        body: dict[str, Any] = {"userName": uniq("no-schemas")}
        if schemas is not None:
            body["schemas"] = schemas
        err(a.call("POST", "/Users", body), 400, "invalidSyntax", "invalidValue")
    user = a.create_user(uniq("no-schemas-patch"))
    body = {"Operations": [{"op": "replace", "path": "nickName", "value": "x"}]}
    err(a.call("PATCH", f"/Users/{user['id']}", body), 400, "invalidSyntax", "invalidValue")


def test_missing_or_empty_user_name_is_invalid_value(world: World) -> None:
    a = world.acme
    for extra in ({}, {"userName": ""}, {"userName": "   "}, {"userName": None}, {"userName": "\t\n"}):
        body = {"schemas": [USER], "displayName": "nameless", **extra}
        err(a.call("POST", "/Users", body), 400, "invalidValue")
    for bad in (
        "a\x00b@acme.test",
        "a\u202eb@acme.test",
        "x" * 5000 + "@acme.test",
        "a@b@c",
        "a b@acme.test",
    ):
        err(a.call("POST", "/Users", {"schemas": [USER], "userName": bad}), 400, "invalidValue")


def test_duplicate_user_name_is_409_uniqueness(world: World) -> None:
    a = world.acme
    name = uniq("dup")
    a.create_user(name)
    local, domain = name.split("@")
    for variant in (name, name.upper(), f"{local.capitalize()}@{domain.upper()}", f" {name}", f"{name} "):
        err(a.call("POST", "/Users", {"schemas": [USER], "userName": variant}), 409, "uniqueness")
    cafe = f"caf\u00e9-{next(_seq)}"  # NFC and NFD spellings are one userName
    a.create_user(cafe)
    err(
        a.call("POST", "/Users", {"schemas": [USER], "userName": cafe.replace("\u00e9", "e\u0301")}),
        409,
        "uniqueness",
    )
    found = a.call("GET", f'/Users?filter=userName eq "{name}"').json()
    assert found["totalResults"] == 1


def test_concurrent_creates_of_one_user_name_make_exactly_one(world: World) -> None:
    a = world.acme
    name = uniq("race")
    body = {"schemas": [USER], "userName": name}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: a.call("POST", "/Users", body), range(8)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 1, [(r.status_code, r.text[:200]) for r in results]
    for r in results:
        if r.status_code != 201:
            err(r, 409, "uniqueness")
    assert a.call("GET", f'/Users?filter=userName eq "{name}"').json()["totalResults"] == 1


def test_rename_into_an_existing_user_name_is_409_uniqueness(world: World) -> None:
    a = world.acme
    taken = uniq("taken")
    a.create_user(taken)
    mover = a.create_user(uniq("mover"), displayName="Mover")
    mid = mover["id"]
    for target in (taken, taken.upper(), f"{taken} ", "boss@globex.test"):
        put = {"schemas": [USER], "userName": target, "active": True}
        err(a.call("PUT", f"/Users/{mid}", put), 409, "uniqueness")
        op = patch({"op": "replace", "path": "userName", "value": target})
        err(a.call("PATCH", f"/Users/{mid}", op), 409, "uniqueness")
        pathless = patch({"op": "replace", "value": {"userName": target}})
        err(a.call("PATCH", f"/Users/{mid}", pathless), 409, "uniqueness")
    now = a.call("GET", f"/Users/{mid}").json()
    assert now["userName"] == mover["userName"] and now["meta"]["version"] == mover["meta"]["version"]
    assert world.membership("boss@globex.test", world.globex_id) == (Role.ADMIN, UserStatus.ACTIVE)


def test_the_provisioning_principal_cannot_be_provisioned(world: World) -> None:
    """The SCIM principal is a service identity: SCIM cannot adopt it (and then put it in the
    admin group)."""
    c = world.server.container
    with c.uow() as uow:
        config = uow.scim.config(world.server.org_id)
        principal = uow.users.get(config.principal_id)
    assert principal is not None
    r = world.acme.call("POST", "/Users", {"schemas": [USER], "userName": principal.upn})
    err(r, 409, "uniqueness")
    assert world.membership(principal.upn) == (Role.MEMBER, UserStatus.ACTIVE)


# ====================================================================== filters and paging
MALFORMED_FILTERS = [
    "userName eq",
    'userName xx "a"',
    'userName eq "a',
    'userName eq a"',
    '(userName eq "a"',
    'userName eq "a")',
    "and",
    'userName eq "a" and',
    'userName eq "a" or',
    "(" * 5000 + 'userName eq "a"' + ")" * 4999,
    "not(" * 3000 + 'userName eq "a"' + ")" * 3000,
    'emails[type eq "work"' * 500,
    "\x00",
    '"',
]
UNSUPPORTED_FILTERS = [
    'title eq "x"',
    'userName co "a"',
    'userName sw "a"',
    "userName pr",
    'userName eq "a" or userName eq "b"',
    'emails.value eq "a@a.test"',
    'emails[type eq "work"]',
    'meta.lastModified gt "2020-01-01T00:00:00Z"',
    'not (userName eq "a")',
    'password eq "x"',
    "active eq true",
    "userName eq 1",
]


@pytest.mark.parametrize("flt", MALFORMED_FILTERS + UNSUPPORTED_FILTERS, ids=lambda f: repr(f)[:40])
def test_bad_filters_are_invalid_filter(world: World, flt: str) -> None:
    a = world.acme
    r = a.client.get(
        f"{a.base}/Users", params={"filter": flt}, headers={"Authorization": f"Bearer {a.token}"}
    )
    assert r.status_code != 500, r.text
    err(r, 400, "invalidFilter")
    r = a.call("POST", "/Users/.search", {"schemas": [SEARCH], "filter": flt})
    err(r, 400, "invalidFilter")


def test_a_very_long_filter_is_answered_not_crashed(world: World) -> None:
    a = world.acme
    h = {"Authorization": f"Bearer {a.token}"}
    long_value = 'userName eq "' + "a" * 20_000 + '"'
    r = a.client.get(f"{a.base}/Users", params={"filter": long_value}, headers=h)
    assert r.status_code in (200, 400), r.text[:300]
    if r.status_code == 200:
        assert r.json()["totalResults"] == 0
    else:
        err(r, 400, "invalidFilter", "invalidValue", "tooMany")
    for flt in (
        " and ".join(f'userName eq "u{i}"' for i in range(5000)),
        "(" * 5000 + 'userName eq "a"' + ")" * 5000,  # valid, if absurd, grouping
    ):
        r = a.call("POST", "/Users/.search", {"schemas": [SEARCH], "filter": flt})
        assert r.status_code in (200, 400), r.text[:300]
        if r.status_code == 200:
            assert r.json()["totalResults"] == 0
        else:
            err(r, 400, "invalidFilter", "invalidValue", "tooMany")
    # values are compared, never interpreted (no LIKE wildcards, no SQL)
    a.create_user(uniq("wild"), externalId=f"ext-{next(_seq)}")
    for value in ("%", "_", "*", "' OR '1'='1", '\\"'):
        r = a.call("POST", "/Users/.search", {"schemas": [SEARCH], "filter": f'externalId eq "{value}"'})
        assert r.status_code in (200, 400), r.text[:300]
        if r.status_code == 200:
            assert r.json()["totalResults"] == 0, (value, r.text[:300])
    r = a.call("POST", "/Users/.search", {"schemas": [SEARCH], "filter": "x" * 200_000})
    err(r, 400, "invalidFilter")


def test_paging_clamps_or_refuses(world: World) -> None:
    a = world.acme
    for i in range(3):
        a.create_user(uniq(f"page{i}"))
    total = a.call("GET", "/Users?count=0").json()["totalResults"]
    assert total >= 3
    for index in ("0", "-1", "-99999"):
        r = a.call("GET", f"/Users?startIndex={index}&count=2")
        assert r.status_code == 200, r.text
        assert r.json()["startIndex"] == 1 and r.json()["itemsPerPage"] == 2
    for count in ("-5", "0"):
        r = a.call("GET", f"/Users?count={count}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["itemsPerPage"] == 0 and body.get("Resources", []) == [] and body["totalResults"] == total
    r = a.call("GET", "/Users?count=100000")
    assert r.status_code == 200 and r.json()["itemsPerPage"] == min(total, 1000)
    for bad in ("startIndex=abc", "count=abc", "count=1.5", "startIndex=1e3", "count=%00"):
        err(a.call("GET", f"/Users?{bad}"), 400, "invalidValue")
    for huge in (
        "startIndex=99999999999999999999999",
        "count=99999999999999999999999",
        "startIndex=9223372036854775808",
    ):
        r = a.call("GET", f"/Users?{huge}")
        assert r.status_code in (200, 400), r.text[:300]
        if r.status_code == 200:
            assert r.json()["itemsPerPage"] <= 1000
        else:
            err(r, 400, "invalidValue")
    r = a.call("GET", f"/Users?startIndex={total + 10}")
    assert r.status_code == 200 and r.json()["itemsPerPage"] == 0 and r.json()["totalResults"] == total
    for body in ({"startIndex": "abc"}, {"count": "abc"}, {"count": True}, {"count": 1.5}):
        err(a.call("POST", "/Users/.search", {"schemas": [SEARCH], **body}), 400, "invalidValue")
    r = a.call("POST", "/.search", {"schemas": [SEARCH], "startIndex": 10**30, "count": -(10**30)})
    assert r.status_code in (200, 400), r.text[:300]


def test_attribute_selection_is_not_a_way_in(world: World) -> None:
    a = world.acme
    user = a.create_user(uniq("attrs"), password="S3cret-pass!")
    for q in (
        "attributes=password",
        "attributes=password,userName",
        "excludedAttributes=id",
        "attributes=[[[",
    ):
        r = a.call("GET", f"/Users/{user['id']}?{q}")
        assert r.status_code in (200, 400), r.text
        assert "S3cret" not in r.text
        if r.status_code == 200:
            assert r.json()["id"] == user["id"]  # id is returned always (RFC 7643 §7)
        else:
            err(r, 400, "invalidValue", "invalidFilter", "invalidPath", "invalidSyntax")


# ====================================================================== ETags
def test_stale_etag_is_412_and_the_right_one_works(world: World) -> None:
    a = world.acme
    user = a.create_user(uniq("etag"))
    uid, v1 = user["id"], user["meta"]["version"]
    got = a.call("GET", f"/Users/{uid}")
    assert got.headers["etag"] == v1
    ok = a.call(
        "PATCH",
        f"/Users/{uid}",
        patch({"op": "replace", "path": "nickName", "value": "n1"}),
        **{"If-Match": v1},
    )
    assert ok.status_code == 200, ok.text
    v2 = ok.json()["meta"]["version"]
    assert v2 != v1 and ok.headers["etag"] == v2
    put = {"schemas": [USER], "userName": user["userName"], "nickName": "n2", "active": True}
    for method, body in (
        ("PUT", put),
        ("PATCH", patch({"op": "replace", "path": "nickName", "value": "bad"})),
    ):
        for stale in (v1, 'W/"999"', '"1"', "garbage", 'W/"abc"'):
            err(a.call(method, f"/Users/{uid}", body, **{"If-Match": stale}), 412)
    err(a.call("DELETE", f"/Users/{uid}", **{"If-Match": v1}), 412)
    assert a.call("GET", f"/Users/{uid}").json()["nickName"] == "n1"
    r = a.call("PUT", f"/Users/{uid}", put, **{"If-Match": v2})
    assert r.status_code == 200 and r.json()["nickName"] == "n2", r.text
    v3 = r.json()["meta"]["version"]
    r = a.call(
        "PATCH",
        f"/Users/{uid}",
        patch({"op": "replace", "path": "nickName", "value": "n3"}),
        **{"If-Match": f"{v1}, {v3}"},
    )
    assert r.status_code == 200, r.text
    r = a.call(
        "PATCH",
        f"/Users/{uid}",
        patch({"op": "replace", "path": "nickName", "value": "n4"}),
        **{"If-Match": "*"},
    )
    assert r.status_code == 200, r.text
    # If-None-Match with garbage is a normal read
    r = a.call("GET", f"/Users/{uid}", **{"If-None-Match": 'W/"nope", garbage'})
    assert r.status_code == 200
    group = a.create_group(f"etag-grp-{next(_seq)}")
    gv = group["meta"]["version"]
    renamed = patch({"op": "replace", "path": "displayName", "value": f"etag-grp-{next(_seq)}"})
    assert a.call("PATCH", f"/Groups/{group['id']}", renamed, **{"If-Match": gv}).status_code == 200
    err(a.call("PATCH", f"/Groups/{group['id']}", renamed, **{"If-Match": gv}), 412)
    err(a.call("DELETE", f"/Groups/{group['id']}", **{"If-Match": gv}), 412)


# ====================================================================== re-provisioning after DELETE
def test_repost_after_delete_never_revives_old_tokens(world: World) -> None:
    a, s = world.acme, world.server
    name = uniq("reborn")
    first = a.create_user(name)
    _, pat = s.pat_for(name, scope="vso.code")
    assert world.validate(pat) == 200
    assert a.call("DELETE", f"/Users/{first['id']}").status_code == 204
    assert world.validate(pat) == 401
    err(a.call("GET", f"/Users/{first['id']}"), 404)
    again = a.call("POST", "/Users", {"schemas": [USER], "userName": name, "active": True})
    assert again.status_code in (201, 409), again.text
    assert world.validate(pat) == 401
    if again.status_code == 201:
        assert again.json()["id"] != first["id"]
        again_id = again.json()["id"]
        active = patch({"op": "replace", "path": "active", "value": True})
        assert a.call("PATCH", f"/Users/{again_id}", active).status_code == 200
        assert world.validate(pat) == 401
    # the operator enrolling the identity again does not revive them either
    if world.membership(name) is None:
        s.container.directory.add_user(OPERATOR, "Acme", name)
    assert world.validate(pat) == 401
    _, fresh = s.pat_for(name, scope="vso.code")
    assert world.validate(fresh) == 200  # new tokens are fine: the old ones stay dead


def test_repost_after_delete_provisions_the_user_again(world: World) -> None:
    a = world.acme
    name = uniq("rehire")
    first = a.create_user(name)
    assert a.call("DELETE", f"/Users/{first['id']}").status_code == 204
    again = a.call("POST", "/Users", {"schemas": [USER], "userName": name, "active": True})
    assert again.status_code == 201, again.text
    assert world.membership(name) == (Role.MEMBER, UserStatus.ACTIVE)


def test_another_organization_s_former_user_cannot_be_claimed(world: World) -> None:
    """Only a former member of *this* organization rejoins: Globex's leaver, now in no
    organization, is not Acme's to take (its name, address and old tokens stay out of reach)."""
    name = uniq("leaver", "globex.test")
    theirs = world.globex.create_user(name)
    assert world.globex.call("DELETE", f"/Users/{theirs['id']}").status_code == 204
    assert world.membership(name, world.globex_id) is None
    claim = world.acme.call("POST", "/Users", {"schemas": [USER], "userName": name, "active": True})
    err(claim, 409, "uniqueness")
    assert world.membership(name) is None
    # and Globex itself may take its leaver back
    again = world.globex.call("POST", "/Users", {"schemas": [USER], "userName": name, "active": True})
    assert again.status_code == 201, again.text
    assert world.membership(name, world.globex_id) == (Role.MEMBER, UserStatus.ACTIVE)


# ====================================================================== admin-group escalation
def test_only_the_configured_admin_group_makes_admins(world: World) -> None:
    a, c = world.acme, world.server.container
    c.scim.configure(OPERATOR, "Acme", ADMIN_GROUP)
    try:
        plain = a.create_user(uniq("plain"))
        pn = plain["userName"]
        a.create_group(f"Engineers-{next(_seq)}", plain["id"])
        assert world.membership(pn) == (Role.MEMBER, UserStatus.ACTIVE)
        # look-alike names are other groups
        for lookalike in (
            f"{ADMIN_GROUP} ",
            f" {ADMIN_GROUP}",
            "TW\u00a0Admins",
            "TW Admins\u200b",
            "\uff34\uff37 Admins",
            "TW_Admins",
        ):
            r = a.call(
                "POST",
                "/Groups",
                {"schemas": [GROUP], "displayName": lookalike, "members": [{"value": plain["id"]}]},
            )
            assert r.status_code in (201, 400), r.text
            if r.status_code == 400:
                err(r, 400, "invalidValue")
            assert world.membership(pn) == (Role.MEMBER, UserStatus.ACTIVE), lookalike
        # read-only or unrelated attributes of the user do not make an admin
        sneaky = a.create_user(
            uniq("sneaky"), roles=[{"value": "admin", "primary": True}], entitlements=[{"value": "admin"}]
        )
        assert world.membership(sneaky["userName"]) == (Role.MEMBER, UserStatus.ACTIVE)
        # the real admin group (display name compared case-insensitively, as documented)
        boss = a.create_user(uniq("boss"))
        bn = boss["userName"]
        admins = a.create_group(ADMIN_GROUP.lower(), boss["id"])
        assert world.membership(bn) == (Role.ADMIN, UserStatus.ACTIVE)
        assert world.membership(pn) == (Role.MEMBER, UserStatus.ACTIVE)
        # a user claiming the admin group in its own read-only `groups` joins nothing
        claim = {"schemas": [USER], "userName": uniq("claimer"), "groups": [{"value": admins["id"]}]}
        r = a.call("POST", "/Users", claim)
        assert r.status_code in (201, 400), r.text
        if r.status_code == 201:
            assert world.membership(claim["userName"]) == (Role.MEMBER, UserStatus.ACTIVE)
            assert "groups" not in r.json()
        op = patch({"op": "add", "path": "groups", "value": [{"value": admins["id"]}]})
        r = a.call("PATCH", f"/Users/{plain['id']}", op)
        assert r.status_code in (200, 400), r.text
        if r.status_code == 400:
            err(r, 400, "mutability")
        assert world.membership(pn) == (Role.MEMBER, UserStatus.ACTIVE)
        # a second group cannot take the admin group's display name
        r = a.call(
            "POST",
            "/Groups",
            {"schemas": [GROUP], "displayName": ADMIN_GROUP.upper(), "members": [{"value": plain["id"]}]},
        )
        err(r, 409, "uniqueness")
        other = a.create_group(f"renamer-{next(_seq)}", plain["id"])
        err(
            a.call(
                "PATCH",
                f"/Groups/{other['id']}",
                patch({"op": "replace", "path": "displayName", "value": ADMIN_GROUP}),
            ),
            409,
            "uniqueness",
        )
        assert world.membership(pn) == (Role.MEMBER, UserStatus.ACTIVE)
        # the admin group cannot take members that are not this org's provisioned users
        with c.uow() as uow:
            config = uow.scim.config(world.server.org_id)
            admin_user = uow.users.by_upn(world.server.admin_upn)
        outsider = world.globex.create_user(uniq("climber", "globex.test"))
        for value in (config.principal_id, admin_user.id if admin_user else "x", outsider["id"], "*", ""):
            add = patch({"op": "add", "path": "members", "value": [{"value": value}]})
            err(a.call("PATCH", f"/Groups/{admins['id']}", add), 400, "invalidValue")
        with c.uow() as uow:
            assert uow.users.membership(world.server.org_id, config.principal_id).role is Role.MEMBER
        # renaming the admin group away, or deleting it, demotes whom it appointed
        away = patch({"op": "replace", "path": "displayName", "value": f"former-{next(_seq)}"})
        assert a.call("PATCH", f"/Groups/{admins['id']}", away).status_code == 200
        assert world.membership(bn) == (Role.MEMBER, UserStatus.ACTIVE)
        back = patch({"op": "replace", "path": "displayName", "value": ADMIN_GROUP})
        assert a.call("PATCH", f"/Groups/{admins['id']}", back).status_code == 200
        assert world.membership(bn) == (Role.ADMIN, UserStatus.ACTIVE)
        assert a.call("DELETE", f"/Groups/{admins['id']}").status_code == 204
        assert world.membership(bn) == (Role.MEMBER, UserStatus.ACTIVE)
    finally:
        c.scim.configure(OPERATOR, "Acme", "")


def test_without_an_admin_group_no_group_makes_admins(world: World) -> None:
    a = world.acme
    u = a.create_user(uniq("nogroup"))
    a.create_group(f"Admins-{next(_seq)}", u["id"])
    a.create_group(f"x-{next(_seq)}", u["id"], externalId="admin")
    assert world.membership(u["userName"]) == (Role.MEMBER, UserStatus.ACTIVE)


# ====================================================================== read-only and required
def test_patching_read_only_attributes_is_mutability(world: World) -> None:
    a = world.acme
    user = a.create_user(uniq("ro"))
    uid = user["id"]
    for op in (
        {"op": "replace", "path": "id", "value": "z"},
        {"op": "add", "path": "id", "value": "z"},
        {"op": "remove", "path": "id"},
        {"op": "replace", "path": "meta", "value": {"version": 'W/"99"'}},
        {"op": "replace", "path": "meta.created", "value": "2000-01-01T00:00:00Z"},
        {"op": "replace", "path": "meta.version", "value": 'W/"99"'},
        {"op": "remove", "path": "meta"},
        {"op": "replace", "value": {"id": "z"}},
    ):
        err(a.call("PATCH", f"/Users/{uid}", patch(op)), 400, "mutability")
    now = a.call("GET", f"/Users/{uid}").json()
    assert now["id"] == uid and now["meta"]["version"] == user["meta"]["version"]
    assert now["meta"]["created"] == user["meta"]["created"]
    # PUT carrying another id / meta: ignored (docs/compat.md), never applied
    put = {**user, "id": "z", "meta": {"created": "2000-01-01T00:00:00Z"}, "nickName": "p"}
    r = a.call("PUT", f"/Users/{uid}", put)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        err(r, 400, "mutability")
    assert a.call("GET", f"/Users/{uid}").json()["id"] == uid
    err(a.call("GET", "/Users/z"), 404)


def test_removing_the_required_user_name_is_mutability(world: World) -> None:
    a = world.acme
    user = a.create_user(uniq("required"))
    for op in (
        {"op": "remove", "path": "userName"},
        {"op": "replace", "path": "userName", "value": None},
        {"op": "replace", "value": {"userName": None}},
    ):
        err(a.call("PATCH", f"/Users/{user['id']}", patch(op)), 400, "mutability")


def test_removing_the_required_user_name_is_refused(world: World) -> None:
    a = world.acme
    user = a.create_user(uniq("required2"))
    for op in (
        {"op": "remove", "path": "userName"},
        {"op": "Remove", "path": "username"},
        {"op": "replace", "path": "userName", "value": ""},
        {"op": "replace", "path": "userName", "value": None},
        {"op": "replace", "value": {"userName": None}},
    ):
        r = a.call("PATCH", f"/Users/{user['id']}", patch(op))
        err(r, 400, "mutability", "invalidValue")
    now = a.call("GET", f"/Users/{user['id']}").json()
    assert now["userName"] == user["userName"] and now["meta"]["version"] == user["meta"]["version"]
    group = a.create_group(f"req-grp-{next(_seq)}")
    r = a.call("PATCH", f"/Groups/{group['id']}", patch({"op": "remove", "path": "displayName"}))
    err(r, 400, "mutability", "invalidValue")


def test_malformed_patch_requests(world: World) -> None:
    a = world.acme
    user = a.create_user(uniq("badpatch"))
    uid = user["id"]
    bad: list[tuple[Any, tuple[str, ...]]] = [
        ({"schemas": [PATCH], "Operations": []}, ("invalidValue", "invalidSyntax")),
        ({"schemas": [PATCH]}, ("invalidValue", "invalidSyntax")),
        ({"schemas": [PATCH], "Operations": "replace"}, ("invalidValue", "invalidSyntax")),
        (
            {"schemas": [PATCH], "Operations": [{"path": "nickName", "value": "x"}]},
            ("invalidValue", "invalidSyntax"),
        ),
        (
            patch({"op": "replace", "path": 'emails[type eq "work"', "value": "x"}),
            ("invalidPath", "invalidFilter"),
        ),
        (patch({"op": "replace", "path": "shoeSize", "value": 4}), ("invalidPath", "noTarget")),
        (patch({"op": "replace", "path": "name.shoeSize", "value": 4}), ("invalidPath", "noTarget")),
        (patch({"op": "replace", "path": "..", "value": 4}), ("invalidPath",)),
        (patch({"op": "add", "path": "nickName"}), ("invalidValue", "invalidSyntax")),
    ]
    for body, types in bad:
        r = a.call("PATCH", f"/Users/{uid}", body)
        err(r, 400, *types)
    now = a.call("GET", f"/Users/{uid}").json()
    assert now["meta"]["version"] == user["meta"]["version"]


def test_odd_resource_ids_are_404(world: World) -> None:
    a = world.acme
    for rid in ("x" * 5000, "%00", "..%2F..%2Fapi%2Fv1%2Fme", "' OR 1=1 --", "%25", "%E2%80%AE"):
        for kind in ("Users", "Groups"):
            err(a.call("GET", f"/{kind}/{rid}"), 404)
            err(a.call("DELETE", f"/{kind}/{rid}"), 404)


def test_a_rename_in_one_org_is_not_observable_in_another(world: World) -> None:
    a, c = world.acme, world.server.container
    name = uniq("roamer")
    user = a.create_user(name, emails=[{"value": name, "primary": True}])
    c.directory.add_user(OPERATOR, "Globex", name)
    hijack = {
        "userName": uniq("renamed", "evil.test"),
        "displayName": "Hijacked",
        "emails": [{"value": "attacker@evil.test", "primary": True}],
    }
    r = a.call("PATCH", f"/Users/{user['id']}", patch({"op": "replace", "value": hijack}))
    assert r.status_code in (200, 400, 409), r.text
    globex_view = {u.upn: u for u, _ in c.directory.list_users(OPERATOR, "Globex")}
    assert name in globex_view, sorted(globex_view)
    assert globex_view[name].email != "attacker@evil.test"
    assert globex_view[name].display_name != "Hijacked"
