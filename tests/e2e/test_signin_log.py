"""The sign-in log: Graph's GET /auditLogs/signIns over the audit log, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.signin_helpers import ALICE, browser, sign_in, start_server

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path)


def _sign_ins(server: Server, query: str = "", token: str | None = None) -> Any:
    return server.client.get(f"/graph/v1.0/auditLogs/signIns{query}", headers=server.auth(token))


def _attempts(server: Server) -> None:
    ok = browser(server)
    ok.headers["User-Agent"] = FIREFOX
    assert sign_in(ok).status_code == 303
    bad = browser(server)
    bad.headers["User-Agent"] = CHROME_WIN
    assert sign_in(bad, password="not-the-password-at-all").status_code == 401  # the form again


def test_sign_ins_and_failures_in_the_shape_of_graph(server: Server) -> None:
    _attempts(server)
    r = _sign_ins(server)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"].endswith("/graph/v1.0/$metadata#auditLogs/signIns")
    failed, ok = body["value"][:2]  # newest first
    assert ok["userPrincipalName"] == ALICE and ok["status"]["errorCode"] == 0
    assert ok["status"]["failureReason"] is None
    assert ok["deviceDetail"]["browser"] == "Firefox 128" and ok["deviceDetail"]["operatingSystem"] == "Linux"
    assert failed["userPrincipalName"] == ALICE and failed["status"]["errorCode"] == 50126
    assert "invalid username or password" in failed["status"]["failureReason"]
    assert failed["deviceDetail"] == {
        **failed["deviceDetail"],
        "browser": "Chrome 131",
        "operatingSystem": "Windows 10",
    }
    for entry in (ok, failed):
        for key in (
            "id",
            "createdDateTime",
            "userId",
            "appId",
            "appDisplayName",
            "ipAddress",
            "clientAppUsed",
        ):
            assert entry[key], (key, entry)
    assert ok["userId"] == failed["userId"]


def test_filters_top_and_next_link(server: Server) -> None:
    for _ in range(2):
        _attempts(server)
    now = datetime.now(UTC)
    ago = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    ahead = (now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    r = _sign_ins(server, f"?$filter=createdDateTime ge {ago} and createdDateTime le {ahead}")
    assert len(r.json()["value"]) == 4
    r = _sign_ins(server, f"?$filter=createdDateTime ge {ahead}")
    assert r.json()["value"] == []
    r = _sign_ins(server, f"?$filter=userPrincipalName eq '{ALICE.upper()}' and status/errorCode ne 0")
    assert [e["status"]["errorCode"] for e in r.json()["value"]] == [50126, 50126]
    r = _sign_ins(server, "?$filter=userPrincipalName eq 'nobody@acme.test'")
    assert r.json()["value"] == []
    pages, query = [], "?$top=3"
    while True:
        body = _sign_ins(server, query).json()
        pages.append(len(body["value"]))
        if "@odata.nextLink" not in body:
            break
        query = "?" + body["@odata.nextLink"].split("?", 1)[1]
    assert pages == [3, 1]


@pytest.mark.parametrize(
    "query",
    [
        "?$filter=riskLevel eq 'high'",
        "?$filter=createdDateTime ge yesterday",
        "?$filter=createdDateTime ge 2026-13-40T00:00:00Z",
        "?$top=0",
        "?$top=5000",
        "?$skiptoken=abc",
        "?$filter=status/errorCode eq 50126",
    ],
)
def test_bad_queries_are_graph_400s(server: Server, query: str) -> None:
    r = _sign_ins(server, query)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]


def test_only_an_organizations_admins_see_its_sign_ins(server: Server) -> None:
    _attempts(server)
    _, member = server.pat_for(ALICE, scope="vso.auditlog")
    assert _sign_ins(server, token=member).status_code == 403
    _, narrow = server.pat_for("admin@acme.test", scope="vso.code")
    assert _sign_ins(server, token=narrow).status_code == 403
    assert server.client.get("/graph/v1.0/auditLogs/signIns").status_code == 401
    other = server.container.directory.add_org("Globex", "boss@globex.test")
    r = _sign_ins(server, token=other.token.secret)
    assert r.status_code == 200 and r.json()["value"] == []


def test_signins_list_cli(server: Server, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tokenwarden.cli.main import app

    _attempts(server)
    env = {
        "TOKENWARDEN_DATA_DIR": str(tmp_path / "data"),
        "TOKENWARDEN_DATABASE_URL": server.container.settings.resolved_database_url,
    }
    runner = CliRunner()
    r = runner.invoke(app, ["signins", "list", "--org", "Acme", "--json"], env=env)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["status"]["errorCode"] for row in rows] == [50126, 0]
    r = runner.invoke(app, ["signins", "list", "--org", "Acme", "--failures"], env=env)
    assert r.exit_code == 0 and "wrong password" in r.stdout and "success" not in r.stdout
