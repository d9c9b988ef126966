"""SCIM Groups of one organization, and the group that makes its members org admins
(docs/scim.md "Groups and admins"). Members are this organization's provisioned users only; they
are kept beside the group's document, not in it, so a member's removal is one row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Final

import scim2_models as scim
from pydantic import ValidationError

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.events import EventType
from tokenwarden.domain.principals import Organization, Role
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.ports.scim import ScimConfig, ScimGroupRecord
from tokenwarden.services.common import Actor, audit, new_id, publish, reading
from tokenwarden.services.scim.documents import (
    MAX_COUNT,
    ScimAnswer,
    check_if_match,
    dump,
    etag,
    list_response,
    load,
    meta,
    page,
    read,
    split,
    stored,
    validation_failure,
    where_of,
)
from tokenwarden.services.scim.models import PROVIDER, Group, comparison_key

GROUP_FILTERS: Final = {
    "displayname": ("display_name_key", True),
    "externalid": ("external_id", False),
    "id": ("id", False),
}
PATCH_GROUP: Final[Any] = scim.PatchOp.__class_getitem__(Group)
MAX_MEMBERS: Final = 50_000


def is_admin_group(config: ScimConfig | None, record: ScimGroupRecord) -> bool:
    """Does the organization's configured admin group name this group (display name, compared
    case-insensitively, or externalId exactly)?"""
    if config is None or not config.admin_group:
        return False
    return comparison_key(config.admin_group) == record.display_name_key or (
        record.external_id is not None and config.admin_group == record.external_id
    )


def sync_admins(
    uow: UnitOfWork, clock: Clock, actor: Actor, org: Organization, scim_ids: Iterable[str]
) -> None:
    """Make the role of each provisioned user follow the admin group: a member of it becomes an
    admin (remembered as appointed by the group); one the group appointed and no longer lists is
    demoted at once. Admins appointed by hand are never demoted here."""
    config = uow.scim.config(org.id)
    admin_groups = _admin_groups(uow, org, config)
    admin_members = {m for gid in admin_groups for m in uow.scim.members(gid)}
    for scim_id in dict.fromkeys(scim_ids):
        record = uow.scim.user(org.id, scim_id)
        if record is None:
            continue
        membership = uow.users.membership(org.id, record.user_id)
        if membership is None:
            continue
        wanted = scim_id in admin_members
        if wanted and membership.role is not Role.ADMIN:
            role, by_group = Role.ADMIN, True
        elif not wanted and record.admin_by_group:
            role, by_group = (Role.MEMBER if membership.role is Role.ADMIN else membership.role), False
        else:
            continue
        uow.scim.update_user(replace(record, admin_by_group=by_group))
        if role is membership.role:
            continue
        uow.users.set_membership(membership.with_changes(role=role))
        publish(uow, EventType.MEMBERSHIP_CHANGED, user_id=record.user_id, org_id=org.id)
        audit(
            uow,
            clock,
            actor,
            AuditEventType.MEMBERSHIP_CHANGE,
            org_id=org.id,
            target_type="user",
            target_id=record.user_id,
            details={
                "role": role.value,
                "via": "scim admin group",
                "adminGroup": config.admin_group if config else None,
            },
        )


def _admin_groups(uow: UnitOfWork, org: Organization, config: ScimConfig | None) -> list[str]:
    """The ids of the groups the configured admin group names: two indexed lookups (display
    name, externalId), never a scan of the organization's groups."""
    if config is None or not config.admin_group:
        return []
    found: dict[str, None] = {}
    for column, value in (
        ("display_name_key", comparison_key(config.admin_group)),
        ("external_id", config.admin_group),
    ):
        offset = 0
        while True:
            records, total = uow.scim.groups(org.id, {column: value}, offset, MAX_COUNT)
            found.update((r.id, None) for r in records if is_admin_group(config, r))
            offset += len(records)
            if not records or offset >= total:
                break
    return list(found)


