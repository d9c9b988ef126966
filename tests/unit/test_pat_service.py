"""PAT use cases over the in-memory store: create, get, page, update, regenerate, revoke."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain import token_format
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidInput, InvalidToken, NotFound
from tokenwarden.domain.principals import Role, User
from tokenwarden.domain.tokens import TokenKind, TokenState
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult
from tokenwarden.services.pats import IssuedPat, PatFilter, PatSort

from .conftest import FakeClock, actor_of


def create(
    container: Container, owner: User, name: str = "ci", scope: str = "vso.code", **kw: object
) -> IssuedPat:
    return container.pats.create(
        actor_of(owner),
        org="acme",
        user=owner.id,
        display_name=name,
        scope=scope,
        **kw,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- initialize / create
def test_initialize_creates_org_admin_and_a_working_full_scope_pat(
    container: Container, init: InitResult
) -> None:
    assert init.org.name == "acme"
    assert init.admin.upn == "admin@acme.test"
    record = init.token.record
    assert record.scopes == ("app_token",)
    assert record.user_id == init.admin.id and record.org_id == init.org.id
    assert token_format.parse(init.token.secret) is TokenKind.PAT
    caller = container.validator.validate(init.token.secret, "vso.tokenadministration", init.org.id)
    assert caller.user.id == init.admin.id
    with pytest.raises(Conflict) as info:
        container.directory.initialize("other", "x@other.test")
    assert info.value.code == "alreadyInitialized"


def test_create_returns_the_secret_once_and_stores_only_its_hash(
    container: Container, bob: User, clock: FakeClock
) -> None:
    issued = create(container, bob, "deploy", "vso.code vso.build vso.code")
    record = issued.record
    assert record.scopes == ("vso.code", "vso.build")
    assert record.display_name == "deploy"
    assert record.valid_from == record.created_at == clock.now()
    assert record.valid_to == clock.now() + timedelta(days=30)  # the default lifetime
    assert record.target_orgs == (record.org_id,)
    assert record.secret_hash == container.hasher.hash(issued.secret)
    assert issued.secret.encode() not in record.secret_hash
    assert issued.secret not in repr(record)
    stored = container.pats.get(actor_of(bob), record.authorization_id)
    assert stored == record


def test_create_for_all_orgs_has_no_targets(container: Container, bob: User) -> None:
    assert create(container, bob, all_orgs=True).record.target_orgs is None


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"display_name": ""}, "displayNameRequired"),
        ({"display_name": "   "}, "displayNameRequired"),
        ({"display_name": None}, "displayNameRequired"),
        ({"display_name": "x" * 257}, "invalidDisplayName"),
        ({"display_name": "bad\nname"}, "invalidDisplayName"),
        ({"scope": ""}, "invalidScope"),
        ({"scope": None}, "invalidScope"),
        ({"scope": "vso.nope"}, "invalidScope"),
    ],
)
def test_create_rejects_bad_input(
    container: Container, bob: User, kwargs: dict[str, object], code: str
) -> None:
    args: dict[str, object] = {"display_name": "ok", "scope": "vso.code", **kwargs}
    with pytest.raises(InvalidInput) as info:
        container.pats.create(actor_of(bob), org="acme", user=bob.id, **args)  # type: ignore[arg-type]
    assert info.value.code == code


def test_create_rejects_a_valid_to_in_the_past(container: Container, bob: User, clock: FakeClock) -> None:
    for when in (clock.now(), clock.now() - timedelta(seconds=1)):
        with pytest.raises(InvalidInput) as info:
            create(container, bob, valid_to=when)
        assert info.value.code == "invalidValidTo"


def test_a_member_cannot_create_for_someone_else_but_an_admin_can(
    container: Container, bob: User, carol: User, admin: Actor
) -> None:
    with pytest.raises(Forbidden):
        container.pats.create(actor_of(bob), org="acme", user=carol.id, display_name="x", scope="vso.code")
    issued = container.pats.create(admin, org="acme", user=carol.upn, display_name="x", scope="vso.code")
    assert issued.record.user_id == carol.id


def test_create_requires_membership_of_the_org(container: Container, bob: User) -> None:
    container.directory.create_org(OPERATOR, "beta")
    with pytest.raises(Forbidden):
        container.pats.create(OPERATOR, org="beta", user=bob.id, display_name="x", scope="vso.code")


# --------------------------------------------------------------------------- get
def test_get_only_shows_the_callers_own_pats(
    container: Container, bob: User, carol: User, admin: Actor
) -> None:
    issued = create(container, bob)
    auth_id = issued.record.authorization_id
    assert container.pats.get(actor_of(bob), auth_id).authorization_id == auth_id
    assert container.pats.get(actor_of(bob), auth_id.upper()).authorization_id == auth_id
    for other in (actor_of(carol), admin):
        with pytest.raises(NotFound) as info:
            container.pats.get(other, auth_id)
        assert info.value.code == "authorizationNotFound"
    with pytest.raises(NotFound):
        container.pats.get(actor_of(bob), str(uuid.uuid4()))
    with pytest.raises(InvalidInput) as bad:
        container.pats.get(actor_of(bob), "not-a-uuid")
    assert bad.value.code == "invalidAuthorizationId"


# --------------------------------------------------------------------------- page
@pytest.fixture
def zoo(container: Container, bob: User, clock: FakeClock) -> dict[str, str]:
    """Bob's PATs in every state, issued one minute apart: name -> authorization id."""
    ids: dict[str, str] = {}
    for name in ("delta", "Alpha", "charlie"):
        ids[name] = create(container, bob, name).record.authorization_id
        clock.advance(minutes=1)
    ids["soon"] = create(
        container, bob, "soon", valid_to=clock.now() + timedelta(hours=1)
    ).record.authorization_id
    clock.advance(minutes=1)
    ids["bravo"] = create(container, bob, "bravo").record.authorization_id
    container.pats.revoke(actor_of(bob), ids["bravo"])
    clock.advance(hours=2)  # "soon" has expired
    return ids


