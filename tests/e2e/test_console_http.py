"""Issue 16: the console over HTTP with a controllable clock — a step-up older than five minutes
sends a bulk action to the step-up page and back; garbage input is a 4xx page, never a 500; a
member reaches no admin page or action; the MFA policy sends an administrator to enrol."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server
from tests.e2e.signin_helpers import ALICE, PASSWORD, browser, csrf_of, past_clock, sign_in, start_server
from tests.unit.conftest import FakeClock
from tokenwarden.domain import mfa
from tokenwarden.domain.principals import Role, UserStatus
from tokenwarden.services.common import OPERATOR, Actor, TokenReach

_CHALLENGE = re.compile(r'name="challenge" value="([^"]+)"')


@pytest.fixture
def clock() -> FakeClock:
    return past_clock(hours=1)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[Server]:
    yield from start_server(tmp_path, clock)


def _code(secret: str, clock: FakeClock) -> str:
    return mfa.code_at(secret, mfa.step_of(clock.now()))


def _admin_alice_with_mfa(server: Server, clock: FakeClock) -> str:
    c = server.container
    c.directory.set_role(OPERATOR, server.org, ALICE, Role.ADMIN)
    for upn in ("bob@acme.test", "carol@acme.test"):
        c.directory.add_user(OPERATOR, server.org, upn)
    alice = c.directory.get_member(OPERATOR, server.org, ALICE)[0]
    actor = Actor(alice.id, alice.upn, token=TokenReach(frozenset({"app_token"}), None, b"e" * 16))
    secret = c.mfa.begin(actor).secret
    c.mfa.confirm(actor, _code(secret, clock))
    clock.advance(seconds=mfa.STEP_SECONDS)
    return secret


def _sign_in_with_code(server: Server, secret: str, clock: FakeClock) -> None:
    first = sign_in(server.client)
    found = _CHALLENGE.search(first.text)
    assert first.status_code == 200 and found, first.text
    done = server.client.post(
        "/signin/mfa",
        data={"challenge": found.group(1), "code": _code(secret, clock), "csrf_token": csrf_of(first.text)},
    )
    assert done.status_code == 303, done.text


def _bulk(server: Server, ids: list[str]) -> object:
    page = server.client.get("/console/users")
    assert page.status_code == 200, page.text
    return server.client.post(
        "/console/users/bulk",
        data={"action": "revoke-sessions", "user": ids, "confirmed": "yes", "csrf_token": csrf_of(page.text)},
    )


def test_a_step_up_older_than_five_minutes_is_asked_again(server: Server, clock: FakeClock) -> None:
    secret = _admin_alice_with_mfa(server, clock)
    _sign_in_with_code(server, secret, clock)
    c = server.container
    ids = [
        c.directory.get_member(OPERATOR, server.org, u)[0].id for u in ("bob@acme.test", "carol@acme.test")
    ]
    ok = _bulk(server, ids)
    assert ok.status_code == 303 and "done" in ok.headers["location"]  # type: ignore[attr-defined]
    clock.advance(minutes=5, seconds=30)
    refused = _bulk(server, ids)
    assert refused.status_code == 303  # type: ignore[attr-defined]
    assert refused.headers["location"] == "/account/step-up?next=%2Fconsole%2Fusers"  # type: ignore[attr-defined]
    page = server.client.get("/account/step-up", params={"next": "/console/users"})
    assert page.status_code == 200 and 'name="code"' in page.text
    clock.advance(seconds=mfa.STEP_SECONDS)
    up = server.client.post(
        "/account/step-up",
        data={"code": _code(secret, clock), "next": "/console/users", "csrf_token": csrf_of(page.text)},
    )
    assert up.status_code == 303 and up.headers["location"] == "/console/users"
    again = _bulk(server, ids)
    assert "done" in again.headers["location"]  # type: ignore[attr-defined]


def test_an_mfa_policy_sends_an_administrator_to_enrol(server: Server) -> None:
    c = server.container
    c.directory.set_role(OPERATOR, server.org, ALICE, Role.ADMIN)
    c.policies.update(OPERATOR, server.org, admins_require_mfa=True)
    assert sign_in(server.client).status_code == 303
    r = server.client.get("/console/users")
    assert r.status_code == 303 and r.headers["location"].startswith("/account/mfa?next=")


def test_garbage_is_a_clear_4xx_page(server: Server, clock: FakeClock) -> None:
    secret = _admin_alice_with_mfa(server, clock)
    _sign_in_with_code(server, secret, clock)
    for url in (
        "/console/users?offset=-1",
        "/console/users?offset=abc",
        "/console/users?status=bogus",
        "/console/users?q=" + "x" * 300,
        "/console/tokens?expiring=999999",
        "/console/tokens?kind=nope",
        "/console/users/not-a-user",
        "/console/users/00000000-0000-4000-8000-000000000000/confirm/explode",
        "/console/bulk/not-a-job",
        "/console/static/../../etc/passwd",
    ):
        r = server.client.get(url)
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:200])
    page = server.client.get("/console/users")
    token = csrf_of(page.text)
    for data in (
        {"action": "explode", "user": ["x"], "confirmed": "yes"},
        {"action": "disable", "confirmed": "yes"},
        {"action": "disable", "user": ["x"] * 501, "confirmed": "yes"},
        {"action": "disable", "user": ["00000000-0000-4000-8000-000000000000"], "confirmed": "yes"},
    ):
        r = server.client.post("/console/users/bulk", data={**data, "csrf_token": token})
        assert 400 <= r.status_code < 500, (data["action"], r.status_code, r.text[:200])


def test_a_member_reaches_no_admin_page_or_action(server: Server) -> None:
    assert sign_in(server.client).status_code == 303  # alice: a plain member
    for url in ("/console/users", "/console/dashboard", "/console/bulk", "/console/break-glass"):
        r = server.client.get(url)
        assert r.status_code == 403, (url, r.status_code)
    admin_id = server.container.directory.get_member(OPERATOR, server.org, "admin@acme.test")[0].id
    page = server.client.get("/console/tokens")
    assert page.status_code == 200
    r = server.client.post(
        f"/console/users/{admin_id}/revoke-tokens",
        data={"confirmed": "yes", "csrf_token": csrf_of(page.text)},
    )
    assert r.status_code == 403
    assert server.container.validator.validate(server.admin_token)  # untouched
    # a member and a made-up id get the same answer: the page tells nobody who is a member
    member, stranger = (server.client.get(f"/console/users/{u}") for u in (admin_id, "nobody@acme.test"))
    assert member.status_code == stranger.status_code == 403
    other = browser(server)  # not signed in: the sign-in page, which comes back
    r = other.get("/console/users")
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Fconsole%2Fusers"
    assert PASSWORD not in r.text


def test_audit_page_filters_exports_and_shows_the_chain(server: Server, clock: FakeClock) -> None:
    secret = _admin_alice_with_mfa(server, clock)
    _sign_in_with_code(server, secret, clock)
    page = server.client.get("/console/audit")
    assert page.status_code == 200 and "Chain: <strong>intact</strong>" in page.text
    assert "verified " in page.text and "Verify now" in page.text  # kept a minute, said when
    assert "Chain: <strong>intact</strong>" in server.client.get("/console/audit?verify=1").text
    assert "Mfa.EnrollEvent" in page.text
    only = server.client.get("/console/audit", params={"event": "Session.SignIn"})
    assert "Session.SignIn" in only.text and "Mfa.EnrollEvent" not in only.text
    export = server.client.get("/console/audit.csv", params={"event": "Mfa.EnrollEvent"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert export.text.splitlines()[0].startswith("id,") and "Mfa.EnrollEvent" in export.text
    assert server.client.get("/console/audit", params={"since": "yesterday"}).status_code == 400
    assert server.client.get("/console/audit", params={"until": "9999-12-31"}).status_code == 400
    assert server.client.get("/console/audit", params={"event": "No.SuchEvent"}).status_code == 400


def test_alerts_page_acknowledges_and_closes(server: Server, clock: FakeClock) -> None:
    secret = _admin_alice_with_mfa(server, clock)
    _sign_in_with_code(server, secret, clock)
    c = server.container
    tid = c.pats.create(
        OPERATOR, org=server.org, user=ALICE, display_name="ci", scope="vso.code"
    ).record.authorization_id
    alert = c.detection.report_leak(tid, "found in a public repository", {"url": "https://example.test/x"})
    assert alert is not None
    page = server.client.get("/console/alerts")
    assert "found in a public repository" in page.text
    ack = server.client.post(
        f"/console/alerts/{alert.id}", data={"status": "acknowledged", "csrf_token": csrf_of(page.text)}
    )
    assert ack.status_code == 303
    page = server.client.get("/console/alerts")
    assert "acknowledged" in page.text
    bad = server.client.post(
        f"/console/alerts/{alert.id}", data={"status": "deleted", "csrf_token": csrf_of(page.text)}
    )
    assert bad.status_code == 400
    close = server.client.post(
        f"/console/alerts/{alert.id}", data={"status": "closed", "csrf_token": csrf_of(page.text)}
    )
    assert close.status_code == 303
    assert "found in a public repository" not in server.client.get("/console/alerts").text
    assert (
        "found in a public repository"
        in server.client.get("/console/alerts", params={"status": "closed"}).text
    )


def test_a_rule_shows_what_it_would_cut_before_it_is_saved(server: Server, clock: FakeClock) -> None:
    secret = _admin_alice_with_mfa(server, clock)
    _sign_in_with_code(server, secret, clock)
    c = server.container
    bob = c.pats.create(
        OPERATOR, org=server.org, user="bob@acme.test", display_name="ci", scope="vso.packaging"
    )
    keep = c.pats.create(OPERATOR, org=server.org, user="bob@acme.test", display_name="ci2", scope="vso.code")
    clock.advance(seconds=1)
    page = server.client.get("/console/rules")
    counted = server.client.post(
        "/console/rules",
        data={"scopes": "vso.packaging", "before": "", "csrf_token": csrf_of(page.text)},
    )
    assert counted.status_code == 200 and 'id="rule-preview"' in counted.text
    assert "would cut <strong>1</strong>" in counted.text, re.findall(r"would cut.{0,120}", counted.text)
    assert c.validator.validate(bob.secret)  # counting writes nothing
    saved = server.client.post(
        "/console/rules",
        data={
            "scopes": "vso.packaging",
            "confirmed": "yes",
            "csrf_token": csrf_of(counted.text),
        },
    )
    assert saved.status_code == 303, saved.text
    with pytest.raises(Exception, match="revoked"):
        c.validator.validate(bob.secret)
    assert c.validator.validate(keep.secret)
    bad = server.client.post("/console/rules", data={"before": "soon", "csrf_token": csrf_of(counted.text)})
    assert bad.status_code == 400


def test_a_users_page_shows_sign_ins_and_alerts(server: Server, clock: FakeClock) -> None:
    secret = _admin_alice_with_mfa(server, clock)
    c = server.container
    other = browser(server)
    page = other.get("/signin")
    wrong = other.post(
        "/signin", data={"username": "bob@acme.test", "password": "nope", "csrf_token": csrf_of(page.text)}
    )
    assert wrong.status_code == 401
    _sign_in_with_code(server, secret, clock)
    bob = c.directory.get_member(OPERATOR, server.org, "bob@acme.test")[0]
    tid = c.pats.create(
        OPERATOR, org=server.org, user=bob.upn, display_name="ci", scope="vso.code"
    ).record.authorization_id
    c.detection.report_leak(tid, "pasted in a chat", {})
    shown = server.client.get(f"/console/users/{bob.id}")
    assert shown.status_code == 200
    assert "failed: " in shown.text and "pasted in a chat" in shown.text
    alice = c.directory.get_member(OPERATOR, server.org, ALICE)[0]
    mine = server.client.get(f"/console/users/{alice.id}")
    assert "signed in" in mine.text


def test_a_policy_change_shows_the_violations_it_would_create(server: Server, clock: FakeClock) -> None:
    secret = _admin_alice_with_mfa(server, clock)
    _sign_in_with_code(server, secret, clock)
    c = server.container
    c.pats.create(OPERATOR, org=server.org, user="bob@acme.test", display_name="long-lived", scope="vso.code")
    page = server.client.get("/console/policy")
    assert page.status_code == 200 and 'name="max_lifetime_days"' in page.text
    form = {
        "max_lifetime_days": "7",
        "dormant_revoke_days": "0",
        "security_contact": "",
        "csrf_token": csrf_of(page.text),
    }
    preview = server.client.post("/console/policy", data=form)
    assert preview.status_code == 200 and 'id="policy-preview"' in preview.text
    assert "long-lived" in preview.text
    assert c.policies.get(OPERATOR, server.org).max_lifetime_days != 7  # nothing written yet
    saved = server.client.post(
        "/console/policy", data={**form, "confirmed": "yes", "csrf_token": csrf_of(preview.text)}
    )
    assert saved.status_code == 303, saved.text
    assert c.policies.get(OPERATOR, server.org).max_lifetime_days == 7
    bad = server.client.post("/console/policy", data={**form, "max_lifetime_days": "9999"})
    assert bad.status_code in (400, 403)


def test_a_flash_message_is_named_by_code_never_taken_from_the_link(server: Server) -> None:
    assert sign_in(server.client).status_code == 303
    spoofed = server.client.get("/console/tokens", params={"done": "All tokens of the org were revoked"})
    assert spoofed.status_code == 200 and "All tokens of the org" not in spoofed.text
    assert 'id="flash"' not in spoofed.text
    named = server.client.get("/console/tokens", params={"done": "tokens-revoked", "n": "3"})
    assert "Revoked 3 tokens." in named.text
    bad_count = server.client.get("/console/tokens", params={"done": "tokens-revoked", "n": "<b>"})
    assert 'id="flash"' not in bad_count.text


def test_a_member_of_two_organizations_switches_between_them(server: Server, clock: FakeClock) -> None:
    c = server.container
    assert sign_in(server.client).status_code == 303  # her session is issued in acme, her home
    clock.advance(seconds=1)  # globex is the newer organization: acme stays her home
    c.directory.add_org("globex", "boss@globex.test")
    c.directory.add_user(OPERATOR, "globex", ALICE, role=Role.ADMIN)
    home = server.client.get("/console/tokens")
    assert home.status_code == 200 and 'id="org-switch"' in home.text and "globex" in home.text
    with c.uow() as uow:
        found = uow.orgs.by_name("globex")
        assert found is not None
        globex_id = found.id
    refused = server.client.post("/console/org", data={"org": "not-mine", "csrf_token": csrf_of(home.text)})
    assert refused.status_code == 403
    no_csrf = server.client.post("/console/org", data={"org": globex_id})
    assert no_csrf.status_code == 403
    switched = server.client.post("/console/org", data={"org": globex_id, "csrf_token": csrf_of(home.text)})
    assert switched.status_code == 303
    users = server.client.get("/console/users")  # an admin in globex (a member only in acme)
    assert users.status_code == 200 and "boss@globex.test" in users.text
    # globex revokes her sessions: her session no longer counts there, though acme accepts it
    alice_id = c.directory.get_member(OPERATOR, server.org, ALICE)[0].id
    clock.advance(seconds=1)
    c.revocation.revoke_sign_in_sessions(OPERATOR, globex_id, alice_id)
    clock.advance(seconds=1)
    assert server.client.get("/console/users").status_code == 403  # acme's console: a member
    assert sign_in(server.client).status_code == 303  # a new session, which globex accepts
    again = server.client.get("/console/tokens")
    assert again.status_code == 200 and "<option" in again.text
    switched = server.client.post("/console/org", data={"org": globex_id, "csrf_token": csrf_of(again.text)})
    assert switched.status_code == 303 and server.client.get("/console/users").status_code == 200
    c.directory.set_status(OPERATOR, "globex", ALICE, UserStatus.DISABLED)
    back = server.client.get("/console/tokens")  # no longer active there: her home organization
    assert (
        back.status_code == 200
        and "Acme" in back.text
        and server.client.get("/console/users").status_code == 403
    )


def _finished(server: Server, job_url: str) -> str:
    for _ in range(200):
        page = server.client.get(job_url)
        if "Run it" in page.text or "results.csv" in page.text:
            return page.text
        time.sleep(0.05)
    raise AssertionError(page.text)


def test_a_csv_run_reads_the_dry_runs_rows_cell_for_cell(server: Server, clock: FakeClock) -> None:
    secret = _admin_alice_with_mfa(server, clock)
    _sign_in_with_code(server, secret, clock)  # signed in with the factor: stepped up
    page = server.client.get("/console/bulk")
    content = b'UserPrincipalName\nbob@acme.test\n"odd,""name""@acme.test"\ncarol@acme.test\n'
    dry = server.client.post(
        "/console/bulk",
        data={"csrf_token": csrf_of(page.text)},
        files={"file": ("leavers.csv", content, "text/csv")},
    )
    assert dry.status_code == 303, dry.text
    dry_page = _finished(server, dry.headers["location"])
    run = server.client.post(
        dry.headers["location"] + "/run", data={"confirmed": "yes", "csrf_token": csrf_of(dry_page)}
    )
    assert run.status_code == 303, run.text
    _finished(server, run.headers["location"])
    results = server.client.get(run.headers["location"] + "/results.csv")
    rows = list(csv.reader(io.StringIO(results.text)))
    assert [r[0] for r in rows[1:]] == ["bob@acme.test", 'odd,"name"@acme.test', "carol@acme.test"]
    assert [r[1] for r in rows[1:]] == ["Success", "Failed", "Success"]