class ScimGroups:
    """The ``/Groups`` endpoint of an organization's SCIM service."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    # ------------------------------------------------------------------ read
    def get(
        self, org: Organization, scim_id: str, base: str, attributes: str | None, excluded: str | None
    ) -> ScimAnswer:
        with reading(self._uow) as uow:
            record = self._record(uow, org, scim_id)
            resource = self._resource(uow, record, base)
        body = dump(resource, scim.Context.RESOURCE_QUERY_RESPONSE, split(attributes), split(excluded))
        return ScimAnswer(body, etag=etag(record.version))

    def search(
        self,
        org: Organization,
        base: str,
        filter_text: str | None,
        start_index: int | None,
        count: int | None,
        attributes: str | None = None,
        excluded: str | None = None,
    ) -> ScimAnswer:
        start, size = page(start_index, count)
        where = where_of(Group, filter_text, GROUP_FILTERS)
        with reading(self._uow) as uow:
            records, total = uow.scim.groups(org.id, where, start - 1, size)
            resources = [self._resource(uow, r, base) for r in records]
        return ScimAnswer(list_response(resources, total, start, attributes, excluded))

    # ------------------------------------------------------------------ write
    def create(self, actor: Actor, org: Organization, body: Any, base: str) -> ScimAnswer:
        resource: Any = read(Group, body, scim.Context.RESOURCE_CREATION_REQUEST)
        if not resource.display_name:
            raise scim.InvalidValueException(detail="displayName is required")
        now = self._clock.now()
        with self._uow() as uow:
            key = comparison_key(resource.display_name)
            if uow.scim.groups(org.id, {"display_name_key": key}, 0, 1)[1]:
                raise _taken(resource.display_name)
            members = self._members(uow, org, resource)
            record = ScimGroupRecord(
                id=new_id(),
                org_id=org.id,
                display_name_key=key,
                external_id=resource.external_id,
                document=_document(resource),
                version=1,
                created_at=now,
                updated_at=now,
            )
            uow.scim.add_group(record)
            uow.scim.set_members(org.id, record.id, members)
            sync_admins(uow, self._clock, actor, org, members)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.SCIM_GROUP_CREATE,
                org_id=org.id,
                target_type="scimGroup",
                target_id=record.id,
                details={"displayName": resource.display_name, "members": len(members)},
            )
            answer = self._answer(uow, record, base, status=201)
            uow.commit()
        return answer

    def replace(
        self, actor: Actor, org: Organization, scim_id: str, body: Any, base: str, if_match: str | None
    ) -> ScimAnswer:
        new: Any = read(Group, body, scim.Context.RESOURCE_REPLACEMENT_REQUEST)

        def change(current: Any) -> Any:
            with PROVIDER:
                new.replace(current)
            return new

        return self._update(actor, org, scim_id, base, if_match, change, AuditEventType.SCIM_GROUP_REPLACE)

    def patch(
        self, actor: Actor, org: Organization, scim_id: str, body: Any, base: str, if_match: str | None
    ) -> ScimAnswer:
        operations: Any = read(PATCH_GROUP, body, scim.Context.RESOURCE_PATCH_REQUEST)

        def change(current: Any) -> Any:
            try:
                with PROVIDER:
                    operations.patch(current)
                return current
            except ValidationError as exc:
                raise validation_failure(exc) from None

        return self._update(actor, org, scim_id, base, if_match, change, AuditEventType.SCIM_GROUP_PATCH)

    def delete(self, actor: Actor, org: Organization, scim_id: str, if_match: str | None) -> None:
        with self._uow() as uow:
            record = self._record(uow, org, scim_id)
            check_if_match(record.version, if_match)
            members = uow.scim.members(record.id)
            uow.scim.delete_group(org.id, record.id)
            sync_admins(uow, self._clock, actor, org, members)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.SCIM_GROUP_DELETE,
                org_id=org.id,
                target_type="scimGroup",
                target_id=record.id,
                details={"members": len(members)},
            )
            uow.commit()

    def _update(
        self,
        actor: Actor,
        org: Organization,
        scim_id: str,
        base: str,
        if_match: str | None,
        change: Callable[[Any], Any],
        event: str,
    ) -> ScimAnswer:
        with self._uow() as uow:
            record = self._record(uow, org, scim_id)
            check_if_match(record.version, if_match)
            before = uow.scim.members(record.id)
            updated = change(self._resource(uow, record, base))
            if not updated.display_name:
                raise scim.InvalidValueException(detail="displayName is required")
            key = comparison_key(updated.display_name)
            if key != record.display_name_key and uow.scim.groups(org.id, {"display_name_key": key}, 0, 1)[1]:
                raise _taken(updated.display_name)
            members = self._members(uow, org, updated)
            new_record = replace(
                record,
                display_name_key=key,
                external_id=updated.external_id,
                document=_document(updated),
                version=record.version + 1,
                updated_at=self._clock.now(),
            )
            uow.scim.update_group(new_record)
            uow.scim.set_members(org.id, record.id, members)
            sync_admins(uow, self._clock, actor, org, [*before, *members])
            added = len(set(members) - set(before))
            removed = len(set(before) - set(members))
            audit(
                uow,
                self._clock,
                actor,
                event,
                org_id=org.id,
                target_type="scimGroup",
                target_id=record.id,
                details={
                    "displayName": updated.display_name,
                    "membersAdded": added,
                    "membersRemoved": removed,
                },
            )
            answer = self._answer(uow, new_record, base)
            uow.commit()
        return answer

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _members(uow: UnitOfWork, org: Organization, resource: Any) -> list[str]:
        """The member ids of a written group: users of this organization only (no nested groups,
        nothing of another organization: both are ``invalidValue`` naming the value)."""
        members = resource.members or []
        if len(members) > MAX_MEMBERS:
            raise scim.InvalidValueException(detail=f"a group holds at most {MAX_MEMBERS} members")
        ids: list[str] = []
        for member in members:
            value = member.value
            if not value:
                raise scim.InvalidValueException(detail="a member needs a value (the user's id)")
            if member.type is not None and str(member.type).lower() not in ("user",):
                raise scim.InvalidValueException(detail=f"member {value!r:.80}: only users can be members")
            if uow.scim.user(org.id, value) is None:
                raise scim.InvalidValueException(
                    detail=f"member {value!r:.80} is not a user of this organization"
                )
            ids.append(value)
        return list(dict.fromkeys(ids))

    @staticmethod
    def _record(uow: UnitOfWork, org: Organization, scim_id: str) -> ScimGroupRecord:
        record = uow.scim.group(org.id, scim_id)
        if record is None:
            raise scim.NotFoundException(detail=f"no group {scim_id!r:.80} in this organization")
        return record

    @staticmethod
    def _resource(uow: UnitOfWork, record: ScimGroupRecord, base: str) -> Any:
        """The group as stored, its members those still provisioned (with the ``display`` the
        provider wrote)."""
        shown = {m.get("value"): m.get("display") for m in json.loads(record.document).get("members") or []}
        members = []
        for m in uow.scim.members(record.id):
            member = {"value": m, "$ref": f"{base}/Users/{m}", "type": "User"}
            if shown.get(m):
                member["display"] = shown[m]
            members.append(member)
        extra: dict[str, Any] = {
            "id": record.id,
            "meta": meta(
                "Group", record.created_at, record.updated_at, record.version, f"{base}/Groups/{record.id}"
            ),
        }
        extra["members"] = members or None  # the document's own list only carries displays
        return load(Group, record.document, extra)

    def _answer(self, uow: UnitOfWork, record: ScimGroupRecord, base: str, status: int = 200) -> ScimAnswer:
        body = dump(self._resource(uow, record, base), scim.Context.RESOURCE_QUERY_RESPONSE)
        return ScimAnswer(body, status, etag(record.version), f"{base}/Groups/{record.id}")


def _document(resource: Any) -> str:
    """The stored group: its document, and each member's ``display`` (the member set itself is
    kept in the membership table, which user deletion updates)."""
    doc = json.loads(stored(resource))
    doc["members"] = [{"value": m.value, "display": m.display} for m in resource.members or [] if m.display]
    if not doc["members"]:
        del doc["members"]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _taken(display_name: str) -> scim.SCIMException:
    return scim.UniquenessException(detail=f"a group with displayName {display_name!r:.80} exists")
