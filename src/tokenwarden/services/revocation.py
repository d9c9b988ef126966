"""Revocation beyond one PAT: a user's tokens by kind, Entra-style watermarks, risky users,
lookup and revoke by token value. Every mode is a watermark or a single-row change, never a
loop over tokens, and every mode is audited and published as an invalidation event."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from tokenwarden.domain import token_format
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Forbidden, InvalidInput, InvalidToken, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.principals import RiskLevel, RiskState, Role, User, UserStatus
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.domain.watermarks import (
    ALL_KINDS,
    REFRESH_TOKENS,
    SIGN_IN_SESSIONS,
    SubjectType,
)
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_org, publish, reading, require_admin, token_reaches
from tokenwarden.services.signals import emit_session_revoked, emit_token_revoked, initiated_by


@dataclass(frozen=True, slots=True)
class RevokeResult:
    """What a watermark revocation did: how many live tokens it killed, per kind."""

    user_ids: tuple[str, ...]
    kinds: tuple[TokenKind, ...]
    at: datetime
    revoked: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.revoked.values())


@dataclass(frozen=True, slots=True)
class LookupResult:
    record: TokenRecord
    owner: User


def raise_user_marks(uow: UnitOfWork, user_ids: Sequence[str], kinds: Sequence[str], at: datetime) -> None:
    """Raise watermarks of many users in one set-based write and publish one event."""
    uow.watermarks.raise_to(SubjectType.USER, user_ids, kinds, at)
    publish(uow, EventType.USER_CHANGED, user_ids=list(user_ids))


class RevocationService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: SecretHasher,
        clock: Clock,
        *,
        after_commit: Callable[[], object] = lambda: None,
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._clock = clock
        self._after_commit = after_commit

    # ------------------------------------------------------------------ one user
    def revoke_user(
        self,
        actor: Actor,
        org: str,
        user: str,
        kinds: Sequence[TokenKind] = ALL_KINDS,
        reason: str | None = None,
    ) -> RevokeResult:
        """Every token of ``user`` of the given kinds issued until now stops working (one write)."""
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            target = self._member(uow, the_org.id, user)
            counts = uow.tokens.count_live(
                user_ids=[target.id], kinds=[k.value for k in kinds], issued_before=now, now=now
            )
            raise_user_marks(uow, [target.id], [k.value for k in kinds], now)
            emit_session_revoked(
                uow,
                self._clock,
                user=target,
                org_id=the_org.id,
                initiating_entity=initiated_by(actor, target.id),
                reason_admin=reason or f"tokens revoked ({', '.join(k.value for k in kinds)})",
            )
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.USER_TOKENS_REVOKE,
                org_id=the_org.id,
                target_type="user",
                target_id=target.id,
                details={
                    "upn": target.upn,
                    "kinds": [k.value for k in kinds],
                    "revoked": counts,
                    "reason": reason,
                },
            )
            uow.commit()
        self._after_commit()
        return RevokeResult((target.id,), tuple(kinds), now, counts)

    def revoke_sign_in_sessions(self, actor: Actor, user: str, within: Collection[str] | None = None) -> User:
        """Graph revokeSignInSessions: sessions, refresh and access tokens issued until now die.

        ``within``: the organizations the caller's token reaches (None = all of the caller's).
        """
        return self._entra_mark(actor, user, SIGN_IN_SESSIONS, AuditEventType.SIGN_IN_SESSIONS_REVOKE, within)

    def invalidate_refresh_tokens(
        self, actor: Actor, user: str, within: Collection[str] | None = None
    ) -> User:
        """Graph invalidateAllRefreshTokens: refresh tokens and sessions issued until now die."""
        return self._entra_mark(actor, user, REFRESH_TOKENS, AuditEventType.REFRESH_TOKENS_INVALIDATE, within)

    def _entra_mark(
        self, actor: Actor, user: str, mark: str, event: AuditEventType, within: Collection[str] | None
    ) -> User:
        now = self._clock.now()
        with self._uow() as uow:
            target = self._visible_user(uow, actor, user, within=within)
            uow.watermarks.raise_to(SubjectType.USER, [target.id], [mark], now)
            publish(uow, EventType.USER_CHANGED, user_id=target.id)
            emit_session_revoked(
                uow,
                self._clock,
                user=target,
                org_id=None,
                initiating_entity=initiated_by(actor, target.id),
                reason_admin=f"{mark} revoked",
            )
            org_ids: list[str | None] = [m.org_id for m in uow.users.memberships_of(target.id)] or [None]
            for org_id in org_ids:
                audit(
                    uow,
                    self._clock,
                    actor,
                    event,
                    org_id=org_id,
                    target_type="user",
                    target_id=target.id,
                    details={"upn": target.upn, "validFrom": now.isoformat()},
                )
            uow.commit()
        self._after_commit()
        return target

    def user_marks(
        self, actor: Actor, user: str, within: Collection[str] | None = None
    ) -> tuple[User, dict[str, datetime]]:
        """A user and their watermarks (Graph ``signInSessionsValidFromDateTime`` ...)."""
        with reading(self._uow) as uow:
            target = self._visible_user(uow, actor, user, within=within)
            return target, uow.watermarks.for_subject(SubjectType.USER, target.id)

    # ------------------------------------------------------------------ risk
    def set_risk(
        self,
        actor: Actor,
        user_ids: Sequence[str],
        level: RiskLevel,
        state: RiskState,
        within: Collection[str] | None = None,
    ) -> list[User]:
        """Set risk level and state of users (each must be in an organization the actor administers
        and, with ``within``, that the caller's token reaches). Ids and UPNs of one user count once."""
        now = self._clock.now()
        changed: list[User] = []
        with self._uow() as uow:
            found = [self._visible_user(uow, actor, u, admin_only=True, within=within) for u in user_ids]
            targets = list({u.id: u for u in found}.values())
            for target in targets:
                updated = target.with_changes(risk_level=level, risk_state=state, risk_updated_at=now)
                uow.users.update(updated)
                publish(uow, EventType.USER_CHANGED, user_id=target.id)
                for m in uow.users.memberships_of(target.id):
                    audit(
                        uow,
                        self._clock,
                        actor,
                        AuditEventType.USER_RISK_CHANGE,
                        org_id=m.org_id,
                        target_type="user",
                        target_id=target.id,
                        details={
                            "upn": target.upn,
                            "riskLevel": level.value,
                            "riskState": state.value,
                            "previousRiskLevel": target.risk_level.value,
                        },
                    )
                changed.append(updated)
            uow.commit()
        self._after_commit()
        return changed

    def risky_users(self, actor: Actor, org: str, levels: Sequence[RiskLevel]) -> list[User]:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            ids = uow.users.ids_at_risk(the_org.id, [lv.value for lv in levels])
            return [u for u in (uow.users.get(i) for i in ids) if u is not None]

    def revoke_risky(
        self, actor: Actor, org: str, min_level: RiskLevel, kinds: Sequence[TokenKind] = ALL_KINDS
    ) -> RevokeResult:
        """Revoke every token of every member at or above ``min_level`` in one call."""
        if min_level.rank == 0:
            raise InvalidInput("minimum risk level must be low, medium or high", code="invalidRiskLevel")
        levels = [lv.value for lv in RiskLevel if lv.rank >= min_level.rank and lv is not RiskLevel.HIDDEN]
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            ids = uow.users.ids_at_risk(the_org.id, levels)
            kind_values = [k.value for k in kinds]
            counts = (
                uow.tokens.count_live(user_ids=ids, kinds=kind_values, issued_before=now, now=now)
                if ids
                else {}
            )
            if ids:
                raise_user_marks(uow, ids, kind_values, now)
                for risky in filter(None, (uow.users.get(i) for i in ids)):
                    emit_session_revoked(
                        uow,
                        self._clock,
                        user=risky,
                        org_id=the_org.id,
                        initiating_entity="admin",
                        reason_admin=f"risky user (risk level {risky.risk_level.value})",
                    )
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.RISKY_USERS_REVOKE,
                org_id=the_org.id,
                target_type="org",
                target_id=the_org.id,
                details={
                    "minRiskLevel": min_level.value,
                    "users": len(ids),
                    "kinds": kind_values,
                    "revoked": counts,
                },
            )
            uow.commit()
        self._after_commit()
        return RevokeResult(tuple(ids), tuple(kinds), now, counts)

    # ------------------------------------------------------------------ by value
    def lookup(self, actor: Actor, org: str, secret: str) -> LookupResult:
        """Find a token by its value (an admin pasting a leaked token). Audited; never logged."""
        try:
            token_format.parse(secret)
        except InvalidToken as exc:
            raise InvalidInput(f"not a tokenwarden token: {exc.message}", code="invalidToken") from exc
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            record = self._by_secret(uow, secret)
            if record is None or not token_reaches(uow, record, the_org.id):
                raise NotFound("no token with this value in this organization", code="tokenNotFound")
            owner = uow.users.get(record.user_id)
            if owner is None:
                raise NotFound("the token's owner no longer exists", code="tokenNotFound")
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.TOKEN_LOOKUP,
                org_id=the_org.id,
                target_type=record.kind.value,
                target_id=record.authorization_id,
                details={"owner": owner.upn},
            )
            uow.commit()
            return LookupResult(record, owner)

    def revoke_by_value(self, actor: Actor, org: str, secret: str, reason: str | None = None) -> LookupResult:
        """Revoke the token with this value, whatever its kind."""
        found = self.lookup(actor, org, secret)
        record = found.record
        if record.revoked_at is not None:
            return found
        with self._uow() as uow:
            current = uow.tokens.get(record.authorization_id)
            if current is None:
                raise NotFound("token vanished", code="tokenNotFound")
            if current.revoked_at is None:
                revoked = current.with_changes(
                    revoked_at=self._clock.now(),
                    revoked_by=actor.user_id or "operator",
                    revoke_reason=(reason or "revoked by value (leaked token)")[:512],
                )
                uow.tokens.update(revoked)
                publish(uow, EventType.TOKEN_REVOKED, hashes=[current.secret_hash.hex()])
                emit_token_revoked(
                    uow,
                    self._clock,
                    user=found.owner,
                    record=revoked,
                    initiating_entity=initiated_by(actor, current.user_id),
                    reason_admin=revoked.revoke_reason,
                )
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.PAT_REVOKE,
                    org_id=current.org_id,
                    target_type=current.kind.value,
                    target_id=current.authorization_id,
                    details={"owner": found.owner.upn, "reason": revoked.revoke_reason, "byValue": True},
                )
                uow.commit()
                current = revoked
        self._after_commit()
        return LookupResult(current, found.owner)

    # ------------------------------------------------------------------ helpers
    def _by_secret(self, uow: UnitOfWork, secret: str) -> TokenRecord | None:
        record = uow.tokens.by_hash(self._hasher.hash(secret))
        for pepper in self._hasher.older():
            if record is not None:
                break
            record = uow.tokens.by_hash(self._hasher.hash_with(pepper, secret))
        return record

    @staticmethod
    def _member(uow: UnitOfWork, org_id: str, user: str) -> User:
        found = uow.users.by_upn(user) or uow.users.get(user)
        if found is None or uow.users.membership(org_id, found.id) is None:
            raise NotFound(f"user {user!r:.80} is not a member of this organization", code="userNotFound")
        return found

    @staticmethod
    def _visible_user(
        uow: UnitOfWork,
        actor: Actor,
        user: str,
        *,
        admin_only: bool = False,
        within: Collection[str] | None = None,
    ) -> User:
        """The user, if it is the actor (self-service) or the actor administers one of its orgs
        (limited to ``within``, the organizations the caller's token reaches, when given)."""
        found = uow.users.by_upn(user) or uow.users.get(user)
        if found is None or found.status is UserStatus.DELETED:
            raise NotFound(f"user {user!r:.80} not found", code="userNotFound")
        if actor.is_operator or (found.id == actor.user_id and not admin_only):
            return found
        admin_orgs = {m.org_id for m in uow.users.memberships_of(actor.user_id or "") if m.role is Role.ADMIN}
        if within is not None:
            admin_orgs &= set(within)
        if any(m.org_id in admin_orgs for m in uow.users.memberships_of(found.id)):
            return found
        if admin_orgs:
            raise NotFound(f"user {user!r:.80} not found", code="userNotFound")
        raise Forbidden("organization administrators only", code="accessDenied")
