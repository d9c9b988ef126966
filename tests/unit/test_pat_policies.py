"""Organization and global policies enforced by the PAT service at create and update."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import Forbidden, InvalidInput, NotFound, PolicyViolation
from tokenwarden.domain.principals import IdentitySource, User
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult

from .conftest import FakeClock, actor_of


def try_create(container: Container, owner: User, scope: str = "vso.code", **kw: object) -> object:
    return container.pats.create(
        actor_of(owner),
        org="acme",
        user=owner.id,
        display_name="t",
        scope=scope,
        **kw,  # type: ignore[arg-type]
    )


def code_of(fn: Callable[[], object]) -> str:
    with pytest.raises(PolicyViolation) as info:
        fn()
    return info.value.code


def count_pats(container: Container, owner: User) -> int:
    return len(container.pats.page(actor_of(owner), "acme", top=100).items)


def test_lifetime_policy_at_create(container: Container, bob: User, admin: Actor, clock: FakeClock) -> None:
    container.policies.update(admin, "acme", max_lifetime_days=7)
    try_create(container, bob, valid_to=clock.now() + timedelta(days=7))
    code = code_of(lambda: try_create(container, bob, valid_to=clock.now() + timedelta(days=8)))
    assert code == "patLifespanPolicyViolation"
    assert count_pats(container, bob) == 1


def test_hard_cap_without_any_org_setting(container: Container, bob: User, clock: FakeClock) -> None:
    code = code_of(lambda: try_create(container, bob, valid_to=clock.now() + timedelta(days=366)))
    assert code == "patLifespanPolicyViolation"


def test_lifetime_policy_at_update(container: Container, bob: User, admin: Actor, clock: FakeClock) -> None:
    issued = try_create(container, bob, valid_to=clock.now() + timedelta(days=5))
    auth_id = issued.record.authorization_id  # type: ignore[attr-defined]
    container.policies.update(admin, "acme", max_lifetime_days=10)
    code = code_of(
        lambda: container.pats.update(actor_of(bob), auth_id, valid_to=clock.now() + timedelta(days=11))
    )
    assert code == "patLifespanPolicyViolation"
    ok = container.pats.update(actor_of(bob), auth_id, valid_to=clock.now() + timedelta(days=10))
    assert ok.valid_to == clock.now() + timedelta(days=10)


def test_full_scope_policy_at_create_and_update(container: Container, bob: User, admin: Actor) -> None:
    issued = try_create(container, bob, "vso.code")
    container.policies.update(admin, "acme", restrict_full_scope=True)
    assert code_of(lambda: try_create(container, bob, "vso.code app_token")) == "fullScopePatPolicyViolation"
    auth_id = issued.record.authorization_id  # type: ignore[attr-defined]
    assert code_of(lambda: container.pats.update(actor_of(bob), auth_id, scope="app_token")) == (
        "fullScopePatPolicyViolation"
    )
    assert container.pats.get(actor_of(bob), auth_id).scopes == ("vso.code",)
    try_create(container, bob, "vso.code_full")  # only app_token is "full scope"


def test_creation_allowlist(container: Container, bob: User, carol: User, admin: Actor) -> None:
    policy = container.policies.update(admin, "acme", restrict_creation=True, creation_allowlist=[carol.upn])
    assert policy.creation_allowlist == (carol.id,)  # UPNs are stored as user ids
    try_create(container, carol)
    assert code_of(lambda: try_create(container, bob)) == "disablePatCreationPolicyViolation"
    assert count_pats(container, bob) == 0


def test_allowlist_names_must_exist(container: Container, admin: Actor) -> None:
    with pytest.raises(NotFound):
        container.policies.update(
            admin, "acme", restrict_creation=True, creation_allowlist=["ghost@acme.test"]
        )


def test_external_identity_requirement(container: Container, bob: User, admin: Actor) -> None:
    external = container.directory.add_user(
        OPERATOR, "acme", "ext@acme.test", identity_source=IdentitySource.EXTERNAL
    ).user
    container.policies.update(admin, "acme", require_external_identity=True)
    try_create(container, external)
    assert code_of(lambda: try_create(container, bob)) == "invalidUserType"


def test_org_disables_pat_creation(container: Container, bob: User, admin: Actor) -> None:
    container.policies.update(admin, "acme", disable_pat_creation=True)
    assert code_of(lambda: try_create(container, bob)) == "disablePatCreationPolicyViolation"
    container.policies.update(admin, "acme", disable_pat_creation=False)
    try_create(container, bob)


def test_global_switch_blocks_creation_even_for_init(make_container: Callable[..., Container]) -> None:
    container = make_container(pat_creation_disabled=True)
    with pytest.raises(PolicyViolation) as info:
        container.directory.initialize("acme", "admin@acme.test")
    assert info.value.code == "globalPATCreationBlocked"


def test_global_switch_blocks_members(make_container: Callable[..., Container]) -> None:
    container = make_container(pat_creation_disabled=True)
    container.directory.create_org(OPERATOR, "acme")
    bob = container.directory.add_user(OPERATOR, "acme", "bob@acme.test").user
    assert code_of(lambda: try_create(container, bob)) == "globalPATCreationBlocked"


def test_all_orgs_pat_must_satisfy_every_org_of_the_owner(
    container: Container, bob: User, clock: FakeClock
) -> None:
    beta = container.directory.create_org(OPERATOR, "beta")
    container.directory.add_user(OPERATOR, "beta", bob.upn)
    container.policies.update(OPERATOR, beta.id, max_lifetime_days=3)
    valid_to = clock.now() + timedelta(days=10)
    try_create(container, bob, valid_to=valid_to)  # acme alone allows it
    code = code_of(lambda: try_create(container, bob, valid_to=valid_to, all_orgs=True))
    assert code == "patLifespanPolicyViolation"


def test_policy_values_are_validated_and_only_admins_change_them(
    container: Container, bob: User, admin: Actor, init: InitResult
) -> None:
    with pytest.raises(InvalidInput) as info:
        container.policies.update(admin, "acme", max_lifetime_days=0)
    assert info.value.code == "invalidPolicy"
    with pytest.raises(InvalidInput):
        container.policies.update(admin, "acme", no_such_knob=True)
    with pytest.raises(Forbidden):
        container.policies.update(actor_of(bob), "acme", max_lifetime_days=1)
    assert container.policies.get(admin, "acme").max_lifetime_days == 365
