"""Second factors: TOTP enrolment, recovery codes, sign-in's second step and step-up (issue 16).

* Enrolment: :meth:`MfaService.begin` makes a seed (sealed at rest with a pepper-derived key)
  and answers the ``otpauth://`` URI and its QR code; :meth:`MfaService.confirm` takes a first
  code, confirms the factor and answers ten recovery codes, once (only keyed hashes are kept).
* A code is accepted once: the matched TOTP step is recorded (compare-and-set), a recovery
  code is marked used. Wrong codes are counted like wrong passwords (5 in 15 minutes: 429).
* Step-up: a credential (a browser session or a token, by its keyed hash) that proved the second
  factor within :data:`~tokenwarden.domain.mfa.STEP_UP_SECONDS` may do what needs it —
  break-glass, policy changes, bulk revocation (:meth:`MfaService.require_step_up`, called by
  those services inside their transaction). It is required of an actor who has a factor, and of
  an administrator of an organization whose policy says administrators must use MFA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from tokenwarden.domain import mfa
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.principals import Role
from tokenwarden.ports.mfa import MfaFactor
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import (
    OPERATOR,
    Actor,
    audit,
    get_org,
    get_user,
    member_of,
    reading,
    require_admin,
    user_by_id,
)
from tokenwarden.services.signing import SecretBox

MFA_SECRET_INFO: Final = b"tokenwarden mfa totp seeds"
ISSUER: Final = "tokenwarden"
MAX_FAILURES: Final = 5
FAILURE_WINDOW: Final = timedelta(minutes=15)
PENDING_REUSE: Final = timedelta(minutes=10)  # an unconfirmed seed is shown again this long


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What an authenticator app needs; shown once, while the factor is unconfirmed."""

    secret: str
    uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class MfaStatus:
    enrolled: bool  # a confirmed factor
    pending: bool  # an enrolment begun, not yet confirmed
    confirmed_at: datetime | None
    recovery_codes_left: int
    stepped_up_until: datetime | None  # for the credential asking
    required: bool  # an organization of the user requires administrators to use MFA


