"""The tenancy rule: nothing an organization's admin or member does is observable in another
organization; and no token mints or widens a token beyond itself."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidToken, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.principals import RiskLevel, RiskState, Role, User, UserStatus
from tokenwarden.domain.tokens import TokenState
from tokenwarden.domain.watermarks import ALL_KINDS, SubjectType
from tokenwarden.services.common import OPERATOR, Actor, TokenReach, publish
from tokenwarden.services.directory import InitResult
from tokenwarden.services.pats import IssuedPat

from .conftest import actor_of


@pytest.fixture
def beta_admin(container: Container, init: InitResult) -> Actor:
    """The administrator of a second organization, beta (which bob is not in)."""
    container.directory.add_org("beta", "boss@beta.test")
    boss = container.directory.get_member(OPERATOR, "beta", "boss@beta.test")[0]
    return actor_of(boss)


def pat(container: Container, user: User, org: str = "acme", *, all_orgs: bool = False) -> IssuedPat:
    """A vso.code PAT; the (fake) clock then moves on a second, so that a cut-off raised "now"
    falls after the token's issue time."""
    issued = container.pats.create(
        actor_of(user), org=org, user=user.id, display_name="t", scope="vso.code", all_orgs=all_orgs
    )
    container.clock.advance(seconds=1)  # type: ignore[attr-defined]
    return issued


def join_beta(container: Container, beta_admin: Actor, user: User) -> None:
    """beta invites ``user`` (who already belongs to acme) and the user accepts."""
    result = container.directory.add_user(beta_admin, "beta", user.upn)
    assert result.membership is None and result.invitation is not None
    container.directory.answer_invitation(actor_of(user), result.invitation.id, accept=True)


# ----------------------------------------------------------------------------- enrolment
def test_another_orgs_admin_only_invites_an_existing_identity(
    container: Container, bob: User, beta_admin: Actor
) -> None:
    result = container.directory.add_user(beta_admin, "beta", bob.upn)
    assert result.invitation is not None and result.membership is None
    # Until bob accepts, beta can do nothing to bob.
    for act in (
        lambda: container.directory.set_status(beta_admin, "beta", bob.upn, UserStatus.DISABLED),
        lambda: container.revocation.revoke_user(beta_admin, "beta", bob.upn),
        lambda: container.revocation.set_risk(
            beta_admin, "beta", [bob.id], RiskLevel.HIGH, RiskState.AT_RISK
        ),
        lambda: container.pats.list_for_admin(beta_admin, "beta", bob.upn),
        lambda: container.revocation.revoke_sign_in_sessions(beta_admin, "beta", bob.upn),
    ):
        with pytest.raises(NotFound):
            act()
    # Nor through acme, which beta's admin does not administer.
    with pytest.raises(Forbidden):
        container.directory.set_status(beta_admin, "acme", bob.upn, UserStatus.DISABLED)


def test_only_the_invited_identity_answers_an_invitation(
    container: Container, bob: User, carol: User, beta_admin: Actor
) -> None:
    invitation = container.directory.add_user(beta_admin, "beta", bob.upn).invitation
    assert invitation is not None
    for someone_else in (actor_of(carol), beta_admin):
        with pytest.raises(NotFound):
            container.directory.answer_invitation(someone_else, invitation.id, accept=True)
    assert container.directory.invitations_for(actor_of(bob))[0][0].id == invitation.id
    container.directory.answer_invitation(actor_of(bob), invitation.id, accept=False)
    with pytest.raises(Conflict):
        container.directory.answer_invitation(actor_of(bob), invitation.id, accept=True)
    with pytest.raises(NotFound):
        container.directory.get_member(beta_admin, "beta", bob.upn)


def test_an_invitation_expires(container: Container, bob: User, beta_admin: Actor, clock: object) -> None:
    invitation = container.directory.add_user(beta_admin, "beta", bob.upn).invitation
    assert invitation is not None
    clock.advance(days=15)  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        container.directory.answer_invitation(actor_of(bob), invitation.id, accept=True)


def test_the_operator_enrols_an_existing_identity_directly(
    container: Container, bob: User, beta_admin: Actor
) -> None:
    result = container.directory.add_user(OPERATOR, "beta", bob.upn)
    assert result.membership is not None and result.invitation is None


