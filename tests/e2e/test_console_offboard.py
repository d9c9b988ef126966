"""Issue 17 in the admin console over HTTP: on a member's page an administrator offboards them
(the dialog's form, or the page without script), with or without a successor; the answer is the
report (tokens cut, credentials handed over and whether rotated, what is left to do) and the
leaver's PAT is dead. No CSRF token is 403; a refused successor brings the form back with the
reason and nothing done; a member, and an administrator on themselves, are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.signin_helpers import ALICE, csrf_of, past_clock, sign_in, start_server
from tests.unit.conftest import FakeClock
from tokenwarden.domain.principals import Role
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.managed import NewCredential

LEAVER = "bob@acme.test"
HEIR = "carol@acme.test"


@pytest.fixture
def clock() -> FakeClock:
    return past_clock(hours=1)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[Server]:
    yield from start_server(tmp_path, clock)


def _people(server: Server) -> tuple[str, str]:
    """bob (the leaver, with a PAT and a managed credential rotated once) and carol; bob's id
    and his PAT."""
    c = server.container
    for upn in (LEAVER, HEIR):
        c.directory.add_user(OPERATOR, server.org, upn)
    _, pat = server.pat_for(LEAVER, scope="vso.code", name="laptop")
    auth_id, _ = server.pat_for(LEAVER, scope="vso.code", name="deploy token")
    new = NewCredential(name="deploy", authorization_id=auth_id, store="builtin", contacts=(LEAVER,))
    c.managed.add(OPERATOR, server.org, new)
    r = server.client.post(
        f"/api/v1/orgs/{server.org}/managed-credentials/deploy/rotate",
        json={"compromised": True},
        headers=server.auth(),
    )
    assert r.status_code == 200 and r.json()["result"] == "rotated", r.text
    return c.directory.get_member(OPERATOR, server.org, LEAVER)[0].id, pat


def _admin(server: Server) -> None:
    """Alice, an administrator (no second factor: single-user actions need no step-up)."""
    server.container.directory.set_role(OPERATOR, server.org, ALICE, Role.ADMIN)
    assert sign_in(server.client).status_code == 303


def _valid(server: Server, token: str) -> int:
    return server.client.get("/api/v1/validate", headers=server.auth(token)).status_code


def _offboard(server: Server, user_id: str, csrf: str | None, **form: str) -> httpx.Response:
    data = {"confirmed": "yes", **form}
    if csrf is not None:
        data["csrf_token"] = csrf
    return server.client.post(f"/console/users/{user_id}/offboard", data=data)


def _offboard_audit(server: Server) -> list[dict[str, Any]]:
    r = server.client.get(
        f"/api/v1/orgs/{server.org}/audit", params={"eventType": "User.Offboard"}, headers=server.auth()
    )
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def _text(html: str) -> str:
    """The page's text, tags dropped and spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_an_administrator_offboards_a_member_to_a_successor(server: Server, clock: FakeClock) -> None:
    bob_id, pat = _people(server)
    _admin(server)
    clock.advance(seconds=1)  # the offboarding comes after bob's tokens were issued
    page = server.client.get(f"/console/users/{bob_id}")
    assert page.status_code == 200, page.text
    assert f'href="/console/users/{bob_id}/confirm/offboard"' in page.text
    assert 'data-dialog="dialog-offboard"' in page.text and '<dialog id="dialog-offboard"' in page.text
    dialog = page.text[page.text.index('<dialog id="dialog-offboard"') :]
    dialog = dialog[: dialog.index("</dialog>")]
    assert f'action="/console/users/{bob_id}/offboard"' in dialog
    assert '<label for="dialog-offboard-successor">' in dialog and 'name="successor"' in dialog
    assert 'name="csrf_token"' in dialog and "stops working at once on every node" in dialog
    csrf = csrf_of(page.text)

    # no CSRF token, or not confirmed: refused, nothing done
    assert _offboard(server, bob_id, None, successor=HEIR).status_code == 403
    unconfirmed = server.client.post(f"/console/users/{bob_id}/offboard", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400
    # a successor who is no member: the form again, with the reason and what was typed
    bad = _offboard(server, bob_id, csrf, successor="ghost@acme.test")
    assert bad.status_code == 400
    html = bad.text
    assert (
        'id="console-error"' in html and "successor &#39;ghost@acme.test&#39; is not a member of Acme" in html
    )
    assert 'value="ghost@acme.test"' in html and f'action="/console/users/{bob_id}/offboard"' in html
    assert _valid(server, pat) == 200 and _offboard_audit(server) == []

    done = _offboard(server, bob_id, csrf_of(html), successor=f"  {HEIR} ")
    assert done.status_code == 200, done.text
    shown = _text(done.text)
    assert f"Offboarded {LEAVER}" in shown
    assert f"{LEAVER} is disabled in Acme: 2 live token(s) stopped working on every node." in shown
    assert "Membership disabled (was active)" in shown
    assert "Tokens cut 2 live; every pat, access, refresh, session, service token" in shown
    assert f"Successor {HEIR} (named here)" in shown
    report = done.text[done.text.index('id="credentials"') :]
    assert 'href="/console/rotation/deploy"' in report and '<span class="badge">yes</span>' in report
    assert "rotated" in report and 'id="warnings"' not in done.text
    assert _valid(server, pat) == 401  # the leaver's PAT is dead
    [entry] = _offboard_audit(server)
    assert entry["actorUpn"] == ALICE and entry["targetId"] == bob_id
    details = entry["details"]
    assert (details["upn"], details["successor"], details["how"]) == (LEAVER, HEIR, "given")
    assert details["initiatedBy"] == "admin" and details["tokensRevoked"] == 2
    cred, _ = server.container.managed.get(OPERATOR, server.org, "deploy")
    heir = server.container.directory.get_member(OPERATOR, server.org, HEIR)[0]
    assert cred.user_id == heir.id and list(cred.contacts) == [HEIR]
    member = server.client.get(f"/console/users/{bob_id}")
    assert 'id="member-status">disabled<' in member.text


def test_without_script_and_without_a_successor_the_report_says_what_is_left(
    server: Server, clock: FakeClock
) -> None:
    bob_id, pat = _people(server)
    _admin(server)
    clock.advance(seconds=1)
    page = server.client.get(f"/console/users/{bob_id}/confirm/offboard")
    assert page.status_code == 200, page.text
    assert f"Offboard {LEAVER}?" in page.text and f'href="/console/users/{bob_id}">No</a>' in page.text
    assert '<label for="offboard-successor">' in page.text
    done = _offboard(server, bob_id, csrf_of(page.text), successor="")
    assert done.status_code == 200, done.text
    shown = _text(done.text)
    assert "Successor nobody: nothing was handed over" in shown
    assert "Name Rotated Result Detail None." in shown
    again = f'href="/console/users/{bob_id}/confirm/offboard">Offboard again with a successor</a>'
    assert again in done.text
    warnings = done.text[done.text.index('id="warnings"') :]
    assert "no successor: managed credentials deploy still name the leaver" in warnings
    assert _valid(server, pat) == 401
    assert [e["details"]["successor"] for e in _offboard_audit(server)] == [None]


def test_a_member_cannot_offboard_and_an_administrator_not_themselves(server: Server) -> None:
    bob_id, pat = _people(server)
    assert sign_in(server.client).status_code == 303  # alice: a plain member
    tokens = server.client.get("/console/tokens")
    assert tokens.status_code == 200
    assert server.client.get(f"/console/users/{bob_id}/confirm/offboard").status_code == 403
    refused = _offboard(server, bob_id, csrf_of(tokens.text), successor=ALICE)
    assert refused.status_code == 403
    assert _valid(server, pat) == 200
    mine = server.client.get(f"/console/users/{ALICE}")  # a member's own page: no admin actions
    assert mine.status_code == 200 and "dialog-offboard" not in mine.text

    server.container.directory.set_role(OPERATOR, server.org, ALICE, Role.ADMIN)
    alice_id = server.container.directory.get_member(OPERATOR, server.org, ALICE)[0].id
    page = server.client.get(f"/console/users/{alice_id}")
    self_ = _offboard(server, alice_id, csrf_of(page.text))
    assert self_.status_code == 400
    assert "administrators cannot offboard themselves" in self_.text
    assert server.client.get("/console/users").status_code == 200  # still signed in, still admin
    stranger = _offboard(server, "00000000-0000-4000-8000-000000000000", csrf_of(page.text))
    assert stranger.status_code == 404
    assert _offboard_audit(server) == []
