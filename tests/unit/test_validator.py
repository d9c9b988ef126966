"""The validation hot path over the in-memory store."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tokenwarden.bootstrap import Container, wire
from tokenwarden.domain import token_format
from tokenwarden.domain.errors import (
    Forbidden,
    InsufficientScope,
    InvalidToken,
    Unavailable,
)
from tokenwarden.domain.hashing import Pepper, SecretHasher
from tokenwarden.domain.principals import Role, User, UserStatus
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import UnitOfWork
from tokenwarden.services.common import OPERATOR, Actor
from tokenwarden.services.directory import InitResult
from tokenwarden.services.pats import IssuedPat
from tokenwarden.services.validation import Caller, Validator, flush_usage
from tokenwarden.settings import Settings

from .conftest import FakeClock, actor_of


def create(
    container: Container, owner: User, scope: str = "vso.code", org: str = "acme", **kw: object
) -> IssuedPat:
    return container.pats.create(
        actor_of(owner),
        org=org,
        user=owner.id,
        display_name="t",
        scope=scope,
        **kw,  # type: ignore[arg-type]
    )


class CountingReader:
    """A reader factory that counts how often the validator opens the store."""

    def __init__(self, factory: Callable[[], UnitOfWork]) -> None:
        self.factory = factory
        self.opened = 0
        self.down = False

    def __call__(self) -> UnitOfWork:
        self.opened += 1
        if self.down:
            raise RuntimeError("database is down")
        return self.factory()


@pytest.fixture
def counted(container: Container) -> tuple[Validator, CountingReader]:
    reader = CountingReader(container.database.reader)
    validator = Validator(reader, container.uow, container.hasher, container.catalog, staleness_seconds=3600)
    validator.sync()
    reader.opened = 0
    return validator, reader


def rejected(validator: Validator, secret: str) -> bool:
    try:
        validator.validate(secret)
    except InvalidToken:
        return True
    return False


def accepted(
    validator: Validator, secret: str, owner: User, scope: str | None = None, org: str | None = None
) -> Caller:
    """Validate and check the answer is the one asked for: the owner, the organization (the one
    asked about, else the token's own) and, when a scope is needed, that the token holds it."""
    caller = validator.validate(secret, scope, org)
    assert caller.user.id == owner.id and caller.token.user_id == owner.id
    assert caller.org_id == (org or caller.token.org_id)
    if scope is not None:
        assert scope in caller.token.scopes
    return caller


def tamper(secret: str, index: int) -> str:
    """Change one character, keeping the base62 alphabet."""
    ch = secret[index]
    replacement = "A" if ch != "A" else "B"
    return secret[:index] + replacement + secret[index + 1 :]


# --------------------------------------------------------------------------- accepted
def test_a_valid_token_returns_its_caller(container: Container, bob: User, init: InitResult) -> None:
    issued = create(container, bob)
    caller = container.validator.validate(issued.secret, "vso.code", init.org.id, ip="198.51.100.4")
    assert caller.user.id == bob.id and caller.user.upn == bob.upn
    assert caller.key == issued.record.secret_hash
    assert container.validator.authorization_id(caller) == issued.record.authorization_id
    assert caller.token.kind is TokenKind.PAT
    assert caller.role_in(init.org.id) is Role.MEMBER
    # without a needed scope or org, the token itself is still checked
    assert container.validator.validate(issued.secret).user.id == bob.id


# --------------------------------------------------------------------------- rejected before any lookup
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda s: tamper(s, len(s) - 1), id="checksum-char"),
        pytest.param(lambda s: tamper(s, 10), id="body-char"),
        pytest.param(lambda s: "twx_" + s[4:], id="unknown-prefix"),
        pytest.param(lambda s: s[:20] + "!" + s[21:], id="non-base62"),
        pytest.param(lambda s: s[:-1], id="too-short"),
        pytest.param(lambda s: s + "A", id="too-long"),
        pytest.param(lambda s: "", id="empty"),
    ],
)
def test_malformed_tokens_are_rejected_without_a_lookup(
    container: Container, bob: User, counted: tuple[Validator, CountingReader], bad: Callable[[str], str]
) -> None:
    validator, reader = counted
    secret = bad(create(container, bob).secret)
    with pytest.raises(InvalidToken):
        validator.validate(secret, "vso.code")
    assert reader.opened == 0


def test_an_unknown_well_formed_token_is_looked_up_once_then_cached_as_negative(
    counted: tuple[Validator, CountingReader],
) -> None:
    validator, reader = counted
    unknown = token_format.generate(TokenKind.PAT)
    with pytest.raises(InvalidToken):
        validator.validate(unknown)
    assert reader.opened >= 1  # the counter does see lookups
    seen = reader.opened
    with pytest.raises(InvalidToken):
        validator.validate(unknown)
    assert reader.opened == seen


