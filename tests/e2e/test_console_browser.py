"""Issue 16: the admin console in a real browser (Playwright driving Debian's Chromium) against a
real ``tokenwarden serve``: sign-in with MFA, Revoke sessions of one user (their live session
refused at once), bulk revocation of three selected users, an XSS display name rendered as
text, CSRF, framing, a member kept out of admin pages, and axe-core on every page."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LiveServer, live, run_cli
from tokenwarden.domain import mfa

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery staple 42"
XSS = "<img src=x onerror=alert(1)>"
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("Debian's chromium is not installed")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live(tmp_path)


def _code(secret: str, offset: int = 0) -> str:
    return mfa.code_at(secret, mfa.step_of(datetime.now(UTC)) + offset)


def _api(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.admin_token}"})


def _people(server: LiveServer) -> dict[str, str]:
    """alice..dave (members with a PAT each) and the XSS-named user; the admin's password."""
    assert (
        run_cli(["user", "passwd", "admin@acme.test"], server.env, Path("."), input=PASSWORD).returncode == 0
    )
    pats: dict[str, str] = {}
    with _api(server) as api:
        for name in ("alice", "bob", "carol", "dave"):
            upn = f"{name}@acme.test"
            r = api.post(f"/api/v1/orgs/{server.org}/users", json={"upn": upn, "displayName": name.title()})
            assert r.status_code == 201, r.text
        r = api.post(
            f"/api/v1/orgs/{server.org}/users", json={"upn": "mallory@acme.test", "displayName": XSS}
        )
        assert r.status_code == 201, r.text
    for name in ("alice", "bob", "carol", "dave"):
        pats[name] = _operator_pat(server, f"{name}@acme.test")
    assert (
        run_cli(["user", "passwd", "alice@acme.test"], server.env, Path("."), input=PASSWORD).returncode == 0
    )
    return pats


def _operator_pat(server: LiveServer, upn: str, scope: str = "vso.code") -> str:
    made = run_cli(
        [
            "pat",
            "create",
            "--org",
            server.org,
            "--user",
            upn,
            "--name",
            f"{upn.split('@')[0]}-ci",
            "--scope",
            scope,
            "--json",
        ],
        server.env,
        Path("."),
    )
    assert made.returncode == 0, made.stderr
    import json

    return str(json.loads(made.stdout)["token"])


def _enrol_admin(server: LiveServer) -> str:
    with _api(server) as api:
        secret = api.post("/api/v1/me/mfa", json={"password": PASSWORD}).json()["secret"]
        assert api.post("/api/v1/me/mfa/confirm", json={"code": _code(secret, -1)}).status_code == 200
    return str(secret)


def _valid(server: LiveServer, token: str) -> int:
    return httpx.get(
        f"{server.base_url}/api/v1/validate", headers={"Authorization": f"Bearer {token}"}
    ).status_code


