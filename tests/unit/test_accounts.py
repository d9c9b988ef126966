"""Issue 11 part 1: local passwords and sign-in over the in-memory store — argon2id, rehash on
verify, the same answer and the same work for unknown accounts, throttling per account and per
IP (password spraying), all audited and never a password in the audit log."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from tokenwarden.bootstrap import Container, wire
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.errors import Forbidden, InvalidInput, TooManyRequests, Unauthenticated
from tokenwarden.domain.passwords import check_password
from tokenwarden.domain.principals import IdentitySource, User, UserStatus
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.common import OPERATOR
from tokenwarden.services.directory import InitResult
from tokenwarden.settings import Settings

from .conftest import FakeClock, actor_of

PASSWORD = "plum-anchor-meadow-42"
CHEAP = {"argon2_memory_kib": 256, "argon2_time_cost": 1, "argon2_parallelism": 1}


@pytest.fixture
def container(make_container: Callable[..., Container]) -> Container:
    return make_container(**CHEAP)


@pytest.fixture
def alice(container: Container, init: InitResult) -> User:
    user = container.directory.add_user(OPERATOR, "acme", "alice@acme.test").user
    container.accounts.set_password(OPERATOR, user.upn, PASSWORD)
    return user


def entries(container: Container, event: AuditEventType) -> list[dict[str, object]]:
    with container.uow() as uow:
        found = uow.audit.query(AuditQuery(event_types=(event.value,)))
    return [{"org": e.org_id, "actor": e.actor_upn, "ip": e.ip, **e.details} for e in found]


def all_audit_text(container: Container) -> str:
    with container.uow() as uow:
        return json.dumps([e.details for e in uow.audit.query(AuditQuery())], default=str)


def sign_in(container: Container, login: str, password: str = PASSWORD, ip: str | None = "198.51.100.7"):  # type: ignore[no-untyped-def]
    return container.accounts.sign_in(
        login, password, ip=ip, user_agent="Mozilla/5.0 (X11; Linux) Firefox/130.0"
    )


# ----------------------------------------------------------------------------- password rules
@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short1!", "weakPassword"),
        ("aaaaaaaaaaaaaaaa", "weakPassword"),
        ("abababababababab", "weakPassword"),
        ("xx-alice-2024-yy", "weakPassword"),
        ("Password1234", "weakPassword"),
        ("qwertyuiop123!", "weakPassword"),
        ("tab\tinside password", "invalidPassword"),
        (" leading space ok?", "invalidPassword"),
        ("x" * 2000, "invalidPassword"),
    ],
)
def test_weak_or_malformed_passwords_are_refused_with_the_rule(password: str, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_password(password, upn="alice@acme.test", min_length=12)
    assert info.value.code == code
    assert password not in info.value.message


def test_a_good_password_is_normalized_nfkc() -> None:
    fullwidth = "\uff50\uff4c\uff55\uff4d-anchor-meadow"
    assert check_password(fullwidth, upn="a@b.c", min_length=12) == "plum-anchor-meadow"


def test_set_password_stores_argon2id_revokes_sessions_and_is_audited_without_the_password(
    container: Container, alice: User
) -> None:
    with container.uow() as uow:
        stored = uow.oauth.password_hash(alice.id)
    assert stored is not None and stored.startswith("$argon2id$")
    session = sign_in(container, alice.upn).session
    result = container.accounts.set_password(OPERATOR, alice.upn, "a-brand-new-secret-9")
    assert result.revoked_sessions == 1
    with pytest.raises(Unauthenticated):
        container.validator.validate(session.secret)
    audited = entries(container, AuditEventType.PASSWORD_SET)
    assert audited and audited[-1]["upn"] == alice.upn and audited[-1]["revokedSessions"] == 1
    text = all_audit_text(container)
    assert PASSWORD not in text and "a-brand-new-secret-9" not in text and "argon2" not in text


def test_only_the_operator_sets_passwords_and_only_for_local_accounts(
    container: Container, alice: User, init: InitResult
) -> None:
    with pytest.raises(Forbidden):
        container.accounts.set_password(actor_of(init.admin), alice.upn, "another-good-one-77")
    ext = container.directory.add_user(
        OPERATOR, "acme", "ext@acme.test", identity_source=IdentitySource.EXTERNAL
    ).user
    with pytest.raises(InvalidInput) as info:
        container.accounts.set_password(OPERATOR, ext.upn, "another-good-one-77")
    assert info.value.code == "externalIdentity"


# ----------------------------------------------------------------------------- sign-in
def test_sign_in_opens_a_session_token_stored_only_by_its_keyed_hash(
    container: Container, alice: User, init: InitResult
) -> None:
    signed = sign_in(container, "ALICE@acme.test")  # UPNs match case-insensitively
    record, secret = signed.session.record, signed.session.secret
    assert secret.startswith("tws_") and record.kind is TokenKind.SESSION
    assert record.secret_hash == container.hasher.hash(secret)
    assert secret not in repr(record)
    assert record.user_agent and "Firefox" in record.display_name
    assert record.last_used_ip == "198.51.100.7"
    assert record.target_orgs is None and record.org_id == init.org.id
    caller = container.validator.validate(secret)
    assert caller.user.id == alice.id and caller.token.kind is TokenKind.SESSION
    audited = entries(container, AuditEventType.SIGN_IN)
    assert audited[-1]["upn"] == alice.upn and audited[-1]["ip"] == "198.51.100.7"


def test_every_wrong_credential_gets_the_same_answer_and_the_same_work(
    container: Container, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashing = container.accounts._passwords  # the argon2 work done per attempt
    verified: list[str] = []
    real = hashing._hasher

    class Spy:
        def verify(self, stored: str, password: str) -> bool:
            verified.append(stored)
            return real.verify(stored, password)

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    monkeypatch.setattr(hashing, "_hasher", Spy())
    answers = []
    for login, password in [
        (alice.upn, "wrong-password-123"),
        ("nobody@acme.test", PASSWORD),
        ("admin@acme.test", PASSWORD),  # exists, but has no password
    ]:
        with pytest.raises(Unauthenticated) as info:
            sign_in(container, login, password)
        answers.append((info.value.code, info.value.message))
    assert len(set(answers)) == 1 and answers[0][0] == "signInFailed"
    assert len(verified) == 3 and all(v.startswith("$argon2id$") for v in verified)
    reasons = [e["reason"] for e in entries(container, AuditEventType.SIGN_IN_FAILED)]
    assert reasons == ["wrong password", "unknown account", "no local password"]
    assert "wrong-password-123" not in all_audit_text(container)


def test_a_disabled_or_removed_account_cannot_sign_in(container: Container, alice: User) -> None:
    container.directory.set_status(OPERATOR, "acme", alice.upn, UserStatus.DISABLED)
    with pytest.raises(Unauthenticated):
        sign_in(container, alice.upn)
    assert entries(container, AuditEventType.SIGN_IN_FAILED)[-1]["reason"] == "no active membership"


def test_verify_rehashes_when_the_argon2_parameters_changed(
    container: Container, alice: User, clock: FakeClock
) -> None:
    with container.uow() as uow:
        before = uow.oauth.password_hash(alice.id)
    assert before is not None and "t=1," in before
    stronger = wire(
        Settings(staleness_seconds=3600.0, **{**CHEAP, "argon2_time_cost": 2}),  # type: ignore[arg-type]
        container.database,
        container.hasher,
        clock=clock,
    )
    stronger.accounts.sign_in(alice.upn, PASSWORD, ip=None, user_agent=None)
    with container.uow() as uow:
        after = uow.oauth.password_hash(alice.id)
    assert after is not None and after != before and "t=2," in after
    container.accounts.sign_in(
        alice.upn, PASSWORD, ip=None, user_agent=None
    )  # old params: rehash back, still ok


def test_a_rehash_never_overwrites_a_password_set_meanwhile(container: Container, alice: User) -> None:
    with container.uow() as uow:
        old = uow.oauth.password_hash(alice.id) or ""
        assert uow.oauth.replace_password_hash(alice.id, "not-the-current-hash", "x") is False
        assert uow.oauth.replace_password_hash(alice.id, old, old) is True
        uow.commit()


# ----------------------------------------------------------------------------- throttling
def test_five_failures_lock_the_account_with_an_exact_retry_after(
    container: Container, alice: User, clock: FakeClock
) -> None:
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            sign_in(container, alice.upn, "wrong-password-123")
        clock.advance(minutes=1)
    # the right password does not help now, and is not even checked (nor counted)
    with pytest.raises(TooManyRequests) as info:
        sign_in(container, alice.upn)
    first_failure_ages_out = 15 * 60 - 5 * 60
    assert info.value.code == "signInThrottled"
    assert first_failure_ages_out - 1 <= info.value.retry_after <= first_failure_ages_out + 1
    throttled = entries(container, AuditEventType.SIGN_IN_THROTTLED)
    assert len(throttled) == 1 and throttled[0]["limit"] == "account"
    clock.advance(seconds=info.value.retry_after)
    sign_in(container, alice.upn)  # the oldest failure aged out: four left, below the limit
    for _ in range(4):  # a success reset the account's count
        with pytest.raises(Unauthenticated):
            sign_in(container, alice.upn, "wrong-password-123")
    sign_in(container, alice.upn)


def test_an_unknown_account_is_throttled_like_a_real_one(container: Container, init: InitResult) -> None:
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            sign_in(container, "ghost@acme.test")
    with pytest.raises(TooManyRequests):
        sign_in(container, "ghost@acme.test")


def test_password_spraying_from_one_ip_is_throttled_per_ip(
    make_container: Callable[..., Container], clock: FakeClock
) -> None:
    container = make_container(**CHEAP, signin_ip_failures=20)
    container.directory.initialize("acme", "admin@acme.test")
    users = []
    for i in range(22):
        user = container.directory.add_user(OPERATOR, "acme", f"u{i}@acme.test").user
        container.accounts.set_password(OPERATOR, user.upn, PASSWORD)
        users.append(user)
    for user in users[:20]:  # one guess per account: no account limit is reached
        with pytest.raises(Unauthenticated):
            sign_in(container, user.upn, "Summer2026-guess!", ip="203.0.113.9")
    with pytest.raises(TooManyRequests) as info:
        sign_in(container, users[20].upn, PASSWORD, ip="203.0.113.9")
    assert "network address" in info.value.message
    sign_in(container, users[21].upn, PASSWORD, ip="203.0.113.10")  # another client is not affected
    throttled = entries(container, AuditEventType.SIGN_IN_THROTTLED)
    assert [t["limit"] for t in throttled] == ["ip"]


def test_old_attempts_are_purged(container: Container, alice: User, clock: FakeClock) -> None:
    with pytest.raises(Unauthenticated):
        sign_in(container, alice.upn, "wrong-password-123")
    clock.advance(days=2)
    container.accounts._next_purge = 0.0
    sign_in(container, alice.upn)
    with container.uow() as uow:
        assert uow.oauth.failures_since(since=clock.now() - timedelta(days=10)) == 0
