"""Revocation rules: revoke by scope and issue date without a loop over tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, ensure_utc
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.events import EventType
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import TokenKind
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_org, new_id, publish, reading, require_admin
from tokenwarden.services.signals import emit_org_credential_change


class RuleService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        catalog: ScopeCatalog,
        clock: Clock,
        *,
        after_commit: Callable[[], object] = lambda: None,
    ) -> None:
        self._uow = uow
        self._catalog = catalog
        self._clock = clock
        self._after_commit = after_commit

    def create(
        self,
        actor: Actor,
        org: str,
        scopes: str | None,
        created_before: datetime | None = None,
        *,
        created_after: datetime | None = None,
        kinds: Sequence[TokenKind] | None = None,
        users: Sequence[str] | None = None,
        match_implied: bool = False,
    ) -> RevocationRule:
        """Every token of ``org`` issued before ``created_before`` (default now) — and at or after
        ``created_after`` — that carries one of ``scopes`` stops working; optionally only tokens
        of some ``kinds`` or some ``users`` (UPNs or ids, members of ``org``)."""
        if not scopes or not scopes.strip():
            raise InvalidInput("scopes is required", code="invalidScope")
        parsed = self._catalog.parse(scopes)
        now = self._clock.now()
        cutoff = ensure_utc(created_before) if created_before is not None else now
        if cutoff > now:
            raise InvalidInput("createdBefore must not be in the future", code="invalidCreatedBefore")
        after = ensure_utc(created_after) if created_after is not None else None
        if after is not None and after >= cutoff:
            raise InvalidInput("createdAfter must be before createdBefore", code="invalidDateRange")
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            user_ids = None
            if users:
                user_ids = tuple(dict.fromkeys(self._member_id(uow, the_org.id, u) for u in users))
            rule = RevocationRule(
                id=new_id(),
                org_id=the_org.id,
                scopes=parsed,
                created_before=cutoff,
                created_at=now,
                created_by=actor.user_id,
                created_after=after,
                kinds=tuple(kinds) if kinds else None,
                user_ids=user_ids,
                match_implied=match_implied,
            )
            uow.rules.add(rule)
            publish(uow, EventType.RULE_ADDED, rule_id=rule.id, org_id=the_org.id)
            emit_org_credential_change(
                uow,
                self._clock,
                org_id=the_org.id,
                change_type="revoke",
                initiating_entity="admin",
                reason_admin=f"revocation rule {rule.id}: tokens with scopes {' '.join(parsed)}"
                f" issued before {cutoff.isoformat()} are revoked",
            )
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.REVOCATION_RULE_CREATE,
                org_id=the_org.id,
                target_type="revocationRule",
                target_id=rule.id,
                details={
                    "scopes": " ".join(parsed),
                    "createdBefore": cutoff.isoformat(),
                    "createdAfter": after.isoformat() if after else None,
                    "kinds": [k.value for k in kinds] if kinds else None,
                    "users": list(user_ids) if user_ids else None,
                    "matchImplied": match_implied,
                },
            )
            uow.commit()
        self._after_commit()
        return rule

    def find(self, actor: Actor, org: str) -> list[RevocationRule]:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.rules.find(the_org.id)

    @staticmethod
    def _member_id(uow: UnitOfWork, org_id: str, user: str) -> str:
        found = uow.users.by_upn(user) or uow.users.get(user)
        if found is None or uow.users.membership(org_id, found.id) is None:
            raise InvalidInput(f"user {user!r:.80} is not a member of this organization", code="userNotFound")
        return found.id
