"""Issue 10 §3: every bad input is a precise 4xx, never a 500 (native, Azure DevOps, Graph, validate)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Server

LOW = "0001-01-01T00:00:00+01:00"  # UTC: year 0
HIGH = "9999-12-31T23:59:59-12:00"  # UTC: year 10000
DEEP = ("[" * 5000 + "]" * 5000).encode()
DEEP_OBJECT = ('{"a":' * 5000 + "1" + "}" * 5000).encode()
SURROGATE = b'"\\ud800x"'


def error_message(body: dict[str, object]) -> str:
    if "message" in body:  # Azure DevOps WrappedException
        return str(body["message"])
    error = body["error"]
    assert isinstance(error, dict)
    return str(error["message"])


def assert_400(response: object, *needles: str) -> None:
    r = response
    assert r.status_code == 400, (r.status_code, r.text)  # type: ignore[attr-defined]
    message = error_message(r.json())  # type: ignore[attr-defined]
    for needle in needles:
        assert needle.lower() in message.lower(), message


# ---------------------------------------------------------------------- the validate door
def test_validate_with_too_many_query_parameters_is_400(server: Server) -> None:
    query = "&".join(f"p{i}=1" for i in range(20))
    r = server.client.get(f"/api/v1/validate?{query}", headers=server.auth())
    assert r.status_code == 400, r.text
    assert r.json()["active"] is False
    assert "query parameters" in r.json()["error"]["message"]


# ---------------------------------------------------------------------- integers
def test_audit_after_id_beyond_64_bits_is_400(server: Server) -> None:
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/audit", params={"afterId": str(10**30)}, headers=server.auth()
    )
    assert_400(r, "afterId")


# ---------------------------------------------------------------------- dates
@pytest.mark.parametrize("value", [LOW, HIGH])
def test_audit_dates_out_of_range_after_the_zone_shift(server: Server, value: str) -> None:
    for name in ("since", "until"):
        r = server.client.get(f"/api/v1/orgs/{server.org}/audit", params={name: value}, headers=server.auth())
        assert_400(r, name, "range")


def test_audit_naive_since_with_aware_until_is_utc(server: Server) -> None:
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/audit",
        params={"since": "2020-01-01T00:00:00", "until": "2030-01-01T00:00:00Z"},
        headers=server.auth(),
    )
    assert r.status_code == 200, r.text
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/audit",
        params={"since": "2030-01-01T00:00:00", "until": "2020-01-01T00:00:00+00:00"},
        headers=server.auth(),
    )
    assert_400(r, "since")


@pytest.mark.parametrize("value", [LOW, HIGH])
def test_native_pat_and_rule_dates_out_of_range(server: Server, value: str) -> None:
    base = f"/api/v1/orgs/{server.org}"
    r = server.client.post(f"{base}/pats", json={"displayName": "x", "validTo": value}, headers=server.auth())
    assert_400(r, "validTo", "range")
    for field in ("createdBefore", "createdAfter"):
        r = server.client.post(
            f"{base}/revocation-rules", json={"scopes": "vso.code", field: value}, headers=server.auth()
        )
        assert_400(r, field, "range")


@pytest.mark.parametrize("value", [LOW, HIGH])
def test_ado_dates_out_of_range(server: Server, value: str) -> None:
    h = server.basic()
    r = server.client.post(
        "/Acme/_apis/tokens/pats", json={"displayName": "x", "scope": "vso.code", "validTo": value}, headers=h
    )
    assert r.status_code == 200, r.text  # Azure DevOps reports PAT errors in the body
    assert r.json()["patTokenError"] == "invalidValidTo"
    assert "range" in r.json()["patTokenErrorMessage"]
    body = {"scopes": "vso.code", "createdBefore": value}
    r = server.client.post("/Acme/_apis/tokenadmin/revocationrules", json=body, headers=h)
    assert_400(r, "createdBefore", "range")


# ---------------------------------------------------------------------- JSON bodies
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
@pytest.mark.parametrize("authenticated", [True, False])
def test_deeply_nested_json_is_400_everywhere(server: Server, body: bytes, authenticated: bool) -> None:
    h = {"Content-Type": "application/json", **(server.auth() if authenticated else {})}
    targets = [
        "/Acme/_apis/tokens/pats",
        "/Acme/_apis/tokenadmin/revocations",
        "/Acme/_apis/tokenadmin/revocationrules",
        "/graph/v1.0/identityProtection/riskyUsers/confirmCompromised",
        f"/api/v1/orgs/{server.org}/pats",
        f"/api/v1/orgs/{server.org}/revocations",
    ]
    for path in targets:
        r = server.client.post(path, content=body, headers=h)
        assert r.status_code in (400, 401), (path, r.status_code, r.text)
        if authenticated:
            assert_400(r, "nested")


def test_lone_surrogate_in_display_name_is_400(server: Server) -> None:
    body = b'{"displayName": ' + SURROGATE + b', "scope": "vso.code"}'
    h = {"Content-Type": "application/json", **server.auth()}
    r = server.client.post(f"/api/v1/orgs/{server.org}/pats", content=body, headers=h)
    assert_400(r, "displayName")
    r = server.client.post("/Acme/_apis/tokens/pats", content=body, headers=h)
    assert_400(r, "surrogate")
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/users",
        content=b'{"upn": "a@b.test", "displayName": ' + SURROGATE + b"}",
        headers=h,
    )
    assert_400(r, "displayName")


def test_lone_surrogate_in_user_ids_is_400(server: Server) -> None:
    h = {"Content-Type": "application/json", **server.auth()}
    body = b'{"userIds": [' + SURROGATE + b"]}"
    r = server.client.post(
        "/graph/v1.0/identityProtection/riskyUsers/confirmCompromised", content=body, headers=h
    )
    assert_400(r, "surrogate")
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/revocation-rules",
        content=b'{"scopes": "vso.code", "users": [' + SURROGATE + b"]}",
        headers=h,
    )
    assert_400(r, "users")


# ---------------------------------------------------------------------- UPNs
@pytest.mark.parametrize(
    "upn",
    [
        "ad\u200bmin@acme.test",  # zero-width space (Cf)
        "admin\u202e@acme.test",  # right-to-left override (bidi control)
        "ad\u2066min@acme.test",  # left-to-right isolate
        "admin@acme\u2028.test",  # line separator (Zl)
        "admin@acme\u2029.test",  # paragraph separator (Zp)
        "admin\x85@acme.test",  # next line (Cc)
        "\ufeffadmin@acme.test",  # byte order mark (Cf)
    ],
)
def test_upns_with_invisible_or_bidi_characters_are_refused(server: Server, upn: str) -> None:
    r = server.client.post(f"/api/v1/orgs/{server.org}/users", json={"upn": upn}, headers=server.auth())
    assert_400(r, "user principal name")