def names(container: Container, ids: dict[str, str], items: list[object]) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[t.authorization_id] for t in items]  # type: ignore[attr-defined]


def test_page_filters_by_state(container: Container, bob: User, zoo: dict[str, str]) -> None:
    def listed(f: PatFilter) -> set[str]:
        return set(names(container, zoo, container.pats.page(actor_of(bob), "acme", filter=f).items))

    assert listed(PatFilter.ACTIVE) == {"delta", "Alpha", "charlie"}
    assert listed(PatFilter.REVOKED) == {"bravo"}
    assert listed(PatFilter.EXPIRED) == {"soon"}
    assert listed(PatFilter.ALL) == {"delta", "Alpha", "charlie", "soon", "bravo"}


def test_page_sorts(container: Container, bob: User, zoo: dict[str, str]) -> None:
    def order(sort: PatSort, ascending: bool = True) -> list[str]:
        page = container.pats.page(
            actor_of(bob), "acme", filter=PatFilter.ALL, sort=sort, ascending=ascending
        )
        return names(container, zoo, page.items)

    assert order(PatSort.DISPLAY_NAME) == ["Alpha", "bravo", "charlie", "delta", "soon"]  # case-insensitive
    assert order(PatSort.DISPLAY_NAME, ascending=False) == ["soon", "delta", "charlie", "bravo", "Alpha"]
    assert order(PatSort.DISPLAY_DATE) == ["delta", "Alpha", "charlie", "soon", "bravo"]
    assert order(PatSort.DISPLAY_DATE, ascending=False) == ["bravo", "soon", "charlie", "Alpha", "delta"]
    by_status = order(PatSort.STATUS)
    assert set(by_status[:3]) == {"delta", "Alpha", "charlie"}
    assert by_status[3:] == ["soon", "bravo"]  # active < expired < revoked


def test_page_walks_with_continuation_tokens(container: Container, bob: User, zoo: dict[str, str]) -> None:
    seen: list[str] = []
    continuation: str | None = None
    pages = 0
    while True:
        page = container.pats.page(
            actor_of(bob),
            "acme",
            filter=PatFilter.ALL,
            sort=PatSort.DISPLAY_NAME,
            top=2,
            continuation=continuation,
        )
        pages += 1
        seen += names(container, zoo, page.items)
        if not page.continuation:
            break
        assert re.fullmatch(r"[0-9a-z.-]+", page.continuation)
        continuation = page.continuation
        assert pages < 10
    assert pages == 3
    assert seen == ["Alpha", "bravo", "charlie", "delta", "soon"]


def test_last_page_has_an_empty_continuation(container: Container, bob: User, zoo: dict[str, str]) -> None:
    assert container.pats.page(actor_of(bob), "acme", filter=PatFilter.ACTIVE, top=3).continuation == ""
    assert container.pats.page(actor_of(bob), "acme", filter=PatFilter.ACTIVE, top=2).continuation != ""