# ----------------------------------------------------------------------------- per-org state
def test_disabling_a_member_in_one_org_leaves_the_other_untouched(
    container: Container, bob: User, beta_admin: Actor, init: InitResult
) -> None:
    join_beta(container, beta_admin, bob)
    beta = container.directory.find_org("beta")
    home = pat(container, bob)
    everywhere = pat(container, bob, all_orgs=True)
    container.directory.set_status(beta_admin, "beta", bob.upn, UserStatus.DISABLED)
    with pytest.raises(InvalidToken, match="revoked"):
        container.validator.validate(everywhere.secret, "vso.code", beta.id)
    assert container.validator.validate(home.secret).org_id == init.org.id
    container.validator.validate(everywhere.secret, "vso.code", init.org.id)
    acme_view = container.directory.get_member(actor_of(init.admin), "acme", bob.upn)[1]
    assert acme_view.status is UserStatus.ACTIVE
    # Re-enabling in beta does not bring back what disabling killed.
    container.directory.set_status(beta_admin, "beta", bob.upn, UserStatus.ACTIVE)
    with pytest.raises(InvalidToken):
        container.validator.validate(everywhere.secret, "vso.code", beta.id)


def test_revoking_a_user_in_one_org_is_not_seen_in_the_other(
    container: Container, bob: User, beta_admin: Actor, init: InitResult
) -> None:
    join_beta(container, beta_admin, bob)
    beta = container.directory.find_org("beta")
    everywhere = pat(container, bob, all_orgs=True)
    container.revocation.revoke_user(beta_admin, "beta", bob.upn)
    with pytest.raises(InvalidToken):
        container.validator.validate(everywhere.secret, "vso.code", beta.id)
    container.validator.validate(everywhere.secret, "vso.code", init.org.id)
    container.validator.validate(everywhere.secret)  # its own organization: acme
    in_acme = container.pats.list_for_admin(actor_of(init.admin), "acme", bob.upn)[1]
    in_beta = container.pats.list_for_admin(beta_admin, "beta", bob.upn)[1]
    assert [t.state(container.clock.now()) for t in in_acme] == [TokenState.ACTIVE]
    assert [t.state(container.clock.now()) for t in in_beta] == [TokenState.REVOKED]


def test_graph_marks_and_risk_are_per_org(
    container: Container, bob: User, beta_admin: Actor, init: InitResult
) -> None:
    join_beta(container, beta_admin, bob)
    container.revocation.revoke_sign_in_sessions(beta_admin, "beta", bob.upn)
    container.revocation.set_risk(
        beta_admin, "beta", [bob.upn], RiskLevel.HIGH, RiskState.CONFIRMED_COMPROMISED
    )
    acme_admin = actor_of(init.admin)
    assert container.revocation.user_marks(acme_admin, "acme", bob.upn)[1] == {}
    assert "signInSessions" in container.revocation.user_marks(beta_admin, "beta", bob.upn)[1]
    assert container.revocation.risky_users(acme_admin, "acme", [RiskLevel.HIGH]) == []
    assert [u.id for u, _ in container.revocation.risky_users(beta_admin, "beta", [RiskLevel.HIGH])] == [
        bob.id
    ]
    result = container.revocation.revoke_risky(acme_admin, "acme", RiskLevel.HIGH)
    assert result.user_ids == ()


def test_break_glass_of_one_org_does_not_stop_tokens_in_another(
    container: Container, bob: User, beta_admin: Actor, init: InitResult
) -> None:
    join_beta(container, beta_admin, bob)
    beta = container.directory.find_org("beta")
    everywhere = pat(container, bob, all_orgs=True)
    with container.database() as uow:  # the organization watermark that break-glass raises
        uow.watermarks.raise_to(
            SubjectType.ORG, [beta.id], [k.value for k in ALL_KINDS], container.clock.now()
        )
        publish(uow, EventType.ORG_CHANGED, org_id=beta.id)
        uow.commit()
    container.validator.sync()
    with pytest.raises(InvalidToken):
        container.validator.validate(everywhere.secret, "vso.code", beta.id)
    container.validator.validate(everywhere.secret, "vso.code", init.org.id)


def test_removing_a_member_ends_their_tokens_there(
    container: Container, bob: User, admin: Actor, init: InitResult
) -> None:
    home = pat(container, bob)
    container.directory.remove_member(admin, "acme", bob.upn)
    with pytest.raises(InvalidToken, match="revoked"):
        container.validator.validate(home.secret)
    container.directory.add_user(OPERATOR, "acme", bob.upn)  # enrolled again: old tokens stay dead
    with pytest.raises(InvalidToken):
        container.validator.validate(home.secret)


def test_a_holder_is_told_expired_or_revoked(container: Container, bob: User, clock: object) -> None:
    revoked = pat(container, bob)
    container.pats.revoke(actor_of(bob), revoked.record.authorization_id)
    with pytest.raises(InvalidToken, match=r"^token is revoked$"):
        container.validator.validate(revoked.secret)
    short = container.pats.create(
        actor_of(bob),
        org="acme",
        user=bob.id,
        display_name="short",
        scope="vso.code",
        valid_to=container.clock.now() + timedelta(minutes=1),
    )
    clock.advance(hours=2)  # type: ignore[attr-defined]  # past the real clock too
    with pytest.raises(InvalidToken, match=r"^token is expired$"):
        container.validator.validate(short.secret)


