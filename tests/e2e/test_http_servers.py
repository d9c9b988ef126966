"""`tokenwarden serve --server uvicorn|granian`: the same behaviour on either HTTP server —
validation and refusal after revocation, the client address from the socket (a forged
X-Forwarded-For from an untrusted peer ignored), oversized bodies refused, a clear error for an
unknown server name."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LiveServer, live, run_cli

MIB = 1024 * 1024


@pytest.fixture(params=["uvicorn", "granian"])
def any_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    yield from live(tmp_path, TOKENWARDEN_SERVER=request.param, TOKENWARDEN_USAGE_FLUSH_SECONDS="0.2")


def test_validate_revoke_and_refuse(any_server: LiveServer) -> None:
    base, org, admin = any_server.base_url, any_server.org, any_server.admin_token
    until = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    made = httpx.post(
        f"{base}/api/v1/orgs/{org}/pats",
        json={"displayName": "ci", "scope": "vso.code", "validTo": until},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert made.status_code == 201, made.text
    tid, secret = made.json()["authorizationId"], made.json()["token"]
    spoof = {"Authorization": f"Bearer {secret}", "X-Forwarded-For": "203.0.113.7"}
    with httpx.Client(base_url=base, transport=httpx.HTTPTransport(local_address="127.0.0.4")) as c:
        ok = c.get(f"/api/v1/validate?scope=vso.code&org={org}", headers=spoof)
        assert ok.status_code == 200 and ok.json()["active"] is True, ok.text
    deadline = time.monotonic() + 15
    while True:  # usage is flushed every 0.2 s; the socket's address, not the forged header
        got = httpx.get(f"{base}/api/v1/orgs/{org}/pats/{tid}", headers={"Authorization": f"Bearer {admin}"})
        if got.json().get("lastUsedIp") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got.json()["lastUsedIp"] == "127.0.0.4"
    gone = httpx.delete(f"{base}/api/v1/orgs/{org}/pats/{tid}", headers={"Authorization": f"Bearer {admin}"})
    assert gone.status_code in (200, 204), gone.text
    refused = httpx.get(f"{base}/api/v1/validate", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401


def test_oversized_body_is_413(any_server: LiveServer) -> None:
    r = httpx.post(
        f"{any_server.base_url}/api/v1/orgs/{any_server.org}/pats",
        content=b"[" + b" " * (2 * MIB) + b"]",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {any_server.admin_token}"},
    )
    assert r.status_code == 413, r.text


def test_an_unknown_server_name_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "TOKENWARDEN_DATA_DIR": str(tmp_path / "data")}
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    r = run_cli(["serve", "--server", "gunicorn", "--port", "1"], env, tmp_path)
    assert r.returncode != 0
    assert "unknown server 'gunicorn'" in r.stderr and "uvicorn, granian" in r.stderr