@pytest.mark.parametrize(
    "other",
    [
        {"filter": PatFilter.ACTIVE},
        {"sort": PatSort.DISPLAY_DATE},
        {"ascending": False},
    ],
)
def test_a_continuation_token_from_other_options_is_rejected(
    container: Container, bob: User, zoo: dict[str, str], other: dict[str, object]
) -> None:
    first = container.pats.page(actor_of(bob), "acme", filter=PatFilter.ALL, sort=PatSort.DISPLAY_NAME, top=1)
    assert first.continuation
    options: dict[str, object] = {"filter": PatFilter.ALL, "sort": PatSort.DISPLAY_NAME, **other}
    with pytest.raises(InvalidInput) as info:
        container.pats.page(actor_of(bob), "acme", top=1, continuation=first.continuation, **options)  # type: ignore[arg-type]
    assert info.value.code == "invalidContinuationToken"


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "x.all.displayname.1",
        "-1.all.displayname.1",
        "1.all.displayname.1.extra",
        # Regression: str.isdigit() accepts '²', then int() raised ValueError instead of InvalidInput.
        "\u00b2.all.displayname.1",
        "\u0661.all.displayname.1",  # ARABIC-INDIC DIGIT ONE: int() would accept it, the format must not
    ],
)
def test_malformed_continuation_tokens_are_invalid_input(container: Container, bob: User, token: str) -> None:
    with pytest.raises(InvalidInput) as info:
        container.pats.page(
            actor_of(bob), "acme", filter=PatFilter.ALL, sort=PatSort.DISPLAY_NAME, continuation=token
        )
    assert info.value.code == "invalidContinuationToken"


@pytest.mark.parametrize("top", [0, -1, 101])
def test_page_size_is_bounded(container: Container, bob: User, top: int) -> None:
    with pytest.raises(InvalidInput):
        container.pats.page(actor_of(bob), "acme", top=top)


def test_page_lists_only_the_users_pats(container: Container, bob: User, carol: User) -> None:
    mine = create(container, bob).record.authorization_id
    create(container, carol)
    assert [t.authorization_id for t in container.pats.page(actor_of(bob), "acme").items] == [mine]


# --------------------------------------------------------------------------- update
def test_update_renames_rescopes_and_moves_valid_to(
    container: Container, bob: User, clock: FakeClock
) -> None:
    issued = create(container, bob, "old", "vso.code")
    auth_id = issued.record.authorization_id
    new_to = clock.now() + timedelta(days=60)
    updated = container.pats.update(
        actor_of(bob), auth_id, display_name="new", scope="vso.build vso.work", valid_to=new_to
    )
    assert (updated.display_name, updated.scopes, updated.valid_to) == (
        "new",
        ("vso.build", "vso.work"),
        new_to,
    )
    assert updated.secret_hash == issued.record.secret_hash
    assert updated.valid_from == issued.record.valid_from
    assert container.pats.get(actor_of(bob), auth_id) == updated
    # Omitted fields stay as they are.
    renamed = container.pats.update(actor_of(bob), auth_id, display_name="newer")
    assert (renamed.scopes, renamed.valid_to) == (("vso.build", "vso.work"), new_to)


