"""Owner self-service: extend by days, watchers, where a user's notices go."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.conftest import FakeClock, actor_of
from tokenwarden.bootstrap import Container
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.errors import InvalidInput, NotFound, PolicyViolation
from tokenwarden.domain.principals import User
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.pats import IssuedPat
from tokenwarden.services.token_care import MAX_WATCHERS


@pytest.fixture
def pat(container: Container, bob: User) -> IssuedPat:
    return container.pats.create(
        actor_of(bob),
        org="acme",
        user=bob.id,
        display_name="ci",
        scope="vso.code",
        lifetime=timedelta(days=10),
    )


def events(container: Container, event: AuditEventType) -> list[dict[str, object]]:
    found = container.audit.query(OPERATOR, "acme", AuditQuery(event_types=(event.value,)))
    return [e.details for e in found]


def test_extend_sets_valid_to_to_now_plus_days_exactly_and_is_audited(
    container: Container, clock: FakeClock, bob: User, pat: IssuedPat
) -> None:
    clock.advance(days=3, seconds=17)
    record = container.token_care.extend(actor_of(bob), pat.record.authorization_id, 45)
    assert record.valid_to == clock.now() + timedelta(days=45)
    [update] = events(container, AuditEventType.PAT_UPDATE)
    assert update["after"]["validTo"] == record.valid_to.isoformat()  # type: ignore[index]


def test_an_expired_token_cannot_be_extended(
    container: Container, clock: FakeClock, bob: User, pat: IssuedPat
) -> None:
    clock.advance(days=11)
    with pytest.raises(InvalidInput) as err:
        container.token_care.extend(actor_of(bob), pat.record.authorization_id, 5)
    assert err.value.code == "expiredPatCannotBeExtended"


def test_extend_beyond_the_max_lifetime_is_refused(
    container: Container, clock: FakeClock, bob: User, pat: IssuedPat
) -> None:
    container.policies.update(OPERATOR, "acme", max_lifetime_days=30)
    clock.advance(days=5)
    with pytest.raises(PolicyViolation) as err:  # 5 + 26 > 30 days since validFrom
        container.token_care.extend(actor_of(bob), pat.record.authorization_id, 26)
    assert err.value.code == "patLifespanPolicyViolation"
    assert container.token_care.extend(actor_of(bob), pat.record.authorization_id, 25).valid_to == (
        pat.record.valid_from + timedelta(days=30)
    )
    for bad in (0, -1, 366):
        with pytest.raises(InvalidInput):
            container.token_care.extend(actor_of(bob), pat.record.authorization_id, bad)


def test_only_the_owner_extends(container: Container, admin: Actor, carol: User, pat: IssuedPat) -> None:
    for other in (actor_of(carol), admin):
        with pytest.raises(NotFound):
            container.token_care.extend(other, pat.record.authorization_id, 5)


def test_watchers_owner_or_admin_validated_bounded_and_audited(
    container: Container, admin: Actor, bob: User, carol: User, pat: IssuedPat
) -> None:
    auth_id = pat.record.authorization_id
    me = actor_of(bob)
    assert container.token_care.add_watcher(me, auth_id, "team@example.org") == ["team@example.org"]
    assert container.token_care.add_watcher(me, auth_id, "TEAM@example.org") == ["team@example.org"]  # same
    assert container.token_care.add_watcher(admin, auth_id, "sec@example.org") == [
        "team@example.org",
        "sec@example.org",
    ]
    with pytest.raises(NotFound):  # another member sees nothing
        container.token_care.add_watcher(actor_of(carol), auth_id, "x@example.org")
    with pytest.raises(NotFound):
        container.token_care.watchers(actor_of(carol), auth_id)
    with pytest.raises(InvalidInput) as err:
        container.token_care.add_watcher(me, auth_id, "not-an-email")
    assert err.value.code == "invalidEmail"
    for i in range(MAX_WATCHERS - 2):
        container.token_care.add_watcher(me, auth_id, f"w{i}@example.org")
    assert len(container.token_care.watchers(me, auth_id)) == MAX_WATCHERS
    with pytest.raises(InvalidInput) as err:
        container.token_care.add_watcher(me, auth_id, "one-too-many@example.org")
    assert err.value.code == "tooManyWatchers"
    assert container.token_care.remove_watcher(me, auth_id, "team@example.org") is True
    assert container.token_care.remove_watcher(me, auth_id, "team@example.org") is False
    changes = events(container, AuditEventType.TOKEN_WATCHERS_CHANGE)
    assert len(changes) == MAX_WATCHERS + 1  # 20 added, 1 removed; repeats and refusals are not audited
    assert {"removed": "team@example.org"}.items() <= changes[0].items()  # newest first


def test_set_contact_self_admin_operator_only(
    container: Container, admin: Actor, bob: User, carol: User
) -> None:
    updated = container.token_care.set_contact(actor_of(bob), bob.upn, "bob@example.org", True)
    assert updated.email == "bob@example.org" and updated.notify_digest is True
    assert container.token_care.set_contact(admin, bob.upn, None, False).notify_digest is False
    assert container.token_care.set_contact(OPERATOR, bob.upn, "", None).notify_address == bob.upn
    with pytest.raises(NotFound):  # a fellow member is not their admin
        container.token_care.set_contact(actor_of(carol), bob.upn, "x@example.org", None)
    other = container.directory.add_org("globex", "admin@globex.test")
    with pytest.raises(NotFound):  # nor is an admin of another organization
        container.token_care.set_contact(actor_of(other.admin), bob.upn, "x@example.org", None)
    with pytest.raises(InvalidInput):
        container.token_care.set_contact(actor_of(bob), bob.upn, "not-an-email", None)
    assert len(events(container, AuditEventType.USER_UPDATE)) == 1  # the admin's (in acme)


def test_an_admin_cannot_redirect_notices_of_a_member_of_another_org(
    container: Container, admin: Actor, bob: User
) -> None:
    from tokenwarden.domain.errors import Forbidden

    container.directory.add_org("Globex", "boss@globex.test")
    container.directory.add_user(OPERATOR, "Globex", bob.upn)  # bob belongs to both now
    with pytest.raises(Forbidden) as caught:
        container.token_care.set_contact(admin, bob.upn, "attacker@evil.test", None, org="acme")
    assert caught.value.code == "contactOwnedByUser"
    with pytest.raises(Forbidden):
        container.token_care.set_contact(admin, bob.upn, "attacker@evil.test", None)
    # bob himself still can
    assert (
        container.token_care.set_contact(actor_of(bob), bob.upn, "bob@mail.test", None).email
        == "bob@mail.test"
    )