class MfaService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, hasher: SecretHasher) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = hasher
        self._box = SecretBox(hasher, MFA_SECRET_INFO)

    # ------------------------------------------------------------------ enrolment
    def pending(self, actor: Actor) -> Enrolment | None:
        """The enrolment this credential began less than :data:`PENDING_REUSE` ago (to show its
        key again after a wrong first code), or None — another session of the account never
        sees it."""
        user_id = _user_of(actor)
        with reading(self._uow) as uow:
            factor = uow.mfa.factor(user_id)
            user = user_by_id(uow, user_id)
        seed = self._pending_seed(factor, actor, self._clock.now())
        if seed is None:
            return None
        uri = mfa.provisioning_uri(seed, user.upn, ISSUER)
        return Enrolment(secret=seed, uri=uri, qr_svg=_qr_svg(uri))

    def status(self, actor: Actor) -> MfaStatus:
        user_id = _user_of(actor)
        with reading(self._uow) as uow:
            factor = uow.mfa.factor(user_id)
            confirmed = factor is not None and factor.confirmed_at is not None
            until = self._step_up_until(uow, actor)
            return MfaStatus(
                enrolled=confirmed,
                pending=factor is not None and not confirmed,
                confirmed_at=factor.confirmed_at if factor else None,
                recovery_codes_left=uow.mfa.unused_codes(user_id) if confirmed else 0,
                stepped_up_until=until,
                required=self.required_for(uow, user_id),
            )

    def begin(self, actor: Actor) -> Enrolment:
        """Start enrolment: a seed, unconfirmed until :meth:`confirm`, sealed to the credential
        that began it (a session or a token): only that credential sees it again or confirms
        it. Its own pending seed younger than :data:`PENDING_REUSE` is shown again (a reload
        does not make the key just scanned useless); any other is replaced."""
        user_id = _user_of(actor)
        now = self._clock.now()
        with self._uow() as uow:
            user = user_by_id(uow, user_id)
            existing = uow.mfa.factor(user_id, lock=True)
            if existing is not None and existing.confirmed_at is not None:
                raise Conflict(
                    "a second factor is already set up: remove it first (with a current code) to "
                    "set up another",
                    code="mfaAlreadyEnrolled",
                )
            reused = self._pending_seed(existing, actor, now)
            if reused is not None:
                secret = reused
            else:
                secret = mfa.new_secret()
                sealed = self._box.seal_text(secret, aad=_pending_aad(actor, user_id))
                uow.mfa.save_factor(MfaFactor(user_id, sealed, now))
            uow.commit()
        uri = mfa.provisioning_uri(secret, user.upn, ISSUER)
        return Enrolment(secret=secret, uri=uri, qr_svg=_qr_svg(uri))

    def confirm(self, actor: Actor, code: str) -> list[str]:
        """Confirm a begun enrolment with a first code; answers the recovery codes (once). The
        credential that confirmed counts as stepped up."""
        user_id = _user_of(actor)
        code = mfa.check_code_input(code)
        now = self._clock.now()
        with self._uow() as uow:
            factor = uow.mfa.factor(user_id, lock=True)  # one check of this user's codes at a time
            self._throttle(uow, user_id, now)
            if factor is not None and factor.confirmed_at is not None:
                raise Conflict("the second factor is already confirmed", code="mfaAlreadyEnrolled")
            seed = self._pending_seed(factor, actor, now)
            if factor is None or seed is None:
                raise NotFound(
                    "no second-factor enrolment was begun here in the last "
                    f"{int(PENDING_REUSE.total_seconds() // 60)} minutes: begin again",
                    code="mfaNotEnrolled",
                )
            step = mfa.matching_step(seed, code, now)
            if step is None or not uow.mfa.advance_step(user_id, step):
                self._failed(uow, actor, user_id, now, "enrolment code")
                uow.commit()
                raise InvalidInput(
                    "that code is not the current one: check the time on your device and try the newest code",
                    code="mfaCodeInvalid",
                )
            confirmed = factor.with_changes(
                sealed_secret=self._box.seal_text(seed, aad=user_id), confirmed_at=now, last_step=step
            )
            uow.mfa.save_factor(confirmed)
            codes = mfa.new_recovery_codes()
            uow.mfa.replace_codes(user_id, [self._code_hash(c) for c in codes], now)
            self._record_success(uow, actor, user_id, now)
            for org_id in _orgs_of(uow, user_id):
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.MFA_ENROLL,
                    org_id=org_id,
                    target_type="user",
                    target_id=user_id,
                    details={"factor": "totp", "recoveryCodes": len(codes)},
                )
            uow.commit()
        return codes

    def renew_codes(self, actor: Actor, code: str) -> list[str]:
        """New recovery codes (the old ones stop working), against a current code."""
        user_id = _user_of(actor)
        self.check(actor, user_id, code, None)
        now = self._clock.now()
        with self._uow() as uow:
            codes = mfa.new_recovery_codes()
            uow.mfa.replace_codes(user_id, [self._code_hash(c) for c in codes], now)
            for org_id in _orgs_of(uow, user_id):
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.MFA_RECOVERY_CODES_RENEW,
                    org_id=org_id,
                    target_type="user",
                    target_id=user_id,
                    details={"recoveryCodes": len(codes)},
                )
            uow.commit()
        return codes

    def remove(self, actor: Actor, code: str) -> None:
        """Remove one's own factor, against a current code (or a recovery code)."""
        user_id = _user_of(actor)
        self.check(actor, user_id, code, None)
        with self._uow() as uow:
            uow.mfa.delete(user_id)
            for org_id in _orgs_of(uow, user_id):
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.MFA_REMOVE,
                    org_id=org_id,
                    target_type="user",
                    target_id=user_id,
                    details={},
                )
            uow.commit()

    def reset(self, actor: Actor, org: str, user: str) -> bool:
        """An administrator (or the operator) removes a member's factor — a lost device. The
        member signs in with the password alone and must enrol again where it is required.
        The factor is the account's, for every organization it belongs to: an administrator may
        reset it only if they administer each of them (else the operator does). Answers
        whether there was a factor."""
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            if not actor.is_operator:
                self.require_step_up(uow, actor, the_org.id)
            target, _ = member_of(uow, the_org.id, user)
            if not actor.is_operator:
                for other in uow.users.memberships_of(target.id):
                    mine = uow.users.membership(other.org_id, actor.user_id or "")
                    if not (mine is not None and mine.role is Role.ADMIN and mine.is_active):
                        raise Forbidden(
                            "this member's second factor also protects their account in another "
                            "organization you do not administer: the operator resets it "
                            "(tokenwarden user mfa-reset UPN)",
                            code="mfaResetNotAllowed",
                        )
            had = uow.mfa.delete(target.id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.MFA_RESET,
                org_id=the_org.id,
                target_type="user",
                target_id=target.id,
                details={"upn": target.upn, "hadFactor": had},
            )
            uow.commit()
        return had

    def operator_reset(self, user: str) -> tuple[str, bool]:
        """The operator removes a user's factor (every organization's audit log says so):
        answers the UPN and whether there was a factor."""
        with self._uow() as uow:
            target = get_user(uow, user)
            had = uow.mfa.delete(target.id)
            for org_id in _orgs_of(uow, target.id):
                audit(
                    uow,
                    self._clock,
                    OPERATOR,
                    AuditEventType.MFA_RESET,
                    org_id=org_id,
                    target_type="user",
                    target_id=target.id,
                    details={"upn": target.upn, "hadFactor": had},
                )
            uow.commit()
        return target.upn, had

    # ------------------------------------------------------------------ codes
    def has_factor(self, uow: UnitOfWork, user_id: str) -> bool:
        factor = uow.mfa.factor(user_id)
        return factor is not None and factor.confirmed_at is not None

    def verify_in(self, uow: UnitOfWork, actor: Actor, user_id: str, code: str, now: datetime) -> str:
        """Check a TOTP or recovery code inside ``uow`` and consume it; answers which kind.
        A wrong code raises :class:`_WrongCode` (not a DomainError): the caller records the
        failure and commits, as :meth:`check` does."""
        code = mfa.check_code_input(code)
        # the row lock first: parallel guesses are counted one after another, so the fifth
        # wrong code stops the sixth even when they arrive together
        factor = uow.mfa.factor(user_id, lock=True)
        self._throttle(uow, user_id, now)
        if factor is None or factor.confirmed_at is None:
            raise NotFound("no second factor is set up for this account", code="mfaNotEnrolled")
        step = mfa.matching_step(self._seed(factor), code, now)
        if step is not None and uow.mfa.advance_step(user_id, step):
            self._record_success(uow, actor, user_id, now)
            return "totp"
        recovery = mfa.normalize_recovery_code(code)
        if recovery is not None and uow.mfa.use_code(user_id, self._code_hash(recovery), now):
            self._record_success(uow, actor, user_id, now)
            left = uow.mfa.unused_codes(user_id)
            for org_id in _orgs_of(uow, user_id):
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.MFA_RECOVERY_CODE_USED,
                    org_id=org_id,
                    target_type="user",
                    target_id=user_id,
                    details={"recoveryCodesLeft": left},
                )
            return "recovery"
        raise _WrongCode("replayed code" if step is not None else "wrong code")

    def check(
        self,
        actor: Actor,
        user_id: str,
        code: str,
        credential: bytes | None,
        *,
        expect: tuple[int, int] | None = None,
    ) -> str:
        """:meth:`verify_in` in its own transaction, recording a step-up for ``credential``
        (a session's or token's keyed hash) on success and the failure otherwise. With
        ``expect`` (the factor's last used step and unused recovery codes when a sign-in
        challenge was made), answers "" — nothing consumed — unless the factor is still in
        that state: any code accepted since spends the challenge."""
        now = self._clock.now()
        with self._uow() as uow:
            if expect is not None:
                factor = uow.mfa.factor(user_id, lock=True)
                if factor is None or (factor.last_step, uow.mfa.unused_codes(user_id)) != expect:
                    return ""
            try:
                kind = self.verify_in(uow, actor, user_id, code, now)
            except _WrongCode as exc:
                self._failed(uow, actor, user_id, now, exc.reason)
                uow.commit()
                raise InvalidInput(
                    "that code is not valid (or was already used)", code="mfaCodeInvalid"
                ) from None
            if credential is not None:
                uow.mfa.record_step_up(credential, user_id, now)
            uow.commit()
        return kind

    def step_up(self, actor: Actor, code: str) -> datetime:
        """Prove the second factor again for the credential the actor acts through; answers
        until when the step-up holds."""
        user_id = _user_of(actor)
        if actor.token is None or actor.token.key is None:
            raise Forbidden("step-up needs a session or a token to attach to", code="stepUpUnavailable")
        kind = self.check(actor, user_id, code, actor.token.key)
        now = self._clock.now()
        with self._uow() as uow:
            for org_id in _orgs_of(uow, user_id):
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.MFA_STEP_UP,
                    org_id=org_id,
                    target_type="user",
                    target_id=user_id,
                    details={"with": kind},
                )
            uow.commit()
        return now + timedelta(seconds=mfa.STEP_UP_SECONDS)

    # ------------------------------------------------------------------ enforcement
    def required_for(self, uow: UnitOfWork, user_id: str) -> bool:
        """Is the user an active administrator of an organization that requires MFA of them?"""
        for m in uow.users.memberships_of(user_id):
            if m.role is Role.ADMIN and m.is_active:
                policy = uow.policies.get(m.org_id)
                if policy is not None and policy.admins_require_mfa:
                    return True
        return False

    def require_step_up(self, uow: UnitOfWork, actor: Actor, org_id: str) -> None:
        """Raise Forbidden ``stepUpRequired`` unless the actor's credential proved the second
        factor within the last five minutes — when the actor has a factor, or when ``org_id``
        requires administrators to use one (``mfaEnrollmentRequired`` if they have none yet).
        The operator (local CLI) needs none."""
        if actor.is_operator:
            return
        user_id = actor.user_id or ""
        enrolled = self.has_factor(uow, user_id)
        if not enrolled:
            policy = uow.policies.get(org_id)
            if policy is None or not policy.admins_require_mfa:
                return
            raise Forbidden(
                "this organization requires administrators to use a second factor: set one up "
                "(POST /api/v1/me/mfa, or the console's account page) and step up",
                code="mfaEnrollmentRequired",
            )
        until = self._step_up_until(uow, actor)
        if until is None or until <= self._clock.now():
            raise Forbidden(
                "this action needs a fresh second factor: step up with your authenticator code "
                f"(POST /api/v1/me/step-up) — a step-up holds {mfa.STEP_UP_SECONDS // 60} minutes",
                code="stepUpRequired",
            )

    def ensure_step_up(self, actor: Actor, org_id: str) -> None:
        """:meth:`require_step_up` in a read of its own (for actions made of several service
        calls, such as a console action on many users)."""
        with reading(self._uow) as uow:
            self.require_step_up(uow, actor, org_id)

    def require_fresh_factor(self, uow: UnitOfWork, actor: Actor, org_id: str) -> None:
        """:meth:`require_step_up` whatever the organization's policy: a user without a second
        factor is refused (``mfaEnrollmentRequired``: set one up at ``/account/mfa``), and so is
        the operator, who has none. For what only a signed-in user may do with a fresh second
        factor (a :data:`~tokenwarden.services.common.StepUpCheck`)."""
        user_id = _user_of(actor)
        if not self.has_factor(uow, user_id):
            raise Forbidden(
                "this needs a second factor: set one up at /account/mfa, then try again",
                code="mfaEnrollmentRequired",
            )
        self.require_step_up(uow, actor, org_id)

    def _step_up_until(self, uow: UnitOfWork, actor: Actor) -> datetime | None:
        if actor.token is None or actor.token.key is None:
            return None
        at = uow.mfa.stepped_up_at(actor.token.key)
        return at + timedelta(seconds=mfa.STEP_UP_SECONDS) if at is not None else None

    # ------------------------------------------------------------------ internals
    def _seed(self, factor: MfaFactor) -> str:
        return self._box.open_text(factor.sealed_secret, aad=factor.user_id)

    def _pending_seed(self, factor: MfaFactor | None, actor: Actor, now: datetime) -> str | None:
        """The seed of an unconfirmed enrolment this actor's credential began less than
        :data:`PENDING_REUSE` ago, else None (begun by another session, or abandoned)."""
        if factor is None or factor.confirmed_at is not None or now - factor.created_at >= PENDING_REUSE:
            return None
        try:
            return self._box.open_text(factor.sealed_secret, aad=_pending_aad(actor, factor.user_id))
        except (InvalidInput, ValueError):
            return None

    def _code_hash(self, code: str) -> bytes:
        canonical = mfa.normalize_recovery_code(code) or code
        return self._hasher.hash("twrc_" + canonical)

    def _throttle(self, uow: UnitOfWork, user_id: str, now: datetime) -> None:
        if (
            uow.oauth.failures_since(since=now - FAILURE_WINDOW, upn_key=_attempt_key(user_id))
            >= MAX_FAILURES
        ):
            raise TooManyRequests(
                "too many wrong codes: wait 15 minutes and try again",
                retry_after=int(FAILURE_WINDOW.total_seconds()),
                code="mfaThrottled",
            )

    def _failed(self, uow: UnitOfWork, actor: Actor, user_id: str, now: datetime, reason: str) -> None:
        uow.oauth.record_attempt(_attempt_key(user_id), actor.ip, now, False)
        for org_id in _orgs_of(uow, user_id):
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.MFA_FAILED,
                org_id=org_id,
                target_type="user",
                target_id=user_id,
                details={"reason": reason},
            )

    def _record_success(self, uow: UnitOfWork, actor: Actor, user_id: str, now: datetime) -> None:
        uow.oauth.record_attempt(_attempt_key(user_id), actor.ip, now, True)


class _WrongCode(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _user_of(actor: Actor) -> str:
    if actor.is_operator or not actor.user_id:
        raise Forbidden("second factors belong to users: sign in as one", code="accessDenied")
    return actor.user_id


def _orgs_of(uow: UnitOfWork, user_id: str) -> list[str | None]:
    return [m.org_id for m in uow.users.memberships_of(user_id)] or [None]


def _pending_aad(actor: Actor, user_id: str) -> str:
    """Binds an unconfirmed seed to the credential that began the enrolment (its keyed hash)."""
    key = actor.token.key if actor.token is not None and actor.token.key is not None else b""
    return f"{user_id}|pending|{key.hex()}"


def _attempt_key(user_id: str) -> str:
    """Wrong codes are counted beside wrong passwords, under a key no sign-in name can produce
    (sign-in names are case-folded: no upper-case letter survives), so nobody can lock a
    user's second factor by "signing in" as ``mfa:<their id>``."""
    return f"MFA:{user_id}"


def _qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no style attribute: the console's CSP allows none)."""
    import segno

    svg: str = segno.make(uri, error="m").svg_inline(
        scale=4, border=2, title="Scan with your authenticator app"
    )
    return svg
