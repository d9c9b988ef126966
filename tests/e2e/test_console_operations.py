"""Issue 16 item 5: the console's rotation and jobs pages over HTTP — an administrator sees the
managed credentials and their history, rotates one now (a new version in the history), runs a
job and follows the run to completion; a member gets 403 on every page and action; no CSRF
token is 403; unknown names and ids are the 404 page; no secret value is ever in a page."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server
from tests.e2e.signin_helpers import ALICE, csrf_of, past_clock, sign_in, start_server
from tests.unit.conftest import FakeClock
from tokenwarden.domain import mfa
from tokenwarden.domain.errors import DomainError
from tokenwarden.domain.principals import Role
from tokenwarden.services.common import OPERATOR, Actor, TokenReach
from tokenwarden.services.lifecycle_jobs import AUDIT_CHECKPOINT_JOB, ROTATION_JOB
from tokenwarden.services.managed import NewCredential

SERVICE = "svc@acme.test"


@pytest.fixture
def clock() -> FakeClock:
    return past_clock(hours=1)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[Server]:
    yield from start_server(tmp_path, clock)


def _admin(server: Server) -> None:
    """Alice, an administrator (no second factor), signed in in the test client."""
    server.container.directory.set_role(OPERATOR, server.org, ALICE, Role.ADMIN)
    assert sign_in(server.client).status_code == 303


def _admin_with_factor(server: Server, clock: FakeClock) -> None:
    """Alice, an administrator with a second factor, signed in with it (stepped up)."""
    c = server.container
    c.directory.set_role(OPERATOR, server.org, ALICE, Role.ADMIN)
    alice = c.directory.get_member(OPERATOR, server.org, ALICE)[0]
    actor = Actor(alice.id, alice.upn, token=TokenReach(frozenset({"app_token"}), None, b"e" * 16))
    secret = c.mfa.begin(actor).secret
    c.mfa.confirm(actor, mfa.code_at(secret, mfa.step_of(clock.now())))
    clock.advance(seconds=mfa.STEP_SECONDS)
    first = sign_in(server.client)
    found = re.search(r'name="challenge" value="([^"]+)"', first.text)
    assert first.status_code == 200 and found, first.text
    done = server.client.post(
        "/signin/mfa",
        data={
            "challenge": found.group(1),
            "code": mfa.code_at(secret, mfa.step_of(clock.now())),
            "csrf_token": csrf_of(first.text),
        },
    )
    assert done.status_code == 303, done.text


def _managed(server: Server, name: str = "ci", scope: str = "vso.code") -> str:
    """A PAT of svc@acme.test under rotation into the built-in store; its secret."""
    c = server.container
    with contextlib.suppress(DomainError):  # the second credential: already a member
        c.directory.add_user(OPERATOR, server.org, SERVICE)
    auth_id, secret = server.pat_for(SERVICE, scope=scope, name=f"{name} token", days=30)
    new = NewCredential(
        name=name, authorization_id=auth_id, store="builtin", contacts=("ops@acme.test",), overlap_minutes=5
    )
    c.managed.add(OPERATOR, server.org, new)
    return secret


def _served(server: Server, name: str = "ci") -> str:
    """The value the built-in store serves now (through the API, as a consumer reads it)."""
    r = server.client.get(f"/api/v1/orgs/{server.org}/secrets/{name}", headers=server.auth())
    assert r.status_code == 200, r.text
    return str(r.json()["value"])


def _rotate(server: Server, name: str, action: str = "rotate") -> str:
    page = server.client.get(f"/console/rotation/{name}")
    assert page.status_code == 200, page.text
    r = server.client.post(
        f"/console/rotation/{name}/{action}", data={"confirmed": "yes", "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


def _finished(server: Server, url: str) -> str:
    for _ in range(200):
        page = server.client.get(url)
        assert page.status_code == 200, page.text
        if 'hx-trigger="every 2s"' not in page.text:
            return str(page.text)
        time.sleep(0.05)
    raise AssertionError(page.text)


def test_the_rotation_page_lists_managed_credentials(server: Server, clock: FakeClock) -> None:
    secrets = [_managed(server, "ci", scope="vso.profile"), _managed(server, "deploy")]
    _admin_with_factor(server, clock)
    page = server.client.get("/console/rotation")
    assert page.status_code == 200, page.text
    assert 'href="/console/rotation"' in page.text and 'href="/console/jobs"' in page.text  # the nav
    table = page.text[page.text.index('id="credentials"') :]
    assert 'href="/console/rotation/ci"' in table and 'href="/console/rotation/deploy"' in table
    assert SERVICE in table and "ops@acme.test" in table and "builtin" in table
    assert re.search(rf"{server.org}/ci-[0-9a-f]{{8}}", table)  # the store's secret name
    assert "7 days before expiry" in table and "never" in table  # not rotated yet
    assert "2 managed credentials" in page.text
    one = server.client.get("/console/rotation/ci")
    assert one.status_code == 200 and "Not rotated yet" in one.text
    assert 'id="current-version">0<' in one.text
    assert "Rotate now" in one.text and "/console/rotation/ci/confirm/rotate" in one.text
    confirm = server.client.get("/console/rotation/ci/confirm/rotate-compromised")
    assert confirm.status_code == 200 and 'name="confirmed" value="yes"' in confirm.text
    assert 'action="/console/rotation/ci/rotate-compromised"' in confirm.text
    for html in (page.text, one.text, confirm.text):
        assert not any(s in html for s in secrets)


def test_rotate_now_adds_a_version_to_the_history(server: Server, clock: FakeClock) -> None:
    """A credential wider than the browser session (vso.code): a fresh second factor stands in
    for a token covering it — the successor goes to the store, never to the administrator."""
    old = _managed(server, scope="vso.code")
    _admin_with_factor(server, clock)
    location = _rotate(server, "ci")  # planned: the predecessor lives through the 5-minute overlap
    assert location == "/console/rotation/ci?done=rotation-pending&n=1", location
    page = server.client.get(location)
    assert "Rotated: version 1 is served; the previous one works until the overlap ends." in page.text
    assert 'id="current-version">1<' in page.text
    history = page.text[page.text.index('id="history"') :]
    assert "forced" in history and "in progress (promoted)" in history and "<td>1</td>" in history
    assert server.client.get("/api/v1/validate", headers=server.auth(old)).status_code == 200
    new = _served(server)
    assert new != old
    location = _rotate(server, "ci", "rotate-compromised")
    assert location == "/console/rotation/ci?done=rotated&n=2", location
    page = server.client.get("/console/rotation/ci")
    history = page.text[page.text.index('id="history"') :]
    assert "compromised" in history and "emergency" in history and "<td>2</td>" in history
    newest = _served(server)
    listing = server.client.get("/console/rotation")
    assert listing.status_code == 200
    row = listing.text[listing.text.index('href="/console/rotation/ci"') :]
    assert '<span class="badge">rotated</span>' in row and "<td>2</td>" in row
    for html in (page.text, listing.text):
        assert not any(s in html for s in (old, new, newest))
    # the predecessor of a compromised rotation is revoked at once
    assert server.client.get("/api/v1/validate", headers=server.auth(new)).status_code == 401
    assert server.client.get("/api/v1/validate", headers=server.auth(newest)).status_code == 200


def test_rotate_now_without_a_second_factor_is_refused_with_a_way_out(server: Server) -> None:
    """From a browser session the successor (as wide as the credential) needs a fresh second
    factor: without one the page says how to get one or where else to rotate, a POST is 403."""
    _managed(server, scope="vso.code")
    _admin(server)
    page = server.client.get("/console/rotation/ci")
    assert page.status_code == 200 and 'id="rotate-elsewhere"' in page.text
    assert "/account/mfa" in page.text and "tokenwarden rotate now ci" in page.text
    assert "/console/rotation/ci/confirm/rotate" not in page.text  # no button that cannot work
    r = server.client.post(
        "/console/rotation/ci/rotate", data={"confirmed": "yes", "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 403 and "second factor" in r.text
    assert server.container.managed.get(OPERATOR, server.org, "ci")[0].version == 0


def test_a_stale_step_up_is_asked_again_before_rotating(server: Server, clock: FakeClock) -> None:
    _managed(server, scope="vso.code")
    _admin_with_factor(server, clock)
    page = server.client.get("/console/rotation/ci")
    clock.advance(minutes=6)
    r = server.client.post(
        "/console/rotation/ci/rotate", data={"confirmed": "yes", "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/account/step-up?next=")
    assert server.container.managed.get(OPERATOR, server.org, "ci")[0].version == 0


def test_the_jobs_page_and_a_run_to_completion(server: Server) -> None:
    secret = _managed(server)
    _admin(server)
    page = server.client.get("/console/jobs")
    assert page.status_code == 200, page.text
    table = page.text[page.text.index('id="jobs"') :]
    for job in (ROTATION_JOB, AUDIT_CHECKPOINT_JOB):
        assert f"/console/jobs/{job}/confirm" in table and f'id="run-{job}"' in page.text
    assert "20 * * * *" in table  # the rotation job's schedule
    confirm = server.client.get(f"/console/jobs/{ROTATION_JOB}/confirm")
    assert confirm.status_code == 200 and f'action="/console/jobs/{ROTATION_JOB}/run"' in confirm.text
    r = server.client.post(
        f"/console/jobs/{ROTATION_JOB}/run", data={"confirmed": "yes", "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    found = re.fullmatch(rf"/console/jobs/{ROTATION_JOB}/([^/?]+)\?done=job-started", location)
    assert found, location
    run_url = location.split("?")[0]
    started = server.client.get(location)
    assert started.status_code == 200 and "Run started." in started.text
    final = _finished(server, run_url)
    assert 'id="run-state" class="">completed<' in final, final
    figures = final[final.index('id="figures"') :]
    assert "<td>skipped</td><td>1</td>" in figures and "<td>rotated</td><td>0</td>" in figures  # not due
    progress = server.client.get(run_url + "/progress")
    assert progress.status_code == 200 and progress.headers["hx-refresh"] == "true"
    assert "<html" not in progress.text and 'id="progress"' in progress.text
    again = server.client.get("/console/jobs")
    assert f'href="{run_url}"' in again.text and "completed" in again.text
    for html in (page.text, confirm.text, final, progress.text, again.text):
        assert secret not in html


def test_a_running_run_is_polled_every_two_seconds(server: Server) -> None:
    _admin(server)
    c = server.container
    c.jobs.run(AUDIT_CHECKPOINT_JOB, trigger="manual", org_id=server.org_id)
    run = c.jobs_admin.status(OPERATOR, server.org_id)
    done = next(j for j in run if j["name"] == AUDIT_CHECKPOINT_JOB)["runs"][0]
    url = f"/console/jobs/{AUDIT_CHECKPOINT_JOB}/{done['id']}"
    page = server.client.get(url)
    assert page.status_code == 200 and "completed" in page.text
    assert 'hx-trigger="every 2s"' not in page.text  # finished: nothing to poll
    # while it runs: the page polls its fragment
    from tokenwarden.http.console.common import environment

    html = (
        environment()
        .get_template("job_progress.html")
        .render(
            run={**done, "status": "running", "finishedAt": None},
            path=url,
            figures=[],
            errors=[],
            at=str,
        )
    )
    assert f'hx-get="{url}/progress"' in html and 'hx-trigger="every 2s"' in html


def test_a_member_gets_403_on_every_page_and_action(server: Server) -> None:
    _managed(server)
    c = server.container
    c.jobs.run(AUDIT_CHECKPOINT_JOB, trigger="manual", org_id=server.org_id)
    run_id = next(
        j for j in c.jobs_admin.status(OPERATOR, server.org_id) if j["name"] == AUDIT_CHECKPOINT_JOB
    )["runs"][0]["id"]
    assert sign_in(server.client).status_code == 303  # alice: a plain member
    mine = server.client.get("/console/tokens")
    assert mine.status_code == 200 and 'href="/console/rotation"' not in mine.text
    token = csrf_of(mine.text)
    for url in (
        "/console/rotation",
        "/console/rotation/ci",
        "/console/rotation/nope",
        "/console/rotation/ci/confirm/rotate",
        "/console/jobs",
        f"/console/jobs/{ROTATION_JOB}/confirm",
        f"/console/jobs/{AUDIT_CHECKPOINT_JOB}/{run_id}",
        f"/console/jobs/{AUDIT_CHECKPOINT_JOB}/{run_id}/progress",
    ):
        r = server.client.get(url)
        assert r.status_code == 403, (url, r.status_code)
    for url in (
        "/console/rotation/ci/rotate",
        "/console/rotation/ci/rotate-compromised",
        "/console/jobs/rotation/run",
    ):
        r = server.client.post(url, data={"confirmed": "yes", "csrf_token": token})
        assert r.status_code == 403, (url, r.status_code)
    cred, _ = c.managed.get(OPERATOR, server.org, "ci")
    assert cred.version == 0  # nothing rotated
    runs = next(j for j in c.jobs_admin.status(OPERATOR, server.org_id) if j["name"] == ROTATION_JOB)["runs"]
    assert runs == []  # nothing run


def test_without_csrf_or_confirmation_nothing_happens(server: Server) -> None:
    _managed(server)
    _admin(server)
    page = server.client.get("/console/rotation/ci")
    for url in ("/console/rotation/ci/rotate", f"/console/jobs/{ROTATION_JOB}/run"):
        r = server.client.post(url, data={"confirmed": "yes"})
        assert r.status_code == 403, (url, r.status_code)
        r = server.client.post(url, data={"confirmed": "yes", "csrf_token": "0" * 64})
        assert r.status_code == 403, (url, r.status_code)
        r = server.client.post(url, data={"csrf_token": csrf_of(page.text)})  # not confirmed
        assert r.status_code == 400, (url, r.status_code)
    c = server.container
    assert c.managed.get(OPERATOR, server.org, "ci")[0].version == 0
    assert (
        next(j for j in c.jobs_admin.status(OPERATOR, server.org_id) if j["name"] == ROTATION_JOB)["runs"]
        == []
    )


def test_unknown_names_and_ids_are_the_404_page(server: Server) -> None:
    _managed(server)
    _admin(server)
    token = csrf_of(server.client.get("/console/rotation").text)
    for url in (
        "/console/rotation/nope",
        "/console/rotation/" + "x" * 5000,
        "/console/rotation/%00%ff",
        "/console/rotation/nope/confirm/rotate",
        "/console/jobs/no-such-job/confirm",
        f"/console/jobs/{ROTATION_JOB}/no-such-run",
        f"/console/jobs/{ROTATION_JOB}/" + "9" * 5000,
        f"/console/jobs/{ROTATION_JOB}/no-such-run/progress",
        "/console/jobs/no-such-job/00000000-0000-4000-8000-000000000000",
    ):
        r = server.client.get(url)
        assert r.status_code == 404, (url[:80], r.status_code, r.text[:200])
        assert "<h1>That did not work</h1>" in r.text
    for url in ("/console/rotation/nope/rotate", "/console/jobs/no-such-job/run"):
        r = server.client.post(url, data={"confirmed": "yes", "csrf_token": token})
        assert r.status_code == 404, (url, r.status_code)
    for url in ("/console/rotation/ci/confirm/explode",):
        assert server.client.get(url).status_code == 400
    r = server.client.post("/console/rotation/ci/explode", data={"confirmed": "yes", "csrf_token": token})
    assert r.status_code == 400
    assert server.container.managed.get(OPERATOR, server.org, "ci")[0].version == 0


def test_a_run_of_another_organization_is_not_shown(server: Server) -> None:
    c = server.container
    c.directory.add_org("globex", "boss@globex.test")
    with c.uow() as uow:
        globex = uow.orgs.by_name("globex")
        assert globex is not None
    c.jobs.run(AUDIT_CHECKPOINT_JOB, trigger="manual", org_id=globex.id)
    theirs = next(j for j in c.jobs_admin.status(OPERATOR, globex.id) if j["name"] == AUDIT_CHECKPOINT_JOB)[
        "runs"
    ][0]["id"]
    _admin(server)
    r = server.client.get(f"/console/jobs/{AUDIT_CHECKPOINT_JOB}/{theirs}")
    assert r.status_code == 404
    page = server.client.get("/console/jobs")
    assert f"/{theirs}" not in page.text
    acme_runs = next(
        j for j in c.jobs_admin.status(OPERATOR, server.org) if j["name"] == AUDIT_CHECKPOINT_JOB
    )
    assert theirs not in {r["id"] for r in acme_runs["runs"]}  # another organization's run: not listed
    assert "(manual)" not in page.text
