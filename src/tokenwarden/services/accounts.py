"""Local accounts: passwords and sign-in, throttled against brute force and password spraying.

Sign-in answers the same for an unknown account, an account without a password, a disabled one
and a wrong password — the same message, the same work (argon2 against a dummy hash) — and
counts the failure against the account *and* the client IP. Limits are counted in the
``sign_in_attempts`` table, so they hold across every node:

* per account: ``account_failures`` failures within ``window`` → 429 until the oldest of them
  ages out (a success resets the account's count);
* per IP: ``ip_failures`` failures within ``window`` across all accounts (password spraying).

A refused attempt is not checked and not counted, so ``Retry-After`` is exact. Reaching a limit
is audited (``Session.SignInThrottled``) once, when it is reached — not on every refused request.

Hashing is slow on purpose: callers on an event loop run :meth:`AccountService.sign_in` and
:meth:`AccountService.set_password` in a thread; neither holds a write transaction while hashing.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import DomainError, Forbidden, InvalidInput, TooManyRequests, Unauthenticated
from tokenwarden.domain.passwords import check_password
from tokenwarden.domain.principals import IdentitySource, User, normalize_upn
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_user, reading
from tokenwarden.services.mfa import Enrolment, MfaService
from tokenwarden.services.passwords import PasswordHashing
from tokenwarden.services.sessions import IssuedSession, SessionService
from tokenwarden.services.signing import SecretBox

log = logging.getLogger(__name__)

MAX_LOGIN = 256
SIGN_IN_FAILED = "The user name or password is incorrect."
KEEP_ATTEMPTS = timedelta(days=1)
PURGE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    account_failures: int = 5
    ip_failures: int = 20
    window: timedelta = timedelta(minutes=15)


CHALLENGE_SECONDS: Final = 300
CHALLENGE_INFO: Final = b"tokenwarden sign-in second-step challenges"
_CHALLENGE_AAD: Final = "tw-mfa-challenge|"


def _challenge_expired() -> Unauthenticated:
    return Unauthenticated(
        "the sign-in took too long or was started in another browser: enter your password again",
        code="signInExpired",
    )


def _password_mark(stored_hash: str) -> str:
    """A short digest of the stored password hash (inside a sealed challenge): equal while the
    password is unchanged."""
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:32]


class SecondFactorRequired(Unauthenticated):
    """The password was right; the account has a second factor: ``challenge`` (opaque, five
    minutes) goes back with the code to :meth:`AccountService.complete_sign_in`."""

    def __init__(self, challenge: str) -> None:
        super().__init__("enter the code from your authenticator app", code="mfaRequired")
        self.challenge = challenge


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session: IssuedSession
    replaced: str | None  # the session this sign-in replaced in the same browser, if any


@dataclass(frozen=True, slots=True)
class PasswordSet:
    user: User
    at: datetime
    revoked_sessions: int


class AccountService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        passwords: PasswordHashing,
        sessions: SessionService,
        throttle: ThrottlePolicy,
        *,
        min_password_length: int = 12,
        mfa: MfaService | None = None,
        challenge_box: SecretBox | None = None,
    ) -> None:
        self._mfa = mfa
        self._box = challenge_box
        self._uow = uow
        self._clock = clock
        self._passwords = passwords
        self._sessions = sessions
        self._throttle = throttle
        self._min_length = min_password_length
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()

    # ------------------------------------------------------------------ passwords
    def set_password(self, actor: Actor, user: str, password: str) -> PasswordSet:
        """Set a local account's password (the operator). The user's live browser sessions are
        revoked: whoever knew the old password is signed out. Audited; the password never is."""
        if not actor.is_operator:
            raise Forbidden("only the operator sets passwords (tokenwarden user passwd)", code="accessDenied")
        with reading(self._uow) as uow:
            target = get_user(uow, user)
        if target.identity_source is not IdentitySource.LOCAL:
            raise InvalidInput(
                f"{target.upn} signs in with an external identity provider: no local password",
                code="externalIdentity",
            )
        value = check_password(password, upn=target.upn, min_length=self._min_length)
        hashed = self._passwords.hash(value)  # slow: outside the transaction
        now = self._clock.now()
        with self._uow() as uow:
            uow.oauth.set_password_hash(target.id, hashed, now)
            revoked = self._sessions.revoke_all_in(uow, actor, target.id, "password changed")
            orgs: list[str | None] = [m.org_id for m in uow.users.memberships_of(target.id)] or [None]
            for org_id in orgs:
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.PASSWORD_SET,
                    org_id=org_id,
                    target_type="user",
                    target_id=target.id,
                    details={"upn": target.upn, "revokedSessions": len(revoked)},
                )
            uow.commit()
        return PasswordSet(target, now, len(revoked))

    # ------------------------------------------------------------------ sign-in
    def sign_in(
        self,
        login: str,
        password: str,
        *,
        ip: str | None,
        user_agent: str | None,
        previous_session: str | None = None,
        binding: str = "",
    ) -> SignedIn:
        """Check a password and open a new browser session (a new id every time; the session
        the browser came with, ``previous_session``, is revoked). Raises Unauthenticated
        (``signInFailed``) for any wrong credential and TooManyRequests past a limit. When the
        account has a second factor, raises :class:`SecondFactorRequired` with a challenge for
        :meth:`complete_sign_in`, bound to ``binding`` (the browser's CSRF cookie value)."""
        login = (login or "").strip()
        if not login or not password:
            raise InvalidInput("enter your user name and your password", code="credentialsRequired")
        if len(login) > MAX_LOGIN:
            raise InvalidInput(f"the user name is longer than {MAX_LOGIN} characters", code="invalidUserName")
        key = normalize_upn(login)
        now = self._clock.now()
        since = now - self._throttle.window
        with reading(self._uow) as uow:
            self._check_throttle(uow, key, ip, now, since)
            user = uow.users.by_upn(key)
            stored = uow.oauth.password_hash(user.id) if user is not None else None
            home = self._sessions.home_org(uow, user) if user is not None else None
        ok = self._passwords.verify(stored, password)  # slow: outside any transaction
        eligible = ok and user is not None and user.is_active and home is not None
        rehashed = self._passwords.hash(password) if eligible and self._needs_rehash(stored) else None
        with self._uow() as uow:
            if not eligible or user is None or home is None:
                reason = _why(user, stored, ok, home)
                self._fail(uow, login, key, ip, now, since, user, home, reason=reason, user_agent=user_agent)
                uow.commit()
                raise Unauthenticated(SIGN_IN_FAILED, code="signInFailed")
            uow.oauth.record_attempt(key, ip, now, True)
            if rehashed is not None and stored is not None:
                uow.oauth.replace_password_hash(user.id, stored, rehashed)
            factor = uow.mfa.factor(user.id) if self._mfa is not None else None
            if factor is not None and factor.confirmed_at is not None and stored is not None:
                uow.commit()  # the password was right: the second step decides
                codes_left = uow.mfa.unused_codes(user.id)
                challenge = self._challenge(user.id, now, binding, (factor.last_step, codes_left), stored)
                raise SecondFactorRequired(challenge)
            signed = self._open_session(uow, user, home, ip, user_agent, previous_session, mfa=None)
            uow.commit()
        return signed

    # ------------------------------------------------------------------ one's own second factor
    def begin_factor(self, actor: Actor, password: str | None) -> Enrolment:
        """Begin TOTP enrolment for the actor's own account, with the account's password typed
        again: a stolen session cookie or token alone cannot put an attacker's authenticator
        on the account. (An account without a password — API-only, it never signs in in a
        browser — enrols through its token.) Wrong passwords count like failed sign-ins."""
        if self._mfa is None:
            raise Forbidden("second factors are not available here", code="mfaUnavailable")
        user_id = actor.user_id or ""
        now = self._clock.now()
        since = now - self._throttle.window
        with reading(self._uow) as uow:
            user = get_user(uow, user_id) if user_id else None
            stored = uow.oauth.password_hash(user_id) if user is not None else None
            if user is not None and stored is not None:
                self._check_throttle(uow, normalize_upn(user.upn), actor.ip, now, since)
        if user is not None and stored is not None:
            if not password or len(password) > 1024:
                raise InvalidInput(
                    "enter your password to set up two-step verification", code="passwordRequired"
                )
            if not self._passwords.verify(stored, password):
                with self._uow() as uow:
                    key = normalize_upn(user.upn)
                    self._fail(uow, user.upn, key, actor.ip, now, since, user, None, reason="mfa enrolment")
                    uow.commit()
                raise Unauthenticated("that password is not right", code="passwordIncorrect")
        return self._mfa.begin(actor)

    def confirm_factor(self, actor: Actor, code: str) -> list[str]:
        """Confirm one's enrolment (:meth:`MfaService.confirm`) and end every other browser
        session of the account: a session opened before the factor existed must not keep
        what only a second factor should give. Answers the recovery codes (once)."""
        if self._mfa is None:
            raise Forbidden("second factors are not available here", code="mfaUnavailable")
        codes = self._mfa.confirm(actor, code)
        keep = actor.token.key if actor.token is not None else None
        with self._uow() as uow:
            others = [r for r in self._sessions.live_of(uow, actor.user_id or "") if r.secret_hash != keep]
            if others:
                self._sessions.revoke_in(uow, actor, others, "two-step verification turned on")
            uow.commit()
        return codes

    def complete_sign_in(
        self,
        challenge: str,
        code: str,
        *,
        ip: str | None,
        user_agent: str | None,
        binding: str = "",
        previous_session: str | None = None,
    ) -> SignedIn:
        """The second step: the challenge :meth:`sign_in` gave (for this browser, ``binding``,
        at most five minutes old) and a TOTP or recovery code. The new session counts as
        stepped up. A wrong code is counted (5 in 15 minutes: 429)."""
        if self._mfa is None:
            raise Unauthenticated(SIGN_IN_FAILED, code="signInFailed")
        user_id, (last_step, codes_left), password_mark = self._open_challenge(challenge, binding)
        now = self._clock.now()
        with reading(self._uow) as uow:
            user = uow.users.get(user_id)
            home = self._sessions.home_org(uow, user) if user is not None else None
            stored = uow.oauth.password_hash(user_id) if user is not None else None
        if user is None or not user.is_active or home is None:
            raise Unauthenticated(SIGN_IN_FAILED, code="signInFailed")
        if stored is None or not hmac.compare_digest(_password_mark(stored), password_mark):
            raise _challenge_expired()  # the password changed since the first step
        actor = Actor(user_id=user.id, upn=user.upn, ip=ip, user_agent=user_agent)
        if not self._mfa.check(actor, user.id, code, None, expect=(last_step, codes_left)):
            raise _challenge_expired()  # a code was used since: this challenge was spent
        with self._uow() as uow:
            signed = self._open_session(uow, user, home, ip, user_agent, previous_session, mfa=now)
            uow.commit()
        return signed

    def _open_session(
        self,
        uow: UnitOfWork,
        user: User,
        home: str,
        ip: str | None,
        user_agent: str | None,
        previous_session: str | None,
        *,
        mfa: datetime | None,
    ) -> SignedIn:
        actor = Actor(user_id=user.id, upn=user.upn, ip=ip, user_agent=user_agent)
        old = self._sessions.live_session_by_secret(uow, previous_session)
        if old is not None:
            self._sessions.revoke_in(uow, actor, [old], "replaced by a new sign-in")
        issued = self._sessions.issue_in(uow, user, home, ip=ip, user_agent=user_agent)
        if mfa is not None:  # signed in with the second factor: stepped up from the start
            uow.mfa.record_step_up(issued.record.secret_hash, user.id, mfa)
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.SIGN_IN,
            org_id=home,
            target_type="session",
            target_id=issued.record.authorization_id,
            details={
                "upn": user.upn,
                "userAgent": issued.record.user_agent,
                "validTo": issued.record.valid_to.isoformat(),
                "replacedSession": old.authorization_id if old else None,
                "mfa": mfa is not None,
            },
        )
        self._maybe_purge(uow, self._clock.now())
        return SignedIn(user, issued, old.authorization_id if old else None)

    def _challenge(
        self, user_id: str, now: datetime, binding: str, factor_state: tuple[int, int], stored: str
    ) -> str:
        """Sealed, bound to this browser and to the state it was made in: the factor's last used
        step and its unused recovery codes (any code accepted since — this challenge's own
        completion too — spends it) and the password (a change of password spends it)."""
        expires = int(now.timestamp()) + CHALLENGE_SECONDS
        if self._box is None:
            raise Unauthenticated(SIGN_IN_FAILED, code="signInFailed")
        step, codes = factor_state
        data = {"u": user_id, "exp": expires, "s": step, "r": codes, "p": _password_mark(stored)}
        return self._box.seal_text(json.dumps(data), aad=_CHALLENGE_AAD + binding)

    def _open_challenge(self, challenge: str, binding: str) -> tuple[str, tuple[int, int], str]:
        """(user id, (factor step, unused recovery codes) when made, password mark) of an
        unexpired challenge."""
        if self._box is None or not challenge or len(challenge) > 1024 or not challenge.isascii():
            raise _challenge_expired()
        try:
            data = json.loads(self._box.open_text(challenge, aad=_CHALLENGE_AAD + binding))
            user_id, expires, mark = str(data["u"]), int(data["exp"]), str(data["p"])
            state = (int(data["s"]), int(data["r"]))
        except (DomainError, ValueError, KeyError, TypeError, binascii.Error):
            raise _challenge_expired() from None
        if expires < self._clock.now().timestamp():
            raise _challenge_expired()
        return user_id, state, mark

    # ------------------------------------------------------------------ throttling
    def _check_throttle(
        self, uow: UnitOfWork, key: str, ip: str | None, now: datetime, since: datetime
    ) -> None:
        t = self._throttle
        if uow.oauth.failures_since(since=since, upn_key=key) >= t.account_failures:
            wait = self._retry_after(uow, now, t.account_failures, upn_key=key)
            log.warning("sign-in throttled for an account (retry in %ss)", wait)
            raise TooManyRequests(
                f"too many failed sign-ins for this account: try again in {_minutes(wait)}",
                retry_after=wait,
                code="signInThrottled",
            )
        if ip is not None and uow.oauth.failures_since(since=since, ip=ip) >= t.ip_failures:
            wait = self._retry_after(uow, now, t.ip_failures, ip=ip)
            log.warning("sign-in throttled for client %s (retry in %ss)", ip, wait)
            raise TooManyRequests(
                f"too many failed sign-ins from your network address: try again in {_minutes(wait)}",
                retry_after=wait,
                code="signInThrottled",
            )

    def _retry_after(
        self, uow: UnitOfWork, now: datetime, limit: int, *, upn_key: str | None = None, ip: str | None = None
    ) -> int:
        """Seconds until the count of failures in the trailing window drops below ``limit``
        (refused attempts are not counted, so the count only falls): the smallest ``d`` with
        fewer than ``limit`` failures after ``now - window + d``, by bisection (~10 reads)."""
        start = now - self._throttle.window
        lo, hi = 0, int(self._throttle.window.total_seconds()) + 1
        while lo < hi:
            mid = (lo + hi) // 2
            count = uow.oauth.failures_since(since=start + timedelta(seconds=mid), upn_key=upn_key, ip=ip)
            if count < limit:
                hi = mid
            else:
                lo = mid + 1
        return max(1, lo)

    def _fail(
        self,
        uow: UnitOfWork,
        login: str,
        key: str,
        ip: str | None,
        now: datetime,
        since: datetime,
        user: User | None,
        home: str | None,
        *,
        reason: str,
        user_agent: str | None = None,
    ) -> None:
        uow.oauth.record_attempt(key, ip, now, False)
        actor = Actor(user_id=user.id if user else None, upn=login[:MAX_LOGIN], ip=ip, user_agent=user_agent)
        org_id = home
        if org_id is None and user is not None:
            org_id = next((m.org_id for m in uow.users.memberships_of(user.id)), None)
        target_id = user.id if user else key
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.SIGN_IN_FAILED,
            org_id=org_id,
            target_type="user",
            target_id=target_id,
            details={"upn": login[:MAX_LOGIN], "reason": reason},
        )
        t = self._throttle
        limits = [("account", uow.oauth.failures_since(since=since, upn_key=key), t.account_failures)]
        if ip is not None:
            limits.append(("ip", uow.oauth.failures_since(since=since, ip=ip), t.ip_failures))
        for scope, count, limit in limits:
            if count == limit:  # this failure reached the limit: audited once, not per refusal
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.SIGN_IN_THROTTLED,
                    org_id=org_id,
                    target_type="user" if scope == "account" else "ip",
                    target_id=target_id if scope == "account" else (ip or ""),
                    details={
                        "upn": login[:MAX_LOGIN],
                        "limit": scope,
                        "failures": count,
                        "windowSeconds": int(t.window.total_seconds()),
                    },
                )

    def _needs_rehash(self, stored: str | None) -> bool:
        return stored is not None and self._passwords.needs_rehash(stored)

    def _maybe_purge(self, uow: UnitOfWork, now: datetime) -> None:
        """Drop attempts older than a day, at most once an hour per process."""
        with self._purge_lock:
            if time.monotonic() < self._next_purge:
                return
            self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
        keep = max(KEEP_ATTEMPTS, self._throttle.window)
        uow.oauth.purge_attempts(now - keep)


def _why(user: User | None, stored: str | None, ok: bool, home: str | None) -> str:
    """Why a sign-in failed — for the audit log only, never for the browser."""
    if user is None:
        return "unknown account"
    if stored is None:
        return "no local password"
    if not ok:
        return "wrong password"
    if not user.is_active:
        return "account disabled"
    if home is None:
        return "no active membership"
    return "refused"


def _minutes(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = -(-seconds // 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
