"""Usage records over real HTTP: client addresses from the socket (several loopback addresses),
X-Forwarded-For only from trusted proxies, refusals counted, the validate door counted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LiveServer, live, run_cli


def _client(base: str, token: str, source: str, agent: str) -> httpx.Client:
    return httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {token}", "User-Agent": agent},
        transport=httpx.HTTPTransport(local_address=source),
    )


def _usage(base: str, admin: str, org: str, token_id: str, want: int) -> dict[str, Any]:
    """The token's usage once ``want`` requests have been flushed (flushes run every 0.2 s)."""
    deadline = time.monotonic() + 15
    while True:
        r = httpx.get(
            f"{base}/api/v1/orgs/{org}/tokens/{token_id}/usage", headers={"Authorization": f"Bearer {admin}"}
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["requests"] >= want or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


@pytest.fixture
def proxied_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A live server that trusts 127.0.0.1 as a reverse proxy (and only it)."""
    yield from live(
        tmp_path, TOKENWARDEN_TRUSTED_PROXIES="127.0.0.1/32", TOKENWARDEN_USAGE_FLUSH_SECONDS="0.2"
    )


def _pat(base: str, admin: str, org: str, scope: str) -> tuple[str, str]:
    until = (datetime.now(UTC) + timedelta(days=20)).isoformat()
    r = httpx.post(
        f"{base}/api/v1/orgs/{org}/pats",
        json={"displayName": "ci", "scope": scope, "validTo": until},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 201, r.text
    return r.json()["authorizationId"], r.json()["token"]


def test_requests_are_counted_per_client_network_agent_and_status(proxied_server: LiveServer) -> None:
    base, org, admin = proxied_server.base_url, proxied_server.org, proxied_server.admin_token
    tid, secret = _pat(base, admin, org, "vso.pats")
    with _client(base, secret, "127.0.0.2", "ci-agent/1.0") as ci:
        for _ in range(3):
            assert ci.get(f"/api/v1/orgs/{org}/pats").status_code == 200
        assert ci.get("/api/v1/validate").status_code == 200  # the hot door counts too
    with _client(base, secret, "127.0.5.9", "curl/8.5") as odd:
        # a scope the token lacks: 403, counted against the token
        assert odd.get(f"/api/v1/orgs/{org}/audit").status_code == 403
        assert odd.get(f"/{org}/_apis/audit/auditlog").status_code == 403
    body = _usage(base, admin, org, tid, want=6)
    assert body["requests"] == 6
    networks = {n["network"]: n["requests"] for n in body["networks"]}
    assert networks == {"127.0.0.0/24": 4, "127.0.5.0/24": 2}
    assert body["distinctNetworks"] == 2
    assert {a["userAgent"]: a["requests"] for a in body["userAgents"]} == {"ci-agent/1.0": 4, "curl/8.5": 2}
    assert body["recent"]["status403"] == 2 and body["recent"]["status401"] == 0
    assert {a["area"] for a in body["areas"]} == {"pats", "validate", "audit", "ado.audit"}
    assert body["firstUsedAt"] and body["perDay"][-1]["requests"] == 6
    # the listing's usage column
    r = httpx.get(f"{base}/api/v1/orgs/{org}/pats", headers={"Authorization": f"Bearer {secret}"})
    assert next(p["requests30d"] for p in r.json()["value"] if p["authorizationId"] == tid) >= 6


def test_x_forwarded_for_counts_only_from_the_trusted_proxy(proxied_server: LiveServer) -> None:
    base, org, admin = proxied_server.base_url, proxied_server.org, proxied_server.admin_token
    tid, secret = _pat(base, admin, org, "vso.pats")
    spoof = {"X-Forwarded-For": "203.0.113.50"}
    # 127.0.0.1 is the trusted proxy: the client is who it says
    with _client(base, secret, "127.0.0.1", "behind-proxy") as proxy:
        assert proxy.get(f"/api/v1/orgs/{org}/pats", headers=spoof).status_code == 200
    # 127.0.0.3 is not: its header is ignored, its own address counts
    with _client(base, secret, "127.0.0.3", "direct") as direct:
        assert direct.get(f"/api/v1/orgs/{org}/pats", headers=spoof).status_code == 200
    body = _usage(base, admin, org, tid, want=2)
    assert {n["network"] for n in body["networks"]} == {"203.0.113.0/24", "127.0.0.0/24"}
    r = httpx.get(f"{base}/api/v1/orgs/{org}/pats/{tid}", headers={"Authorization": f"Bearer {secret}"})
    assert r.json()["lastUsedIp"] in ("203.0.113.50", "127.0.0.3")


def test_usage_route_refuses_other_orgs_members_and_garbage(proxied_server: LiveServer) -> None:
    base, org, admin = proxied_server.base_url, proxied_server.org, proxied_server.admin_token
    tid, secret = _pat(base, admin, org, "vso.pats")
    h = {"Authorization": f"Bearer {admin}"}
    assert httpx.get(f"{base}/api/v1/orgs/{org}/tokens/not-a-uuid/usage", headers=h).status_code == 400
    missing = f"{base}/api/v1/orgs/{org}/tokens/00000000-0000-4000-8000-000000000000/usage"
    assert httpx.get(missing, headers=h).status_code == 404
    assert httpx.get(f"{base}/api/v1/orgs/{org}/tokens/{tid}/usage").status_code == 401
    # the owner reads their own token's usage with its own PAT-reading token
    own = httpx.get(
        f"{base}/api/v1/orgs/{org}/tokens/{tid}/usage", headers={"Authorization": f"Bearer {secret}"}
    )
    assert own.status_code == 200 and own.json()["tokenId"] == tid
    env = proxied_server.env
    r = run_cli(["org", "create", "Globex", "--admin", "boss@globex.test", "--json"], env, Path.cwd())
    assert r.returncode == 0, r.stderr
    other = json.loads(r.stdout)["token"]
    for path in (f"/api/v1/orgs/{org}/tokens/{tid}/usage", f"/api/v1/orgs/Globex/tokens/{tid}/usage"):
        resp = httpx.get(base + path, headers={"Authorization": f"Bearer {other}"})
        assert resp.status_code == 404, (path, resp.text)


def test_usage_show_cli(proxied_server: LiveServer, tmp_path: Path) -> None:
    base, org, admin = proxied_server.base_url, proxied_server.org, proxied_server.admin_token
    tid, secret = _pat(base, admin, org, "vso.pats")
    with _client(base, secret, "127.0.0.4", "cli-test") as c:
        assert c.get(f"/api/v1/orgs/{org}/pats").status_code == 200
    _usage(base, admin, org, tid, want=1)
    r = run_cli(["usage", "show", tid, "--json"], proxied_server.env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["requests"] == 1
    r = run_cli(["usage", "show", tid], proxied_server.env, tmp_path)
    assert r.returncode == 0 and "127.0.0.0/24" in r.stdout and "cli-test" in r.stdout
    assert secret not in r.stdout
    r = run_cli(["usage", "show", "nope"], proxied_server.env, tmp_path)
    assert r.returncode != 0 and "token id" in (r.stderr + r.stdout)
    r = run_cli(["pat", "list", "--user", "admin@acme.test"], proxied_server.env, tmp_path)
    assert r.returncode == 0 and "uses 30d" in r.stdout
