"""Issue 10 §3: blocking work (the database) never runs on the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Server


def on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def watch(monkeypatch: pytest.MonkeyPatch, obj: object, name: str, seen: list[str]) -> None:
    original: Callable[..., Any] = getattr(obj, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if on_loop():
            seen.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)


def test_ado_body_routes_and_validate_door_stay_off_the_loop(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = server.container
    blocked: list[str] = []
    for obj, name in [
        (c.directory, "find_org"),
        (c.validator, "validate"),
        (c.pats, "create"),
        (c.pats, "update"),
        (c.pats, "revoke_many"),
        (c.rules, "create"),
    ]:
        watch(monkeypatch, obj, name, blocked)
    h = server.basic()
    r = server.client.post(
        "/Acme/_apis/tokens/pats", json={"displayName": "x", "scope": "vso.code"}, headers=h
    )
    assert r.status_code == 200 and r.json()["patTokenError"] == "none", r.text
    auth_id = r.json()["patToken"]["authorizationId"]
    r = server.client.put(
        "/Acme/_apis/tokens/pats", json={"authorizationId": auth_id, "displayName": "y"}, headers=h
    )
    assert r.status_code == 200, r.text
    r = server.client.post("/Acme/_apis/tokenadmin/revocationrules", json={"scopes": "vso.code"}, headers=h)
    assert r.status_code == 201, r.text
    body = [{"authorizationId": auth_id}]
    r = server.client.post("/Acme/_apis/tokenadmin/revocations", json=body, headers=h)
    assert r.status_code == 204, r.text
    # an organization the door has not resolved yet (by id, then by a new spelling)
    for org in (server.org_id, "ACME", "nope"):
        r = server.client.get(f"/api/v1/validate?org={org}", headers=server.auth())
        assert r.status_code in (200, 404), r.text
    assert blocked == [], f"called on the event loop: {blocked}"
