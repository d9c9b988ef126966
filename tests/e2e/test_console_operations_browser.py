"""Issue 16 item 5 in a real browser (Playwright driving Debian's Chromium) against a real
``tokenwarden serve``: the rotation and jobs pages as an administrator, axe-core on each (no
serious or critical violation), Run now through its dialog, and the run's page polled by htmx
until it has completed."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LiveServer, live, run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery staple 42"
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


def _axe(page: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not bad, [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in bad]


def _api(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.admin_token}"})


def _managed_and_rotated(server: LiveServer) -> str:
    """A PAT of svc@acme.test under rotation into the built-in store, rotated once through the
    API; the secret the store serves (which no page may show)."""
    with _api(server) as api:
        r = api.post(f"/api/v1/orgs/{server.org}/users", json={"upn": "svc@acme.test"})
        assert r.status_code == 201, r.text
        made = run_cli(
            [
                *("pat", "create", "--org", server.org, "--user", "svc@acme.test"),
                *("--name", "ci token", "--scope", "vso.code", "--json"),
            ],
            server.env,
            Path("."),
        )
        assert made.returncode == 0, made.stderr
        auth_id = json.loads(made.stdout)["authorizationId"]
        creds = f"/api/v1/orgs/{server.org}/managed-credentials"
        body = {"name": "ci", "authorizationId": auth_id, "store": "builtin", "contacts": ["ops@acme.test"]}
        r = api.post(creds, json=body)
        assert r.status_code == 201, r.text
        r = api.post(f"{creds}/ci/rotate", json={"compromised": False})
        assert r.status_code == 200 and r.json()["result"] in ("rotated", "pending"), r.text
        r = api.get(f"/api/v1/orgs/{server.org}/secrets/ci")
        assert r.status_code == 200, r.text
        return str(r.json()["value"])


def _sign_in(page: Any, base: str, target: str) -> None:
    page.goto(base + target)
    page.fill("#username", "admin@acme.test")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_selector("h1:has-text('Rotation')")


def test_rotation_and_jobs_pages_in_chromium(server: LiveServer) -> None:
    from playwright.sync_api import sync_playwright

    assert (
        run_cli(["user", "passwd", "admin@acme.test"], server.env, Path("."), input=PASSWORD).returncode == 0
    )
    secret = _managed_and_rotated(server)
    base = server.base_url
    alerts: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_context().new_page()
            page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
            _sign_in(page, base, "/console/rotation")
            assert "ci" in page.inner_text("#credentials") and "ops@acme.test" in page.inner_text(
                "#credentials"
            )
            _axe(page)
            assert secret not in page.content()
            page.click("#credentials a:has-text('ci')")
            page.wait_for_selector("h1:has-text('ci')")
            assert "forced" in page.inner_text("#history")
            _axe(page)
            assert secret not in page.content()
            page.goto(f"{base}/console/jobs")
            page.wait_for_selector("h1:has-text('Jobs')")
            _axe(page)
            # Run now: the dialog, then Yes; the run's page polls until the run has completed
            page.click("a[aria-label='Run audit-checkpoint now']")
            dialog = page.locator("#run-audit-checkpoint")
            assert dialog.is_visible() and "for this organization only" in dialog.inner_text()
            _axe(page)
            dialog.locator("button:has-text('Yes')").click()
            page.wait_for_selector("h1:has-text('Run of audit-checkpoint')")
            assert re.search(r"/console/jobs/audit-checkpoint/[^/?]+\?done=job-started$", page.url), page.url
            page.wait_for_selector("#run-state:has-text('completed')", timeout=15_000)
            assert page.evaluate("() => document.querySelector('#progress').hasAttribute('hx-get')") is False
            _axe(page)
            assert secret not in page.content()
        finally:
            browser.close()
    assert alerts == []
