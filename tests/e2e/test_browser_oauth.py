"""Authorization code + PKCE through the real sign-in and consent pages in a real browser
(Playwright driving Debian's Chromium), then a real OAuth client (authlib's OAuth2Session)
exchanges the code, refreshes, and is cut off by a Graph revokeSignInSessions at once."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.e2e.conftest import LiveServer, run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _chromium() -> None:
    """Debian's Chromium (.ci/run installs it); missing in CI is a failure, not a skip."""
    if shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("Debian's chromium is not installed")


PASSWORD = "correct horse battery staple 42"


class Callback:
    """The application's redirect URI: records what the browser brings back."""

    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                body = b"<html><body><h1 id='done'>signed in</h1></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.hits: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}/cb"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def callback() -> Iterator[Callback]:
    cb = Callback()
    yield cb
    cb.httpd.shutdown()


def test_browser_sign_in_consent_code_pkce_refresh_and_revocation(
    live_server: LiveServer, callback: Callback, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    env, cwd = live_server.env, tmp_path
    base = live_server.base_url
    h = {"Authorization": f"Bearer {live_server.admin_token}"}
    r = httpx.post(f"{base}/api/v1/orgs/Acme/users", json={"upn": "alice@acme.test"}, headers=h)
    assert r.status_code == 201, r.text
    assert run_cli(["user", "passwd", "alice@acme.test"], env, cwd, input=PASSWORD).returncode == 0
    added = run_cli(
        [
            "client",
            "add",
            "Dashboard",
            "--org",
            "Acme",
            "--redirect-uri",
            callback.uri,
            "--public",
            "--scope",
            "vso.code vso.profile graph.users_manage",
            "--json",
        ],
        env,
        cwd,
    )
    assert added.returncode == 0, added.stderr
    client_id = json.loads(added.stdout)["client_id"]
    meta = httpx.get(f"{base}/.well-known/openid-configuration").json()

    session = OAuth2Session(
        client_id,
        redirect_uri=callback.uri,
        scope="vso.code graph.users_manage",
        code_challenge_method="S256",
    )
    verifier = "v" * 20 + "-" + "x" * 40
    url, state = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
    assert "code_challenge=" + create_s256_code_challenge(verifier) in url

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            assert urlsplit(page.url).path == "/signin"
            page.fill("#username", "alice@acme.test")
            page.fill("#password", PASSWORD)
            page.press("#password", "Enter")  # Enter submits
            page.wait_for_selector("button[value=allow]")
            assert "Dashboard" in page.content()
            page.click("button[value=allow]")
            page.wait_for_selector("#done")
        finally:
            browser.close()
    landed = [hit for hit in callback.hits if hit.startswith("/cb?")]
    assert len(landed) == 1, callback.hits
    query = parse_qs(urlsplit(landed[0]).query)
    assert query["state"] == [state]
    token = session.fetch_token(meta["token_endpoint"], code=query["code"][0], code_verifier=verifier)
    assert token["refresh_token"].startswith("twr_")
    access = token["access_token"]
    assert (
        httpx.get(f"{base}/api/v1/validate", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    )
    refreshed = session.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["refresh_token"] != token["refresh_token"]

    # the user's own access token signs the user out everywhere (Graph /me)
    r = httpx.post(
        f"{base}/graph/v1.0/me/revokeSignInSessions",
        headers={"Authorization": f"Bearer {refreshed['access_token']}"},
    )
    assert r.status_code == 200, r.text
    for t in (access, refreshed["access_token"]):
        r = httpx.get(f"{base}/api/v1/validate", headers={"Authorization": f"Bearer {t}"})
        assert r.status_code == 401 and r.json()["error"]["message"] == "token is revoked"
    r = httpx.post(
        meta["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed["refresh_token"],
            "client_id": client_id,
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
