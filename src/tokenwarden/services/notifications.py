"""The outbox seen by administrators: their organization's messages, dead letters, replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import Actor, audit, get_org, reading, require_admin

STATUSES = ("pending", "sending", "sent", "dead")
MAX_REPLAY = 1000


def message_dict(m: OutboxMessage) -> dict[str, Any]:
    """An outbox row for administrators: where it goes and how it stands (not its payload)."""
    return {
        "id": m.id,
        "channel": m.channel,
        "to": m.destination,
        "template": m.template,
        "status": m.status,
        "attempts": m.attempts,
        "createdAt": iso_z(m.created_at),
        "nextAttemptAt": iso_z(m.next_attempt_at) if m.status == "pending" else None,
        "sentAt": iso_z(m.sent_at),
        "lastError": m.last_error,
    }


class NotificationAdmin:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def messages(
        self, actor: Actor, org: str | None, *, status: str | None = None, limit: int = 100
    ) -> list[OutboxMessage]:
        """An organization's messages (the operator may leave ``org`` out: every message)."""
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", code="invalidStatus")
        if not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be between 1 and 10000", code="invalidLimit")
        with reading(self._uow) as uow:
            org_id = self._org_id(uow, actor, org)
            return uow.outbox.find(org_id=org_id, status=status, limit=limit)

    def replay(self, actor: Actor, org: str | None, ids: Sequence[int]) -> list[int]:
        """Dead letters back to pending (due at once); ids of other organizations, or not dead,
        are left alone. Returns the ids replayed."""
        if not ids or len(ids) > MAX_REPLAY:
            raise InvalidInput(f"give 1 to {MAX_REPLAY} message ids", code="invalidReplay")
        now = self._clock.now()
        with self._uow() as uow:
            org_id = self._org_id(uow, actor, org)
            done = []
            for mid in dict.fromkeys(ids):
                m = uow.outbox.get(mid)
                if m is None or (org_id is not None and m.org_id != org_id):
                    continue
                if uow.outbox.replay(mid, now):
                    done.append(mid)
            if done:
                audit(
                    uow,
                    self._clock,
                    actor,
                    AuditEventType.NOTIFICATION_REPLAY,
                    org_id=org_id,
                    target_type="notification",
                    target_id=",".join(map(str, done))[:256],
                    details={"ids": done},
                )
            uow.commit()
        return done

    @staticmethod
    def _org_id(uow: Any, actor: Actor, org: str | None) -> str | None:
        if org is None:
            if not actor.is_operator:
                raise InvalidInput("an organization is required", code="orgRequired")
            return None
        the_org = get_org(uow, org)
        require_admin(uow, actor, the_org.id)
        return the_org.id