# ----------------------------------------------------------------------------- no escalation
def narrow(user: User, scopes: set[str], orgs: tuple[str, ...] | None) -> Actor:
    return Actor(user.id, user.upn, token=TokenReach(frozenset(scopes), orgs))


def test_a_token_cannot_mint_a_wider_token(container: Container, bob: User, init: InitResult) -> None:
    manager = narrow(bob, {"vso.pats", "vso.pats_manage"}, (init.org.id,))
    with pytest.raises(Forbidden, match="app_token"):
        container.pats.create(manager, org="acme", user=bob.id, display_name="x", scope="app_token")
    with pytest.raises(Forbidden, match="organizations"):
        container.pats.create(
            manager, org="acme", user=bob.id, display_name="x", scope="vso.pats", all_orgs=True
        )
    container.pats.create(manager, org="acme", user=bob.id, display_name="ok", scope="vso.pats")


def test_a_token_cannot_widen_itself_or_others(container: Container, bob: User, init: InitResult) -> None:
    own = container.pats.create(
        actor_of(bob), org="acme", user=bob.id, display_name="mgr", scope="vso.pats_manage"
    )
    manager = narrow(bob, {"vso.pats", "vso.pats_manage"}, (init.org.id,))
    auth_id = own.record.authorization_id
    with pytest.raises(Forbidden):
        container.pats.update(manager, auth_id, scope="app_token")
    with pytest.raises(Forbidden):
        container.pats.update(manager, auth_id, all_orgs=True)
    wide = pat(container, bob).record.authorization_id  # vso.code: beyond the manager token
    with pytest.raises(Forbidden):
        container.pats.regenerate(manager, wide)
    container.pats.revoke(manager, wide)  # revoking is never an escalation


def test_a_token_of_one_org_cannot_touch_another_orgs_pats(
    container: Container, bob: User, beta_admin: Actor, init: InitResult
) -> None:
    join_beta(container, beta_admin, bob)
    in_beta = pat(container, bob, "beta").record.authorization_id
    acme_only = narrow(bob, {"app_token", *container.catalog.expand(["app_token"])}, (init.org.id,))
    for act in (
        lambda: container.pats.get(acme_only, in_beta),
        lambda: container.pats.regenerate(acme_only, in_beta),
        lambda: container.pats.update(acme_only, in_beta, display_name="x"),
        lambda: container.pats.revoke(acme_only, in_beta),
    ):
        with pytest.raises(NotFound):
            act()
    assert [r.authorization_id for r in container.pats.page(acme_only, "acme").items] == []
    with pytest.raises(Forbidden):
        container.pats.page(acme_only, "beta")


def test_a_disabled_admin_administers_nothing(
    container: Container, bob: User, carol: User, admin: Actor
) -> None:
    container.directory.set_role(admin, "acme", bob.upn, Role.ADMIN)
    container.directory.set_status(admin, "acme", bob.upn, UserStatus.DISABLED)
    with pytest.raises(Forbidden):
        container.revocation.revoke_user(actor_of(bob), "acme", carol.upn)


# ----------------------------------------------------------------------------- state shown truly
def test_the_first_revocation_stands_and_listings_name_the_cause(
    container: Container, bob: User, admin: Actor
) -> None:
    from tokenwarden.services.effective import cause_of

    issued = pat(container, bob)
    result = container.revocation.revoke_user(admin, "acme", bob.upn)
    first = result.at
    container.clock.advance(minutes=5)  # type: ignore[attr-defined]
    listed = container.pats.list_for_admin(admin, "acme", bob.upn)[1][0]
    assert listed.revoked_at == first and cause_of(listed) == "user"
    # A later direct revocation does not overwrite the first one's time or reason.
    container.pats.revoke(admin, issued.record.authorization_id, reason="cleanup")
    again = container.pats.list_for_admin(admin, "acme", bob.upn)[1][0]
    assert again.revoked_at == first and cause_of(again) == "user"
    assert again.revoke_reason == "revoked with all of the owner's tokens"
    # Revoking again directly keeps the first direct revocation too.
    direct = pat(container, bob)
    container.pats.revoke(admin, direct.record.authorization_id, reason="leaked")
    container.clock.advance(minutes=1)  # type: ignore[attr-defined]
    container.pats.revoke(admin, direct.record.authorization_id, reason="second")
    shown = container.pats.get(actor_of(bob), direct.record.authorization_id)
    assert shown.revoke_reason == "leaked" and cause_of(shown) == "direct"
