"""The Azure DevOps Audit Log API, and the seed's Node.js audit script run unchanged against it."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LiveServer, Server

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SEED_ACTIONS = {"Token.PatCreateEvent", "Token.PatRevokeEvent", "Token.PatExpiredEvent"}


def _window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "startTime": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "endTime": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "api-version": "7.1-preview.1",
    }


def test_entries_have_the_azure_devops_shape_and_page_with_a_continuation_token(server: Server) -> None:
    ids = [server.pat_for("admin@acme.test", name=f"ci-{i}")[0] for i in range(3)]
    r = server.client.delete(
        f"/acme/_apis/tokens/pats?authorizationId={ids[0]}&api-version=7.1-preview.1", headers=server.basic()
    )
    assert r.status_code == 204, r.text
    seen: list[dict[str, object]] = []
    params: dict[str, str] = {**_window(), "batchSize": "2"}
    for _ in range(10):
        r = server.client.get("/acme/_apis/audit/auditlog", params=params, headers=server.basic())
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"decoratedAuditLogEntries", "continuationToken", "hasMore"}
        assert len(body["decoratedAuditLogEntries"]) <= 2
        seen += body["decoratedAuditLogEntries"]
        if not body["hasMore"]:
            assert body["continuationToken"] is None
            break
        params["continuationToken"] = body["continuationToken"]
    stamps = [e["timestamp"] for e in seen]
    assert stamps == sorted(stamps, reverse=True), "newest first"
    assert len({e["id"] for e in seen}) == len(seen), "no entry twice across pages"
    creates = [e for e in seen if e["actionId"] == "Token.PatCreateEvent"]
    revokes = [e for e in seen if e["actionId"] == "Token.PatRevokeEvent"]
    # the three, and the administrator's own token from set-up
    assert set(ids) < {e["data"]["TokenId"] for e in creates}  # type: ignore[index]
    assert [e["data"]["TokenId"] for e in revokes] == [ids[0]]  # type: ignore[index]
    entry = revokes[0]
    assert entry["actorUPN"] == "admin@acme.test" and entry["actorUserId"]
    assert entry["area"] == "Token" and entry["category"] == "remove"
    assert entry["scopeType"] == "organization" and entry["scopeId"] == server.org_id
    assert entry["ipAddress"] and entry["userAgent"] and entry["timestamp"].endswith("Z")
    for key in ("correlationId", "activityId", "actorDisplayName", "authenticationMechanism", "details"):
        assert key in entry


def test_bad_queries_are_400s_that_say_what_is_wrong(server: Server) -> None:
    cases = {
        "batchSize=0": "batchSize",
        "batchSize=abc": "batchSize",
        "continuationToken=garbage!": "continuationToken",
        "startTime=yesterday": "startTime",
        "startTime=2026-02-01T00:00:00Z&endTime=2026-01-01T00:00:00Z": "startTime must be before endTime",
        "api-version=9.0": "api-version",
    }
    for query, words in cases.items():
        r = server.client.get(f"/acme/_apis/audit/auditlog?{query}", headers=server.basic())
        assert r.status_code == 400, (query, r.text)
        assert words in r.text, (query, r.text)


def test_the_audit_log_needs_the_scope_an_admin_and_the_right_org(server: Server) -> None:
    _, narrow = server.pat_for("admin@acme.test", scope="vso.pats")
    r = server.client.get("/acme/_apis/audit/auditlog", headers=server.basic(narrow))
    assert r.status_code == 403
    server.add_member("member@acme.test")
    _, member = server.pat_for("member@acme.test", scope="vso.auditlog")
    r = server.client.get("/acme/_apis/audit/auditlog", headers=server.basic(member))
    assert r.status_code == 403
    r = server.client.get("/acme/_apis/audit/auditlog")
    assert r.status_code == 401
    other = server.container.directory.add_org("Globex", "boss@globex.test")
    r = server.client.get("/acme/_apis/audit/auditlog", headers=server.basic(other.token.secret))
    assert r.status_code == 404
    r = server.client.get("/globex/_apis/audit/auditlog", headers=server.basic(other.token.secret))
    assert r.status_code == 200
    assert all(e["scopeId"] == other.org.id for e in r.json()["decoratedAuditLogEntries"])


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_seeds_node_audit_script_runs_unchanged(live_server: LiveServer) -> None:
    base, org, token = live_server.base_url, live_server.org, live_server.admin_token
    h = {"Authorization": f"Bearer {token}"}
    until = (datetime.now(UTC) + timedelta(days=20)).isoformat()
    with httpx.Client(base_url=base, headers=h) as local:
        r = local.post(
            f"/api/v1/orgs/{org}/pats", json={"displayName": "ci", "scope": "vso.code", "validTo": until}
        )
        assert r.status_code == 201, r.text
        from_ci = r.json()["authorizationId"]
    # A second client on another loopback address: the "unknown IP" of the seed's analysis.
    transport = httpx.HTTPTransport(local_address="127.0.0.7")
    with httpx.Client(base_url=base, headers=h, transport=transport) as stranger:
        r = stranger.post(
            f"/api/v1/orgs/{org}/pats", json={"displayName": "odd", "scope": "vso.code", "validTo": until}
        )
        assert r.status_code == 201, r.text
        odd = r.json()["authorizationId"]
        assert stranger.delete(f"/api/v1/orgs/{org}/pats/{odd}").status_code in (200, 204)
    now = datetime.now(UTC)
    out = subprocess.run(
        [
            "node",
            str(NODE_DIR / "ado_audit.js"),
            org,
            (now - timedelta(hours=1)).isoformat(),
            (now + timedelta(hours=1)).isoformat(),
            json.dumps(["127.0.0.1"]),
        ],
        env={**live_server.env, "TW_BASE_URL": base, "TW_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    entries, alerts = result["entries"], result["alerts"]
    assert {e["actionId"] for e in entries} <= SEED_ACTIONS
    by_action = {(e["actionId"], e["data"]["TokenId"]) for e in entries}
    assert ("Token.PatCreateEvent", from_ci) in by_action
    assert ("Token.PatCreateEvent", odd) in by_action and ("Token.PatRevokeEvent", odd) in by_action
    high = [a for a in alerts if a["level"] == "high"]
    assert sorted(a["tokenId"] for a in high) == sorted([odd, odd])
    assert all(a["message"] == "PAT used from unknown IP: 127.0.0.7" for a in high)
    late = [e for e in entries if not 6 <= datetime.fromisoformat(e["timestamp"]).hour <= 22]
    assert len([a for a in alerts if a["level"] == "medium"]) == len(late)
