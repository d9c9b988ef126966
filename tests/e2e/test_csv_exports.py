"""Issue 10 §3: CSV exports neutralise formula cells (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io

import pytest

from tests.e2e.conftest import Server


@pytest.mark.parametrize("upn", ["=1+2@acme.test", "+cmd@acme.test", "-2+3@acme.test"])
def test_audit_csv_neutralises_formula_cells(server: Server, upn: str) -> None:
    server.add_member(upn)
    _, secret = server.pat_for(upn, scope="vso.pats_manage vso.code")  # mints only what it holds
    body = {"displayName": '=HYPERLINK("x")', "scope": "vso.code"}
    r = server.client.post(f"/api/v1/orgs/{server.org}/pats", json=body, headers=server.auth(secret))
    assert r.status_code == 201, r.text
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/audit",
        params={"eventType": "Token.PatCreateEvent", "format": "csv"},
        headers=server.auth(),
    )
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    mine = [row for row in rows if row["actorUpn"].lstrip("'") == upn]
    assert mine, rows
    assert all(row["actorUpn"] == "'" + upn for row in mine)
    for row in rows:
        assert not any(str(cell).startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values()), row