def test_a_cached_token_needs_no_lookup(
    container: Container, bob: User, counted: tuple[Validator, CountingReader]
) -> None:
    validator, reader = counted
    issued = create(container, bob)
    validator.validate(issued.secret, "vso.code")
    seen = reader.opened
    for _ in range(5):
        validator.validate(issued.secret, "vso.code")
    assert reader.opened == seen


# --------------------------------------------------------------------------- time window
def test_an_expired_token_is_rejected(container: Container, bob: User, clock: FakeClock) -> None:
    # The validator judges time by the real clock; issue the tokens two days in the past.
    clock.current = datetime.now(UTC) - timedelta(days=2)
    expired = create(container, bob, valid_to=clock.now() + timedelta(days=1))
    alive = create(container, bob, valid_to=clock.now() + timedelta(days=3))
    with pytest.raises(InvalidToken, match="expired"):
        container.validator.validate(expired.secret)
    accepted(container.validator, alive.secret, bob)


def test_a_not_yet_valid_token_is_rejected(container: Container, bob: User, clock: FakeClock) -> None:
    clock.current = datetime.now(UTC) + timedelta(days=1)
    future = create(container, bob)
    with pytest.raises(InvalidToken, match="not yet valid"):
        container.validator.validate(future.secret)


# --------------------------------------------------------------------------- scopes and orgs
def test_insufficient_scope(container: Container, bob: User) -> None:
    issued = create(container, bob, "vso.code vso.build")
    with pytest.raises(InsufficientScope) as info:
        container.validator.validate(issued.secret, "vso.work")
    assert info.value.code == "insufficientScope"
    assert isinstance(info.value, Forbidden)
    accepted(container.validator, issued.secret, bob, "vso.build")
    accepted(container.validator, issued.secret, bob, "vso.code")


def test_implied_scopes_are_accepted_but_not_the_reverse(container: Container, bob: User) -> None:
    write = create(container, bob, "vso.code_write")
    accepted(container.validator, write.secret, bob, "vso.code")
    accepted(container.validator, write.secret, bob, "vso.code_write")
    with pytest.raises(InsufficientScope):
        container.validator.validate(write.secret, "vso.code_manage")
    read = create(container, bob, "vso.code")
    with pytest.raises(InsufficientScope):
        container.validator.validate(read.secret, "vso.code_write")


def test_full_access_passes_every_scope(container: Container, init: InitResult) -> None:
    for scope in ("vso.code_full", "vso.tokenadministration", "vso.pats_manage", "vso.work"):
        caller = accepted(container.validator, init.token.secret, init.admin, scope, init.org.id)
        assert caller.role_in(init.org.id) is Role.ADMIN
    assert container.catalog.expand(("app_token",)) <= caller.token.scopes


def test_organization_targets_and_membership(container: Container, bob: User, init: InitResult) -> None:
    beta = container.directory.create_org(OPERATOR, "beta")
    gamma = container.directory.create_org(OPERATOR, "gamma")
    container.directory.add_user(OPERATOR, "beta", bob.upn)
    acme_only = create(container, bob)
    everywhere = create(container, bob, all_orgs=True)
    accepted(container.validator, acme_only.secret, bob, "vso.code", init.org.id)
    with pytest.raises(Forbidden):
        container.validator.validate(acme_only.secret, "vso.code", beta.id)
    assert accepted(container.validator, everywhere.secret, bob, "vso.code", beta.id).org_id == beta.id
    with pytest.raises(Forbidden):  # bob is not a member of gamma
        container.validator.validate(everywhere.secret, "vso.code", gamma.id)


# --------------------------------------------------------------------------- changes take effect at once
def test_revocation_takes_effect_at_once(container: Container, bob: User) -> None:
    issued = create(container, bob)
    accepted(container.validator, issued.secret, bob)  # now cached
    container.pats.revoke(actor_of(bob), issued.record.authorization_id)
    with pytest.raises(InvalidToken):
        container.validator.validate(issued.secret)


def test_a_disabled_owner_is_rejected_at_once(container: Container, bob: User, admin: Actor) -> None:
    issued = create(container, bob)
    accepted(container.validator, issued.secret, bob)
    container.directory.set_status(admin, "acme", bob.upn, UserStatus.DISABLED)
    with pytest.raises(InvalidToken):
        container.validator.validate(issued.secret)
    container.directory.set_status(admin, "acme", bob.upn, UserStatus.ACTIVE)
    accepted(container.validator, issued.secret, bob)