def _axe(page: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not bad, [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in bad]


class Framer:
    """Another origin that tries to frame the console."""

    def __init__(self, target: str) -> None:
        body = f"<html><body><iframe id='f' src='{target}'></iframe></body></html>".encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def _access_token(server: LiveServer, browser_client: httpx.Client) -> str:
    """An OAuth access token of the user signed in in ``browser_client``: a public client, the
    consent page (allow), the code exchanged with PKCE."""
    import base64
    import hashlib
    import json
    import re
    import secrets
    from urllib.parse import parse_qs, urlsplit

    redirect = "http://127.0.0.1:9/cb"
    added = run_cli(
        [
            *("client", "add", "Dashboard", "--org", "Acme", "--redirect-uri", redirect),
            *("--public", "--scope", "vso.code", "--json"),
        ],
        server.env,
        Path("."),
    )
    assert added.returncode == 0, added.stderr
    client_id = json.loads(added.stdout)["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect,
        "scope": "vso.code",
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    consent = browser_client.get("/oauth2/authorize", params=query)
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', consent.text)
    assert consent.status_code == 200 and csrf, consent.text
    allowed = browser_client.post(
        "/oauth2/authorize", data={**query, "csrf_token": csrf.group(1), "decision": "allow"}
    )
    assert allowed.status_code == 302, allowed.text
    code = parse_qs(urlsplit(allowed.headers["location"]).query)["code"][0]
    token = httpx.post(
        f"{server.base_url}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    return str(token.json()["access_token"])


def test_console_flows_in_chromium(server: LiveServer) -> None:
    from playwright.sync_api import sync_playwright

    pats = _people(server)
    secret = _enrol_admin(server)
    base = server.base_url
    # alice's own browser session, live before the admin acts
    alice = httpx.Client(base_url=base)
    page0 = alice.get("/signin")
    import re

    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page0.text)
    assert csrf
    signed = alice.post(
        "/signin", data={"username": "alice@acme.test", "password": PASSWORD, "csrf_token": csrf.group(1)}
    )
    assert signed.status_code == 303
    assert alice.get("/api/v1/me/sessions").status_code == 200
    access = _access_token(server, alice)  # an app's access token, issued before the admin acts
    assert _valid(server, access) == 200
    alerts: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            ctx = browser.new_context()
            page = ctx.new_page()
            page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
            page.goto(f"{base}/console")
            assert page.url.startswith(f"{base}/signin")
            page.fill("#username", "admin@acme.test")
            page.fill("#password", PASSWORD)
            page.press("#password", "Enter")
            page.wait_for_selector("#code")  # the second step
            page.fill("#code", _code(secret))
            page.press("#code", "Enter")
            page.wait_for_selector("h1:has-text('Dashboard')")  # an admin lands on the dashboard
            page.wait_for_load_state("load")
            assert page.evaluate("() => Object.keys(window.Chart.instances).length") == 5
            _axe(page)
            page.goto(f"{base}/console/users")
            page.wait_for_selector("h1:has-text('Users')")
            _axe(page)
            # the XSS display name is text, not markup
            assert page.locator(f"text={XSS}").count() >= 1
            assert page.locator("img").count() == 0
            # Revoke sessions of one user: the dialog, then Yes
            page.click("a:has-text('Alice')")
            page.wait_for_selector("h1:has-text('Alice')")
            _axe(page)
            page.click("a:has-text('Revoke sessions')")
            dialog = page.locator("#dialog-revoke-sessions")
            assert dialog.is_visible()
            assert "refresh tokens and access tokens stop working" in dialog.inner_text()
            dialog.locator("button:has-text('Yes')").click()
            page.wait_for_selector("#flash")
            assert "Revoke sessions: done" in page.inner_text("#flash")
            assert alice.get("/api/v1/me/sessions").status_code == 401  # her live session: refused
            assert _valid(server, access) == 401  # and her already-issued access token
            assert _valid(server, pats["alice"]) == 200  # Revoke sessions leaves PATs alone
            # bulk: three selected users, Revoke all tokens
            page.goto(f"{base}/console/users")
            for name in ("Bob", "Carol", "Dave"):
                page.check(f"input[aria-label='Select {name}']")
            page.select_option("#bulk-action", "revoke-tokens")
            page.click("#bulk-form button:has-text('Apply')")
            bulk = page.locator("#bulk-dialog")
            assert bulk.is_visible() and "3" in bulk.inner_text()
            bulk.locator("button:has-text('Yes')").click()
            page.wait_for_selector("#flash")
            assert "done for 3 users" in page.inner_text("#flash")
            for name in ("bob", "carol", "dave"):
                assert _valid(server, pats[name]) == 401, name
            assert _valid(server, pats["alice"]) == 200
            page.goto(f"{base}/console/tokens?state=live")
            _axe(page)
            for path in ("/console/audit", "/console/alerts", "/console/rules", "/console/policy"):
                page.goto(base + path)
                _axe(page)
            # a CSV with an unknown user: the dry run's table, the run, the results file
            page.goto(f"{base}/console/bulk")
            _axe(page)
            page.set_input_files(
                "input[name=file]",
                files=[
                    {
                        "name": "leavers.csv",
                        "mimeType": "text/csv",
                        "buffer": b"UserPrincipalName\nalice@acme.test\nghost@acme.test\n",
                    }
                ],
            )
            page.click("button:has-text('Dry run')")
            page.wait_for_selector("table")  # the dry run completed: the page shows its rows
            assert "ghost@acme.test" in page.inner_text("table")
            assert _valid(server, pats["alice"]) == 200  # a dry run revokes nothing
            _axe(page)
            page.click("a:has-text('Run it')")
            page.locator("#run-dialog button:has-text('Yes')").click()
            page.wait_for_selector("h1:has-text('Revocation of leavers.csv')")
            page.wait_for_selector("#progress:has-text('completed')")  # htmx polled until completed
            with page.expect_download() as download:
                page.click("a#results")
            results = Path(download.value.path()).read_text()
            assert results.splitlines()[0].startswith("UserPrincipalName,Status")
            lines = {line.split(",")[0]: line for line in results.splitlines()[1:]}
            assert lines["alice@acme.test"].split(",")[1] == "Success"
            assert lines["ghost@acme.test"].split(",")[1] != "Success"
            assert _valid(server, pats["alice"]) == 401
            # framing: another origin's iframe gets nothing
            framer = Framer(f"{base}/console/users")
            try:
                frame_page = ctx.new_page()
                frame_page.goto(framer.url)
                frame_page.wait_for_selector("iframe")
                frame_page.wait_for_timeout(500)
                assert len(frame_page.frames) == 2  # the framer's page and its iframe
                inner = frame_page.frames[1]
                # Chromium refused to render the console there (frame-ancestors 'none'): the
                # frame holds its error page, not the console
                assert inner.url.startswith("chrome-error://"), inner.url
                assert "Users" not in inner.content()
            finally:
                framer.httpd.shutdown()
        finally:
            browser.close()
    assert alerts == []


def test_console_refuses_csrf_framing_and_members_by_url(server: LiveServer) -> None:
    import re

    _people(server)
    base = server.base_url
    alice = httpx.Client(base_url=base)
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', alice.get("/signin").text)
    assert csrf
    assert (
        alice.post(
            "/signin", data={"username": "alice@acme.test", "password": PASSWORD, "csrf_token": csrf.group(1)}
        ).status_code
        == 303
    )
    page = alice.get("/console/users")
    assert page.status_code == 403  # a member, by URL
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    with _api(server) as api:
        admin_id = api.get(f"/api/v1/orgs/{server.org}/users/admin@acme.test").json()["id"]
    forged = alice.post(f"/console/users/{admin_id}/disable", data={"confirmed": "yes"})
    assert forged.status_code == 403  # no CSRF token
    mine = alice.get("/console/tokens")
    assert mine.status_code == 200 and "alice" in mine.text and "bob-ci" not in mine.text
    assert mine.headers["x-frame-options"] == "DENY"


def test_break_glass_requested_by_one_admin_and_approved_by_another(server: LiveServer) -> None:
    from playwright.sync_api import sync_playwright

    assert (
        run_cli(["user", "passwd", "admin@acme.test"], server.env, Path("."), input=PASSWORD).returncode == 0
    )
    with _api(server) as api:
        r = api.post(f"/api/v1/orgs/{server.org}/users", json={"upn": "root@acme.test", "role": "admin"})
        assert r.status_code == 201, r.text
        assert (
            api.patch(f"/api/v1/orgs/{server.org}/policy", json={"breakGlassTwoPerson": True}).status_code
            == 200
        )
    assert (
        run_cli(["user", "passwd", "root@acme.test"], server.env, Path("."), input=PASSWORD).returncode == 0
    )
    first = _enrol_admin(server)
    root_pat = _operator_pat(server, "root@acme.test", "app_token")
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {root_pat}"}) as api:
        second = api.post("/api/v1/me/mfa", json={"password": PASSWORD}).json()["secret"]
        assert api.post("/api/v1/me/mfa/confirm", json={"code": _code(second, -1)}).status_code == 200
    base = server.base_url

    def sign_in(ctx: Any, upn: str, secret: str) -> Any:
        page = ctx.new_page()
        page.goto(f"{base}/console/break-glass")
        page.fill("#username", upn)
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        page.wait_for_selector("#code")
        page.fill("#code", _code(secret))
        page.press("#code", "Enter")
        page.wait_for_selector("h1:has-text('Break glass')")
        return page

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            a = sign_in(browser.new_context(), "admin@acme.test", first)
            _axe(a)
            assert int(a.inner_text("#bg-total")) >= 2  # the admins' PATs at least
            a.fill("input[name=confirm]", "not the name")
            a.click("button:has-text('Request break-glass')")
            a.wait_for_selector("#console-error, .error")
            assert _valid(server, server.admin_token) == 200  # a wrong confirmation does nothing
            a.goto(f"{base}/console/break-glass")
            a.fill("input[name=confirm]", server.org)
            a.fill("input[name=reason]", "leaked admin token")
            a.click("button:has-text('Request break-glass')")
            a.wait_for_selector("#flash")
            assert "second administrator" in a.inner_text("#flash")
            assert "waiting for a second administrator" in a.inner_text("table:last-of-type")
            assert _valid(server, server.admin_token) == 200  # pending: nothing revoked yet
            b = sign_in(browser.new_context(), "root@acme.test", second)
            b.fill("form[action$='/approve'] input[name=confirm]", server.org)
            b.click("button:has-text('Approve and execute')")
            b.wait_for_selector("#executed")
            assert "Sign in again" in b.inner_text("#executed")
            _axe(b)
            b.goto(f"{base}/console/break-glass")  # the approver's session died with the rest
            assert b.url.startswith(f"{base}/signin")
        finally:
            browser.close()
    assert _valid(server, server.admin_token) == 401
    assert _valid(server, root_pat) == 401
