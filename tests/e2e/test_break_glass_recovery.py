"""The break-glass recovery token is for recovering from a break-glass (issue 10): it never starts
or approves another one — each would mint it a fresh 24-hour successor past a policy that
disables PAT creation, a chain one stolen token could keep alive for ever, and with the
two-person rule it would count as the "second administrator" though the last break-glass
minted it — and it cannot outlive its 24 hours."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tokenwarden.domain.errors import Forbidden
from tokenwarden.domain.watermarks import SubjectType

BG = "/api/v1/orgs/Acme/break-glass"


def valid(server: Server, token: str) -> int:
    return server.client.get("/api/v1/validate", headers=server.auth(token)).status_code


def break_glass(server: Server, token: str | None = None) -> Any:
    return server.client.post(BG, json={"confirm": "Acme"}, headers=server.auth(token))


def org_marks(server: Server) -> dict[str, Any]:
    with server.container.uow() as uow:
        return uow.watermarks.for_subject(SubjectType.ORG, server.org_id)


def test_a_recovery_token_cannot_start_another_break_glass(server: Server) -> None:
    r = server.client.patch(
        "/api/v1/orgs/Acme/policy", json={"disablePatCreation": True}, headers=server.auth()
    )
    assert r.status_code == 200, r.text
    r = break_glass(server)
    assert r.status_code == 200 and r.json()["status"] == "executed"
    recovery = r.json()["recoveryToken"]["token"]
    marks = org_marks(server)

    again = break_glass(server, recovery)
    assert again.status_code == 403, again.text
    error = again.json()["error"]
    assert error["code"] == "recoveryTokenRefused"
    assert "recovery token" in error["message"] and "operator-override" in error["message"]
    assert org_marks(server) == marks  # nothing executed, no new recovery token
    assert valid(server, recovery) == 200  # the recovery goes on
    # the same holds on the CLI's door (the validator's actor for a credential)
    actor = server.container.validator.validate(recovery, "vso.tokenadministration", server.org_id).actor()
    with pytest.raises(Forbidden) as refused:
        server.container.break_glass.start(actor, "Acme", "Acme", "again")
    assert refused.value.code == "recoveryTokenRefused"
    # and it mints no ordinary PAT either while the policy disables PAT creation
    r = server.client.post(
        "/api/v1/orgs/Acme/pats",
        json={"displayName": "next", "scope": "vso.tokenadministration"},
        headers=server.auth(recovery),
    )
    assert r.status_code in (400, 403) and "disable" in r.json()["error"]["message"].lower(), r.text
    # the preview (a read) stays available to it
    assert server.client.get(f"{BG}/preview", headers=server.auth(recovery)).status_code == 200


def test_a_recovery_token_cannot_approve_a_break_glass(server: Server) -> None:
    second = "second@acme.test"
    server.add_member(second, role="admin")
    _, second_token = server.pat_for(second, scope="vso.tokenadministration")
    r = server.client.patch(
        "/api/v1/orgs/Acme/policy", json={"breakGlassTwoPerson": True}, headers=server.auth()
    )
    assert r.status_code == 200, r.text
    first_id = break_glass(server).json()["requestId"]
    r = server.client.post(
        f"{BG}/{first_id}/approve", json={"confirm": "Acme"}, headers=server.auth(second_token)
    )
    assert r.status_code == 200 and r.json()["status"] == "executed"
    recovery = r.json()["recoveryToken"]["token"]  # the second admin's

    # it can neither open the next request nor approve one opened with a fresh credential
    assert break_glass(server, recovery).json()["error"]["code"] == "recoveryTokenRefused"
    _, fresh_admin = server.pat_for(server.admin_upn, scope="vso.tokenadministration")
    pending = break_glass(server, fresh_admin)
    assert pending.status_code == 200 and pending.json()["status"] == "pending"
    request_id = pending.json()["requestId"]
    marks = org_marks(server)
    r = server.client.post(
        f"{BG}/{request_id}/approve", json={"confirm": "Acme"}, headers=server.auth(recovery)
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "recoveryTokenRefused", r.text
    assert org_marks(server) == marks and valid(server, fresh_admin) == 200
    # the second admin's own, ordinary credential still approves
    _, second_again = server.pat_for(second, scope="vso.tokenadministration")
    r = server.client.post(
        f"{BG}/{request_id}/approve", json={"confirm": "Acme"}, headers=server.auth(second_again)
    )
    assert r.status_code == 200 and r.json()["status"] == "executed"


def test_a_recovery_token_cannot_extend_its_own_lifetime(server: Server) -> None:
    r = break_glass(server)
    recovery = r.json()["recoveryToken"]
    later = (server.container.clock.now() + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    r = server.client.patch(
        f"/api/v1/orgs/Acme/pats/{recovery['authorizationId']}",
        json={"validTo": later},
        headers=server.auth(recovery["token"]),
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "recoveryTokenLifetime"
    sooner = (server.container.clock.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    r = server.client.patch(
        f"/api/v1/orgs/Acme/pats/{recovery['authorizationId']}",
        json={"validTo": sooner, "displayName": "recovery, shortened"},
        headers=server.auth(recovery["token"]),
    )
    assert r.status_code == 200, r.text  # shortening (and renaming) is fine
    # renamed, it is still a recovery token
    assert break_glass(server, recovery["token"]).json()["error"]["code"] == "recoveryTokenRefused"
