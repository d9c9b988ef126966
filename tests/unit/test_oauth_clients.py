"""The OAuth client registry (issue 11, part 2) over the in-memory store: registration rules,
secrets, tenancy, escalation, the service principal, and what disabling and removing a client
do to the tokens issued to it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from tokenwarden.bootstrap import Container, wire
from tokenwarden.domain import token_format
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidInput, InvalidToken, NotFound
from tokenwarden.domain.hashing import Pepper, SecretHasher
from tokenwarden.domain.oauth import GrantType, OAuthClient
from tokenwarden.domain.principals import IdentitySource, Role, User, UserStatus
from tokenwarden.domain.tokens import TokenKind, TokenRecord, TokenState
from tokenwarden.domain.watermarks import CLIENT_REMOVED, SubjectType
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services import oauth_clients
from tokenwarden.services.common import OPERATOR, Actor, TokenReach, new_id
from tokenwarden.services.directory import InitResult
from tokenwarden.services.effective import EffectiveView, cause_of
from tokenwarden.services.oauth_clients import RegisteredClient
from tokenwarden.settings import Settings

from .conftest import FakeClock, actor_of

CB = "https://app.example/callback"


def register(container: Container, actor: Actor = OPERATOR, **kw: object) -> RegisteredClient:
    args: dict[str, object] = {"name": "App", "redirect_uris": [CB], **kw}
    return container.clients.register(actor, "acme", **args)  # type: ignore[arg-type]


def reach(container: Container, scopes: str, orgs: tuple[str, ...] | None = None) -> TokenReach:
    return TokenReach(container.catalog.expand(scopes.split()), orgs)


def plant(
    container: Container,
    client: OAuthClient,
    user_id: str,
    *,
    kind: TokenKind = TokenKind.REFRESH,
    at: datetime | None = None,
) -> tuple[str, TokenRecord]:
    """A token issued to ``client`` for ``user_id`` (what the authorization server will store)."""
    secret = token_format.generate(kind)
    issued = at or container.clock.now()
    record = TokenRecord(
        authorization_id=new_id(),
        kind=kind,
        user_id=user_id,
        org_id=client.org_id,
        display_name="oauth",
        scopes=client.scopes,
        target_orgs=(client.org_id,),
        secret_hash=container.hasher.hash(secret),
        pepper_id=container.hasher.current_id,
        valid_from=issued,
        valid_to=issued + timedelta(days=1),
        created_at=issued,
        client_id=client.client_id,
    )
    with container.uow() as uow:
        uow.tokens.add(record)
        uow.commit()
    return secret, record


def dead(container: Container, secret: str) -> bool:
    try:
        container.validator.validate(secret)
    except InvalidToken:
        return True
    return False


def audit_types(container: Container, target: str) -> list[str]:
    with container.uow() as uow:
        return [e.event_type for e in uow.audit.query(AuditQuery(target_id=target))]


# ----------------------------------------------------------------------------- registration
def test_a_confidential_client_gets_a_secret_once_stored_only_as_a_keyed_hash(
    container: Container, init: InitResult, admin: Actor
) -> None:
    registered = register(container, admin)
    client, secret = registered.client, registered.secret
    assert secret is not None and re.fullmatch(r"twcs_[0-9A-Za-z]{49}", secret)
    assert not token_format.looks_like_token(secret)  # never mistaken for a token
    assert re.fullmatch(r"c_[0-9a-f]{32}", client.client_id)
    assert client.grant_types == (GrantType.AUTHORIZATION_CODE, GrantType.REFRESH_TOKEN)
    assert client.scopes == ("vso.profile",)
    assert client.redirect_uris == (CB,) and client.confidential and client.created_by == init.admin.id
    assert client.secret_hash == container.hasher.hash(secret)
    assert client.pepper_id == container.hasher.current_id
    stored = container.clients.get(admin, "acme", client.client_id)
    assert stored == client  # what is stored: no secret anywhere, only its hash
    assert secret not in repr(stored) and secret.encode() not in repr(stored).encode()
    with container.uow() as uow:
        entries = uow.audit.query(AuditQuery(target_id=client.client_id))
    assert [e.event_type for e in entries] == [AuditEventType.CLIENT_CREATE]
    assert secret not in repr(entries) and client.secret_hash.hex() not in repr(entries)  # type: ignore[union-attr]
    assert entries[0].actor_id == init.admin.id


def test_a_public_client_has_no_secret_and_no_client_credentials(
    container: Container, init: InitResult
) -> None:
    registered = register(container, public=True)
    assert registered.secret is None and registered.client.secret_hash is None
    assert registered.client.pepper_id is None
    with pytest.raises(InvalidInput, match="public client cannot use client_credentials"):
        register(container, public=True, grants=["authorization_code", "client_credentials"])


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/callback", "must be absolute"),
        ("app.example/callback", "must be absolute"),
        ("https://app.example/cb#frag", "must not contain a fragment"),
        ("http://app.example/cb", "must use https"),
        ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
        ("data:text/html,hi", "scheme 'data' is not allowed"),
        ("https://app.example/a b", "must not contain spaces"),
        ("", "1 to 2000 characters"),
        ("https://app.example/" + "a" * 2000, "1 to 2000 characters"),
    ],
)
def test_bad_redirect_uris_are_refused_precisely(
    container: Container, init: InitResult, uri: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)) as caught:
        register(container, redirect_uris=[CB, uri])
    assert caught.value.code == "invalidRedirectUri"


def test_redirect_uri_rules(container: Container, init: InitResult) -> None:
    with pytest.raises(InvalidInput, match="at most 20 redirect URIs, got 21") as caught:
        register(container, redirect_uris=[f"https://app.example/{i}" for i in range(21)])
    assert caught.value.code == "tooManyRedirectUris"
    twenty = [f"https://app.example/{i}" for i in range(20)]
    assert register(container, redirect_uris=twenty).client.redirect_uris == tuple(twenty)
    with pytest.raises(InvalidInput, match="needs at least one redirect URI"):
        register(container, redirect_uris=[])
    ok = [
        "http://127.0.0.1:8123/cb",
        "http://localhost/cb",
        "http://[::1]:9000/cb",
        "com.example.app:/oauth",
        CB,
        CB,
    ]
    assert register(container, redirect_uris=ok).client.redirect_uris == tuple(ok[:-1])  # exact, once each
    # client_credentials alone needs no redirect URI
    machine = register(container, redirect_uris=[], grants=["client_credentials"])
    assert machine.client.grant_types == (GrantType.CLIENT_CREDENTIALS,)


def test_grant_and_scope_rules(container: Container, init: InitResult) -> None:
    with pytest.raises(InvalidInput, match="unknown grant type 'password'") as caught:
        register(container, grants=["authorization_code", "password"])
    assert caught.value.code == "invalidGrantType"
    with pytest.raises(InvalidInput, match="refresh_token needs authorization_code"):
        register(container, grants=["client_credentials", "refresh_token"])
    with pytest.raises(InvalidInput, match="at least one grant"):
        register(container, grants=[])
    with pytest.raises(InvalidInput, match=r"unknown scope\(s\): vso.nope") as caught:
        register(container, scope="vso.code vso.nope")
    assert caught.value.code == "invalidScope"
    assert register(container, scope="vso.code vso.code vso.build").client.scopes == ("vso.code", "vso.build")
    for name in ("", "   ", "x" * 129, "bad\x00name", "rtl\u202ename"):
        with pytest.raises(InvalidInput, match="name"):
            register(container, name=name)


# ----------------------------------------------------------------------------- who may
def test_only_the_organizations_admins_manage_its_clients(
    container: Container, init: InitResult, admin: Actor, bob: User
) -> None:
    client = register(container, admin).client
    member = actor_of(bob)
    for act in (
        lambda: register(container, member),
        lambda: container.clients.list_clients(member, "acme"),
        lambda: container.clients.get(member, "acme", client.client_id),
        lambda: container.clients.update(member, "acme", client.client_id, name="x"),
        lambda: container.clients.rotate_secret(member, "acme", client.client_id),
        lambda: container.clients.disable(member, "acme", client.client_id),
        lambda: container.clients.remove(member, "acme", client.client_id),
    ):
        with pytest.raises(Forbidden, match="administrators only"):
            act()


def test_another_organizations_admin_sees_and_changes_nothing(
    container: Container, init: InitResult, admin: Actor
) -> None:
    client = register(container, admin).client
    container.directory.add_org("beta", "boss@beta.test")
    boss = actor_of(container.directory.get_member(OPERATOR, "beta", "boss@beta.test")[0])
    mine = container.clients.register(boss, "beta", name="Beta app", redirect_uris=[CB]).client
    assert [c.client_id for c in container.clients.list_clients(boss, "beta")] == [mine.client_id]
    assert [c.client_id for c in container.clients.list_clients(admin, "acme")] == [client.client_id]
    # through its own organization, acme's client does not exist
    for act in (
        lambda: container.clients.get(boss, "beta", client.client_id),
        lambda: container.clients.update(boss, "beta", client.client_id, name="mine now"),
        lambda: container.clients.rotate_secret(boss, "beta", client.client_id),
        lambda: container.clients.disable(boss, "beta", client.client_id),
        lambda: container.clients.remove(boss, "beta", client.client_id),
    ):
        with pytest.raises(NotFound, match="no OAuth client") as caught:
            act()
        assert caught.value.code == "clientNotFound"
    # and naming acme directly is refused
    with pytest.raises(Forbidden):
        container.clients.list_clients(boss, "acme")
    assert container.clients.get_active(client.client_id) == client  # untouched


def test_no_escalation_through_a_narrow_token(container: Container, init: InitResult) -> None:
    narrow = Actor(init.admin.id, init.admin.upn, token=reach(container, "vso.tokenadministration vso.code"))
    with pytest.raises(Forbidden, match=r"cannot grant scopes it does not hold: vso\.code_write") as caught:
        register(container, narrow, scope="vso.code_write")
    assert caught.value.code == "scopeEscalation"
    with pytest.raises(Forbidden, match=r"vso\.profile"):  # the default scope too
        register(container, narrow)
    client = register(container, narrow, scope="vso.code").client  # what the token holds: fine
    with pytest.raises(Forbidden, match=r"vso\.build"):
        container.clients.update(narrow, "acme", client.client_id, scope="vso.code vso.build")
    wide = register(container, OPERATOR, scope="vso.build").client
    for act in (
        lambda: container.clients.rotate_secret(narrow, "acme", wide.client_id),
        lambda: container.clients.update(narrow, "acme", wide.client_id, name="renamed"),
    ):
        with pytest.raises(Forbidden, match="scopes it does not hold"):
            act()
    container.clients.disable(OPERATOR, "acme", wide.client_id)
    with pytest.raises(Forbidden, match="scopes it does not hold"):
        container.clients.enable(narrow, "acme", wide.client_id)
    # implied scopes count: vso.code_write holds vso.code
    writer = Actor(
        init.admin.id, init.admin.upn, token=reach(container, "vso.tokenadministration vso.code_write")
    )
    assert register(container, writer, scope="vso.code").client.scopes == ("vso.code",)
    # a token restricted to another organization cannot act here at all
    elsewhere = Actor(init.admin.id, init.admin.upn, token=reach(container, "app_token", ("other-org",)))
    with pytest.raises(Forbidden, match="not valid for this organization"):
        register(container, elsewhere)


# ----------------------------------------------------------------------------- authenticate
def test_authenticate_and_get_active(container: Container, init: InitResult) -> None:
    confidential = register(container)
    public = register(container, public=True)
    cid, secret = confidential.client.client_id, confidential.secret
    assert secret is not None
    auth = container.clients.authenticate
    assert auth(cid, secret) == confidential.client
    assert auth(cid, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert auth(cid, None) is None and auth(cid, "") is None
    assert auth(cid, secret + "x" * 300) is None
    assert auth(cid, "\ud800") is None  # not text: no crash
    assert auth("c_" + "0" * 32, secret) is None
    assert auth("", secret) is None and auth("x" * 500, secret) is None
    assert auth(cid + "\x00", secret) is None and auth(" " + cid, secret) is None
    with pytest.raises(NotFound):
        container.clients.get(OPERATOR, "acme", "c_\x00")
    assert auth(public.client.client_id, None) == public.client
    assert auth(public.client.client_id, "") == public.client
    assert auth(public.client.client_id, secret) is None  # a public client has no secret to send
    assert container.clients.get_active(cid) == confidential.client
    assert container.clients.get_active("nope") is None
    container.clients.disable(OPERATOR, "acme", cid)
    assert auth(cid, secret) is None and container.clients.get_active(cid) is None
    container.clients.enable(OPERATOR, "acme", cid)
    assert auth(cid, secret) is not None and container.clients.get_active(cid) is not None


def test_secrets_are_compared_in_constant_time(
    container: Container, init: InitResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = register(container)
    calls: list[tuple[bytes, bytes]] = []
    real = oauth_clients.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(oauth_clients.hmac, "compare_digest", spy)
    assert container.clients.verify_secret(registered.client, registered.secret or "")
    assert not container.clients.verify_secret(registered.client, "twcs_wrong")
    assert len(calls) == 2 and all(b == registered.client.secret_hash for _, b in calls)


def test_a_secret_hashed_with_a_retired_pepper_verifies_and_is_rehashed(
    clock: FakeClock, container: Container, init: InitResult
) -> None:
    old = container.hasher.peppers[0]
    registered = register(container)
    new = Pepper("p2", b"n" * 32)
    rotated = wire(
        Settings(staleness_seconds=3600.0), container.database, SecretHasher([new, old]), clock=clock
    )
    cid, secret = registered.client.client_id, registered.secret or ""
    found = rotated.clients.authenticate(cid, secret)
    assert found is not None
    stored = rotated.clients.get(OPERATOR, "acme", cid)
    assert stored.pepper_id == "p2" and stored.secret_hash == rotated.hasher.hash(secret)
    assert rotated.clients.authenticate(cid, secret) is not None
    # a pepper no longer configured verifies nothing
    gone = wire(Settings(staleness_seconds=3600.0), container.database, SecretHasher([old]), clock=clock)
    assert gone.clients.authenticate(cid, secret) is None


# ----------------------------------------------------------------------------- change
def test_update_keeps_every_rule(container: Container, init: InitResult, admin: Actor) -> None:
    client = register(container, admin, scope="vso.code").client
    cid = client.client_id
    changed = container.clients.update(
        admin, "acme", cid, name="Renamed", redirect_uris=["https://b.example/cb"], scope="vso.build"
    )
    assert (changed.name, changed.redirect_uris, changed.scopes) == (
        "Renamed",
        ("https://b.example/cb",),
        ("vso.build",),
    )
    assert changed.secret_hash == client.secret_hash  # the secret is untouched
    with pytest.raises(InvalidInput, match="needs at least one redirect URI"):
        container.clients.update(admin, "acme", cid, redirect_uris=[])
    with pytest.raises(InvalidInput, match="must use https"):
        container.clients.update(admin, "acme", cid, redirect_uris=["http://evil.example/cb"])
    with pytest.raises(InvalidInput, match="no field to change"):
        container.clients.update(admin, "acme", cid)
    with pytest.raises(InvalidInput, match="unknown grant type"):
        container.clients.update(admin, "acme", cid, grants=["implicit"])
    with pytest.raises(NotFound):
        container.clients.update(admin, "acme", "c_" + "f" * 32, name="x")
    assert container.clients.get(admin, "acme", cid) == changed  # refusals changed nothing
    public = register(container, admin, public=True).client
    with pytest.raises(InvalidInput, match="public client cannot use client_credentials"):
        container.clients.update(admin, "acme", public.client_id, grants=["client_credentials"])
    assert audit_types(container, cid) == [AuditEventType.CLIENT_CREATE, AuditEventType.CLIENT_UPDATE]


def test_rotating_a_secret_kills_the_old_one_at_once(
    container: Container, init: InitResult, admin: Actor
) -> None:
    registered = register(container, admin, grants=["client_credentials"], redirect_uris=[])
    cid, old = registered.client.client_id, registered.secret or ""
    service_token, _ = plant(
        container, registered.client, registered.client.service_user_id or "", kind=TokenKind.SERVICE
    )
    assert not dead(container, service_token)
    container.clock.advance(seconds=1)  # type: ignore[attr-defined]
    rotated = container.clients.rotate_secret(admin, "acme", cid)
    assert rotated.secret is not None and rotated.secret != old
    assert container.clients.authenticate(cid, old) is None
    assert container.clients.authenticate(cid, rotated.secret) == rotated.client
    assert dead(container, service_token)  # what the old secret obtained dies with it
    with pytest.raises(InvalidInput, match="public client has no secret"):
        container.clients.rotate_secret(admin, "acme", register(container, public=True).client.client_id)
    assert AuditEventType.CLIENT_SECRET_ROTATE in audit_types(container, cid)


# ----------------------------------------------------------------------------- the service principal
def test_client_credentials_make_a_service_principal_member(
    container: Container, init: InitResult, admin: Actor
) -> None:
    client = register(container, admin, grants=["authorization_code", "client_credentials"]).client
    assert client.service_user_id is not None
    user, membership = container.directory.get_member(admin, "acme", client.service_user_id)
    assert user.upn == f"{client.client_id}@clients.acme" and user.display_name == "App"
    assert user.identity_source is IdentitySource.SERVICE
    assert membership.role is Role.MEMBER and membership.is_active
    listed = {u.upn: u.identity_source for u, _ in container.directory.list_users(admin, "acme")}
    assert listed[user.upn] is IdentitySource.SERVICE  # listings say what it is
    assert register(container, admin).client.service_user_id is None  # no grant, no principal
    renamed = container.clients.update(admin, "acme", client.client_id, name="Robot")
    assert container.directory.get_member(admin, "acme", user.id)[0].display_name == "Robot"
    # dropping the grant disables the principal; adding it back enables it again
    container.clients.update(admin, "acme", client.client_id, grants=["authorization_code"])
    assert container.directory.get_member(admin, "acme", user.id)[1].status is UserStatus.DISABLED
    container.clients.update(
        admin, "acme", client.client_id, grants=["authorization_code", "client_credentials"]
    )
    assert container.directory.get_member(admin, "acme", user.id)[1].is_active
    assert renamed.service_user_id == user.id  # one principal for the client's life


def test_a_service_principal_is_managed_only_through_its_client(
    container: Container, init: InitResult, admin: Actor
) -> None:
    client = register(container, admin, grants=["client_credentials"], redirect_uris=[]).client
    upn = f"{client.client_id}@clients.acme"
    for act in (
        lambda: container.directory.set_status(admin, "acme", upn, UserStatus.ACTIVE),
        lambda: container.directory.set_role(admin, "acme", upn, Role.ADMIN),
        lambda: container.directory.remove_member(admin, "acme", upn),
        lambda: container.directory.set_status(OPERATOR, "acme", upn, UserStatus.DISABLED),
    ):
        with pytest.raises(Conflict, match="service principal") as caught:
            act()
        assert caught.value.code == "servicePrincipal"
    with pytest.raises(Forbidden, match="service principal holds no PATs"):
        container.pats.create(OPERATOR, org="acme", user=upn, display_name="x", scope="vso.code")
    with pytest.raises(InvalidInput, match="reserved for OAuth clients"):
        container.directory.add_user(admin, "acme", "fake@acme.test", identity_source=IdentitySource.SERVICE)
    container.directory.add_org("beta", "boss@beta.test")
    boss = actor_of(container.directory.get_member(OPERATOR, "beta", "boss@beta.test")[0])
    for who in (boss, OPERATOR):  # no other organization enrols or invites it
        with pytest.raises(Conflict, match="service principal"):
            container.directory.add_user(who, "beta", upn)


# ----------------------------------------------------------------------------- disable / remove
def test_disabling_a_client_ends_its_tokens_at_once_and_for_good(
    container: Container, init: InitResult, admin: Actor, bob: User
) -> None:
    client = register(
        container, admin, grants=["authorization_code", "refresh_token", "client_credentials"]
    ).client
    other = register(container, admin).client
    user_token, _ = plant(container, client, bob.id)
    service_token, _ = plant(container, client, client.service_user_id or "", kind=TokenKind.SERVICE)
    bystander, _ = plant(container, other, bob.id)
    pat = container.pats.create(actor_of(bob), org="acme", user=bob.id, display_name="p", scope="vso.code")
    assert not dead(container, user_token) and not dead(container, service_token)
    container.clock.advance(seconds=1)  # type: ignore[attr-defined]
    disabled = container.clients.disable(admin, "acme", client.client_id)
    assert disabled.disabled_at is not None
    assert container.clients.disable(admin, "acme", client.client_id) == disabled  # idempotent
    assert dead(container, user_token) and dead(container, service_token)
    assert not dead(container, bystander) and not dead(container, pat.secret)  # only that client's
    member = container.directory.get_member(admin, "acme", client.service_user_id or "")[1]
    assert member.status is UserStatus.DISABLED
    container.clock.advance(seconds=1)  # type: ignore[attr-defined]
    container.clients.enable(admin, "acme", client.client_id)
    assert dead(container, user_token)  # enabling brings nothing back
    fresh, _ = plant(container, client, bob.id)
    assert not dead(container, fresh)  # new tokens work
    assert container.directory.get_member(admin, "acme", client.service_user_id or "")[1].is_active
    types = audit_types(container, client.client_id)
    assert types == [
        AuditEventType.CLIENT_CREATE,
        AuditEventType.CLIENT_DISABLE,
        AuditEventType.CLIENT_ENABLE,
    ]


def test_removing_a_client_ends_every_token_it_ever_had(
    container: Container, init: InitResult, admin: Actor, bob: User
) -> None:
    client = register(
        container, admin, grants=["authorization_code", "refresh_token", "client_credentials"]
    ).client
    user_token, record = plant(container, client, bob.id)
    assert not dead(container, user_token)
    container.clock.advance(seconds=1)  # type: ignore[attr-defined]
    removed = container.clients.remove(admin, "acme", client.client_id)
    assert removed.client_id == client.client_id
    assert dead(container, user_token)
    # a token that a token endpoint minted as the removal committed dies too (END_OF_TIME)
    late, late_record = plant(container, client, bob.id, at=container.clock.now() + timedelta(seconds=5))
    assert dead(container, late)
    assert container.clients.get_active(client.client_id) is None
    with pytest.raises(NotFound):
        container.clients.get(admin, "acme", client.client_id)
    with pytest.raises(NotFound):
        container.clients.remove(admin, "acme", client.client_id)
    with container.uow() as uow:
        marks = uow.watermarks.for_subject(SubjectType.CLIENT, client.client_id)
        assert CLIENT_REMOVED in marks
        view = EffectiveView(uow, container.catalog)
        shown = view.apply([record, late_record])
        now = container.clock.now()
        assert [r.state(now + timedelta(seconds=10)) for r in shown] == [TokenState.REVOKED] * 2
        assert [cause_of(r) for r in shown] == ["client", "client"]
        assert (
            uow.tokens.count_live(
                issued_before=now + timedelta(hours=1), now=now + timedelta(seconds=10)
            ).get("refresh", 0)
            == 0
        )
    member = container.directory.get_member(admin, "acme", client.service_user_id or "")[1]
    assert member.status is UserStatus.DISABLED
    assert audit_types(container, client.client_id)[-1] == AuditEventType.CLIENT_DELETE


def test_a_client_watermark_reaches_a_validator_that_syncs_later(
    container: Container, init: InitResult, admin: Actor, bob: User
) -> None:
    """Another node: it learns of the removal from the events table (client.changed)."""
    from tokenwarden.services.validation import Validator

    client = register(container, admin).client
    secret, _ = plant(container, client, bob.id)
    node = Validator(
        container.database.reader, container.uow, container.hasher, container.catalog, staleness_seconds=3600
    )
    node.sync()
    node.validate(secret)
    container.clock.advance(seconds=1)  # type: ignore[attr-defined]
    container.clients.disable(admin, "acme", client.client_id)
    node.validate(secret)  # not synced yet (this test's staleness bound is an hour)
    node.sync()
    with pytest.raises(InvalidToken, match="revoked"):
        node.validate(secret)
    fresh = Validator(container.database.reader, container.uow, container.hasher, container.catalog)
    fresh.sync()  # a node starting now loads the client watermarks with its first sync
    with pytest.raises(InvalidToken):
        fresh.validate(secret)
