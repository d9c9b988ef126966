"""Owner self-service around notices (issue 12): extend a PAT by days, watchers who also hear
its notices, and where a user's own notices go (address, digest)."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Forbidden, InvalidInput, NotFound
from tokenwarden.domain.policies import HARD_MAX_LIFETIME_DAYS, check_email
from tokenwarden.domain.principals import Role, User
from tokenwarden.domain.tokens import TokenRecord, TokenState
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_org, member_of, parse_uuid, reading, require_admin
from tokenwarden.services.pats import PatService, visible_pat

MAX_WATCHERS: Final = 20


class TokenCareService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, pats: PatService) -> None:
        self._uow = uow
        self._clock = clock
        self._pats = pats

    # ------------------------------------------------------------------ extend
    def extend(
        self, actor: Actor, authorization_id: str, days: int, org_id: str | None = None
    ) -> TokenRecord:
        """validTo = now + ``days`` exactly, for one of the actor's still-valid PATs: the same
        checks and audit as ``PatService.update`` (an expired PAT cannot be extended
        — ``expiredPatCannotBeExtended``; the policy's maximum lifetime counts from validFrom)."""
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= HARD_MAX_LIFETIME_DAYS:
            raise InvalidInput(
                f"days must be a whole number between 1 and {HARD_MAX_LIFETIME_DAYS}", code="invalidValidTo"
            )
        return self._pats.update(
            actor, authorization_id, valid_to=self._clock.now() + timedelta(days=days), org_id=org_id
        )

    # ------------------------------------------------------------------ watchers
    def watchers(self, actor: Actor, authorization_id: str, org_id: str | None = None) -> list[str]:
        """The addresses that also hear the PAT's notices (its owner or an admin of its org)."""
        auth_id = parse_uuid(authorization_id, "authorizationId")
        with reading(self._uow) as uow:
            visible_pat(uow, actor, auth_id, admin_ok=True, org_id=org_id)
            return uow.lifecycle.watchers([auth_id]).get(auth_id, [])

    def add_watcher(
        self, actor: Actor, authorization_id: str, address: str, org_id: str | None = None
    ) -> list[str]:
        """Add a watcher (at most 20 per token; an address already watching is left as it is).
        Returns the watchers."""
        auth_id = parse_uuid(authorization_id, "authorizationId")
        addr = check_email(address.strip(), "address")
        with self._uow() as uow:
            record = visible_pat(uow, actor, auth_id, admin_ok=True, org_id=org_id)
            current = uow.lifecycle.watchers([auth_id]).get(auth_id, [])
            if any(a.lower() == addr.lower() for a in current):
                return current
            if record.state(self._clock.now()) in (TokenState.REVOKED, TokenState.EXPIRED):
                raise InvalidInput("a revoked or expired PAT has nothing left to watch", code="patNotActive")
            if len(current) >= MAX_WATCHERS:
                raise InvalidInput(
                    f"a token has at most {MAX_WATCHERS} watchers: remove one first", code="tooManyWatchers"
                )
            uow.lifecycle.add_watcher(auth_id, addr, actor.user_id, self._clock.now())
            self._audit(uow, actor, record, added=addr)
            uow.commit()
            return [*current, addr]

    def remove_watcher(
        self, actor: Actor, authorization_id: str, address: str, org_id: str | None = None
    ) -> bool:
        """Remove a watcher; False when the address was not watching."""
        auth_id = parse_uuid(authorization_id, "authorizationId")
        with self._uow() as uow:
            record = visible_pat(uow, actor, auth_id, admin_ok=True, org_id=org_id)
            removed = uow.lifecycle.remove_watcher(auth_id, address.strip())
            if removed:
                self._audit(uow, actor, record, removed=address.strip())
                uow.commit()
            return removed

    def _audit(self, uow: UnitOfWork, actor: Actor, record: TokenRecord, **change: str) -> None:
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.TOKEN_WATCHERS_CHANGE,
            org_id=record.org_id,
            target_type=record.kind.value,
            target_id=record.authorization_id,
            details={"displayName": record.display_name, **change},
        )

    # ------------------------------------------------------------------ contact
    def set_contact(
        self,
        actor: Actor,
        user: str,
        email: str | None,
        digest: bool | None,
        *,
        org: str | None = None,
    ) -> User:
        """Where ``user``'s notices go: ``email`` ("" goes back to the UPN; None keeps it) and
        ``digest`` (one message per run; None keeps it). The user themself, the operator, or an
        active administrator of one of the user's organizations — with ``org``, of that one
        (the user must be a member there). Audited ``User.Update``."""
        if email is None and digest is None:
            raise InvalidInput("give an email address or a digest choice", code="invalidInput")
        new_email = None if email is None or not email.strip() else check_email(email.strip(), "email")
        with self._uow() as uow:
            target, org_id = self._contact_target(uow, actor, user, org)
            updated = target.with_changes(
                email=target.email if email is None else new_email,
                notify_digest=target.notify_digest if digest is None else digest,
            )
            uow.users.update(updated)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.USER_UPDATE,
                org_id=org_id,
                target_type="user",
                target_id=target.id,
                details={
                    "upn": target.upn,
                    "email": updated.email,
                    "previousEmail": target.email,
                    "notifyDigest": updated.notify_digest,
                },
            )
            uow.commit()
        return updated

    @staticmethod
    def _contact_target(uow: UnitOfWork, actor: Actor, user: str, org: str | None) -> tuple[User, str | None]:
        """The user whose contact the actor may change, and the organization it acts in.

        Another user's address may be changed by an administrator only when every organization
        the user belongs to is one the administrator runs: notices about an identity's tokens in
        another organization must not be redirected by this one (the tenancy rule)."""
        if org is not None:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            member = member_of(uow, the_org.id, user)[0]
            if not actor.is_operator and member.id != actor.user_id:
                _check_admin_of_all(uow, actor, member)
            return member, the_org.id
        found = uow.users.by_upn(user) or uow.users.get(user)
        missing = NotFound(f"user {user!r:.80} not found", code="userNotFound")
        if found is None:
            raise missing
        if actor.is_operator or found.id == actor.user_id:
            return found, None
        for m in uow.users.memberships_of(found.id):  # an administrator of one of their orgs
            mine = uow.users.membership(m.org_id, actor.user_id or "")
            if mine is not None and mine.role is Role.ADMIN and mine.is_active and actor.reaches(m.org_id):
                _check_admin_of_all(uow, actor, found)
                return found, m.org_id
        raise missing


def _check_admin_of_all(uow: UnitOfWork, actor: Actor, user: User) -> None:
    for m in uow.users.memberships_of(user.id):
        mine = uow.users.membership(m.org_id, actor.user_id or "")
        if mine is None or mine.role is not Role.ADMIN or not mine.is_active or not actor.reaches(m.org_id):
            raise Forbidden(
                "the user also belongs to an organization you do not administer: only they (or the "
                "operator) can change where their notices go",
                code="contactOwnedByUser",
            )