def test_a_removed_member_loses_the_org_at_once(
    container: Container, bob: User, admin: Actor, init: InitResult
) -> None:
    issued = create(container, bob)
    accepted(container.validator, issued.secret, bob, "vso.code", init.org.id)
    container.directory.remove_member(admin, "acme", bob.upn)
    with pytest.raises(Forbidden):
        container.validator.validate(issued.secret, "vso.code", init.org.id)


def test_a_scope_change_takes_effect_at_once(container: Container, bob: User) -> None:
    issued = create(container, bob, "vso.code")
    accepted(container.validator, issued.secret, bob, "vso.code")
    container.pats.update(actor_of(bob), issued.record.authorization_id, scope="vso.build")
    with pytest.raises(InsufficientScope):
        container.validator.validate(issued.secret, "vso.code")
    accepted(container.validator, issued.secret, bob, "vso.build")


# --------------------------------------------------------------------------- revocation rules
def test_a_revocation_rule_kills_literal_scope_holders_issued_before_the_cutoff(
    container: Container, bob: User, admin: Actor, init: InitResult, clock: FakeClock
) -> None:
    code = create(container, bob, "vso.code")
    mixed = create(container, bob, "vso.build vso.code")
    write = create(container, bob, "vso.code_write")
    build = create(container, bob, "vso.build")
    for issued in (code, mixed, write, build):
        container.validator.validate(issued.secret)  # all cached before the rule
    clock.advance(seconds=1)
    container.rules.create(admin, "acme", "vso.code")
    clock.advance(seconds=1)
    later = create(container, bob, "vso.code")

    for dead in (code, mixed):
        with pytest.raises(InvalidToken):
            container.validator.validate(dead.secret)
    # app_token and implied-only holders are not caught (Azure DevOps semantics); later tokens live.
    for alive in (write, build, later):
        accepted(container.validator, alive.secret, bob)
    accepted(container.validator, init.token.secret, init.admin, "vso.code", init.org.id)


def test_a_rule_of_another_org_does_not_apply(
    container: Container, bob: User, clock: FakeClock, init: InitResult
) -> None:
    container.directory.create_org(OPERATOR, "beta")
    issued = create(container, bob, "vso.code")
    clock.advance(seconds=1)
    container.rules.create(OPERATOR, "beta", "vso.code")
    assert accepted(container.validator, issued.secret, bob, "vso.code").org_id == init.org.id
    # the same rule in the token's own organization does kill it (the check can fail)
    container.rules.create(OPERATOR, "acme", "vso.code")
    assert rejected(container.validator, issued.secret)


def test_a_fresh_node_sees_rules_and_revocations(
    container: Container, bob: User, admin: Actor, clock: FakeClock
) -> None:
    ruled = create(container, bob, "vso.packaging")
    revoked = create(container, bob, "vso.build")
    alive = create(container, bob, "vso.work")
    clock.advance(seconds=1)
    container.rules.create(admin, "acme", "vso.packaging")
    container.pats.revoke(actor_of(bob), revoked.record.authorization_id)
    node = wire(Settings(staleness_seconds=3600), container.database, container.hasher, clock=clock)
    for dead in (ruled, revoked):
        with pytest.raises(InvalidToken):
            node.validator.validate(dead.secret)
    accepted(node.validator, alive.secret, bob, "vso.work")


# --------------------------------------------------------------------------- fail closed
def test_a_stale_node_fails_closed_when_the_store_is_down(container: Container, bob: User) -> None:
    issued = create(container, bob)
    reader = CountingReader(container.database.reader)
    validator = Validator(reader, container.uow, container.hasher, container.catalog, staleness_seconds=0.05)
    validator.validate(issued.secret)  # cached while the store is up
    reader.down = True
    time.sleep(0.06)
    with pytest.raises(Unavailable):
        validator.validate(issued.secret)


# --------------------------------------------------------------------------- pepper rotation
P2 = Pepper("p2", secrets.token_bytes(32))


@pytest.fixture
def rotated(container: Container, init: InitResult) -> Container:
    """A node on the same store whose current pepper is new; the old one still verifies."""
    new = SecretHasher([P2, *container.hasher.peppers])
    return wire(Settings(staleness_seconds=3600), container.database, new, clock=container.clock)


