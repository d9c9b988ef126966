"""Attack traffic against two live nodes on one database, from other loopback addresses: each
attack raises exactly one alert for its token and, where configured, the token is refused at
once on both nodes. (127.0.0.0/8 gives many source addresses without header tricks.)"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import run_cli, serve_process
from tokenwarden.adapters.sql.unit_of_work import SqlDatabase
from tokenwarden.domain.usage import UsageCount, minute_of


@dataclass
class Cluster:
    nodes: list[str]
    org: str
    admin: str
    env: dict[str, str]
    db_path: Path

    def h(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    env = {
        **os.environ,
        "TOKENWARDEN_DATA_DIR": str(tmp_path / "data"),
        "TOKENWARDEN_USAGE_FLUSH_SECONDS": "0.2",
    }
    env.pop("TOKENWARDEN_DATABASE_URL", None)
    init = run_cli(["init", "--org", "Acme", "--admin", "admin@acme.test", "--json"], env, tmp_path)
    assert init.returncode == 0, init.stderr
    admin = json.loads(init.stdout)["token"]
    procs = [serve_process(env, tmp_path) for _ in range(2)]
    try:
        yield Cluster([b for _, b in procs], "Acme", admin, env, tmp_path / "data" / "tokenwarden.db")
    finally:
        for proc, _ in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def client(base: str, token: str, source: str) -> httpx.Client:
    return httpx.Client(
        base_url=base,
        headers={"Authorization": f"Bearer {token}", "User-Agent": "attack-test"},
        transport=httpx.HTTPTransport(local_address=source),
    )


def new_pat(c: Cluster, upn: str = "admin@acme.test", scope: str = "vso.pats") -> tuple[str, str]:
    until = (datetime.now(UTC) + timedelta(days=20)).isoformat()
    if upn == "admin@acme.test":
        r = httpx.post(
            f"{c.nodes[0]}/api/v1/orgs/{c.org}/pats",
            json={"displayName": f"pat-{time.monotonic_ns()}", "scope": scope, "validTo": until},
            headers=c.h(),
        )
        assert r.status_code == 201, r.text
        return r.json()["authorizationId"], r.json()["token"]
    out = run_cli(
        ["pat", "create", "--user", upn, "--name", "t", "--scope", scope, "--json"], c.env, Path.cwd()
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    return body["authorizationId"], body["token"]


def alerts_of(c: Cluster, token_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{c.nodes[1]}/api/v1/orgs/{c.org}/alerts", params={"token": token_id}, headers=c.h())
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def wait_for(check: Callable[[], bool], what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def refused_everywhere(c: Cluster, secret: str) -> bool:
    return all(
        httpx.get(f"{n}/api/v1/validate", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
        for n in c.nodes
    )


def one_alert(c: Cluster, token_id: str, rule: str) -> dict[str, Any]:
    wait_for(lambda: bool(alerts_of(c, token_id)), f"an alert for {token_id}")
    time.sleep(0.6)  # more flushes: still one alert
    found = alerts_of(c, token_id)
    assert [a["rule"] for a in found] == [rule], found
    return found[0]


def set_policy(c: Cluster, **changes: Any) -> None:
    r = httpx.patch(f"{c.nodes[0]}/api/v1/orgs/{c.org}/detection", json=changes, headers=c.h())
    assert r.status_code == 200, r.text
    time.sleep(5.5)  # the nodes' policy cache


def test_each_attack_raises_one_alert_and_the_configured_response(cluster: Cluster) -> None:
    c = cluster
    set_policy(
        c,
        learningDays=0,
        allowedNetworks=["127.0.0.0/24"],
        forbiddenBurst=5,
        maxPerMinute=30,
        responses={"high": ["notify", "revoke", "raiseRisk"], "medium": ["notify"]},
    )
    # 1. a new network: fine from 127.0.0.2, then used from 127.0.3.3
    tid, secret = new_pat(c)
    with client(c.nodes[0], secret, "127.0.0.2") as home:
        assert home.get(f"/api/v1/orgs/{c.org}/pats").status_code == 200
    with client(c.nodes[0], secret, "127.0.3.3") as thief:
        assert thief.get(f"/api/v1/orgs/{c.org}/pats").status_code == 200
    alert = one_alert(c, tid, "unknownNetwork")
    assert alert["level"] == "high" and alert["evidence"]["networks"] == ["127.0.3.0/24"]
    assert alert["responses"] == ["revoke", "raiseRisk"]
    wait_for(lambda: refused_everywhere(c, secret), "the token refused on both nodes")

    # 2. a 403 burst: a narrow token probing what it may do
    tid, secret = new_pat(c, scope="vso.pats")
    with client(c.nodes[0], secret, "127.0.0.4") as prober:
        for path in ("audit", "alerts", "detection", "bulk-revocations", "audit", "alerts"):
            assert prober.get(f"/api/v1/orgs/{c.org}/{path}").status_code in (403, 404)
    alert = one_alert(c, tid, "forbiddenBurst")
    assert alert["evidence"]["forbidden"] >= 5
    wait_for(lambda: refused_everywhere(c, secret), "the prober refused on both nodes")

    # 3. a flood: 70 requests in (at most two) minutes against a limit of 30 a minute
    tid, secret = new_pat(c)
    with client(c.nodes[1], secret, "127.0.0.5") as flood:
        for _ in range(70):
            flood.get(f"/api/v1/orgs/{c.org}/pats")
    alert = one_alert(c, tid, "highFrequency")
    assert alert["evidence"]["requestsPerMinute"] > 30
    wait_for(lambda: refused_everywhere(c, secret), "the flooding token refused on both nodes")

    # 4. a dormant token woken up: its last use 70 days ago (written as the flush would have)
    tid, secret = new_pat(c)
    database = SqlDatabase(f"sqlite:///{c.db_path}")
    try:
        with database() as uow:
            org_id = uow.tokens.get(tid).org_id  # type: ignore[union-attr]
            old = minute_of((datetime.now(UTC) - timedelta(days=70)).timestamp())
            net = "127.0.0.0/24"
            uow.usage.add_counts([UsageCount(tid, org_id, old, "127.0.0.6", net, "cron", "pats", "2xx", 1)])
            uow.commit()
    finally:
        database.dispose()
    with client(c.nodes[0], secret, "127.0.0.6") as cron:
        assert cron.get(f"/api/v1/orgs/{c.org}/pats").status_code == 200
    alert = one_alert(c, tid, "dormantReactivated")
    assert alert["level"] == "medium" and alert["evidence"]["idleDays"] >= 69
    assert alert["responses"] == []  # medium: notify only
    assert httpx.get(f"{c.nodes[1]}/api/v1/validate", headers=c.h(secret)).status_code == 200

    # 5. the owner disabled: their token is refused, and its use raises an alert
    r = httpx.post(f"{c.nodes[0]}/api/v1/orgs/{c.org}/users", json={"upn": "carol@acme.test"}, headers=c.h())
    assert r.status_code == 201, r.text
    tid, secret = new_pat(c, upn="carol@acme.test")
    r = httpx.patch(
        f"{c.nodes[0]}/api/v1/orgs/{c.org}/users/carol@acme.test", json={"status": "disabled"}, headers=c.h()
    )
    assert r.status_code == 200, r.text
    wait_for(lambda: refused_everywhere(c, secret), "the leaver's token refused")
    alert = one_alert(c, tid, "ownerInactive")
    assert alert["level"] == "high"

    # 6. outside working hours: a window that excludes this hour
    hour = datetime.now(UTC).hour
    set_policy(c, workingHours=[(hour + 2) % 24, (hour + 4) % 24])
    tid, secret = new_pat(c)
    with client(c.nodes[1], secret, "127.0.0.8") as late:
        assert late.get(f"/api/v1/orgs/{c.org}/pats").status_code == 200
    alert = one_alert(c, tid, "outsideWorkingHours")
    assert alert["level"] == "medium" and alert["responses"] == []

    # the security view in numbers, the same on both nodes
    for node in c.nodes:
        text = httpx.get(f"{node}/metrics").text
        assert 'tokenwarden_alerts{level="high",rule="unknownNetwork",status="open"} 1.0' in text
        assert 'tokenwarden_alerts{level="medium",rule="outsideWorkingHours",status="open"}' in text
    out = run_cli(["alerts", "list", "--json"], c.env, Path.cwd())
    assert out.returncode == 0, out.stderr
    assert {a["rule"] for a in json.loads(out.stdout)} >= {
        "unknownNetwork",
        "forbiddenBurst",
        "highFrequency",
        "dormantReactivated",
        "ownerInactive",
        "outsideWorkingHours",
    }
    # every response is audited with the alert that caused it
    r = httpx.get(
        f"{c.nodes[0]}/api/v1/orgs/{c.org}/audit",
        params={"eventType": "Token.PatSystemRevokeEvent"},
        headers=c.h(),
    )
    revokes = r.json()["value"]
    assert len(revokes) == 4 and all(e["details"]["alertId"] for e in revokes)


def test_alerts_api_acknowledge_close_and_refusals(cluster: Cluster) -> None:
    c = cluster
    set_policy(c, learningDays=0, allowedNetworks=["127.0.0.0/24"])
    tid, secret = new_pat(c)
    with client(c.nodes[0], secret, "127.0.9.9") as thief:
        thief.get(f"/api/v1/orgs/{c.org}/pats")
    alert = one_alert(c, tid, "unknownNetwork")
    assert alert["responses"] == []  # default: notify only
    base = f"{c.nodes[0]}/api/v1/orgs/{c.org}/alerts/{alert['id']}"
    r = httpx.post(f"{base}/acknowledge", json={"note": "on it"}, headers=c.h())
    assert r.status_code == 200 and r.json()["status"] == "acknowledged" and r.json()["note"] == "on it"
    r = httpx.post(f"{base}/close", headers=c.h())
    assert r.status_code == 200 and r.json()["status"] == "closed"
    assert httpx.post(f"{base}/acknowledge", headers=c.h()).status_code == 409
    assert httpx.post(f"{c.nodes[0]}/api/v1/orgs/{c.org}/alerts/nope/close", headers=c.h()).status_code == 404
    # the member whose token it is may not see or change alerts
    assert httpx.get(f"{c.nodes[0]}/api/v1/orgs/{c.org}/alerts", headers=c.h(secret)).status_code == 403
    bad = httpx.patch(
        f"{c.nodes[0]}/api/v1/orgs/{c.org}/detection", json={"timezone": "Mars/Base"}, headers=c.h()
    )
    assert bad.status_code == 400 and "time zone" in bad.text
    bad = httpx.get(f"{c.nodes[0]}/api/v1/orgs/{c.org}/alerts", params={"status": "weird"}, headers=c.h())
    assert bad.status_code == 400
