"""Revocation rules: revoke by scope and issue date without a loop over tokens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, ensure_utc
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.events import EventType
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_org, new_id, publish, require_admin


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
        self, actor: Actor, org: str, scopes: str | None, created_before: datetime | None = None
    ) -> RevocationRule:
        """Every token of ``org`` issued before ``created_before`` (default now) that carries one
        of ``scopes`` literally stops working."""
        if not scopes or not scopes.strip():
            raise InvalidInput("scopes is required", code="invalidScope")
        parsed = self._catalog.parse(scopes)
        now = self._clock.now()
        cutoff = ensure_utc(created_before) if created_before is not None else now
        if cutoff > now:
            raise InvalidInput("createdBefore must not be in the future", code="invalidCreatedBefore")
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            rule = RevocationRule(
                id=new_id(),
                org_id=the_org.id,
                scopes=parsed,
                created_before=cutoff,
                created_at=now,
                created_by=actor.user_id,
            )
            uow.rules.add(rule)
            publish(uow, EventType.RULE_ADDED, rule_id=rule.id, org_id=the_org.id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.REVOCATION_RULE_CREATE,
                org_id=the_org.id,
                target_type="revocationRule",
                target_id=rule.id,
                details={"scopes": " ".join(parsed), "createdBefore": cutoff.isoformat()},
            )
            uow.commit()
        self._after_commit()
        return rule
