"""Issue 16: second factors over HTTP — enrolment and step-up on the API with a PAT, the 403
``stepUpRequired`` before break-glass, policy changes and bulk revocation, and the browser's
two-step sign-in (bound to the browser that passed the password)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import Server
from tests.e2e.signin_helpers import ALICE, PASSWORD, browser, csrf_of, session_cookie, sign_in, start_server
from tokenwarden.domain import mfa
from tokenwarden.services.common import OPERATOR

_CHALLENGE = re.compile(r'name="challenge" value="([^"]+)"')


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path)


def code(secret: str, offset: int = 0) -> str:
    """The code of the current 30-s step plus ``offset`` (the drift window accepts -1..+1, and
    each accepted step must be newer than the last: tests use -1, 0, +1 in order)."""
    return mfa.code_at(secret, mfa.step_of(datetime.now(UTC)) + offset)


def enrol_admin(server: Server) -> str:
    begun = server.client.post("/api/v1/me/mfa", headers=server.auth())
    assert begun.status_code == 201, begun.text
    assert begun.headers["cache-control"] == "no-store"
    secret = begun.json()["secret"]
    assert begun.json()["otpauthUri"].startswith("otpauth://totp/") and "<svg" in begun.json()["qrSvg"]
    confirmed = server.client.post(
        "/api/v1/me/mfa/confirm", json={"code": code(secret, -1)}, headers=server.auth()
    )
    assert confirmed.status_code == 200, confirmed.text
    assert len(confirmed.json()["recoveryCodes"]) == 10
    return str(secret)


def test_a_pat_steps_up_before_break_glass_and_policy_changes(server: Server) -> None:
    secret = enrol_admin(server)
    status = server.client.get("/api/v1/me/mfa", headers=server.auth()).json()
    assert (
        status["enrolled"] is True and status["steppedUpUntil"] is None and status["recoveryCodesLeft"] == 10
    )
    policy = server.client.patch(
        f"/api/v1/orgs/{server.org}/policy", json={"maxLifetimeDays": 30}, headers=server.auth()
    )
    assert policy.status_code == 403, policy.text
    assert policy.json()["error"]["code"] == "stepUpRequired"
    glass = server.client.post(
        f"/api/v1/orgs/{server.org}/break-glass", json={"confirm": server.org}, headers=server.auth()
    )
    assert glass.status_code == 403 and glass.json()["error"]["code"] == "stepUpRequired"
    bulk = server.client.post(
        f"/api/v1/orgs/{server.org}/revocations/users-csv",
        content=b"UserPrincipalName\nnobody@acme.test\n",
        headers={**server.auth(), "Content-Type": "text/csv"},
    )
    assert bulk.status_code == 403 and bulk.json()["error"]["code"] == "stepUpRequired", bulk.text
    wrong = server.client.post("/api/v1/me/step-up", json={"code": "12345"}, headers=server.auth())
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "mfaCodeInvalid"
    up = server.client.post("/api/v1/me/step-up", json={"code": code(secret)}, headers=server.auth())
    assert up.status_code == 200, up.text
    assert up.json()["steppedUpUntil"]
    again = server.client.patch(
        f"/api/v1/orgs/{server.org}/policy", json={"maxLifetimeDays": 30}, headers=server.auth()
    )
    assert again.status_code == 200, again.text


def test_bad_bodies_are_400_not_500(server: Server) -> None:
    for body in ({}, {"code": ""}, {"code": "x" * 65}, {"code": 123456}, {"code": "1", "extra": 1}):
        r = server.client.post("/api/v1/me/step-up", json=body, headers=server.auth())
        assert r.status_code in (400, 422), (body, r.status_code, r.text)
    r = server.client.post("/api/v1/me/mfa/confirm", json={"code": "123456"}, headers=server.auth())
    assert r.status_code == 404 and r.json()["error"]["code"] == "mfaNotEnrolled"
    assert server.client.post("/api/v1/me/step-up", json={"code": "123456"}).status_code == 401


def test_the_browser_signs_in_in_two_steps(server: Server) -> None:
    alice = server.container.directory.get_member(OPERATOR, server.org, ALICE)[0]
    from tokenwarden.services.common import Actor, TokenReach

    actor = Actor(alice.id, alice.upn, token=TokenReach(frozenset({"app_token"}), None, b"x" * 16))
    secret = server.container.mfa.begin(actor).secret
    server.container.mfa.confirm(actor, code(secret, -1))
    first = sign_in(server.client)
    assert first.status_code == 200, first.text  # the second step's page, not a session
    assert not (server.client.cookies.get("tw_session"))
    found = _CHALLENGE.search(first.text)
    assert found
    challenge = found.group(1)
    # another browser cannot finish this sign-in with the right code
    other = browser(server)
    page = other.get("/signin")
    stolen = other.post(
        "/signin/mfa", data={"challenge": challenge, "code": code(secret), "csrf_token": csrf_of(page.text)}
    )
    assert stolen.status_code == 401 and "another browser" in stolen.text
    wrong = server.client.post(
        "/signin/mfa", data={"challenge": challenge, "code": "000000", "csrf_token": csrf_of(first.text)}
    )
    assert wrong.status_code == 400 and "not valid" in wrong.text
    done = server.client.post(
        "/signin/mfa",
        data={
            "challenge": challenge,
            "code": code(secret, 1),
            "csrf_token": csrf_of(wrong.text),
            "next": "/account",
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/account", done.text
    assert session_cookie(server.client)
    status = server.client.get("/api/v1/me/mfa").json()
    assert status["enrolled"] is True and status["steppedUpUntil"]  # signed in with it: stepped up


def test_the_enrolment_page_asks_for_the_password_shows_a_qr_code_and_gives_recovery_codes(
    server: Server,
) -> None:
    r = sign_in(server.client)
    assert r.status_code == 303
    page = server.client.get("/account/mfa")
    assert page.status_code == 200 and "<svg" not in page.text and 'name="password"' in page.text
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert server.client.get("/api/v1/me/mfa").json()["pending"] is False  # a GET begins nothing
    csrf = csrf_of(page.text)
    wrong = server.client.post(
        "/account/mfa/begin", data={"password": "not-her-password", "csrf_token": csrf}
    )
    assert wrong.status_code == 401 and "not right" in wrong.text and "<svg" not in wrong.text
    begun = server.client.post("/account/mfa/begin", data={"password": PASSWORD, "csrf_token": csrf})
    assert begun.status_code == 200 and "<svg" in begun.text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', begun.text)
    assert secret
    again = server.client.get("/account/mfa")  # a reload shows the same key (no new seed)
    assert secret.group(1) in again.text
    # another browser of hers, signed in before the factor existed
    with browser(server) as other:
        assert sign_in(other).status_code == 303
        assert other.get("/api/v1/me/mfa").status_code == 200
        done = server.client.post(
            "/account/mfa", data={"code": code(secret.group(1)), "csrf_token": csrf_of(again.text)}
        )
        assert done.status_code == 200 and done.text.count("<li><code>") == 10
        assert PASSWORD not in done.text
        assert other.get("/api/v1/me/mfa").status_code == 401  # signed out by the enrolment
    assert "Two-step verification is <strong>on</strong>" in server.client.get("/account/mfa").text


def test_enrolment_through_a_token_needs_the_accounts_password(server: Server) -> None:
    assert sign_in(server.client).status_code == 303
    csrf = {"X-CSRF-Token": server.client.get("/api/v1/me/sessions").json()["csrfToken"]}
    missing = server.client.post("/api/v1/me/mfa", headers=csrf)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "passwordRequired", missing.text
    wrong = server.client.post("/api/v1/me/mfa", json={"password": "guess"}, headers=csrf)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "passwordIncorrect"
    ok = server.client.post("/api/v1/me/mfa", json={"password": PASSWORD}, headers=csrf)
    assert ok.status_code == 201 and ok.json()["secret"]
