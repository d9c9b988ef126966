"""Audit over the API: newest first, beforeId paging, unknown filter values are 400 (issue 10)."""

from __future__ import annotations

from tests.e2e.conftest import Server


def test_audit_api_newest_first_with_before_id_paging(server: Server) -> None:
    for i in range(4):
        server.add_member(f"m{i}@acme.test")
    url = f"/api/v1/orgs/{server.org}/audit"
    everything = server.client.get(url, headers=server.auth()).json()
    ids = [e["id"] for e in everything["value"]]
    assert ids == sorted(ids, reverse=True) and everything["nextBeforeId"] is None
    seen: list[int] = []
    cursor: int | None = None
    while True:
        params = {"limit": "2", **({"beforeId": str(cursor)} if cursor else {})}
        page = server.client.get(url, params=params, headers=server.auth()).json()
        seen += [e["id"] for e in page["value"]]
        cursor = page["nextBeforeId"]
        if cursor is None:
            break
    assert seen == ids


def test_audit_api_unknown_filter_values_are_400_listing_the_valid_ones(server: Server) -> None:
    url = f"/api/v1/orgs/{server.org}/audit"
    r = server.client.get(url, params={"eventType": "Token.Nope"}, headers=server.auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidEventType"
    assert "Token.PatCreateEvent" in r.json()["error"]["message"]
    r = server.client.get(url, params={"format": "xml"}, headers=server.auth())
    assert r.status_code == 400 and "json, csv" in r.json()["error"]["message"]