def test_old_pepper_tokens_validate_and_are_rehashed_on_first_use(
    container: Container, bob: User, rotated: Container
) -> None:
    issued = create(container, bob)
    assert issued.record.pepper_id == "p1"
    assert rotated.validator.validate(issued.secret, "vso.code").user.id == bob.id
    stored = rotated.pats.get(actor_of(bob), issued.record.authorization_id)
    assert stored.pepper_id == "p2"
    assert stored.secret_hash == rotated.hasher.hash(issued.secret) != issued.record.secret_hash
    assert stored.with_changes(secret_hash=issued.record.secret_hash, pepper_id="p1") == issued.record
    fresh = create(rotated, bob)
    assert fresh.record.pepper_id == "p2"
    assert accepted(rotated.validator, fresh.secret, bob).key == rotated.hasher.hash(fresh.secret)


def test_revoking_an_old_pepper_token_takes_effect_at_once(
    container: Container, bob: User, rotated: Container
) -> None:
    issued = create(container, bob)
    rotated.validator.validate(issued.secret)  # cached on the rotated node
    rotated.pats.revoke(actor_of(bob), issued.record.authorization_id)
    assert rejected(rotated.validator, issued.secret)


def test_regenerating_an_old_pepper_token_kills_the_old_secret(
    container: Container, bob: User, rotated: Container
) -> None:
    issued = create(container, bob)
    rotated.validator.validate(issued.secret)
    fresh = rotated.pats.regenerate(actor_of(bob), issued.record.authorization_id)
    accepted(rotated.validator, fresh.secret, bob)
    assert rejected(rotated.validator, issued.secret)


def test_a_revocation_reaches_a_node_still_on_the_old_pepper(
    container: Container, bob: User, rotated: Container
) -> None:
    # Regression: the re-hash published no event, so a node still on the old pepper kept its entry
    # (keyed by the old hash) and revoke events, carrying the new hash, never evicted it.
    issued = create(container, bob)
    container.validator.validate(issued.secret)  # old node caches it under the p1 hash
    rotated.validator.validate(issued.secret)  # new node re-hashes it to p2
    rotated.pats.revoke(actor_of(bob), issued.record.authorization_id)
    container.validator.sync()  # what the old node's background loop does
    assert rejected(container.validator, issued.secret), "a revoked token was accepted"


def test_rehash_does_not_undo_a_concurrent_revocation(container: Container, bob: User) -> None:
    # Regression: the re-hash wrote back the whole record read earlier (tokens.update), undoing a
    # revocation committed between the lookup and the write.
    issued = create(container, bob)
    auth_id = issued.record.authorization_id

    def racing_writer() -> UnitOfWork:
        # Another process revokes the token after the validator's read, before its write.
        container.pats.revoke(OPERATOR, auth_id, reason="leaked")
        return container.uow()

    hasher = SecretHasher([P2, *container.hasher.peppers])
    node = Validator(
        container.database.reader, racing_writer, hasher, container.catalog, staleness_seconds=3600
    )
    node.sync()
    with contextlib.suppress(InvalidToken):
        node.validate(issued.secret)
    stored = container.pats.get(actor_of(bob), auth_id)
    assert stored.revoked_at is not None, "the revocation was lost"


# --------------------------------------------------------------------------- usage
def test_usage_is_recorded_and_drained(container: Container, bob: User) -> None:
    container.validator.drain_usage()
    a, b = create(container, bob), create(container, bob)
    before = datetime.now(UTC)
    container.validator.validate(a.secret, ip="192.0.2.1")
    container.validator.validate(a.secret, ip="192.0.2.2")
    container.validator.validate(b.secret)
    after = datetime.now(UTC)
    uses = {key: (at, ip) for key, at, ip in container.validator.drain_usage()}
    assert set(uses) == {a.record.secret_hash, b.record.secret_hash}
    at, ip = uses[a.record.secret_hash]
    assert ip == "192.0.2.2"  # newest use per token
    assert at.tzinfo is not None and before - timedelta(seconds=1) <= at <= after + timedelta(seconds=1)
    assert uses[b.record.secret_hash][1] is None
    assert container.validator.drain_usage() == []


def test_rejected_tokens_record_no_usage(container: Container, bob: User) -> None:
    issued = create(container, bob, "vso.code")
    container.validator.drain_usage()
    with pytest.raises(InsufficientScope):
        container.validator.validate(issued.secret, "vso.work", ip="192.0.2.9")
    assert container.validator.drain_usage() == []


def test_flushed_usage_reaches_the_store(container: Container, bob: User) -> None:
    issued = create(container, bob)
    container.validator.drain_usage()
    container.validator.validate(issued.secret, ip="203.0.113.5")
    assert flush_usage(container.validator, container.uow) == 1
    stored = container.pats.get(actor_of(bob), issued.record.authorization_id)
    assert stored.last_used_ip == "203.0.113.5"
    assert stored.last_used_at is not None
    assert flush_usage(container.validator, container.uow) == 0
