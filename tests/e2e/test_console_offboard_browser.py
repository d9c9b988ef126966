"""Issue 17 in a real browser (Playwright driving Debian's Chromium) against a real
``tokenwarden serve``: on a member's page the administrator opens **Offboard**, names a successor
in the dialog and gets the report; the leaver's PAT is refused at once; axe-core finds no serious
or critical violation on the page, the open dialog or the report."""

from __future__ import annotations

import json
import os
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


def _valid(server: LiveServer, token: str) -> int:
    return httpx.get(
        f"{server.base_url}/api/v1/validate", headers={"Authorization": f"Bearer {token}"}
    ).status_code


def _people(server: LiveServer) -> tuple[str, str]:
    """Bob (the leaver, with a PAT) and Carol; the admin's password. Bob's id and PAT."""
    assert (
        run_cli(["user", "passwd", "admin@acme.test"], server.env, Path("."), input=PASSWORD).returncode == 0
    )
    ids: dict[str, str] = {}
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {server.admin_token}"}
    ) as api:
        for name in ("bob", "carol"):
            r = api.post(
                f"/api/v1/orgs/{server.org}/users",
                json={"upn": f"{name}@acme.test", "displayName": name.title()},
            )
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]
    made = run_cli(
        [
            *("pat", "create", "--org", server.org, "--user", "bob@acme.test"),
            *("--name", "laptop", "--scope", "vso.code", "--json"),
        ],
        server.env,
        Path("."),
    )
    assert made.returncode == 0, made.stderr
    return ids["bob"], str(json.loads(made.stdout)["token"])


def test_offboard_from_a_members_page_in_chromium(server: LiveServer) -> None:
    from playwright.sync_api import sync_playwright

    bob_id, pat = _people(server)
    assert _valid(server, pat) == 200
    base = server.base_url
    alerts: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_context().new_page()
            page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
            page.goto(f"{base}/console/users/{bob_id}")
            page.fill("#username", "admin@acme.test")
            page.fill("#password", PASSWORD)
            page.press("#password", "Enter")
            page.wait_for_selector("h1:has-text('Bob')")
            _axe(page)
            page.click("a:has-text('Offboard')")
            dialog = page.locator("#dialog-offboard")
            assert dialog.is_visible()
            assert "stops working at once on every node" in dialog.inner_text()
            assert page.evaluate("() => document.activeElement.textContent") == "No"  # focus in the dialog
            _axe(page)
            page.get_by_label("Successor (optional)").fill("carol@acme.test")
            dialog.locator("button:has-text('Offboard')").click()
            page.wait_for_selector("h1:has-text('Offboarded Bob')")
            assert "carol@acme.test (named here)" in page.inner_text("#successor")
            assert "1 live" in page.inner_text("#tokens-cut")
            assert "bob@acme.test is disabled in Acme" in page.inner_text("#flash")
            _axe(page)
            assert _valid(server, pat) == 401  # the leaver's PAT: refused at once
        finally:
            browser.close()
    assert alerts == []
