"""Issue 16: TOTP second factors over the in-memory store — enrolment, one use per code,
recovery codes, throttling, the sign-in's second step and step-up before the sensitive actions."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tokenwarden.bootstrap import Container
from tokenwarden.domain import mfa
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)
from tokenwarden.domain.principals import Role, User
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.accounts import SecondFactorRequired
from tokenwarden.services.common import OPERATOR, Actor, TokenReach
from tokenwarden.services.directory import InitResult

from .conftest import FakeClock

PASSWORD = "plum-anchor-meadow-42"
CHEAP = {"argon2_memory_kib": 256, "argon2_time_cost": 1, "argon2_parallelism": 1}


@pytest.fixture
def container(make_container: Callable[..., Container]) -> Container:
    return make_container(**CHEAP)


@pytest.fixture
def alice(container: Container, init: InitResult) -> User:
    user = container.directory.add_user(OPERATOR, "acme", "alice@acme.test", role=Role.ADMIN).user
    container.accounts.set_password(OPERATOR, user.upn, PASSWORD)
    return user


def acting(user: User, credential: bytes = b"k" * 16) -> Actor:
    """The user acting through a credential (its keyed hash is what a step-up attaches to)."""
    return Actor(
        user.id, user.upn, ip="198.51.100.7", token=TokenReach(frozenset({"app_token"}), None, credential)
    )


def code_now(secret: str, clock: FakeClock, steps_ahead: int = 0) -> str:
    return mfa.code_at(secret, mfa.step_of(clock.now()) + steps_ahead)


def enrol(container: Container, actor: Actor, clock: FakeClock) -> tuple[str, list[str]]:
    secret = container.mfa.begin(actor).secret
    codes = container.mfa.confirm(actor, code_now(secret, clock))
    clock.advance(seconds=mfa.STEP_SECONDS)  # the next code is a new one
    return secret, codes


def audit_of(container: Container, event: AuditEventType) -> list[dict[str, object]]:
    with container.uow() as uow:
        return [dict(e.details) for e in uow.audit.query(AuditQuery(event_types=(event.value,)))]


def test_enrolment_needs_a_current_code_and_gives_ten_recovery_codes_once(
    container: Container, alice: User, clock: FakeClock
) -> None:
    actor = acting(alice)
    enrolment = container.mfa.begin(actor)
    assert enrolment.uri.startswith("otpauth://totp/tokenwarden:alice%40acme.test?secret=")
    assert "<svg" in enrolment.qr_svg and "style=" not in enrolment.qr_svg
    with pytest.raises(InvalidInput) as wrong:
        container.mfa.confirm(actor, "000000" if code_now(enrolment.secret, clock) != "000000" else "111111")
    assert wrong.value.code == "mfaCodeInvalid"
    assert not container.mfa.status(actor).enrolled
    codes = container.mfa.confirm(actor, code_now(enrolment.secret, clock))
    assert len(codes) == 10 and len(set(codes)) == 10
    status = container.mfa.status(actor)
    assert status.enrolled and status.recovery_codes_left == 10
    assert status.stepped_up_until is None  # confirming is not a step-up of this credential...
    with pytest.raises(Conflict):
        container.mfa.begin(actor)  # ...and a second enrolment must remove the first
    with container.uow() as uow:
        stored = uow.mfa.factor(alice.id)
    assert stored is not None and enrolment.secret not in stored.sealed_secret
    text = json.dumps([e.details for e in _all_audit(container)], default=str)
    assert enrolment.secret not in text and not any(c in text for c in codes)
    assert audit_of(container, AuditEventType.MFA_ENROLL)


def _all_audit(container: Container) -> list[object]:
    with container.uow() as uow:
        return list(uow.audit.query(AuditQuery()))


def test_a_code_is_accepted_once(container: Container, alice: User, clock: FakeClock) -> None:
    actor = acting(alice)
    secret, _ = enrol(container, actor, clock)
    code = code_now(secret, clock)
    container.mfa.step_up(actor, code)
    with pytest.raises(InvalidInput, match="already used"):
        container.mfa.step_up(actor, code)  # the same step again: a replay
    clock.advance(seconds=mfa.STEP_SECONDS)
    container.mfa.step_up(actor, code_now(secret, clock))
    assert audit_of(container, AuditEventType.MFA_FAILED)[-1]["reason"] == "replayed code"


def test_recovery_codes_work_once_whatever_their_case_and_dashes(
    container: Container, alice: User, clock: FakeClock
) -> None:
    actor = acting(alice)
    _, codes = enrol(container, actor, clock)
    typed = codes[0].upper().replace("-", " ")
    assert container.mfa.check(actor, alice.id, typed, None) == "recovery"
    with pytest.raises(InvalidInput):
        container.mfa.check(actor, alice.id, codes[0], None)
    assert container.mfa.status(actor).recovery_codes_left == 9
    assert audit_of(container, AuditEventType.MFA_RECOVERY_CODE_USED)[-1]["recoveryCodesLeft"] == 9


def test_five_wrong_codes_lock_the_factor_for_fifteen_minutes(
    container: Container, alice: User, clock: FakeClock
) -> None:
    actor = acting(alice)
    secret, _ = enrol(container, actor, clock)
    right = code_now(secret, clock)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(5):
        with pytest.raises(InvalidInput):
            container.mfa.step_up(actor, wrong)
    with pytest.raises(TooManyRequests):
        container.mfa.step_up(actor, right)
    clock.advance(minutes=16)
    container.mfa.step_up(actor, code_now(secret, clock))


def test_sensitive_actions_need_a_step_up_within_five_minutes(
    container: Container, alice: User, clock: FakeClock
) -> None:
    actor = acting(alice)
    secret, _ = enrol(container, actor, clock)
    with pytest.raises(Forbidden) as refused:
        container.policies.update(actor, "acme", max_lifetime_days=30)
    assert refused.value.code == "stepUpRequired"
    with pytest.raises(Forbidden, match="second factor"):
        container.break_glass.start(actor, "acme", confirm="acme")
    container.bulk_revoke.submit(actor, "acme", b"UserPrincipalName\nbob@acme.test\n", (), dry_run=True)
    container.mfa.step_up(actor, code_now(secret, clock))
    assert container.policies.update(actor, "acme", max_lifetime_days=30).max_lifetime_days == 30
    other = acting(alice, credential=b"o" * 16)  # another session of hers has not stepped up
    with pytest.raises(Forbidden):
        container.policies.update(other, "acme", max_lifetime_days=31)
    clock.advance(minutes=5, seconds=1)
    with pytest.raises(Forbidden) as stale:
        container.policies.update(actor, "acme", max_lifetime_days=31)
    assert stale.value.code == "stepUpRequired"


def test_an_org_can_require_its_administrators_to_use_mfa(
    container: Container, alice: User, init: InitResult
) -> None:
    container.policies.update(OPERATOR, "acme", admins_require_mfa=True)  # the operator needs none
    with pytest.raises(Forbidden) as refused:
        container.policies.update(acting(alice), "acme", max_lifetime_days=30)
    assert refused.value.code == "mfaEnrollmentRequired"
    assert container.mfa.status(acting(alice)).required


def test_sign_in_with_a_factor_takes_a_second_step_bound_to_the_browser(
    container: Container, alice: User, clock: FakeClock
) -> None:
    secret, _ = enrol(container, acting(alice), clock)
    with pytest.raises(SecondFactorRequired) as first:
        container.accounts.sign_in(
            alice.upn, PASSWORD, ip="198.51.100.7", user_agent="ua", binding="browser-a"
        )
    challenge = first.value.challenge
    assert alice.id not in challenge  # opaque: sealed
    with pytest.raises(Unauthenticated) as elsewhere:
        container.accounts.complete_sign_in(
            challenge, code_now(secret, clock), ip=None, user_agent=None, binding="browser-b"
        )
    assert elsewhere.value.code == "signInExpired"
    signed = container.accounts.complete_sign_in(
        challenge, code_now(secret, clock), ip="198.51.100.7", user_agent="ua", binding="browser-a"
    )
    with container.uow() as uow:
        assert uow.mfa.stepped_up_at(signed.session.record.secret_hash) is not None
    clock.advance(minutes=6)
    with pytest.raises(Unauthenticated, match="took too long"):
        container.accounts.complete_sign_in(
            challenge, code_now(secret, clock), ip=None, user_agent=None, binding="browser-a"
        )


def test_a_sign_in_challenge_opens_one_session_and_dies_with_a_password_change(
    container: Container, alice: User, clock: FakeClock
) -> None:
    secret, _ = enrol(container, acting(alice), clock)

    def challenge() -> str:
        with pytest.raises(SecondFactorRequired) as first:
            container.accounts.sign_in(alice.upn, PASSWORD, ip=None, user_agent=None, binding="b")
        return first.value.challenge

    used = challenge()
    container.accounts.complete_sign_in(used, code_now(secret, clock), ip=None, user_agent=None, binding="b")
    clock.advance(seconds=mfa.STEP_SECONDS)  # a new, valid code: the challenge itself is spent
    with pytest.raises(Unauthenticated) as again:
        container.accounts.complete_sign_in(
            used, code_now(secret, clock), ip=None, user_agent=None, binding="b"
        )
    assert again.value.code == "signInExpired"

    pending = challenge()
    container.accounts.set_password(OPERATOR, alice.upn, "quartz-harbor-lantern-58")
    with pytest.raises(Unauthenticated) as changed:
        container.accounts.complete_sign_in(
            pending, code_now(secret, clock), ip=None, user_agent=None, binding="b"
        )
    assert changed.value.code == "signInExpired"


def test_an_admin_resets_a_members_lost_factor_and_the_member_signs_in_with_the_password(
    container: Container, alice: User, init: InitResult, clock: FakeClock
) -> None:
    enrol(container, acting(alice), clock)
    admin = Actor(init.admin.id, init.admin.upn, token=TokenReach(frozenset({"app_token"}), None, b"a" * 16))
    assert container.mfa.reset(admin, "acme", alice.upn) is True
    assert container.accounts.sign_in(alice.upn, PASSWORD, ip=None, user_agent=None).session.secret
    assert audit_of(container, AuditEventType.MFA_RESET)[-1]["hadFactor"] is True


def test_removing_ones_own_factor_needs_a_current_code(
    container: Container, alice: User, clock: FakeClock
) -> None:
    actor = acting(alice)
    secret, _ = enrol(container, actor, clock)
    with pytest.raises(InvalidInput):
        container.mfa.remove(actor, "12345x")
    container.mfa.remove(actor, code_now(secret, clock))
    assert not container.mfa.status(actor).enrolled


def test_the_operator_has_no_second_factor(container: Container, init: InitResult) -> None:
    with pytest.raises(Forbidden):
        container.mfa.begin(OPERATOR)


def test_failed_sign_ins_under_a_crafted_name_cannot_lock_someones_factor(
    container: Container, alice: User, clock: FakeClock
) -> None:
    actor = acting(alice)
    secret, _ = enrol(container, actor, clock)
    for login in (f"mfa:{alice.id}", f"MFA:{alice.id}"):  # what the counter's key looks like
        for _ in range(6):
            with pytest.raises((Unauthenticated, TooManyRequests)):
                container.accounts.sign_in(login, "wrong", ip="203.0.113.9", user_agent=None)
    container.mfa.step_up(actor, code_now(secret, clock))  # not throttled


def test_an_admin_cannot_reset_a_factor_that_guards_another_organization(
    container: Container, alice: User, init: InitResult, clock: FakeClock
) -> None:
    enrol(container, acting(alice), clock)
    container.directory.add_org("globex", "boss@globex.test")
    container.directory.add_user(OPERATOR, "globex", alice.upn, role=Role.ADMIN)
    admin = Actor(init.admin.id, init.admin.upn, token=TokenReach(frozenset({"app_token"}), None, b"a" * 16))
    with pytest.raises(Forbidden) as refused:
        container.mfa.reset(admin, "acme", alice.upn)
    assert refused.value.code == "mfaResetNotAllowed"
    assert container.mfa.status(acting(alice)).enrolled  # nothing removed
    assert container.mfa.operator_reset(alice.upn) == (alice.upn, True)
    assert not container.mfa.status(acting(alice)).enrolled
    assert len(audit_of(container, AuditEventType.MFA_RESET)) == 2  # acme's log and globex's


def test_a_begun_enrolment_is_seen_and_confirmed_only_by_the_credential_that_began_it(
    container: Container, alice: User, clock: FakeClock
) -> None:
    mine, stolen = acting(alice, b"m" * 16), acting(alice, b"s" * 16)
    secret = container.mfa.begin(mine).secret
    assert container.mfa.pending(stolen) is None  # another session of hers sees no key
    with pytest.raises(NotFound):
        container.mfa.confirm(stolen, code_now(secret, clock))
    pending = container.mfa.pending(mine)
    assert pending is not None and pending.secret == secret
    clock.advance(minutes=11)  # abandoned: not shown again, not confirmable
    assert container.mfa.pending(mine) is None
    with pytest.raises(NotFound):
        container.mfa.confirm(mine, code_now(secret, clock))
    fresh = container.mfa.begin(mine).secret
    assert fresh != secret
    container.mfa.confirm(mine, code_now(fresh, clock))
    assert container.mfa.status(stolen).enrolled  # the confirmed factor is the account's


def test_a_challenge_is_spent_by_a_recovery_code_too(
    container: Container, alice: User, clock: FakeClock
) -> None:
    _, codes = enrol(container, acting(alice), clock)
    with pytest.raises(SecondFactorRequired) as first:
        container.accounts.sign_in(alice.upn, PASSWORD, ip=None, user_agent=None, binding="b")
    challenge = first.value.challenge
    container.accounts.complete_sign_in(challenge, codes[0], ip=None, user_agent=None, binding="b")
    with pytest.raises(Unauthenticated) as again:
        container.accounts.complete_sign_in(challenge, codes[1], ip=None, user_agent=None, binding="b")
    assert again.value.code == "signInExpired"
    assert container.mfa.status(acting(alice)).recovery_codes_left == 9  # the second one is kept