def test_update_can_switch_all_orgs(container: Container, bob: User) -> None:
    auth_id = create(container, bob).record.authorization_id
    assert container.pats.update(actor_of(bob), auth_id, all_orgs=True).target_orgs is None
    again = container.pats.update(actor_of(bob), auth_id, all_orgs=False)
    assert again.target_orgs == (again.org_id,)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"scope": "vso.nope"}, "invalidScope"),
        ({"scope": ""}, "invalidScope"),
        ({"display_name": ""}, "displayNameRequired"),
    ],
)
def test_update_rejects_bad_input(
    container: Container, bob: User, kwargs: dict[str, object], code: str
) -> None:
    issued = create(container, bob)
    with pytest.raises(InvalidInput) as info:
        container.pats.update(actor_of(bob), issued.record.authorization_id, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code
    assert container.pats.get(actor_of(bob), issued.record.authorization_id) == issued.record


def test_update_rejects_valid_to_in_the_past(container: Container, bob: User, clock: FakeClock) -> None:
    issued = create(container, bob)
    with pytest.raises(InvalidInput) as info:
        container.pats.update(
            actor_of(bob), issued.record.authorization_id, valid_to=clock.now() - timedelta(days=1)
        )
    assert info.value.code == "invalidValidTo"


def test_an_expired_pat_cannot_be_updated(container: Container, bob: User, clock: FakeClock) -> None:
    issued = create(container, bob, valid_to=clock.now() + timedelta(hours=1))
    clock.advance(hours=1)
    auth_id = issued.record.authorization_id
    assert container.pats.get(actor_of(bob), auth_id).state(clock.now()) is TokenState.EXPIRED
    for kwargs in ({"valid_to": clock.now() + timedelta(days=1)}, {"display_name": "renamed"}):
        with pytest.raises(InvalidInput) as info:
            container.pats.update(actor_of(bob), auth_id, **kwargs)  # type: ignore[arg-type]
        assert info.value.code == "expiredPatCannotBeExtended"
    assert container.pats.get(actor_of(bob), auth_id) == issued.record


def test_a_revoked_pat_cannot_be_updated(container: Container, bob: User) -> None:
    auth_id = create(container, bob).record.authorization_id
    container.pats.revoke(actor_of(bob), auth_id)
    with pytest.raises(InvalidInput) as info:
        container.pats.update(actor_of(bob), auth_id, display_name="x")
    assert info.value.code == "failedToUpdateAccessToken"


def test_only_the_owner_can_update(container: Container, bob: User, carol: User, admin: Actor) -> None:
    issued = create(container, bob)
    for other in (actor_of(carol), admin):
        with pytest.raises(NotFound):
            container.pats.update(other, issued.record.authorization_id, display_name="hijacked")
    assert container.pats.get(actor_of(bob), issued.record.authorization_id).display_name == "ci"


# --------------------------------------------------------------------------- regenerate
def test_regenerate_swaps_the_secret_and_kills_the_old_one_at_once(container: Container, bob: User) -> None:
    issued = create(container, bob)
    container.validator.validate(issued.secret, "vso.code")  # cached on this node
    fresh = container.pats.regenerate(actor_of(bob), issued.record.authorization_id)
    assert fresh.secret != issued.secret
    assert fresh.record.authorization_id == issued.record.authorization_id
    assert fresh.record.with_changes(secret_hash=issued.record.secret_hash) == issued.record
    with pytest.raises(InvalidToken):
        container.validator.validate(issued.secret, "vso.code")
    caller = container.validator.validate(fresh.secret, "vso.code")
    assert container.validator.authorization_id(caller) == issued.record.authorization_id


def test_regenerate_refuses_revoked_and_foreign_pats(container: Container, bob: User, carol: User) -> None:
    issued = create(container, bob)
    with pytest.raises(NotFound):
        container.pats.regenerate(actor_of(carol), issued.record.authorization_id)
    container.pats.revoke(actor_of(bob), issued.record.authorization_id)
    with pytest.raises(InvalidInput):
        container.pats.regenerate(actor_of(bob), issued.record.authorization_id)


# --------------------------------------------------------------------------- revoke
def test_owner_revokes_and_it_is_idempotent(container: Container, bob: User, clock: FakeClock) -> None:
    issued = create(container, bob)
    auth_id = issued.record.authorization_id
    revoked = container.pats.revoke(actor_of(bob), auth_id, reason="rotated")
    assert revoked.revoked_at == clock.now()
    assert revoked.revoked_by == bob.id
    assert revoked.revoke_reason == "rotated"
    assert container.pats.get(actor_of(bob), auth_id).state(clock.now()) is TokenState.REVOKED
    clock.advance(minutes=5)
    again = container.pats.revoke(actor_of(bob), auth_id, reason="second time")
    assert again == revoked  # unchanged: first revocation stands


def test_org_admin_and_operator_may_revoke_a_members_pat(
    container: Container, bob: User, admin: Actor
) -> None:
    by_admin = container.pats.revoke(admin, create(container, bob).record.authorization_id)
    assert by_admin.revoked_by == admin.user_id
    assert by_admin.revoke_reason == "revoked by admin"
    by_operator = container.pats.revoke(OPERATOR, create(container, bob).record.authorization_id)
    assert by_operator.revoked_by == "operator"


def test_another_member_gets_not_found(
    container: Container, bob: User, carol: User, clock: FakeClock
) -> None:
    issued = create(container, bob)
    with pytest.raises(NotFound) as info:
        container.pats.revoke(actor_of(carol), issued.record.authorization_id)
    assert info.value.code == "authorizationNotFound"
    assert (
        container.pats.get(actor_of(bob), issued.record.authorization_id).state(clock.now())
        is TokenState.ACTIVE
    )


def test_an_admin_of_another_org_gets_not_found(container: Container, bob: User) -> None:
    container.directory.create_org(OPERATOR, "beta")
    beta_admin = container.directory.add_user(OPERATOR, "beta", "boss@beta.test", role=Role.ADMIN).user
    issued = create(container, bob)
    with pytest.raises(NotFound):
        container.pats.revoke(actor_of(beta_admin), issued.record.authorization_id)


def test_revoke_of_an_unknown_or_malformed_id(container: Container, bob: User) -> None:
    with pytest.raises(NotFound):
        container.pats.revoke(actor_of(bob), str(uuid.uuid4()))
    with pytest.raises(InvalidInput):
        container.pats.revoke(actor_of(bob), "1234")


# --------------------------------------------------------------------------- revoke_many
def test_revoke_many_revokes_the_orgs_tokens(
    container: Container, bob: User, carol: User, admin: Actor, clock: FakeClock
) -> None:
    a, b, c = create(container, bob), create(container, bob), create(container, carol)
    ids = [a.record.authorization_id, c.record.authorization_id, a.record.authorization_id.upper()]
    assert container.pats.revoke_many(admin, "acme", ids) == 2
    now = clock.now()
    assert container.pats.get(actor_of(bob), a.record.authorization_id).state(now) is TokenState.REVOKED
    assert container.pats.get(actor_of(carol), c.record.authorization_id).state(now) is TokenState.REVOKED
    assert container.pats.get(actor_of(bob), b.record.authorization_id).state(now) is TokenState.ACTIVE
    for secret in (a.secret, c.secret):
        with pytest.raises(InvalidToken):
            container.validator.validate(secret)
    container.validator.validate(b.secret)
    # Already revoked and unknown ids count nothing.
    assert container.pats.revoke_many(admin, "acme", [a.record.authorization_id, str(uuid.uuid4())]) == 0


def test_revoke_many_parses_every_id_before_changing_anything(
    container: Container, bob: User, admin: Actor, clock: FakeClock
) -> None:
    a, b = create(container, bob), create(container, bob)
    with pytest.raises(InvalidInput):
        container.pats.revoke_many(
            admin, "acme", [a.record.authorization_id, "not-a-uuid", b.record.authorization_id]
        )
    for issued in (a, b):
        assert (
            container.pats.get(actor_of(bob), issued.record.authorization_id).state(clock.now())
            is TokenState.ACTIVE
        )
        container.validator.validate(issued.secret)


def test_revoke_many_ignores_tokens_of_users_outside_the_org(
    container: Container, admin: Actor, clock: FakeClock
) -> None:
    container.directory.create_org(OPERATOR, "beta")
    dave = container.directory.add_user(OPERATOR, "beta", "dave@beta.test").user
    outsider = container.pats.create(
        actor_of(dave), org="beta", user=dave.id, display_name="x", scope="vso.code"
    )
    assert container.pats.revoke_many(admin, "acme", [outsider.record.authorization_id]) == 0
    assert (
        container.pats.get(actor_of(dave), outsider.record.authorization_id).state(clock.now())
        is TokenState.ACTIVE
    )


def test_revoke_many_does_not_touch_a_token_bound_to_another_org(
    container: Container, bob: User, admin: Actor, clock: FakeClock
) -> None:
    # Regression: revoke_many checked the owner's membership, not the token's organization/targets.
    container.directory.create_org(OPERATOR, "beta")
    container.directory.add_user(OPERATOR, "beta", bob.upn)  # bob is in acme and beta
    beta_only = container.pats.create(
        actor_of(bob), org="beta", user=bob.id, display_name="x", scope="vso.code"
    )
    assert beta_only.record.target_orgs is not None and len(beta_only.record.target_orgs) == 1
    count = container.pats.revoke_many(admin, "acme", [beta_only.record.authorization_id])
    state = container.pats.get(actor_of(bob), beta_only.record.authorization_id).state(clock.now())
    assert (count, state) == (0, TokenState.ACTIVE)


def test_revoke_many_is_for_org_admins_only(container: Container, bob: User, carol: User) -> None:
    issued = create(container, carol)
    with pytest.raises(Forbidden):
        container.pats.revoke_many(actor_of(bob), "acme", [issued.record.authorization_id])
    container.validator.validate(issued.secret)
