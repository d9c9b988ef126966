"""Issue 11 part 1, over HTTP against the real app on SQLite: the sign-in page and its security —
cookies, CSRF, session fixation, open redirects, throttling, escaping, strict headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server
from tests.e2e.signin_helpers import (
    ALICE,
    PASSWORD,
    browser,
    csrf_of,
    is_signed_in,
    past_clock,
    session_cookie,
    sign_in,
    signed_in,
    start_server,
)
from tests.unit.conftest import FakeClock
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.ports.repositories import AuditQuery


@pytest.fixture
def clock() -> FakeClock:
    return past_clock(hours=1)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[Server]:
    yield from start_server(tmp_path, clock)


def test_the_signin_page_is_a_plain_form_with_strict_headers(server: Server) -> None:
    r = server.client.get("/signin")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<form method="post" action="/signin"' in html
    assert 'name="username" type="text"' in html and 'autocomplete="username"' in html
    assert 'name="password" type="password"' in html
    assert '<button type="submit">Sign in</button>' in html  # Enter in either field submits
    assert 'name="csrf_token"' in html and "<script" not in html and "style=" not in html
    csp = r.headers["content-security-policy"]
    for part in ("default-src 'self'", "script-src 'none'", "frame-ancestors 'none'", "form-action 'self'"):
        assert part in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("tw_csrf=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    css = server.client.get("/web/static/tw.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_sign_in_sets_a_new_session_cookie_and_goes_to_next(server: Server) -> None:
    target = "/oauth2/authorize?client_id=app&state=xyz"
    r = sign_in(server.client, next=target)
    assert r.status_code == 303 and r.headers["location"] == target
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("tw_session="))
    assert session.startswith("tw_session=tws_")
    for attr in ("HttpOnly", "SameSite=lax", "Path=/", "Max-Age=7776000"):
        assert attr in session
    assert "Secure" not in session  # plain http (127.0.0.1): the browser would drop a Secure cookie
    assert any(c.startswith("tw_csrf=") for c in cookies)  # the CSRF cookie is replaced at sign-in
    me = server.client.get("/api/v1/me/sessions").json()
    assert me["count"] == 1 and me["value"][0]["current"] is True
    assert server.client.get("/account").status_code == 200


def test_over_tls_the_cookies_are_secure_and_host_prefixed(tmp_path: Path, clock: FakeClock) -> None:
    for server in start_server(tmp_path, clock, base_url="https://testserver"):
        page = server.client.get("/signin")
        assert (
            page.headers["set-cookie"].startswith("__Host-tw_csrf=")
            and "Secure" in page.headers["set-cookie"]
        )
        r = server.client.post(
            "/signin", data={"username": ALICE, "password": PASSWORD, "csrf_token": csrf_of(page.text)}
        )
        assert r.status_code == 303, r.text
        session = next(c for c in r.headers.get_list("set-cookie") if "tw_session" in c)
        assert session.startswith("__Host-tw_session=tws_") and "Secure" in session and "Path=/" in session
        assert server.client.get("/account").status_code == 200


def test_a_wrong_password_is_refused_with_the_form_again(server: Server) -> None:
    r = sign_in(server.client, password="not-the-password")
    assert r.status_code == 401
    assert "The user name or password is incorrect." in r.text
    assert "www-authenticate" not in r.headers  # no browser Basic-auth prompt
    assert f'value="{ALICE}"' in r.text and "not-the-password" not in r.text
    assert not any(c.startswith("tw_session=") for c in r.headers.get_list("set-cookie"))
    unknown = sign_in(server.client, upn="nobody@acme.test")
    assert unknown.status_code == 401 and "The user name or password is incorrect." in unknown.text
    assert not is_signed_in(server.client)


def test_failed_sign_ins_are_throttled_429_with_retry_after(server: Server, clock: FakeClock) -> None:
    for _ in range(5):
        assert sign_in(server.client, password="not-the-password").status_code == 401
    r = sign_in(server.client)  # even the right password, now
    assert r.status_code == 429
    retry = int(r.headers["retry-after"])
    assert 0 < retry <= 901  # the failures all happened "now" (a frozen clock): 15 min and a second
    assert "too many failed sign-ins" in r.text.lower()
    with server.container.uow() as uow:
        audited = uow.audit.query(AuditQuery(event_types=(AuditEventType.SIGN_IN_THROTTLED.value,)))
    assert len(audited) == 1 and audited[0].details["limit"] == "account"
    clock.advance(seconds=retry)
    assert sign_in(server.client).status_code == 303


def test_password_spraying_is_throttled_per_ip(tmp_path: Path, clock: FakeClock) -> None:
    for server in start_server(tmp_path, clock, signin_ip_failures=6):
        for i in range(6):
            assert sign_in(server.client, upn=f"user{i}@acme.test", password="Spring2026!").status_code == 401
        r = sign_in(server.client, upn="user99@acme.test", password="Spring2026!")
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert sign_in(server.client).status_code == 429  # the client IP, whatever the account


@pytest.mark.parametrize(
    "form",
    [
        {},  # no token
        {"csrf_token": "0" * 64},  # a wrong one
        {"csrf_token": ""},
        {"csrf_token": "\u00e9" * 64},  # not even ASCII
    ],
)
def test_a_post_without_a_valid_csrf_token_is_refused_403(server: Server, form: dict[str, str]) -> None:
    server.client.get("/signin")  # the browser has its CSRF cookie
    r = server.client.post("/signin", data={"username": ALICE, "password": PASSWORD, **form})
    assert r.status_code == 403 and "security token" in r.text
    assert "<script" not in r.text and r.headers["content-security-policy"]
    assert not is_signed_in(server.client)


def test_a_token_is_bound_to_its_own_browser_and_cross_site_posts_are_refused(server: Server) -> None:
    other = browser(server)
    token_of_other = csrf_of(other.get("/signin").text)
    server.client.get("/signin")
    r = server.client.post(
        "/signin", data={"username": ALICE, "password": PASSWORD, "csrf_token": token_of_other}
    )
    assert r.status_code == 403
    fresh = browser(server)  # no CSRF cookie at all
    r = fresh.post("/signin", data={"username": ALICE, "password": PASSWORD, "csrf_token": token_of_other})
    assert r.status_code == 403 and "cookie" in r.text
    page = server.client.get("/signin")
    r = server.client.post(
        "/signin",
        data={"username": ALICE, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403


def test_sign_out_needs_the_csrf_token_too(server: Server) -> None:
    signed_in(server.client)
    assert server.client.post("/signout", data={}).status_code == 403
    assert is_signed_in(server.client)
    token = csrf_of(server.client.get("/account").text)
    r = server.client.post("/signout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert not is_signed_in(server.client)


def test_session_fixation_a_planted_session_is_never_kept(server: Server) -> None:
    attacker = browser(server)
    planted = signed_in(attacker)  # the attacker's own valid session id...
    victim = browser(server)
    domain = next(c.domain for c in attacker.cookies.jar if c.name == "tw_session")
    victim.cookies.set("tw_session", planted, domain=domain)  # ...planted into the victim's browser
    page = victim.get("/signin")
    old_csrf = victim.cookies.get("tw_csrf")
    r = victim.post(
        "/signin", data={"username": ALICE, "password": PASSWORD, "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 303
    fresh = session_cookie(victim)
    assert fresh != planted  # a new session id at sign-in
    assert victim.cookies.get("tw_csrf") != old_csrf
    assert server.client.get("/api/v1/me", headers={"Authorization": f"Bearer {planted}"}).status_code == 401
    me = victim.get("/api/v1/me/sessions").json()
    assert [s["current"] for s in me["value"]] == [True]
    garbage = browser(server)
    garbage.cookies.set("tw_session", "tws_" + "A" * 49, domain=domain)
    page = garbage.get("/signin")
    r = garbage.post(
        "/signin", data={"username": ALICE, "password": PASSWORD, "csrf_token": csrf_of(page.text)}
    )
    assert (
        r.status_code == 303
        and session_cookie(garbage).startswith("tws_")
        and session_cookie(garbage) != "tws_" + "A" * 49
    )


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        " /account",
        "evil.example",
    ],
)
def test_next_accepts_only_same_origin_paths(server: Server, target: str) -> None:
    page = server.client.get("/signin", params={"next": target})
    assert 'name="next" value="/account"' in page.text
    r = server.client.post(
        "/signin",
        data={"username": ALICE, "password": PASSWORD, "next": target, "csrf_token": csrf_of(page.text)},
    )
    assert r.status_code == 303 and r.headers["location"] == "/account"


def test_every_value_on_the_page_is_escaped(server: Server) -> None:
    evil = '/x"><script>alert(1)</script>'
    page = server.client.get("/signin", params={"next": evil})
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    r = server.client.post(
        "/signin",
        data={
            "username": '"><img src=x onerror=alert(1)>',
            "password": "x",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert r.status_code == 401 and "<img" not in r.text and "&lt;img" in r.text


def test_the_account_page_redirects_to_sign_in_and_back(server: Server) -> None:
    r = server.client.get("/account")
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Faccount"
    page = server.client.get(r.headers["location"])
    assert 'name="next" value="/account"' in page.text
