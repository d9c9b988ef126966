"""Offboarding (issue 17): every token of the leaver in the organization dead in one step, their
managed credentials (rotated) and token watches handed to a successor; over the memory store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from tests.unit.conftest import FakeClock, actor_of
from tests.unit.test_accounts import CHEAP, PASSWORD
from tokenwarden.bootstrap import Container
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidInput, InvalidToken, NotFound
from tokenwarden.domain.events import InvalidationEvent
from tokenwarden.domain.managed import ManagedCredential
from tokenwarden.domain.principals import IdentitySource, Membership, RiskLevel, Role, User, UserStatus
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR, Actor, TokenReach, get_org, new_id
from tokenwarden.services.directory import InitResult
from tokenwarden.services.managed import NewCredential
from tokenwarden.services.pats import IssuedPat

SECRET_STORE = "file"  # the built-in store needs SQL; the file store works over the memory database


@pytest.fixture
def container(make_container: Callable[..., Container], tmp_path: Path) -> Container:
    return make_container(**CHEAP, file_store_dir=tmp_path / "secrets")


def pat(container: Container, user: User, name: str = "laptop", org: str = "acme") -> IssuedPat:
    return container.pats.create(
        OPERATOR,
        org=org,
        user=user.id,
        display_name=name,
        scope="vso.code",
        valid_to=container.clock.now() + timedelta(days=20),
    )


def works(container: Container, secret: str) -> bool:
    container.validator.sync()
    try:
        container.validator.validate(secret)
    except InvalidToken:
        return False
    return True


def managed(
    container: Container, owner: User, clock: FakeClock, name: str = "ci-deploy"
) -> ManagedCredential:
    """A credential of ``owner`` under rotation whose store already serves a secret (version 1)."""
    issued = pat(container, owner, f"{name} token")
    cred = container.managed.add(
        OPERATOR,
        "acme",
        NewCredential(
            name=name,
            authorization_id=issued.record.authorization_id,
            store=SECRET_STORE,
            contacts=[owner.upn, "ops@acme.test"],
        ),
    )
    assert container.rotation.rotate_now(OPERATOR, cred, compromised=False).result == "rotated"
    clock.advance(seconds=1)  # the offboarding's cut-off falls after every token issued so far
    return current(container, cred)


def current(container: Container, cred: ManagedCredential) -> ManagedCredential:
    with container.uow() as uow:
        found = uow.managed.get(cred.id)
    assert found is not None
    return found


def served(container: Container, cred: ManagedCredential) -> str:
    stored = container.stores(cred.store).read(cred.secret_name)
    assert stored is not None
    return stored.value


def token(container: Container, authorization_id: str) -> TokenRecord:
    with container.uow() as uow:
        record = uow.tokens.get(authorization_id)
    assert record is not None
    return record


def offboard_audit(container: Container) -> list[dict[str, object]]:
    found = container.audit.query(
        OPERATOR, "acme", AuditQuery(event_types=(AuditEventType.USER_OFFBOARD.value,))
    )
    return [e.details for e in found]


def status(container: Container, user: User, org: str = "acme") -> UserStatus:
    return container.directory.get_member(OPERATOR, org, user.upn)[1].status


# ----------------------------------------------------------------------------- tokens
def test_offboarding_kills_every_token_kind_and_reenabling_brings_none_back(
    container: Container, clock: FakeClock, admin: Actor, bob: User, carol: User
) -> None:
    laptop = pat(container, bob)
    container.accounts.set_password(OPERATOR, bob.upn, PASSWORD)
    session = container.accounts.sign_in(
        bob.upn, PASSWORD, ip="192.0.2.1", user_agent="Firefox/130.0"
    ).session
    clock.advance(seconds=1)
    assert works(container, laptop.secret) and works(container, session.secret)

    report = container.offboarding.offboard(admin, "acme", bob.upn, carol.upn)

    assert not works(container, laptop.secret)
    assert not works(container, session.secret)
    for kind in TokenKind:  # access and refresh tokens (and any other kind) are cut by the same marks
        with pytest.raises(InvalidToken):
            container.validator.check_record(laptop.record.with_changes(kind=kind))
    data = report.as_dict()
    assert data["membershipStatus"] == "disabled" and data["previousStatus"] == "active"
    assert set(data["revokedKinds"]) == {k.value for k in TokenKind}
    assert data["tokensRevokedCount"] == 2  # the PAT and the browser session
    assert data["successor"] == carol.upn and data["successorChosenBy"] == "given"
    assert data["initiatedBy"] == "admin" and data["warnings"] == []
    assert status(container, bob) is UserStatus.DISABLED
    [details] = offboard_audit(container)
    assert details["upn"] == bob.upn and details["successor"] == carol.upn
    assert details["tokensRevoked"] == 2 and details["how"] == "given"

    clock.advance(seconds=1)
    container.directory.set_status(admin, "acme", bob.upn, UserStatus.ACTIVE)
    assert not works(container, laptop.secret)  # the watermark outlives the re-activation
    assert not works(container, session.secret)
    assert works(container, pat(container, bob, "after").secret)  # new tokens work again


def test_the_leaver_keeps_their_standing_in_other_organizations(
    container: Container, clock: FakeClock, admin: Actor, init: InitResult, bob: User
) -> None:
    container.directory.add_org("beta", "boss@beta.test")
    container.directory.add_user(OPERATOR, "beta", bob.upn)
    in_beta = pat(container, bob, org="beta")
    in_acme = pat(container, bob)
    clock.advance(seconds=1)
    container.offboarding.offboard(admin, "acme", bob.upn)
    assert not works(container, in_acme.secret)
    assert works(container, in_beta.secret)
    assert status(container, bob, "beta") is UserStatus.ACTIVE


# ----------------------------------------------------------------------------- managed credentials
def test_a_managed_credential_passes_to_the_successor_and_is_rotated(
    container: Container, clock: FakeClock, admin: Actor, bob: User, carol: User
) -> None:
    before = managed(container, bob, clock)
    old_secret = served(container, before)
    assert works(container, old_secret) and token(container, before.authorization_id).user_id == bob.id

    report = container.offboarding.offboard(admin, "acme", bob.upn, carol.upn)

    [handed] = report.credentials
    assert (handed.id, handed.name, handed.rotated, handed.rotation_result) == (
        before.id,
        "ci-deploy",
        True,
        "rotated",
    )
    after = current(container, before)
    assert after.user_id == carol.id
    assert after.authorization_id != before.authorization_id and after.version == before.version + 1
    assert after.contacts == (carol.upn, "ops@acme.test")  # the leaver's address replaced
    new_secret = served(container, after)
    assert new_secret != old_secret and works(container, new_secret)
    assert token(container, after.authorization_id).user_id == carol.id  # minted for the successor
    assert not works(container, old_secret)
    assert report.as_dict()["contactsReplaced"] == 1 and report.ok
    [details] = offboard_audit(container)
    assert details["credentials"] == [before.id]


def test_without_a_successor_the_credential_is_left_and_the_report_says_how_to_finish(
    container: Container, clock: FakeClock, admin: Actor, bob: User, carol: User
) -> None:
    before = managed(container, bob, clock)
    report = container.offboarding.offboard(admin, "acme", bob.upn)
    data = report.as_dict()
    assert data["successor"] is None and data["successorChosenBy"] == "none"
    assert data["credentialsHandedOver"] == []
    [warning] = data["warnings"]
    assert "ci-deploy" in warning
    assert f"tokenwarden user offboard {bob.upn} --org acme --successor UPN" in warning
    assert current(container, before) == before  # untouched

    # the operator finishes the job later: handed over and rotated, although bob is disabled already
    clock.advance(seconds=1)
    again = container.offboarding.offboard(OPERATOR, "acme", bob.upn, carol.upn)
    assert [c.rotated for c in again.credentials] == [True]
    assert again.plan.previous_status == "disabled" and again.plan.initiated_by == "operator"
    assert current(container, before).user_id == carol.id


def test_the_security_contact_is_the_default_successor_when_an_active_member(
    container: Container, clock: FakeClock, admin: Actor, bob: User, carol: User
) -> None:
    before = managed(container, bob, clock)
    container.policies.update(OPERATOR, "acme", security_contact="nobody@elsewhere.test")
    with container.uow() as uow:
        org = get_org(uow, "acme")
        assert container.offboarding.choose_successor(uow, org, bob, None) == (None, "none")
    container.policies.update(OPERATOR, "acme", security_contact=carol.upn.upper())
    report = container.offboarding.offboard(admin, "acme", bob.upn)
    assert report.as_dict()["successor"] == carol.upn
    assert report.as_dict()["successorChosenBy"] == "securityContact"
    assert current(container, before).user_id == carol.id and report.ok


def test_the_security_contact_matches_a_members_email_but_never_the_leaver(
    container: Container, admin: Actor, bob: User, carol: User
) -> None:
    container.token_care.set_contact(OPERATOR, carol.upn, "carol.c@mail.acme.test", None)
    container.policies.update(OPERATOR, "acme", security_contact="carol.c@mail.acme.test")
    with container.uow() as uow:
        org = get_org(uow, "acme")
        found, how = container.offboarding.choose_successor(uow, org, bob, None)
        assert found is not None and (found.id, how) == (carol.id, "securityContact")
        assert container.offboarding.choose_successor(uow, org, carol, None) == (None, "none")


# ----------------------------------------------------------------------------- token watches
def test_token_watches_of_the_leaver_pass_to_the_successor(
    container: Container, clock: FakeClock, admin: Actor, bob: User, carol: User
) -> None:
    erin = container.directory.add_user(OPERATOR, "acme", "erin@acme.test").user
    erins, carols = pat(container, erin, "deploy"), pat(container, carol, "build")
    for watched in (erins, carols):
        container.token_care.add_watcher(OPERATOR, watched.record.authorization_id, "BOB@acme.test")
        container.token_care.add_watcher(OPERATOR, watched.record.authorization_id, "team@acme.test")
    clock.advance(seconds=1)

    report = container.offboarding.offboard(admin, "acme", bob.upn, carol.upn)

    def watchers(issued: IssuedPat) -> list[str]:
        return sorted(container.token_care.watchers(OPERATOR, issued.record.authorization_id))

    assert watchers(erins) == [carol.upn, "team@acme.test"]
    assert watchers(carols) == ["team@acme.test"]  # carol owns it: she hears its warnings anyway
    assert report.as_dict()["watchersHandedOver"] == 2
    [details] = offboard_audit(container)
    assert details["watchers"] == 2


def test_without_a_successor_token_watches_stay_and_are_reported(
    container: Container, admin: Actor, bob: User, carol: User
) -> None:
    carols = pat(container, carol, "build")
    container.token_care.add_watcher(OPERATOR, carols.record.authorization_id, bob.upn)
    report = container.offboarding.offboard(admin, "acme", bob.upn)
    assert report.as_dict()["watchersHandedOver"] == 0
    assert any("1 token watch(es)" in w for w in report.warnings)
    assert container.token_care.watchers(OPERATOR, carols.record.authorization_id) == [bob.upn]


# ----------------------------------------------------------------------------- refusals
def test_the_successor_must_be_another_active_member_of_the_organization(
    container: Container, clock: FakeClock, admin: Actor, init: InitResult, bob: User, carol: User
) -> None:
    laptop = pat(container, bob)
    container.directory.add_org("beta", "boss@beta.test")
    container.directory.set_status(admin, "acme", carol.upn, UserStatus.DISABLED)
    cases = {
        "ghost@acme.test": "successor 'ghost@acme.test' is not a member of acme",
        "boss@beta.test": "successor 'boss@beta.test' is not a member of acme",  # same answer: tenancy
        bob.upn: "the successor cannot be the leaver",
        carol.upn: f"successor {carol.upn} is disabled in acme: choose an active member",
        " ": "the successor's UPN is empty",
    }
    for given, message in cases.items():
        with pytest.raises(InvalidInput) as err:
            container.offboarding.offboard(admin, "acme", bob.upn, given)
        assert err.value.code == "invalidSuccessor" and err.value.message == message
    assert works(container, laptop.secret) and status(container, bob) is UserStatus.ACTIVE  # nothing done
    assert offboard_audit(container) == []


def test_another_organizations_member_cannot_be_offboarded_from_this_one(
    container: Container, admin: Actor, init: InitResult, bob: User
) -> None:
    beta = container.directory.add_org("beta", "boss@beta.test")
    with pytest.raises(NotFound):
        container.offboarding.offboard(admin, "acme", "boss@beta.test")
    with pytest.raises(Forbidden):  # beta's admin reaches nobody of acme
        container.offboarding.offboard(actor_of(beta.admin), "acme", bob.upn)
    with pytest.raises(Forbidden):  # nor does a plain member
        container.offboarding.offboard(actor_of(bob), "acme", init.admin.upn)
    assert status(container, bob) is UserStatus.ACTIVE


def test_an_admin_cannot_offboard_themselves_nor_a_service_principal(
    container: Container, clock: FakeClock, admin: Actor, init: InitResult
) -> None:
    with pytest.raises(InvalidInput) as err:
        container.offboarding.offboard(admin, "acme", init.admin.upn)
    assert err.value.code == "cannotOffboardSelf"
    service = User(
        id=new_id(),
        upn="svc-client@clients.acme.test",
        display_name="a client",
        status=UserStatus.ACTIVE,
        risk_level=RiskLevel.NONE,
        identity_source=IdentitySource.SERVICE,
        created_at=clock.now(),
    )
    with container.uow() as uow:
        uow.users.add(service)
        uow.users.set_membership(Membership(init.org.id, service.id, Role.MEMBER))
        uow.commit()
    with pytest.raises(Conflict) as refused:
        container.offboarding.offboard(admin, "acme", service.upn)
    assert refused.value.code == "servicePrincipal"


# ----------------------------------------------------------------------------- retries and SCIM
def test_a_retry_after_a_crash_before_the_rotation_finishes_the_job(
    container: Container, clock: FakeClock, admin: Actor, init: InitResult, bob: User, carol: User
) -> None:
    before = managed(container, bob, clock)
    old_secret = served(container, before)
    with container.uow() as uow:  # the offboarding committed, then the process died: no complete()
        container.offboarding.offboard_in(uow, admin, init.org, bob, carol, initiated_by="admin")
        uow.commit()
    handed = current(container, before)
    assert handed.user_id == carol.id and handed.authorization_id == before.authorization_id

    clock.advance(seconds=1)
    retry = container.offboarding.offboard(admin, "acme", bob.upn)  # no successor named this time
    assert [(c.id, c.rotated) for c in retry.credentials] == [(before.id, True)]
    assert retry.plan.tokens_revoked == 0 and retry.plan.membership_status == "disabled"
    after = current(container, before)
    assert token(container, after.authorization_id).user_id == carol.id
    assert works(container, served(container, after)) and not works(container, old_secret)
    # once done, a further run has nothing left to hand over or rotate
    assert container.offboarding.offboard(admin, "acme", bob.upn, carol.upn).credentials == ()
    assert len(offboard_audit(container)) == 3


def test_scim_offboards_in_its_own_transaction_with_a_token_that_holds_none_of_the_scopes(
    container: Container, clock: FakeClock, init: InitResult, bob: User, carol: User
) -> None:
    before = managed(container, bob, clock)
    provisioner = Actor(
        user_id=None,
        upn="scim@acme.test",
        token=TokenReach(scopes=frozenset({"scim.provision"}), orgs=(init.org.id,)),
    )
    with container.uow() as uow:
        successor, how = container.offboarding.choose_successor(uow, init.org, bob, carol.upn)
        plan = container.offboarding.offboard_in(
            uow, provisioner, init.org, bob, successor, initiated_by="scim", how="manager"
        )
        uow.commit()
    report = container.offboarding.complete(provisioner, plan)
    assert how == "given" and report.as_dict()["successorChosenBy"] == "manager"
    assert report.as_dict()["initiatedBy"] == "scim"
    assert report.ok and current(container, before).user_id == carol.id
    assert token(container, current(container, before).authorization_id).user_id == carol.id


def test_every_node_is_told_the_leavers_tokens_before_the_commit(
    container: Container, clock: FakeClock, admin: Actor, bob: User, carol: User
) -> None:
    """The leaver's tokens of this organization are announced as an intent (refused on every node
    at once) while the transaction is still open; a token valid in other organizations too is
    not named — only the watermark cuts it, here."""
    laptop, phone = pat(container, bob), pat(container, bob, "phone")
    everywhere = container.pats.create(
        OPERATOR,
        org="acme",
        user=bob.id,
        display_name="all orgs",
        scope="vso.code",
        valid_to=clock.now() + timedelta(days=20),
        all_orgs=True,
    )
    clock.advance(seconds=1)
    heard: list[tuple[str, set[str]]] = []  # in the order the bus would carry them

    def on_intent(events: Sequence[InvalidationEvent], withdrawn: bool) -> None:
        hashes = {h for e in events for h in e.payload["hashes"]}
        heard.append(("withdrawn" if withdrawn else "intent", hashes))

    def on_commit(events: Sequence[InvalidationEvent]) -> None:
        heard.append(("committed", {h for e in events for h in e.payload.get("hashes", ())}))

    container.database.on_intent(on_intent)
    container.database.on_commit(on_commit)
    container.offboarding.offboard(admin, "acme", bob.upn, carol.upn)

    named = {container.hasher.hash(p.secret).hex() for p in (laptop, phone)}
    assert heard[0] == ("intent", named)  # before the commit, never withdrawn
    assert [what for what, _ in heard].count("withdrawn") == 0 and heard[-1] == ("committed", named)
    for p in (laptop, phone, everywhere):
        assert not works(container, p.secret)
