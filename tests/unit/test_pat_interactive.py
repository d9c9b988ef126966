"""Issue 16: one's own PAT from the console — extend and regenerate with the owner's own
authority (an interactive browser session plus a fresh second factor, never a bearer token),
a token's page as an organization sees it, and bulk revocation needing a step-up."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain import mfa
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.errors import Forbidden, InvalidInput, InvalidToken, NotFound, PolicyViolation
from tokenwarden.domain.principals import User
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR, Actor, TokenReach
from tokenwarden.services.directory import InitResult
from tokenwarden.services.pats import IssuedPat

from .conftest import FakeClock, actor_of

PROFILE = frozenset({"openid", "profile"})  # what a browser session holds


def session_of(user: User, key: bytes = b"s" * 32, *, interactive: bool = True) -> Actor:
    """The user acting through their browser session (a step-up attaches to its key)."""
    return Actor(user.id, user.upn, ip="198.51.100.9", token=TokenReach(PROFILE, None, key, interactive))


def enrol_and_step_up(container: Container, actor: Actor, clock: FakeClock) -> str:
    secret = container.mfa.begin(actor).secret
    container.mfa.confirm(actor, mfa.code_at(secret, mfa.step_of(clock.now())))
    clock.advance(seconds=mfa.STEP_SECONDS)
    container.mfa.step_up(actor, mfa.code_at(secret, mfa.step_of(clock.now())))
    return secret


def pat_of(container: Container, user: User, scope: str = "vso.code", **kw: object) -> IssuedPat:
    return container.pats.create(
        OPERATOR,
        org="acme",
        user=user.id,
        display_name="ci",
        scope=scope,
        **kw,  # type: ignore[arg-type]
    )


def audit_details(container: Container, event: AuditEventType) -> list[dict[str, object]]:
    with container.uow() as uow:
        return [dict(e.details) for e in uow.audit.query(AuditQuery(event_types=(event.value,)))]


def test_the_owner_with_a_fresh_step_up_extends_and_regenerates(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    me = session_of(bob)
    enrol_and_step_up(container, me, clock)
    issued = pat_of(container, bob, "vso.code_write vso.build")  # wider than the session
    tid, org = issued.record.authorization_id, init.org.id
    until = clock.now() + timedelta(days=60)
    extended = container.pats.extend_own_interactive(me, tid, until, org)
    assert extended.valid_to == until and extended.scopes == issued.record.scopes
    assert audit_details(container, AuditEventType.PAT_UPDATE)[-1]["via"] == "console"

    container.validator.validate(issued.secret, "vso.code", org)  # cached on this node
    fresh = container.pats.regenerate_own_interactive(me, tid, org)
    assert fresh.secret != issued.secret and fresh.record.authorization_id == tid
    with pytest.raises(InvalidToken):
        container.validator.validate(issued.secret, "vso.code", org)
    assert container.validator.validate(fresh.secret, "vso.code", org).user.id == bob.id
    details = audit_details(container, AuditEventType.PAT_REGENERATE)[-1]
    assert details["via"] == "console"
    text = json.dumps([*audit_details(container, AuditEventType.PAT_UPDATE), details])
    assert fresh.secret not in text and issued.secret not in text


def test_the_ordinary_update_still_refuses_a_session_that_does_not_cover_the_pat(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    me = session_of(bob)
    enrol_and_step_up(container, me, clock)
    tid = pat_of(container, bob).record.authorization_id
    with pytest.raises(Forbidden) as info:
        container.pats.update(me, tid, valid_to=clock.now() + timedelta(days=5), org_id=init.org.id)
    assert info.value.code == "scopeEscalation"
    with pytest.raises(Forbidden):
        container.pats.regenerate(me, tid, init.org.id)


def test_without_a_fresh_step_up_the_answer_is_step_up_required(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    me = session_of(bob)
    secret = container.mfa.begin(me).secret
    container.mfa.confirm(me, mfa.code_at(secret, mfa.step_of(clock.now())))  # enrolled, not stepped up
    tid = pat_of(container, bob).record.authorization_id
    for call in (
        lambda: container.pats.extend_own_interactive(me, tid, clock.now() + timedelta(days=5), init.org.id),
        lambda: container.pats.regenerate_own_interactive(me, tid, init.org.id),
    ):
        with pytest.raises(Forbidden) as info:
            call()
        assert info.value.code == "stepUpRequired"
    clock.advance(seconds=mfa.STEP_SECONDS)
    container.mfa.step_up(me, mfa.code_at(secret, mfa.step_of(clock.now())))
    clock.advance(minutes=5, seconds=1)  # a step-up holds five minutes
    with pytest.raises(Forbidden) as stale:
        container.pats.regenerate_own_interactive(me, tid, init.org.id)
    assert stale.value.code == "stepUpRequired"


def test_a_user_without_a_second_factor_is_told_to_set_one_up(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    """Even though acme does not require MFA: the owner path always needs a fresh factor."""
    tid = pat_of(container, bob).record.authorization_id
    with pytest.raises(Forbidden) as info:
        container.pats.extend_own_interactive(
            session_of(bob), tid, clock.now() + timedelta(days=5), init.org.id
        )
    assert info.value.code == "mfaEnrollmentRequired" and "/account/mfa" in info.value.message


def test_a_token_that_is_not_a_browser_session_is_refused(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    """A PAT (or a session secret sent as a bearer) is not the owner's interactive sign-in,
    even with a fresh step-up on it; nor is the operator or an actor without a token."""
    bearer = session_of(bob, b"p" * 32, interactive=False)
    enrol_and_step_up(container, bearer, clock)
    tid = pat_of(container, bob).record.authorization_id
    until = clock.now() + timedelta(days=5)
    for actor in (bearer, actor_of(bob), OPERATOR):
        with pytest.raises(Forbidden) as info:
            container.pats.extend_own_interactive(actor, tid, until, init.org.id)
        assert info.value.code == "interactiveSessionRequired"
        with pytest.raises(Forbidden):
            container.pats.regenerate_own_interactive(actor, tid, init.org.id)


def test_another_users_pat_is_not_found_even_for_an_admin(
    container: Container, init: InitResult, bob: User, carol: User, clock: FakeClock
) -> None:
    carols = pat_of(container, carol).record.authorization_id
    until = clock.now() + timedelta(days=5)
    for user in (bob, init.admin):
        me = session_of(user, user.id.encode()[:32])
        enrol_and_step_up(container, me, clock)
        with pytest.raises(NotFound):
            container.pats.extend_own_interactive(me, carols, until, init.org.id)
        with pytest.raises(NotFound):
            container.pats.regenerate_own_interactive(me, carols, init.org.id)


def test_the_policy_maximum_lifetime_and_the_pat_state_still_apply(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    container.policies.update(OPERATOR, "acme", max_lifetime_days=30)
    me = session_of(bob)
    enrol_and_step_up(container, me, clock)
    issued = pat_of(container, bob)
    tid = issued.record.authorization_id
    with pytest.raises(PolicyViolation):
        container.pats.extend_own_interactive(me, tid, clock.now() + timedelta(days=45), init.org.id)
    with pytest.raises(InvalidInput) as past:
        container.pats.extend_own_interactive(me, tid, clock.now() - timedelta(days=1), init.org.id)
    assert past.value.code == "invalidValidTo"
    container.pats.revoke(actor_of(bob), tid)
    with pytest.raises(InvalidInput):
        container.pats.extend_own_interactive(me, tid, clock.now() + timedelta(days=5), init.org.id)
    with pytest.raises(InvalidInput):
        container.pats.regenerate_own_interactive(me, tid, init.org.id)


def test_the_organization_must_be_one_the_pat_is_valid_in(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    beta = container.directory.add_org("beta", "boss@beta.test").org
    container.directory.add_user(OPERATOR, "beta", bob.upn)
    me = session_of(bob)
    enrol_and_step_up(container, me, clock)
    tid = pat_of(container, bob).record.authorization_id  # acme only
    with pytest.raises(NotFound):
        container.pats.extend_own_interactive(me, tid, clock.now() + timedelta(days=5), beta.id)


def test_revoking_several_pats_needs_a_fresh_second_factor(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    admin = session_of(init.admin, b"a" * 32, interactive=False)  # an admin's token, over the API
    secret = container.mfa.begin(admin).secret
    container.mfa.confirm(admin, mfa.code_at(secret, mfa.step_of(clock.now())))
    ids = [pat_of(container, bob).record.authorization_id for _ in range(3)]
    with pytest.raises(Forbidden) as info:
        container.pats.revoke_many(admin, "acme", ids[:2])
    assert info.value.code == "stepUpRequired"
    assert container.pats.revoke_many(admin, "acme", [ids[2], ids[2]]) == 1  # one token: no step-up
    clock.advance(seconds=mfa.STEP_SECONDS)
    container.mfa.step_up(admin, mfa.code_at(secret, mfa.step_of(clock.now())))
    assert container.pats.revoke_many(admin, "acme", ids[:2]) == 2
    assert container.pats.revoke_many(OPERATOR, "acme", ids) == 0  # the operator needs none


# --------------------------------------------------------------------------- a token's page
def test_a_token_page_shows_the_state_here_to_its_owner_and_the_admins(
    container: Container, init: InitResult, bob: User, clock: FakeClock
) -> None:
    issued = pat_of(container, bob)
    tid = issued.record.authorization_id
    for viewer in (session_of(bob), session_of(init.admin)):
        view = container.pats.token_in_org(viewer, init.org.id, tid)
        assert view.record.authorization_id == tid and view.owner is not None and view.owner.id == bob.id
        assert view.orgs == [(init.org.id, "acme")] and not view.other_orgs
    assert container.pats.token_in_org(session_of(bob), init.org.id, tid).is_own
    clock.advance(seconds=1)
    container.revocation.revoke_user(OPERATOR, "acme", bob.id)  # a watermark, not the record
    view = container.pats.token_in_org(session_of(init.admin), init.org.id, tid)
    assert view.record.revoked_at is not None and view.cause == "user"


def test_a_token_page_is_the_same_not_found_for_anything_the_viewer_may_not_see(
    container: Container, init: InitResult, bob: User, carol: User
) -> None:
    carols = pat_of(container, carol).record.authorization_id
    answers = []
    for token_id in (carols, "00000000-0000-4000-8000-000000000000", "not-a-uuid", "", "x" * 80):
        with pytest.raises(NotFound) as info:
            container.pats.token_in_org(session_of(bob), init.org.id, token_id)
        answers.append((info.value.code, info.value.message))
    assert len(set(answers)) == 1
    with pytest.raises(NotFound):
        container.pats.token_in_org(OPERATOR, init.org.id, carols)


def test_another_organizations_admin_sees_a_token_valid_there_but_not_where_else(
    container: Container, init: InitResult, bob: User
) -> None:
    beta = container.directory.add_org("beta", "boss@beta.test")
    container.directory.add_user(OPERATOR, "beta", bob.upn)
    everywhere = pat_of(container, bob, all_orgs=True).record.authorization_id
    acme_only = pat_of(container, bob).record.authorization_id
    boss = session_of(beta.admin, b"b" * 32)
    view = container.pats.token_in_org(boss, beta.org.id, everywhere)
    assert view.orgs == [(beta.org.id, "beta")] and view.other_orgs  # acme is not named to beta
    assert not view.is_own
    with pytest.raises(NotFound):
        container.pats.token_in_org(boss, beta.org.id, acme_only)
    own = container.pats.token_in_org(session_of(bob), init.org.id, everywhere)
    assert [name for _, name in own.orgs] == ["acme", "beta"] and not own.other_orgs
