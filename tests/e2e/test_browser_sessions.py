"""Issue 11 part 1, over HTTP against the real app on SQLite: browser sessions — the sliding
window and its absolute maximum, every revocation mode, sign out everywhere, the sessions API
and its tenancy, two nodes, the event loop, the CLI, and the pieces /oauth2/authorize uses."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from tests.e2e.conftest import Server, run_cli
from tests.e2e.signin_helpers import (
    ALICE,
    CHEAP,
    PASSWORD,
    browser,
    csrf_of,
    is_signed_in,
    past_clock,
    signed_in,
    start_server,
)
from tests.unit.conftest import FakeClock
from tokenwarden.bootstrap import build
from tokenwarden.domain.errors import DomainError, InvalidToken
from tokenwarden.domain.tokens import TokenRecord
from tokenwarden.http.web import (
    browser_session,
    check_csrf,
    render_consent,
    render_error,
    signin_redirect,
)
from tokenwarden.services.common import OPERATOR
from tokenwarden.settings import Settings


@pytest.fixture
def clock() -> FakeClock:
    return past_clock(hours=1)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[Server]:
    yield from start_server(tmp_path, clock)


def record_of(server: Server, secret: str) -> TokenRecord:
    with server.container.uow() as uow:
        found = uow.tokens.by_hash(server.container.hasher.hash(secret))
    assert found is not None
    return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ----------------------------------------------------------------------------- sliding window
def test_the_session_slides_on_use_and_dies_after_seven_idle_days(tmp_path: Path) -> None:
    # The services' clock starts 8 days ago (the validator keeps real time, as in production).
    clock = past_clock(days=8)
    for server in start_server(tmp_path, clock):
        idle = browser(server)
        signed_in(idle)  # eight days ago, never used since: its seven days are over
        assert not is_signed_in(idle)
        assert idle.get("/api/v1/me/sessions").status_code == 401

        clock.advance(days=1, hours=1)  # now: 6 days 23 hours ago
        secret = signed_in(server.client)
        first = record_of(server, secret).valid_to
        assert first == clock.now() + timedelta(days=7)
        clock.advance(days=6, hours=22)  # one hour before its end: a use slides it
        assert is_signed_in(server.client)
        moved = record_of(server, secret).valid_to
        assert moved == clock.now() + timedelta(days=7) and moved > first
        clock.advance(seconds=30)  # within the interval: no write
        assert is_signed_in(server.client)
        assert record_of(server, secret).valid_to == moved
        clock.advance(minutes=2)
        assert is_signed_in(server.client)
        assert record_of(server, secret).valid_to == clock.now() + timedelta(days=7)


def test_the_absolute_maximum_caps_the_session_however_it_is_used(tmp_path: Path) -> None:
    clock = past_clock(days=10, hours=1)
    for server in start_server(tmp_path, clock, session_idle_days=30, session_max_days=10):
        dead = browser(server)
        signed_in(dead)  # ten days and an hour ago: past its absolute end although never idle 30 days
        assert not is_signed_in(dead)
        clock.advance(hours=2)  # nine days 23 hours ago
        secret = signed_in(server.client)
        start = record_of(server, secret).valid_from
        assert record_of(server, secret).valid_to == start + timedelta(days=10)
        clock.advance(days=9)
        assert is_signed_in(server.client)
        assert record_of(server, secret).valid_to == start + timedelta(days=10)  # never past the cap


def test_an_extension_on_one_node_reaches_the_others(server: Server, clock: FakeClock) -> None:
    secret = signed_in(server.client)
    other = build(server.container.settings, clock=clock)  # a second node on the same database
    try:
        first = other.validator.validate(secret).token.valid_to  # now cached there
        clock.advance(minutes=5)
        assert is_signed_in(server.client)  # node one slides the window
        other.validator.sync()  # the token.changed event (the bell or the 250 ms poll)
        moved = other.validator.validate(secret).token.valid_to
        assert moved > first and moved == record_of(server, secret).valid_to.timestamp()
        token = csrf_of(server.client.get("/account").text)
        assert server.client.post("/signout", data={"csrf_token": token}).status_code == 303
        other.validator.sync()
        with pytest.raises(InvalidToken):  # signed out on node one: refused on node two
            other.validator.validate(secret)
    finally:
        other.close()


# ----------------------------------------------------------------------------- revocation
def test_graph_revoke_sign_in_sessions_kills_the_browser_session(server: Server, clock: FakeClock) -> None:
    signed_in(server.client)
    clock.advance(seconds=1)
    r = server.client.post(f"/graph/v1.0/users/{ALICE}/revokeSignInSessions", headers=server.auth())
    assert r.status_code == 200 and r.json()["value"] is True
    assert not is_signed_in(server.client)
    assert server.client.get("/api/v1/me/sessions").status_code == 401
    signed_in(server.client)  # signing in again works
    assert is_signed_in(server.client)


def test_an_admin_revoking_the_users_tokens_ends_the_session(server: Server, clock: FakeClock) -> None:
    signed_in(server.client)
    clock.advance(seconds=1)
    r = server.client.post(f"/api/v1/orgs/Acme/users/{ALICE}/sessions/revoke-all", headers=server.auth())
    assert r.status_code == 200 and r.json() == {"revoked": 1}
    assert not is_signed_in(server.client)


def test_sign_out_everywhere(server: Server) -> None:
    laptop, phone = browser(server), browser(server)
    signed_in(laptop)
    signed_in(phone)
    signed_in(server.client)
    listed = laptop.get("/api/v1/me/sessions").json()
    assert listed["count"] == 3 and sum(s["current"] for s in listed["value"]) == 1
    token = csrf_of(laptop.get("/account").text)
    r = laptop.post("/signout", data={"csrf_token": token, "everywhere": "1"})
    assert r.status_code == 303
    assert not any(is_signed_in(b) for b in (laptop, phone, server.client))
    _, records = server.container.sessions.for_operator(ALICE, include_ended=True)
    assert [r.revoke_reason for r in records] == ["signed out everywhere"] * 3


def test_the_sessions_api_with_the_cookie_needs_the_csrf_header_for_changes(server: Server) -> None:
    signed_in(server.client)
    other = browser(server)
    signed_in(other)
    listed = server.client.get("/api/v1/me/sessions").json()
    mine = next(s for s in listed["value"] if s["current"])
    theirs = next(s for s in listed["value"] if not s["current"])
    assert mine["ip"] == "testclient" and mine["userAgent"] == "testclient" and mine["lastUsedAt"]
    assert server.client.delete(f"/api/v1/me/sessions/{theirs['sessionId']}").status_code == 403
    headers = {"X-CSRF-Token": listed["csrfToken"]}
    assert (
        server.client.delete(f"/api/v1/me/sessions/{theirs['sessionId']}", headers=headers).status_code == 204
    )
    assert not is_signed_in(other) and is_signed_in(server.client)
    assert server.client.post("/api/v1/me/sessions/revoke-all").status_code == 403
    r = server.client.post("/api/v1/me/sessions/revoke-all", headers=headers)
    assert r.status_code == 200 and r.json() == {"revoked": 1}
    assert not is_signed_in(server.client)


def test_the_sessions_api_with_a_bearer_token_of_the_user(server: Server) -> None:
    secret = signed_in(browser(server))
    everywhere = server.container.pats.create(
        OPERATOR, org="Acme", user=ALICE, display_name="cli", scope="vso.profile_write", all_orgs=True
    ).secret
    listed = server.client.get("/api/v1/me/sessions", headers=bearer(everywhere)).json()
    assert listed["count"] == 1 and listed["value"][0]["current"] is False and "csrfToken" not in listed
    session_id = listed["value"][0]["sessionId"]
    restricted = server.pat_for(ALICE, scope="vso.profile_write")[1]
    r = server.client.get("/api/v1/me/sessions", headers=bearer(restricted))
    assert r.status_code == 403 and r.json()["error"]["code"] == "allOrgsTokenRequired"
    reader = server.container.pats.create(
        OPERATOR, org="Acme", user=ALICE, display_name="ro", scope="vso.profile", all_orgs=True
    ).secret
    assert (
        server.client.delete(f"/api/v1/me/sessions/{session_id}", headers=bearer(reader)).status_code == 403
    )
    assert (
        server.client.delete(f"/api/v1/me/sessions/{session_id}", headers=bearer(everywhere)).status_code
        == 204
    )
    assert server.client.get("/api/v1/me", headers=bearer(secret)).status_code == 401
    assert server.client.get("/api/v1/me/sessions").status_code == 401


def test_an_admin_of_another_org_cannot_list_or_revoke_sessions(server: Server) -> None:
    signed_in(server.client)
    beta_token = server.container.directory.add_org("Beta", "boss@beta.test").token.secret
    h = bearer(beta_token)
    for method, path in [
        ("GET", f"/api/v1/orgs/Acme/users/{ALICE}/sessions"),
        ("POST", f"/api/v1/orgs/Acme/users/{ALICE}/sessions/revoke-all"),
        ("GET", f"/api/v1/orgs/Beta/users/{ALICE}/sessions"),
        ("POST", f"/api/v1/orgs/Beta/users/{ALICE}/sessions/revoke-all"),
    ]:
        r = server.client.request(method, path, headers=h)
        assert r.status_code == 404, (method, path, r.text)
    session_id = server.client.get("/api/v1/me/sessions").json()["value"][0]["sessionId"]
    for org in ("Acme", "Beta"):
        r = server.client.delete(f"/api/v1/orgs/{org}/users/{ALICE}/sessions/{session_id}", headers=h)
        assert r.status_code == 404
    assert is_signed_in(server.client)
    # Acme's own admin sees it and can end it
    listed = server.client.get(f"/api/v1/orgs/Acme/users/{ALICE}/sessions", headers=server.auth()).json()
    assert [s["sessionId"] for s in listed["value"]] == [session_id] and listed["value"][0]["issuedHere"]
    r = server.client.delete(f"/api/v1/orgs/Acme/users/{ALICE}/sessions/{session_id}", headers=server.auth())
    assert r.status_code == 204
    assert not is_signed_in(server.client)
    member = server.pat_for(ALICE, scope="app_token")[1]  # a member, not an admin
    assert (
        server.client.get(f"/api/v1/orgs/Acme/users/{ALICE}/sessions", headers=bearer(member)).status_code
        == 403
    )


def test_everything_is_audited(server: Server) -> None:
    signed_in(server.client)
    token = csrf_of(server.client.get("/account").text)
    server.client.post("/signout", data={"csrf_token": token})
    r = server.client.get("/api/v1/orgs/Acme/audit?limit=50", headers=server.auth())
    types = [e["eventType"] for e in r.json()["value"]]
    for name in ("User.PasswordSet", "Session.SignIn", "Session.SignOut"):
        assert name in types
    assert PASSWORD not in r.text


# ----------------------------------------------------------------------------- off the event loop
def test_hashing_and_database_work_stay_off_the_event_loop(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = server.container
    blocked: list[str] = []

    def watch(obj: object, name: str) -> None:
        original: Callable[..., Any] = getattr(obj, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                blocked.append(name)
            except RuntimeError:
                pass
            return original(*args, **kwargs)

        monkeypatch.setattr(obj, name, wrapper)

    hashing = c.accounts._passwords
    for obj, name in [
        (hashing, "verify"),
        (hashing, "hash"),
        (c.accounts, "sign_in"),
        (c.sessions, "touch"),
        (c.sessions, "mine"),
        (c.sessions, "sign_out"),
        (c.sessions, "session_id"),
        (c.validator, "_miss"),  # the validator's reads (a validation from memory may run on the loop)
        (c.validator, "_load_user"),
        (c.validator, "sync"),
    ]:
        watch(obj, name)
    signed_in(server.client)
    assert is_signed_in(server.client)
    server.client.get("/api/v1/me/sessions")
    server.client.post("/signout", data={"csrf_token": csrf_of(server.client.get("/signin").text)})
    assert blocked == [], f"called on the event loop: {blocked}"


# ----------------------------------------------------------------------------- the CLI
def test_cli_passwd_reads_stdin_and_sessions_list_and_revoke(tmp_path: Path) -> None:
    cheap = {f"TOKENWARDEN_{k.upper()}": str(v) for k, v in CHEAP.items()}
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data"), **cheap}
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    assert (
        run_cli(["init", "--org", "Acme", "--admin", "root@acme.test", "--json"], env, tmp_path).returncode
        == 0
    )
    assert run_cli(["user", "add", ALICE, "--json"], env, tmp_path).returncode == 0
    weak = run_cli(["user", "passwd", ALICE], env, tmp_path, input="short\n")
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr and "short" not in weak.stdout
    empty = run_cli(["user", "passwd", ALICE], env, tmp_path, input="")
    assert empty.returncode == 2 and "standard input" in empty.stderr
    ok = run_cli(["user", "passwd", ALICE, "--json"], env, tmp_path, input=PASSWORD + "\n")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["upn"] == ALICE and data["revokedSessions"] == 0 and PASSWORD not in ok.stdout + ok.stderr
    c = build(Settings(data_dir=tmp_path / "data", **CHEAP))
    try:
        ids = [
            c.accounts.sign_in(
                ALICE, PASSWORD, ip="192.0.2.5", user_agent="Firefox/1"
            ).session.record.authorization_id
            for _ in range(2)
        ]
    finally:
        c.close()
    listed = run_cli(["sessions", "list", "--user", ALICE, "--json"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["sessionId"] for r in rows) == sorted(ids) and rows[0]["ip"] == "192.0.2.5"
    assert run_cli(["sessions", "revoke", "--user", ALICE], env, tmp_path).returncode == 2
    one = run_cli(["sessions", "revoke", "--user", ALICE, "--id", ids[0], "--json"], env, tmp_path)
    assert one.returncode == 0 and json.loads(one.stdout)["sessionIds"] == [ids[0]]
    rest = run_cli(["sessions", "revoke", "--user", ALICE, "--all", "--json"], env, tmp_path)
    assert json.loads(rest.stdout)["sessionIds"] == [ids[1]]
    left = run_cli(["sessions", "list", "--user", ALICE, "--json"], env, tmp_path)
    assert json.loads(left.stdout) == []
    audit = run_cli(["audit", "query", "--json"], env, tmp_path)
    assert (
        "Session.Revoke" in audit.stdout
        and "User.PasswordSet" in audit.stdout
        and PASSWORD not in audit.stdout
    )


# ----------------------------------------------------------------------------- pieces for /oauth2/authorize
def add_test_routes(server: Server) -> None:
    app = server.client.app

    async def whoami(request: Request) -> Response:
        org = request.query_params.get("org")
        try:
            session = await browser_session(request, org_id=org)
        except DomainError as exc:
            return render_error(request, exc, sign_in_again="/signin")
        if session is None:
            return signin_redirect(request)
        return JSONResponse({"upn": session.upn, "sessionId": session.session_id, "orgId": session.org_id})

    async def consent(request: Request) -> Response:
        return render_consent(
            request,
            client_name='Build "dashboard" <b>',
            org_name="Acme",
            scopes=[("vso.code", "Code (read)"), ("vso.build", "Build <read>")],
            hidden={
                "client_id": "app-1",
                "redirect_uri": "https://app.example/cb?x=1",
                "state": '"><script>',
                "csrf_token": "smuggled",
            },
        )

    async def decide(request: Request) -> Response:
        form = await request.form()
        try:
            check_csrf(request, form)
        except DomainError as exc:
            return render_error(request, exc)
        return JSONResponse({k: str(v) for k, v in form.items()})

    app.add_api_route("/t/whoami", whoami)  # type: ignore[attr-defined]
    app.add_api_route("/t/consent", consent)  # type: ignore[attr-defined]
    app.add_api_route("/t/decide", decide, methods=["POST"])  # type: ignore[attr-defined]


def test_signin_redirect_and_browser_session(server: Server, clock: FakeClock) -> None:
    add_test_routes(server)
    r = server.client.get("/t/whoami?a=1&b=2")
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Ft%2Fwhoami%3Fa%3D1%26b%3D2"
    sign = server.client.get(r.headers["location"])
    assert 'name="next" value="/t/whoami?a=1&amp;b=2"' in sign.text
    done = server.client.post(
        "/signin",
        data={
            "username": ALICE,
            "password": PASSWORD,
            "next": "/t/whoami?a=1&b=2",
            "csrf_token": csrf_of(sign.text),
        },
    )
    assert done.headers["location"] == "/t/whoami?a=1&b=2"
    me = server.client.get("/t/whoami").json()
    assert me["upn"] == ALICE and me["orgId"] == server.org_id
    listed = server.client.get("/api/v1/me/sessions").json()["value"]
    assert me["sessionId"] == listed[0]["sessionId"]
    # judged by the organization asked about
    beta = server.container.directory.add_org("Beta", "boss@beta.test")
    refused = server.client.get(f"/t/whoami?org={beta.org.id}")
    assert refused.status_code == 403 and "not a member" in refused.text and "Sign in again" in refused.text
    server.container.directory.add_user(OPERATOR, "Beta", ALICE)
    assert server.client.get(f"/t/whoami?org={beta.org.id}").json()["orgId"] == beta.org.id
    clock.advance(seconds=1)
    boss = beta.token.secret
    r = server.client.post(f"/graph/v1.0/users/{ALICE}/revokeSignInSessions", headers=bearer(boss))
    assert r.status_code == 200, r.text
    assert (
        server.client.get(f"/t/whoami?org={beta.org.id}").status_code == 303
    )  # revoked in Beta: sign in again
    assert server.client.get("/t/whoami").status_code == 200  # still fine at home (Acme)


def test_the_consent_page_escapes_everything_and_its_form_is_csrf_checked(server: Server) -> None:
    add_test_routes(server)
    signed_in(server.client)
    page = server.client.get("/t/consent")
    html = page.text
    assert page.status_code == 200 and '<form method="post" action="/oauth2/authorize"' in html
    assert '<button type="submit" name="decision" value="allow">Allow</button>' in html
    assert 'name="decision" value="deny"' in html and ">Deny</button>" in html
    assert "<b>" not in html and "&lt;b&gt;" in html and "Build &lt;read&gt;" in html
    assert "<script>" not in html and 'value="&#34;&gt;&lt;script&gt;"' in html
    assert "smuggled" not in html and html.count('name="csrf_token"') == 1
    csp = page.headers["content-security-policy"]
    assert "form-action 'self' https://app.example;" in csp + ";"
    fields = {
        m.split('name="')[1].split('"')[0]: m.split('value="')[1].split('"')[0]
        for m in html.split("<input")[1:]
        if 'type="hidden"' in m
    }
    good = server.client.post("/t/decide", data={**fields, "decision": "allow"})
    assert (
        good.status_code == 200 and good.json()["decision"] == "allow" and good.json()["client_id"] == "app-1"
    )
    bad = server.client.post("/t/decide", data={**fields, "csrf_token": "f" * 64, "decision": "allow"})
    assert bad.status_code == 403 and "security token" in bad.text


def test_the_session_cookie_only_accepts_session_tokens(server: Server) -> None:
    add_test_routes(server)
    pat = server.pat_for(ALICE, scope="app_token")[1]
    domain = "testserver.local"
    server.client.cookies.set("tw_session", pat, domain=domain)
    assert server.client.get("/t/whoami").status_code == 303
    assert server.client.get("/api/v1/me/sessions").status_code == 401
