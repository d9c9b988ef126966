"""Shared pieces of the sign-in and browser-session end-to-end tests (issue 11 part 1)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.e2e.conftest import Server, make_settings
from tests.unit.conftest import FakeClock
from tokenwarden.bootstrap import build
from tokenwarden.http.app import create_app
from tokenwarden.services.common import OPERATOR

PASSWORD = "plum-anchor-meadow-42"
ALICE = "alice@acme.test"
# Fast argon2 for tests (the defaults cost 64 MiB and ~50 ms per hash).
CHEAP: dict[str, Any] = {"argon2_memory_kib": 256, "argon2_time_cost": 1, "argon2_parallelism": 1}
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def start_server(
    tmp_path: Path, clock: FakeClock | None = None, base_url: str = "http://testserver", **settings: Any
) -> Iterator[Server]:
    """The real app on SQLite, with a controllable clock for the services (the validator keeps
    real time, as in production)."""
    config = make_settings(tmp_path).model_copy(update={**CHEAP, **settings})
    container = build(config, create_pepper=True, clock=clock)
    container.database.upgrade()
    result = container.directory.initialize("Acme", "admin@acme.test")
    container.directory.add_user(OPERATOR, "Acme", ALICE)
    container.accounts.set_password(OPERATOR, ALICE, PASSWORD)
    app = create_app(container)
    with TestClient(app, base_url=base_url, follow_redirects=False) as client:
        yield Server(client, container, "Acme", result.org.id, "admin@acme.test", result.token.secret)


def past_clock(**ago: float) -> FakeClock:
    return FakeClock(datetime.now(UTC) - timedelta(**ago))


def browser(server: Server, base_url: str = "http://testserver") -> TestClient:
    """Another browser (its own cookie jar) on the same running app."""
    return TestClient(server.client.app, base_url=base_url, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, html
    return found.group(1)


def sign_in(
    client: TestClient, upn: str = ALICE, password: str = PASSWORD, next: str | None = None
) -> httpx.Response:
    page = client.get("/signin", params={"next": next} if next else None)
    assert page.status_code == 200, page.text
    data = {"username": upn, "password": password, "csrf_token": csrf_of(page.text)}
    if next is not None:
        data["next"] = next
    return client.post("/signin", data=data)


def signed_in(client: TestClient, upn: str = ALICE) -> str:
    """Sign in and return the session cookie's value."""
    r = sign_in(client, upn)
    assert r.status_code == 303, r.text
    return session_cookie(client)


def session_cookie(client: TestClient) -> str:
    value = client.cookies.get("tw_session") or client.cookies.get("__Host-tw_session")
    assert value, dict(client.cookies)
    return value


def is_signed_in(client: TestClient) -> bool:
    r = client.get("/account")
    assert r.status_code in (200, 303), r.text
    return r.status_code == 200
