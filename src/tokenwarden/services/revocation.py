"""Revocation beyond one PAT: a user's tokens by kind, Entra-style watermarks, risky users,
lookup and revoke by token value. Every mode is a watermark or a single-row change, never a
loop over tokens, and every mode is audited and published as an invalidation event."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from tokenwarden.domain import token_format
from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Forbidden, InvalidInput, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.hashing import SecretHasher
from tokenwarden.domain.principals import Membership, RiskLevel, RiskState, Role, User, member_subject
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.domain.watermarks import (
    ALL_KINDS,
    REFRESH_TOKENS,
    SIGN_IN_SESSIONS,
    SubjectType,
)
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import (
    Actor,
    StepUpCheck,
    audit,
    get_org,
    member_of,
    no_step_up,
    publish,
    reading,
    require_admin,
    require_member,
    token_by_secret,
    token_reaches,
)
from tokenwarden.services.effective import EffectiveView
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
    org_id: str | None = None  # the organization the lookup answered for
    cause: str | None = None  # why it is revoked there (direct, user, membership, rule, break-glass)


def extract_token(text: str) -> str:
    """The one tokenwarden token in pasted ``text`` (the token itself, a log line, a header, a
    Basic credential); InvalidInput — never echoing the text — when there is none or several."""
    if len(text) > 64 * 1024:
        raise InvalidInput("paste at most 64 KiB of text", code="invalidToken")
    found = token_format.find_in_text(text)
    if not found:
        raise InvalidInput(
            "no tokenwarden token found in the text (looked for twp_/twr_/tws_/twc_ tokens with a valid "
            "checksum, also inside Basic credentials)",
            code="invalidToken",
        )
    if len(found) > 1:
        raise InvalidInput(f"the text holds {len(found)} tokens: paste one at a time", code="invalidToken")
    return found[0]


def raise_member_marks(
    uow: UnitOfWork, org_id: str, user_ids: Sequence[str], kinds: Sequence[str], at: datetime
) -> None:
    """Raise the watermarks of many members *of one organization* in one set-based write and
    publish one event. Their standing in other organizations is untouched (the tenancy rule)."""
    uow.watermarks.raise_to(SubjectType.MEMBER, [member_subject(org_id, u) for u in user_ids], kinds, at)
    publish(uow, EventType.USER_CHANGED, user_ids=list(user_ids))


def member_marks(uow: UnitOfWork, org_id: str, user_id: str) -> dict[str, datetime]:
    """The watermarks that apply to a user in one organization (member ones and the user's
    own global ones, the later of each)."""
    marks = dict(uow.watermarks.for_subject(SubjectType.USER, user_id))
    for name, at in uow.watermarks.for_subject(SubjectType.MEMBER, member_subject(org_id, user_id)).items():
        if name not in marks or at > marks[name]:
            marks[name] = at
    return marks


class RevocationService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        hasher: SecretHasher,
        clock: Clock,
        catalog: ScopeCatalog,
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._clock = clock
        self._catalog = catalog
        self.step_up: StepUpCheck = no_step_up  # revoking every risky user needs a fresh second factor

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
            target, _ = member_of(uow, the_org.id, user)
            counts = uow.tokens.count_live(
                user_ids=[target.id],
                org_id=the_org.id,
                kinds=[k.value for k in kinds],
                issued_before=now,
                now=now,
            )
            raise_member_marks(uow, the_org.id, [target.id], [k.value for k in kinds], now)
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
        return RevokeResult((target.id,), tuple(kinds), now, counts)

    def revoke_sign_in_sessions(self, actor: Actor, org: str, user: str) -> User:
        """Graph revokeSignInSessions within one organization: the user's sessions, refresh and
        access tokens issued until now die there (an admin's action, or the user's own)."""
        return self._entra_mark(actor, org, user, SIGN_IN_SESSIONS, AuditEventType.SIGN_IN_SESSIONS_REVOKE)

    def invalidate_refresh_tokens(self, actor: Actor, org: str, user: str) -> User:
        """Graph invalidateAllRefreshTokens within one organization: refresh tokens and sessions
        issued until now die there."""
        return self._entra_mark(actor, org, user, REFRESH_TOKENS, AuditEventType.REFRESH_TOKENS_INVALIDATE)

    def _entra_mark(self, actor: Actor, org: str, user: str, mark: str, event: AuditEventType) -> User:
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            target, _ = self._target(uow, actor, the_org.id, user, self_ok=True)
            raise_member_marks(uow, the_org.id, [target.id], [mark], now)
            emit_session_revoked(
                uow,
                self._clock,
                user=target,
                org_id=the_org.id,
                initiating_entity=initiated_by(actor, target.id),
                reason_admin=f"{mark} revoked",
            )
            audit(
                uow,
                self._clock,
                actor,
                event,
                org_id=the_org.id,
                target_type="user",
                target_id=target.id,
                details={"upn": target.upn, "validFrom": now.isoformat()},
            )
            uow.commit()
        return target

    def user_marks(self, actor: Actor, org: str, user: str) -> tuple[User, dict[str, datetime]]:
        """A member and the watermarks that apply to them in ``org`` (Graph
        ``signInSessionsValidFromDateTime`` ...)."""
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            target, _ = self._target(uow, actor, the_org.id, user, self_ok=True)
            return target, member_marks(uow, the_org.id, target.id)

    # ------------------------------------------------------------------ risk
    def set_risk(
        self, actor: Actor, org: str, user_ids: Sequence[str], level: RiskLevel, state: RiskState
    ) -> list[tuple[User, Membership]]:
        """Set the risk level and state of members of ``org`` (admins only); other
        organizations' view of the same identities is untouched. Ids and UPNs of one user count
        once; all are checked before anything changes. Several users at once need a fresh
        second factor (a bulk action), as revoking every risky user does."""
        now = self._clock.now()
        changed: list[tuple[User, Membership]] = []
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            found = [member_of(uow, the_org.id, u) for u in user_ids]
            targets = list({u.id: (u, m) for u, m in found}.values())
            if len(targets) > 1:
                self.step_up(uow, actor, the_org.id)
            for target, current in targets:
                updated = current.with_changes(risk_level=level, risk_state=state, risk_updated_at=now)
                uow.users.set_membership(updated)
                publish(uow, EventType.USER_CHANGED, user_id=target.id)
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.USER_RISK_CHANGE,
                    org_id=the_org.id,
                    target_type="user",
                    target_id=target.id,
                    details={
                        "upn": target.upn,
                        "riskLevel": level.value,
                        "riskState": state.value,
                        "previousRiskLevel": current.risk_level.value,
                    },
                )
                changed.append((target, updated))
            uow.commit()
        return changed

    def risky_users(
        self, actor: Actor, org: str, levels: Sequence[RiskLevel]
    ) -> list[tuple[User, Membership]]:
        """Members of ``org`` whose risk level there is one of ``levels``."""
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            ids = uow.users.ids_at_risk(the_org.id, [lv.value for lv in levels])
            return [member_of(uow, the_org.id, i) for i in ids]

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
            self.step_up(uow, actor, the_org.id)
            ids = uow.users.ids_at_risk(the_org.id, levels)
            kind_values = [k.value for k in kinds]
            counts = (
                uow.tokens.count_live(
                    user_ids=ids, org_id=the_org.id, kinds=kind_values, issued_before=now, now=now
                )
                if ids
                else {}
            )
            if ids:
                raise_member_marks(uow, the_org.id, ids, kind_values, now)
                for risky, m in (member_of(uow, the_org.id, i) for i in ids):
                    emit_session_revoked(
                        uow,
                        self._clock,
                        user=risky,
                        org_id=the_org.id,
                        initiating_entity="admin",
                        reason_admin=f"risky user (risk level {m.risk_level.value})",
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
        return RevokeResult(tuple(ids), tuple(kinds), now, counts)

    # ------------------------------------------------------------------ by value
    def lookup(
        self,
        actor: Actor,
        org: str | None,
        text: str,
        may_act_in: Callable[[str], bool] | None = None,
    ) -> LookupResult:
        """Find a token by its value (an admin pasting a leaked token, a log line or a Basic
        header value). With ``org`` None, in any organization the actor administers and where
        ``may_act_in`` says the acting credential is valid right now (that organization's
        cut-offs apply to it). Audited; the value is never logged, stored or echoed."""
        secret = extract_token(text)
        with self._uow() as uow:
            record = token_by_secret(uow, self._hasher, secret)
            the_org = self._org_for_lookup(uow, actor, org, record, may_act_in)
            if record is None or the_org is None:
                raise NotFound(
                    "no token with this value in an organization you administer", code="tokenNotFound"
                )
            owner = uow.users.get(record.user_id)
            if owner is None:
                raise NotFound("the token's owner no longer exists", code="tokenNotFound")
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.TOKEN_LOOKUP,
                org_id=the_org,
                target_type=record.kind.value,
                target_id=record.authorization_id,
                details={"owner": owner.upn},
            )
            view = EffectiveView(uow, self._catalog, the_org)
            shown = view.one(record)
            uow.commit()
            return LookupResult(shown, owner, the_org, view.cause(record))

    @staticmethod
    def _org_for_lookup(
        uow: UnitOfWork,
        actor: Actor,
        org: str | None,
        record: TokenRecord | None,
        may_act_in: Callable[[str], bool] | None,
    ) -> str | None:
        """The organization the lookup answers for: the one named (the actor must administer it),
        else the token's own or another the token reaches, among those the actor administers."""
        if org is not None:
            org_id = get_org(uow, org).id
            require_admin(uow, actor, org_id)
            return org_id if record is not None and token_reaches(uow, record, org_id) else None
        if record is None:
            return None
        if actor.is_operator:
            return record.org_id
        administered = [
            m.org_id
            for m in uow.users.memberships_of(actor.user_id or "")
            if m.role is Role.ADMIN
            and m.is_active
            and actor.reaches(m.org_id)
            and (may_act_in is None or may_act_in(m.org_id))
        ]
        if not administered:
            raise Forbidden("organization administrators only", code="accessDenied")
        ordered = sorted(administered, key=lambda o: o != record.org_id)  # the token's own first
        return next((o for o in ordered if token_reaches(uow, record, o)), None)

    def revoke_by_value(
        self,
        actor: Actor,
        org: str | None,
        secret: str,
        reason: str | None = None,
        may_act_in: Callable[[str], bool] | None = None,
    ) -> LookupResult:
        """Revoke the token with this value, whatever its kind (holding the value proves the
        leak: it dies everywhere). Audited in the organization that acted."""
        found = self.lookup(actor, org, secret, may_act_in)
        record = found.record
        if found.cause == "direct":  # already revoked by hand: the first revocation stands
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
                    org_id=found.org_id,
                    target_type=current.kind.value,
                    target_id=current.authorization_id,
                    details={"owner": found.owner.upn, "reason": revoked.revoke_reason, "byValue": True},
                )
                uow.commit()
                current = revoked
        return LookupResult(current, found.owner, found.org_id, "direct")

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _target(
        uow: UnitOfWork, actor: Actor, org_id: str, user: str, *, self_ok: bool
    ) -> tuple[User, Membership]:
        """A member of ``org_id`` the actor may act on: themselves (when ``self_ok``) or anyone,
        for an administrator there."""
        found = uow.users.by_upn(user) or uow.users.get(user)
        if self_ok and found is not None and found.id == actor.user_id:
            return found, require_member(uow, actor, org_id)
        require_admin(uow, actor, org_id)
        return member_of(uow, org_id, user)
