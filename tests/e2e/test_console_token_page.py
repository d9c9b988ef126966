"""Issue 16: a token's own page in the console over HTTP — its usage, the same 404 for what a
viewer may not see, and extend/regenerate of one's own PAT with a fresh second factor (the new
secret shown once, never cached; the old one dead at once)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.signin_helpers import ALICE, PASSWORD, browser, csrf_of, past_clock, sign_in, start_server
from tests.unit.conftest import FakeClock
from tokenwarden.domain import mfa
from tokenwarden.domain.principals import Role
from tokenwarden.services.common import OPERATOR, Actor, TokenReach
from tokenwarden.services.pats import IssuedPat

_CHALLENGE = re.compile(r'name="challenge" value="([^"]+)"')
_ERROR = re.compile(r'<p role="alert" class="error">(.*?)</p>', re.S)
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def clock() -> FakeClock:
    return past_clock(hours=1)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[Server]:
    yield from start_server(tmp_path, clock)


def _code(secret: str, clock: FakeClock) -> str:
    return mfa.code_at(secret, mfa.step_of(clock.now()))


def _enrol(server: Server, upn: str, clock: FakeClock) -> str:
    user = server.container.directory.get_member(OPERATOR, server.org, upn)[0]
    actor = Actor(user.id, user.upn, token=TokenReach(frozenset({"app_token"}), None, b"e" * 16))
    secret = server.container.mfa.begin(actor).secret
    server.container.mfa.confirm(actor, _code(secret, clock))
    clock.advance(seconds=mfa.STEP_SECONDS)
    return secret


def _sign_in_with_code(server: Server, secret: str, clock: FakeClock) -> None:
    """Sign in with the password and a code: the session counts as stepped up."""
    first = sign_in(server.client)
    found = _CHALLENGE.search(first.text)
    assert first.status_code == 200 and found, first.text
    done = server.client.post(
        "/signin/mfa",
        data={"challenge": found.group(1), "code": _code(secret, clock), "csrf_token": csrf_of(first.text)},
    )
    assert done.status_code == 303, done.text


def _pat(server: Server, upn: str = ALICE, scope: str = "vso.code") -> IssuedPat:
    return server.container.pats.create(
        OPERATOR, org=server.org, user=upn, display_name="deploy-bot", scope=scope
    )


def _validate(server: Server, secret: str, agent: str = "ci-agent/1.0") -> int:
    r = server.client.get(
        "/api/v1/validate", headers={"Authorization": f"Bearer {secret}", "User-Agent": agent}
    )
    status: int = r.status_code
    return status


def _error(page: httpx.Response) -> str:
    found = _ERROR.search(page.text)
    assert found, page.text
    return html.unescape(found.group(1))


def _no_secret(text: str, *issued: IssuedPat) -> None:
    for pat in issued:
        assert pat.secret not in text
        assert pat.record.secret_hash.hex() not in text


def test_the_page_shows_the_usage_of_a_pat_used_against_the_validation_endpoint(
    server: Server, clock: FakeClock
) -> None:
    issued = _pat(server)
    tid = issued.record.authorization_id
    assert _validate(server, issued.secret) == 200
    assert _validate(server, issued.secret, "curl/8.5") == 200
    server.container.usage.flush()
    assert sign_in(server.client).status_code == 303  # alice, a plain member, the owner
    page = server.client.get(f"/console/tokens/{tid}")
    assert page.status_code == 200, page.text
    text = page.text
    assert "<h1>deploy-bot</h1>" in text and "vso.code" in text and ALICE in text
    assert '<th scope="row">Kind</th><td>pat</td>' in text
    assert re.search(r'id="token-state"><strong>active</strong>', text)
    assert re.search(r'id="usage-summary"><strong>2</strong> requests', text), text
    assert "<td>ci-agent/1.0</td><td>1</td>" in text and "<td>curl/8.5</td><td>1</td>" in text
    assert "<td>validate</td><td>2</td>" in text and "<caption>Networks</caption>" in text
    assert not re.search(r'id="last-used">—', text)  # the usage's last request, at least
    assert 'action="/console/tokens/revoke"' in text and f'value="{tid}"' in text  # the revoke button
    assert 'id="needs-mfa"' in text and 'href="/account/mfa"' in text  # no factor: no extend form
    assert 'name="valid_to"' not in text
    _no_secret(text, issued)


def test_a_member_cannot_open_another_users_token_and_learns_nothing(server: Server) -> None:
    admins = server.container.validator.validate(server.admin_token)
    admin_token_id = server.container.validator.authorization_id(admins)
    assert sign_in(server.client).status_code == 303  # alice: a plain member
    theirs, unknown = (server.client.get(f"/console/tokens/{t}") for t in (admin_token_id, UNKNOWN))
    assert theirs.status_code == unknown.status_code == 404
    assert _error(theirs) == _error(unknown)
    assert "admin@acme.test" not in theirs.text
    token = csrf_of(theirs.text)
    for action in ("extend", "regenerate"):
        r = server.client.post(
            f"/console/tokens/{admin_token_id}/{action}",
            data={"csrf_token": token, "valid_to": "2099-01-01", "confirmed": "yes"},
        )
        assert 400 <= r.status_code < 500, (action, r.status_code)
        assert server.admin_token not in r.text
    assert server.container.validator.validate(server.admin_token)  # untouched


def test_an_administrator_opens_any_token_of_the_organization_from_the_member_page(
    server: Server,
) -> None:
    c = server.container
    c.directory.set_role(OPERATOR, server.org, ALICE, Role.ADMIN)
    bob = c.directory.add_user(OPERATOR, server.org, "bob@acme.test").user
    issued = _pat(server, "bob@acme.test")
    assert sign_in(server.client).status_code == 303
    member = server.client.get(f"/console/users/{bob.id}")
    assert member.status_code == 200
    assert f'href="/console/tokens/{issued.record.authorization_id}">deploy-bot</a>' in member.text
    page = server.client.get(f"/console/tokens/{issued.record.authorization_id}")
    assert page.status_code == 200 and "bob@acme.test" in page.text
    assert 'name="valid_to"' not in page.text and "/regenerate" not in page.text  # not theirs
    _no_secret(page.text, issued)


def test_garbage_ids_are_a_4xx_page_never_a_500(server: Server) -> None:
    assert sign_in(server.client).status_code == 303
    for tid in (
        "not-a-uuid",
        "revoke",
        "x" * 500,
        "%00",
        "%E2%80%AE",
        "..%2F..%2Fetc",
        UNKNOWN.upper() + "0",
    ):
        r = server.client.get(f"/console/tokens/{tid}")
        assert r.status_code in (400, 404), (tid, r.status_code, r.text[:200])
    page = server.client.get("/console/tokens")
    token = csrf_of(page.text)
    for tid in ("not-a-uuid", "x" * 500, UNKNOWN):
        for action in ("extend", "regenerate"):
            for data in ({"valid_to": "tomorrow"}, {"valid_to": "9999-12-31"}, {"confirmed": "yes"}, {}):
                r = server.client.post(f"/console/tokens/{tid}/{action}", data={**data, "csrf_token": token})
                assert 400 <= r.status_code < 500, (tid, action, data, r.status_code, r.text[:200])
    r = server.client.post(f"/console/tokens/{UNKNOWN}/regenerate", data={"confirmed": "yes"})
    assert r.status_code == 403  # no CSRF token


def test_regenerate_shows_the_new_secret_once_and_the_old_one_dies(server: Server, clock: FakeClock) -> None:
    secret = _enrol(server, ALICE, clock)
    _sign_in_with_code(server, secret, clock)
    issued = _pat(server)
    tid = issued.record.authorization_id
    assert _validate(server, issued.secret) == 200
    page = server.client.get(f"/console/tokens/{tid}")
    assert page.status_code == 200 and f'action="/console/tokens/{tid}/regenerate"' in page.text
    ask = server.client.post(f"/console/tokens/{tid}/regenerate", data={"csrf_token": csrf_of(page.text)})
    assert ask.status_code == 200 and "Regenerate deploy-bot?" in ask.text  # asks first (no script)
    answer = server.client.post(
        f"/console/tokens/{tid}/regenerate", data={"csrf_token": csrf_of(ask.text), "confirmed": "yes"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    found = re.search(r'id="secret-value" value="(twp_[0-9A-Za-z]+)"', answer.text)
    assert found and "only time" in answer.text
    new_secret = found.group(1)
    assert new_secret != issued.secret and issued.secret not in answer.text
    assert _validate(server, issued.secret) == 401  # the old secret, at once
    assert _validate(server, new_secret) == 200
    again = server.client.get(f"/console/tokens/{tid}")
    assert again.status_code == 200 and new_secret not in again.text and 'id="secret-value"' not in again.text
    record = server.container.pats.get(OPERATOR, tid)
    _no_secret(again.text, issued)
    assert record.secret_hash.hex() not in answer.text + again.text


def test_extend_within_the_policy_and_a_clear_error_beyond_it(server: Server, clock: FakeClock) -> None:
    server.container.policies.update(OPERATOR, server.org, max_lifetime_days=30)
    secret = _enrol(server, ALICE, clock)
    _sign_in_with_code(server, secret, clock)
    issued = _pat(server)
    tid = issued.record.authorization_id
    page = server.client.get(f"/console/tokens/{tid}")
    assert '<label for="valid-to-input">' in page.text
    day = (clock.now() + timedelta(days=10)).date()
    ok = server.client.post(
        f"/console/tokens/{tid}/extend", data={"valid_to": day.isoformat(), "csrf_token": csrf_of(page.text)}
    )
    assert ok.status_code == 303 and ok.headers["location"] == f"/console/tokens/{tid}?done=token-extended"
    shown = server.client.get(ok.headers["location"])
    assert "Token extended." in shown.text
    assert f"{(day + timedelta(days=1)).isoformat()} 00:00 UTC" in shown.text
    far = (clock.now() + timedelta(days=60)).date().isoformat()
    beyond = server.client.post(
        f"/console/tokens/{tid}/extend", data={"valid_to": far, "csrf_token": csrf_of(shown.text)}
    )
    assert 400 <= beyond.status_code < 500
    assert "maximum lifetime of 30 days" in _error(beyond)
    bad = server.client.post(
        f"/console/tokens/{tid}/extend", data={"valid_to": "31/12/2099", "csrf_token": csrf_of(shown.text)}
    )
    assert bad.status_code == 400 and "a date like" in _error(bad)
    _no_secret(shown.text + beyond.text + bad.text, issued)


def test_a_stale_step_up_goes_to_the_step_up_page_and_back(server: Server, clock: FakeClock) -> None:
    secret = _enrol(server, ALICE, clock)
    _sign_in_with_code(server, secret, clock)
    tid = _pat(server).record.authorization_id
    clock.advance(minutes=6)
    page = server.client.get(f"/console/tokens/{tid}")
    day = (clock.now() + timedelta(days=5)).date().isoformat()
    r = server.client.post(
        f"/console/tokens/{tid}/extend", data={"valid_to": day, "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/account/step-up?next=%2Fconsole%2Ftokens%2F{tid}"
    up = server.client.get("/account/step-up", params={"next": f"/console/tokens/{tid}"})
    clock.advance(seconds=mfa.STEP_SECONDS)
    back = server.client.post(
        "/account/step-up",
        data={"code": _code(secret, clock), "next": f"/console/tokens/{tid}", "csrf_token": csrf_of(up.text)},
    )
    assert back.status_code == 303 and back.headers["location"] == f"/console/tokens/{tid}"
    again = server.client.post(
        f"/console/tokens/{tid}/extend", data={"valid_to": day, "csrf_token": csrf_of(up.text)}
    )
    assert again.status_code == 303 and "done=token-extended" in again.headers["location"]


def test_without_a_second_factor_the_owner_is_sent_to_set_one_up(server: Server, clock: FakeClock) -> None:
    assert sign_in(server.client).status_code == 303
    issued = _pat(server)
    tid = issued.record.authorization_id
    page = server.client.get(f"/console/tokens/{tid}")
    day = (clock.now() + timedelta(days=5)).date().isoformat()
    for action, data in (("extend", {"valid_to": day}), ("regenerate", {"confirmed": "yes"})):
        r = server.client.post(
            f"/console/tokens/{tid}/{action}", data={**data, "csrf_token": csrf_of(page.text)}
        )
        assert r.status_code == 403 and "/account/mfa" in _error(r), (action, r.status_code)
    assert _validate(server, issued.secret) == 200  # unchanged


def test_another_organization_sees_no_last_use_of_a_token_it_did_not_issue(server: Server) -> None:
    """A PAT issued in acme and valid everywhere: globex's admin opens it (it is valid there)
    but its last use and IP are acme's record, not shown."""
    c = server.container
    c.directory.add_org("globex", "boss@globex.test")
    c.directory.add_user(OPERATOR, "globex", ALICE)
    c.accounts.set_password(OPERATOR, "boss@globex.test", PASSWORD)
    issued = c.pats.create(
        OPERATOR, org=server.org, user=ALICE, display_name="acme-ci", scope="vso.code", all_orgs=True
    )
    with c.uow() as uow:
        used = issued.record.with_changes(last_used_at=c.console.now(), last_used_ip="198.51.100.77")
        uow.tokens.update(used)
        uow.commit()
    other = browser(server)
    assert sign_in(other, "boss@globex.test").status_code == 303
    page = other.get(f"/console/tokens/{issued.record.authorization_id}")
    assert page.status_code == 200 and "acme-ci" in page.text
    assert "198.51.100.77" not in page.text and "recorded by the organization that issued it" in page.text
    assert sign_in(server.client).status_code == 303  # the owner sees it
    assert "198.51.100.77" in server.client.get(f"/console/tokens/{issued.record.authorization_id}").text
