"""Issue 11 part 1: browser sessions over the in-memory store — the sliding window, every
revocation mode through the one Validator, per-organization answers, listing and revoking."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain.errors import Forbidden, InvalidToken, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.principals import User, UserStatus
from tokenwarden.domain.sessions import SessionWindow, describe_user_agent
from tokenwarden.domain.tokens import TokenKind, TokenState
from tokenwarden.domain.watermarks import ALL_KINDS, SubjectType
from tokenwarden.services.common import OPERATOR, Actor, TokenReach, publish
from tokenwarden.services.directory import InitResult
from tokenwarden.services.sessions import IssuedSession

from .conftest import FakeClock, actor_of
from .test_accounts import CHEAP, PASSWORD


@pytest.fixture
def container(make_container: Callable[..., Container]) -> Container:
    return make_container(**CHEAP)


@pytest.fixture
def alice(container: Container, init: InitResult) -> User:
    user = container.directory.add_user(OPERATOR, "acme", "alice@acme.test").user
    container.accounts.set_password(OPERATOR, user.upn, PASSWORD)
    return user


@pytest.fixture
def beta(container: Container, alice: User, init: InitResult) -> str:
    """A second organization that alice joins (acme stays her home: it is older)."""
    container.clock.advance(seconds=1)  # type: ignore[attr-defined]
    container.directory.add_org("beta", "boss@beta.test")
    container.directory.add_user(OPERATOR, "beta", alice.upn)
    return container.directory.find_org("beta").id


def open_session(
    container: Container, user: User, agent: str = "Firefox/130.0 (X11; Linux)"
) -> IssuedSession:
    session = container.accounts.sign_in(user.upn, PASSWORD, ip="192.0.2.1", user_agent=agent).session
    container.clock.advance(seconds=1)  # type: ignore[attr-defined]  # a cut-off "now" falls after it
    return session


def stored(container: Container, session: IssuedSession):  # type: ignore[no-untyped-def]
    with container.uow() as uow:
        return uow.tokens.get(session.record.authorization_id)


# ----------------------------------------------------------------------------- the window
def test_the_window_slides_from_the_last_use_up_to_the_absolute_maximum() -> None:
    w = SessionWindow(idle=timedelta(days=7), absolute=timedelta(days=90), extend_every=timedelta(minutes=1))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert w.first_expiry(t0) == t0 + timedelta(days=7)
    assert w.due(t0.timestamp(), w.first_expiry(t0).timestamp(), t0 + timedelta(seconds=30)) is None
    assert w.due(t0.timestamp(), w.first_expiry(t0).timestamp(), t0 + timedelta(minutes=2)) == t0 + timedelta(
        days=7, minutes=2
    )
    late = t0 + timedelta(days=88)
    assert w.extended(t0, late) == t0 + timedelta(days=90)
    assert w.due(t0.timestamp(), (t0 + timedelta(days=90)).timestamp(), late) is None
    short = SessionWindow(idle=timedelta(days=7), absolute=timedelta(days=3))
    assert short.first_expiry(t0) == t0 + timedelta(days=3)


def test_user_agents_get_short_names() -> None:
    chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
    assert describe_user_agent(chrome) == "Chrome on Windows"
    assert (
        describe_user_agent("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15")
        == "Safari on macOS"
    )
    assert describe_user_agent(None) == "browser session"


def test_use_extends_the_session_at_most_once_per_interval_and_every_cache_follows(
    container: Container, alice: User, clock: FakeClock
) -> None:
    session = open_session(container, alice)
    first_expiry = session.record.valid_to
    caller = container.validator.validate(session.secret)
    assert container.sessions.touch(caller) is False  # one second later: not worth a write
    clock.advance(minutes=5)
    seq = container.validator.seq
    assert container.sessions.touch(caller) is True
    moved = stored(container, session)
    assert moved.valid_to == clock.now() + timedelta(days=7) > first_expiry
    assert container.validator.seq > seq  # token.changed applied: the cached entry was dropped
    fresh = container.validator.validate(session.secret)
    assert fresh.token.valid_to == moved.valid_to.timestamp()
    assert container.sessions.touch(fresh) is False  # just moved
    clock.advance(seconds=30)
    assert container.sessions.touch(container.validator.validate(session.secret)) is False


def test_the_write_is_a_compare_and_set_across_nodes(
    container: Container, alice: User, clock: FakeClock
) -> None:
    session = open_session(container, alice)
    clock.advance(minutes=5)
    target = container.sessions.window.extended(session.record.valid_from, clock.now())
    before = target - container.sessions.window.extend_every
    with container.uow() as uow:
        assert uow.tokens.extend_session(session.record.secret_hash, target, before=before) is True
        # a second node extending at the same moment writes nothing
        assert uow.tokens.extend_session(session.record.secret_hash, target, before=before) is False
        uow.commit()
    container.sessions.revoke_mine(actor_of(alice), session.record.authorization_id)
    with container.uow() as uow:  # never revives a revoked session
        assert (
            uow.tokens.extend_session(
                session.record.secret_hash, target + timedelta(days=1), before=target + timedelta(days=1)
            )
            is False
        )


def test_the_absolute_maximum_stops_the_sliding(
    make_container: Callable[..., Container], clock: FakeClock
) -> None:
    container = make_container(**CHEAP, session_idle_days=7, session_max_days=10)
    container.directory.initialize("acme", "admin@acme.test")
    alice = container.directory.add_user(OPERATOR, "acme", "alice@acme.test").user
    container.accounts.set_password(OPERATOR, alice.upn, PASSWORD)
    session = open_session(container, alice)
    clock.advance(days=6)
    caller = container.validator.validate(session.secret)
    assert container.sessions.touch(caller) is True
    capped = stored(container, session)
    assert capped.valid_to == session.record.valid_from + timedelta(days=10)
    clock.advance(days=2)
    assert container.sessions.touch(container.validator.validate(session.secret)) is False


# ----------------------------------------------------------------------------- every revocation mode
def test_graph_revoke_sign_in_sessions_kills_the_session(
    container: Container, alice: User, init: InitResult
) -> None:
    session = open_session(container, alice)
    container.revocation.revoke_sign_in_sessions(actor_of(init.admin), "acme", alice.upn)
    with pytest.raises(InvalidToken):
        container.validator.validate(session.secret)
    again = open_session(container, alice)  # signing in again works
    container.validator.validate(again.secret)


def test_invalidate_all_refresh_tokens_covers_sessions(
    container: Container, alice: User, init: InitResult
) -> None:
    session = open_session(container, alice)
    container.revocation.invalidate_refresh_tokens(actor_of(init.admin), "acme", alice.upn)
    with pytest.raises(InvalidToken):
        container.validator.validate(session.secret)


def test_the_users_own_global_watermark_kills_the_session(container: Container, alice: User) -> None:
    session = open_session(container, alice)
    with container.uow() as uow:
        uow.watermarks.raise_to(SubjectType.USER, [alice.id], ["signInSessions"], container.clock.now())
        publish(uow, EventType.USER_CHANGED, user_id=alice.id)
        uow.commit()
    with pytest.raises(InvalidToken):
        container.validator.validate(session.secret)


def test_break_glass_rules_and_a_disabled_member_kill_the_session(
    container: Container, alice: User, init: InitResult, clock: FakeClock
) -> None:
    a = open_session(container, alice)
    container.rules.create(actor_of(init.admin), "acme", None, clock.now(), kinds=[TokenKind.SESSION])
    with pytest.raises(InvalidToken):  # a revocation rule on sessions
        container.validator.validate(a.secret)
    clock.advance(seconds=1)
    b = open_session(container, alice)
    container.validator.validate(b.secret)
    with container.uow() as uow:  # organization break-glass (the organization watermark)
        uow.watermarks.raise_to(SubjectType.ORG, [init.org.id], [k.value for k in ALL_KINDS], clock.now())
        publish(uow, EventType.ORG_CHANGED, org_id=init.org.id)
        uow.commit()
    with pytest.raises(InvalidToken):
        container.validator.validate(b.secret)
    clock.advance(seconds=1)
    c = open_session(container, alice)
    container.validator.validate(c.secret)
    container.directory.set_status(OPERATOR, "acme", alice.upn, UserStatus.DISABLED)
    with pytest.raises(InvalidToken):  # a disabled member
        container.validator.validate(c.secret)


def test_a_revocation_in_one_org_stops_the_session_there_only(
    container: Container, alice: User, beta: str, init: InitResult
) -> None:
    session = open_session(container, alice)
    assert session.record.org_id == init.org.id  # home: the oldest membership
    container.validator.validate(session.secret, None, beta)
    boss = container.directory.get_member(OPERATOR, "beta", "boss@beta.test")[0]
    container.revocation.revoke_sign_in_sessions(actor_of(boss), "beta", alice.upn)
    with pytest.raises(InvalidToken):
        container.validator.validate(session.secret, None, beta)
    container.validator.validate(session.secret)  # acme (home) is untouched
    container.validator.validate(session.secret, None, init.org.id)


def test_the_home_org_is_the_oldest_active_membership(
    container: Container, alice: User, beta: str, init: InitResult
) -> None:
    container.directory.set_status(OPERATOR, "acme", alice.upn, UserStatus.DISABLED)
    session = open_session(container, alice)
    assert session.record.org_id == beta


# ----------------------------------------------------------------------------- listing and revoking
def test_users_list_and_revoke_their_own_sessions(
    container: Container, alice: User, clock: FakeClock
) -> None:
    one, two = (
        open_session(container, alice, "Firefox/1 Linux"),
        open_session(container, alice, "Chrome/1 Windows"),
    )
    me = container.validator.validate(one.secret).actor("192.0.2.1")
    listed = container.sessions.mine(me)
    assert [r.authorization_id for r in listed] == [two.record.authorization_id, one.record.authorization_id]
    assert listed[0].user_agent == "Chrome/1 Windows" and listed[0].last_used_ip == "192.0.2.1"
    container.sessions.revoke_mine(me, two.record.authorization_id)
    assert [r.authorization_id for r in container.sessions.mine(me)] == [one.record.authorization_id]
    ended = container.sessions.mine(me, include_ended=True)
    assert [r.state(clock.now()) for r in ended] == [TokenState.REVOKED, TokenState.ACTIVE]
    three = open_session(container, alice)
    assert container.sessions.revoke_all_mine(me) == 2
    for s in (one, three):
        with pytest.raises(InvalidToken):
            container.validator.validate(s.secret)


def test_nobody_revokes_another_users_session_by_id(
    container: Container, alice: User, init: InitResult
) -> None:
    session = open_session(container, alice)
    with pytest.raises(NotFound):
        container.sessions.revoke_mine(actor_of(init.admin), session.record.authorization_id)


def test_a_token_restricted_to_some_orgs_cannot_manage_sessions(
    container: Container, alice: User, init: InitResult
) -> None:
    restricted = Actor(alice.id, alice.upn, token=TokenReach(frozenset({"vso.profile"}), (init.org.id,)))
    with pytest.raises(Forbidden) as info:
        container.sessions.mine(restricted)
    assert info.value.code == "allOrgsTokenRequired"


def test_admins_see_and_revoke_sessions_in_their_org_only(
    container: Container, alice: User, beta: str, init: InitResult
) -> None:
    session = open_session(container, alice)
    acme_admin = actor_of(init.admin)
    boss = actor_of(container.directory.get_member(OPERATOR, "beta", "boss@beta.test")[0])
    _, listed = container.sessions.for_admin(acme_admin, "acme", alice.upn)
    assert [r.authorization_id for r in listed] == [session.record.authorization_id]
    # beta's admin sees the session (usable in beta) but cannot revoke it by id: it was issued in acme
    _, seen = container.sessions.for_admin(boss, "beta", alice.upn)
    assert len(seen) == 1
    with pytest.raises(NotFound) as info:
        container.sessions.admin_revoke(boss, "beta", alice.upn, session.record.authorization_id)
    assert info.value.code == "sessionIssuedElsewhere"
    # ... but cuts every session of alice in beta, and only there
    assert container.sessions.admin_revoke_all(boss, "beta", alice.upn) == 1
    with pytest.raises(InvalidToken):
        container.validator.validate(session.secret, None, beta)
    container.validator.validate(session.secret, None, init.org.id)
    _, seen = container.sessions.for_admin(boss, "beta", alice.upn)
    assert seen == []
    # an admin of an org alice is not in learns nothing
    container.directory.add_org("gamma", "g@gamma.test")
    gamma = actor_of(container.directory.get_member(OPERATOR, "gamma", "g@gamma.test")[0])
    with pytest.raises(NotFound):
        container.sessions.for_admin(gamma, "gamma", alice.upn)
    with pytest.raises(Forbidden):
        container.sessions.for_admin(gamma, "acme", alice.upn)
    with pytest.raises(Forbidden):
        container.sessions.admin_revoke_all(gamma, "acme", alice.upn)
    container.sessions.admin_revoke(acme_admin, "acme", alice.upn, session.record.authorization_id)
    with pytest.raises(InvalidToken):
        container.validator.validate(session.secret)


def test_the_operator_lists_and_revokes(container: Container, alice: User) -> None:
    one, two = open_session(container, alice), open_session(container, alice)
    _, listed = container.sessions.for_operator(alice.upn)
    assert len(listed) == 2
    assert [
        r.authorization_id for r in container.sessions.operator_revoke(alice.upn, one.record.authorization_id)
    ] == [one.record.authorization_id]
    assert len(container.sessions.operator_revoke(alice.upn)) == 1
    for s in (one, two):
        with pytest.raises(InvalidToken):
            container.validator.validate(s.secret)


def test_sign_in_replaces_the_session_the_browser_came_with(container: Container, alice: User) -> None:
    old = open_session(container, alice)
    signed = container.accounts.sign_in(
        alice.upn, PASSWORD, ip=None, user_agent=None, previous_session=old.secret
    )
    assert signed.replaced == old.record.authorization_id
    assert signed.session.secret != old.secret
    with pytest.raises(InvalidToken):
        container.validator.validate(old.secret)
    container.validator.validate(signed.session.secret)


def test_a_failed_extension_leaves_the_session_valid_and_is_not_retried_at_once(
    container: Container, alice: User, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = open_session(container, alice)
    clock.advance(minutes=5)
    caller = container.validator.validate(session.secret)

    def down() -> object:
        raise RuntimeError("database is down")

    monkeypatch.setattr(container.sessions, "_uow", down)
    assert container.sessions.touch(caller) is False
    assert container.sessions.extension_due(caller) is None  # not on every request while it is down
    monkeypatch.undo()
    clock.advance(minutes=2)
    assert container.sessions.touch(caller) is True
