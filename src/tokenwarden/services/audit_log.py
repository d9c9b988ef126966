"""Reading the audit log (org admins)."""

from __future__ import annotations

from dataclasses import replace

from tokenwarden.domain.audit import AuditEntry
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.ports.repositories import AuditQuery, UnitOfWorkFactory
from tokenwarden.services.common import Actor, get_org, require_admin

MAX_LIMIT = 10_000


class AuditService:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    def query(self, actor: Actor, org: str, query: AuditQuery) -> list[AuditEntry]:
        """Entries of ``org`` matching ``query``; ``actor`` may be a UPN or id in the filter."""
        if not 1 <= query.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
        if query.since and query.until and query.since >= query.until:
            raise InvalidInput("'since' must be before 'until'")
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            actor_id = query.actor_id
            if actor_id is not None:
                found = uow.users.by_upn(actor_id)
                actor_id = found.id if found else actor_id
            return uow.audit.query(replace(query, org_id=the_org.id, actor_id=actor_id))
