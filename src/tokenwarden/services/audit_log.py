"""Reading the audit log (org admins)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from typing import Any

from tokenwarden.domain.audit import AuditEntry, AuditEventType
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.spreadsheet import safe_cell
from tokenwarden.ports.repositories import AuditQuery, UnitOfWorkFactory
from tokenwarden.services.common import Actor, get_org, reading, require_admin

MAX_LIMIT = 10_000
AUDIT_COLUMNS = (
    "id",
    "at",
    "eventType",
    "orgId",
    "actorId",
    "actorUpn",
    "targetType",
    "targetId",
    "ip",
    "details",
)


def audit_row(entry: AuditEntry) -> dict[str, Any]:
    """The wire/CLI shape of an audit entry (camelCase, UTC with Z)."""
    return {
        "id": entry.id,
        "at": iso_z(entry.at),
        "eventType": entry.event_type,
        "orgId": entry.org_id,
        "actorId": entry.actor_id,
        "actorUpn": entry.actor_upn,
        "targetType": entry.target_type,
        "targetId": entry.target_id,
        "ip": entry.ip,
        "details": entry.details,
    }


def audit_csv(rows: list[dict[str, Any]]) -> str:
    """CSV export; ``details`` is a JSON object in one column; formula cells are neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(AUDIT_COLUMNS)
    for row in rows:
        cells = (json.dumps(row[c], sort_keys=True) if c == "details" else row[c] for c in AUDIT_COLUMNS)
        writer.writerow([safe_cell(cell) for cell in cells])
    return out.getvalue()


EVENT_TYPES = tuple(e.value for e in AuditEventType)
FORMATS = ("json", "csv")


def check_event_types(event_types: tuple[str, ...]) -> None:
    """An unknown event type is an error naming the valid ones (not a silently empty answer)."""
    unknown = [e for e in event_types if e not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            f"unknown event type {unknown[0]!r:.80}; valid event types: {', '.join(EVENT_TYPES)}",
            code="invalidEventType",
        )


def check_format(value: str) -> None:
    if value not in FORMATS:
        raise InvalidInput(
            f"unknown format {value!r:.20}; valid formats: {', '.join(FORMATS)}", code="invalidFormat"
        )


class AuditService:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    def query(self, actor: Actor, org: str, query: AuditQuery) -> list[AuditEntry]:
        """Entries of ``org`` matching ``query``, newest first (page on with ``before_id`` = the
        last id seen); ``actor`` may be a UPN or id in the filter."""
        if not 1 <= query.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
        check_event_types(query.event_types)
        if query.since and query.until and query.since >= query.until:
            raise InvalidInput("'since' must be before 'until'")
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            actor_id = query.actor_id
            if actor_id is not None:
                found = uow.users.by_upn(actor_id)
                actor_id = found.id if found else actor_id
            return uow.audit.query(replace(query, org_id=the_org.id, actor_id=actor_id, newest_first=True))

    def query_with_names(
        self, actor: Actor, org: str, query: AuditQuery
    ) -> tuple[list[AuditEntry], dict[str, str]]:
        """``query`` plus the display names of the entries' actors (by user id), for
        projections that show who acted (the Azure DevOps audit log)."""
        entries = self.query(actor, org, query)
        names: dict[str, str] = {}
        with reading(self._uow) as uow:
            for user_id in {e.actor_id for e in entries if e.actor_id}:
                user = uow.users.get(user_id)
                if user is not None:
                    names[user_id] = user.display_name
        return entries, names
