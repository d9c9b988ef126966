"""SCIM Users of one organization: provisioning, reading, replacing, patching and deleting them,
and what each does to the tokenwarden identity and membership behind it (docs/scim.md).

Deactivation (``active`` turning false, or DELETE) offboards the identity in the same transaction
(services/offboarding.py); the credential handover rotations run after the commit."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final, Protocol

import scim2_models as scim
from pydantic import ValidationError

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.events import EventType
from tokenwarden.domain.principals import (
    IdentitySource,
    Membership,
    Organization,
    RiskLevel,
    Role,
    User,
    UserStatus,
    member_subject,
)
from tokenwarden.domain.watermarks import SubjectType
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.ports.scim import ScimUserRecord
from tokenwarden.services.common import Actor, audit, new_id, publish, reading
from tokenwarden.services.scim.documents import (
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
from tokenwarden.services.scim.models import PROVIDER, FullUser, comparison_key

PATCH_USER: Final[Any] = scim.PatchOp.__class_getitem__(FullUser)
# Filterable attributes: the column each is stored in, compared case-insensitively or exactly.
USER_FILTERS: Final = {
    "username": ("user_name_key", True),
    "displayname": ("display_name_key", True),
    "externalid": ("external_id", False),
    "id": ("id", False),
}


class Offboarding(Protocol):
    """What SCIM needs of services/offboarding.py."""

    def offboard_in(
        self,
        uow: UnitOfWork,
        actor: Actor,
        org: Organization,
        user: User,
        successor: User | None,
        *,
        initiated_by: str,
        how: str | None = None,
    ) -> Any: ...

    def choose_successor(
        self, uow: UnitOfWork, org: Organization, leaver: User, given_upn: str | None
    ) -> tuple[User | None, str]: ...

    def complete(self, actor: Actor, plan: Any) -> Any: ...


def upn_for(user_name: str, org: Organization) -> str:
    """The UPN of the identity a ``userName`` names: itself when it has the form name@domain,
    else ``userName@scim.<org>`` (scim2-tester and some IdPs send bare names)."""
    from tokenwarden.services.directory import check_upn  # the one definition of a valid UPN

    candidate = user_name if "@" in user_name else f"{user_name}@scim.{org.name.lower()}"
    try:
        return check_upn(candidate)
    except InvalidInput:
        raise scim.InvalidValueException(
            detail=f"userName {user_name!r:.80} cannot name an identity"
        ) from None


class ScimUsers:
    """The ``/Users`` endpoint of an organization's SCIM service."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, offboarding: Offboarding) -> None:
        self._uow = uow
        self._clock = clock
        self._offboarding = offboarding

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
        where = where_of(FullUser, filter_text, USER_FILTERS)
        with reading(self._uow) as uow:
            records, total = uow.scim.users(org.id, where, start - 1, size)
            resources = [self._resource(uow, r, base) for r in records]
        return ScimAnswer(list_response(resources, total, start, attributes, excluded))

    # ------------------------------------------------------------------ write
    def create(self, actor: Actor, org: Organization, body: Any, base: str) -> ScimAnswer:
        resource: Any = read(FullUser, body, scim.Context.RESOURCE_CREATION_REQUEST)
        if not resource.user_name:
            raise scim.InvalidValueException(detail="userName is required")
        upn = upn_for(resource.user_name, org)
        now = self._clock.now()
        plan = None
        with self._uow() as uow:
            key = comparison_key(resource.user_name)
            if uow.scim.users(org.id, {"user_name_key": key}, 0, 1)[1]:
                raise _taken(resource.user_name)
            identity, owns = self._identity(uow, actor, org, upn, resource)
            record = ScimUserRecord(
                id=new_id(),
                org_id=org.id,
                user_id=identity.id,
                user_name_key=key,
                external_id=resource.external_id,
                display_name_key=comparison_key(resource.display_name) if resource.display_name else None,
                active=resource.active is not False,
                document=stored(resource),
                version=1,
                created_at=now,
                updated_at=now,
                owns_identity=owns,
            )
            uow.scim.add_user(record)
            if resource.active is False:
                plan = self._deactivate(uow, actor, org, identity, resource)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.SCIM_USER_CREATE,
                org_id=org.id,
                target_type="user",
                target_id=identity.id,
                details={"scimId": record.id, "userName": resource.user_name, "active": record.active},
            )
            answer = self._answer(uow, record, base, status=201)
            uow.commit()
        if plan is not None:
            self._offboarding.complete(actor, plan)
        return answer

    def replace(
        self, actor: Actor, org: Organization, scim_id: str, body: Any, base: str, if_match: str | None
    ) -> ScimAnswer:
        """PUT: the body is the whole new resource (Okta's update); read-only attributes sent
        along (``id``, ``meta``, ``groups``) are ignored, immutable ones must not change."""
        new: Any = read(FullUser, body, scim.Context.RESOURCE_REPLACEMENT_REQUEST)

        def change(current: Any) -> Any:
            with PROVIDER:
                new.replace(current)
            return new

        return self._update(actor, org, scim_id, base, if_match, change, AuditEventType.SCIM_USER_REPLACE)

    def patch(
        self, actor: Actor, org: Organization, scim_id: str, body: Any, base: str, if_match: str | None
    ) -> ScimAnswer:
        """PATCH (RFC 7644 §3.5.2): every operation applies or none does."""
        operations: Any = read(PATCH_USER, body, scim.Context.RESOURCE_PATCH_REQUEST)

        def change(current: Any) -> Any:
            try:
                with PROVIDER:
                    operations.patch(current)
                return current
            except ValidationError as exc:
                raise validation_failure(exc) from None

        return self._update(actor, org, scim_id, base, if_match, change, AuditEventType.SCIM_USER_PATCH)

    def delete(self, actor: Actor, org: Organization, scim_id: str, if_match: str | None) -> None:
        """DELETE: the user is offboarded, the membership removed, the resource forgotten. The
        identity itself stays (other organizations, the audit trail)."""
        plan = None
        with self._uow() as uow:
            record = self._record(uow, org, scim_id)
            check_if_match(record.version, if_match)
            identity = uow.users.get(record.user_id)
            membership = uow.users.membership(org.id, record.user_id)
            if identity is not None and membership is not None:
                resource = self._resource(uow, record, "")
                plan = self._deactivate(uow, actor, org, identity, resource)
                uow.users.remove_membership(org.id, identity.id)
                publish(uow, EventType.MEMBERSHIP_CHANGED, user_id=identity.id, org_id=org.id)
            uow.scim.delete_user(org.id, record.id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.SCIM_USER_DELETE,
                org_id=org.id,
                target_type="user",
                target_id=record.user_id,
                details={"scimId": record.id, "membershipRemoved": membership is not None},
            )
            uow.commit()
        if plan is not None:
            self._offboarding.complete(actor, plan)

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
        plan = None
        with self._uow() as uow:
            record = self._record(uow, org, scim_id)
            check_if_match(record.version, if_match)
            updated = change(self._resource(uow, record, base))
            if not updated.user_name:
                raise scim.InvalidValueException(detail="userName is required")
            key = comparison_key(updated.user_name)
            if key != record.user_name_key and uow.scim.users(org.id, {"user_name_key": key}, 0, 1)[1]:
                raise _taken(updated.user_name)
            identity = uow.users.get(record.user_id)
            if identity is None:  # the identity was purged behind SCIM's back
                raise scim.NotFoundException(detail=f"user {scim_id!r:.80} no longer has an identity")
            if record.owns_identity:
                self._rename(uow, org, identity, updated)
            active = updated.active is not False
            new_record = replace(
                record,
                user_name_key=key,
                external_id=updated.external_id,
                display_name_key=comparison_key(updated.display_name) if updated.display_name else None,
                active=active,
                document=stored(updated),
                version=record.version + 1,
                updated_at=self._clock.now(),
            )
            uow.scim.update_user(new_record)
            if record.active and not active:
                plan = self._deactivate(uow, actor, org, identity, updated)
            elif active and not record.active:
                self._reactivate(uow, org, identity)
            audit(
                uow,
                self._clock,
                actor,
                event,
                org_id=org.id,
                target_type="user",
                target_id=identity.id,
                details={
                    "scimId": record.id,
                    "userName": updated.user_name,
                    "active": active,
                    "previouslyActive": record.active,
                },
            )
            answer = self._answer(uow, new_record, base)
            uow.commit()
        if plan is not None:
            self._offboarding.complete(actor, plan)
        return answer

    @staticmethod
    def _rename(uow: UnitOfWork, org: Organization, identity: User, resource: Any) -> None:
        """Follow the provider's renames on an identity this organization's SCIM created — unless
        another organization has since enrolled it: its name and address are then that
        organization's too, and stay (the SCIM resource alone takes the provider's values)."""
        if any(m.org_id != org.id for m in uow.users.memberships_of(identity.id)):
            return
        upn = upn_for(resource.user_name, org)
        if upn.casefold() != identity.upn.casefold():
            other = uow.users.by_upn(upn)
            if other is not None and other.id != identity.id:
                raise scim.UniquenessException(detail=f"{upn} names another identity")
        renamed = replace(
            identity,
            upn=upn,
            display_name=_display_name(resource) or upn,
            email=_primary_email(resource) or identity.email,
        )
        if renamed != identity:
            uow.users.update(renamed)
            publish(uow, EventType.USER_CHANGED, user_id=identity.id)

    @staticmethod
    def _reactivate(uow: UnitOfWork, org: Organization, identity: User) -> None:
        """``active`` back to true: the membership is enabled again (recreated if an admin removed
        it); tokens cut at deactivation stay dead (their watermark is older than them)."""
        membership = uow.users.membership(org.id, identity.id)
        if membership is None:
            uow.users.set_membership(Membership(org.id, identity.id, Role.MEMBER))
            publish(uow, EventType.MEMBERSHIP_CHANGED, user_id=identity.id, org_id=org.id)
        elif membership.status is not UserStatus.ACTIVE:
            uow.users.set_membership(membership.with_changes(status=UserStatus.ACTIVE))
            publish(uow, EventType.USER_CHANGED, user_id=identity.id)

    def _identity(
        self, uow: UnitOfWork, actor: Actor, org: Organization, upn: str, resource: scim.Resource[Any]
    ) -> tuple[User, bool]:
        """The identity a new resource stands for: a new one, or a member of this organization not
        provisioned yet (adopted). Another organization's identity is refused (tenancy rule)."""
        existing = uow.users.by_upn(upn)
        if existing is None:
            user = User(
                id=new_id(),
                upn=upn,
                display_name=_display_name(resource) or upn,
                status=UserStatus.ACTIVE,
                risk_level=RiskLevel.NONE,
                identity_source=IdentitySource.EXTERNAL,
                created_at=self._clock.now(),
                email=_primary_email(resource),
            )
            uow.users.add(user)
            uow.users.set_membership(Membership(org.id, user.id, Role.MEMBER))
            publish(uow, EventType.MEMBERSHIP_CHANGED, user_id=user.id, org_id=org.id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.USER_CREATE,
                org_id=org.id,
                target_type="user",
                target_id=user.id,
                details={
                    "upn": upn,
                    "displayName": user.display_name,
                    "identitySource": "external",
                    "via": "scim",
                },
            )
            return user, True
        membership = uow.users.membership(org.id, existing.id)
        if existing.identity_source is IdentitySource.SERVICE:
            raise scim.UniquenessException(detail=f"{upn} is a service identity: SCIM cannot provision it")
        if membership is None:
            # a former member of *this* organization, cut when it left (its member watermark), and
            # now of none: a rehire. Any other identity is another organization's to share.
            rehire = (
                existing.identity_source is IdentitySource.EXTERNAL
                and not uow.users.memberships_of(existing.id)
                and uow.watermarks.for_subject(SubjectType.MEMBER, member_subject(org.id, existing.id))
            )
            if not rehire:
                raise scim.UniquenessException(
                    detail=f"{upn} is an identity of another organization or a local one: it joins this one "
                    "by accepting an invitation (tokenwarden user add), after which SCIM can provision it"
                )
            self._rejoin(uow, actor, org, existing)
            self._rename(uow, org, existing, resource)  # the provider's current name and address
            return existing, True
        if uow.scim.user_of(org.id, existing.id) is not None:
            raise scim.UniquenessException(detail=f"{upn} is already provisioned")
        return existing, False

    def _rejoin(self, uow: UnitOfWork, actor: Actor, org: Organization, identity: User) -> None:
        """A former member of this organization, now in no organization (SCIM deleted it, a
        rehire), joins it again. Tokens cut when it left stay dead: their watermarks are older."""
        uow.users.set_membership(Membership(org.id, identity.id, Role.MEMBER))
        publish(uow, EventType.MEMBERSHIP_CHANGED, user_id=identity.id, org_id=org.id)
        audit(
            uow,
            self._clock,
            actor,
            AuditEventType.MEMBERSHIP_CHANGE,
            org_id=org.id,
            target_type="user",
            target_id=identity.id,
            details={"role": Role.MEMBER.value, "via": "scim", "rejoined": True},
        )

    def _deactivate(
        self, uow: UnitOfWork, actor: Actor, org: Organization, user: User, resource: scim.Resource[Any]
    ) -> Any:
        """Offboard the user in this transaction; the successor is the enterprise manager when an
        active member, else whoever the offboarding rule picks (the security contact)."""
        successor, how = None, "manager"
        manager = _manager_id(resource)
        if manager:
            record = uow.scim.user(org.id, manager)
            m = uow.users.membership(org.id, record.user_id) if record else None
            if record is not None and m is not None and m.is_active and record.user_id != user.id:
                successor = uow.users.get(record.user_id)
        if successor is None:
            successor, how = self._offboarding.choose_successor(uow, org, user, None)
        return self._offboarding.offboard_in(uow, actor, org, user, successor, initiated_by="scim", how=how)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _record(uow: UnitOfWork, org: Organization, scim_id: str) -> ScimUserRecord:
        record = uow.scim.user(org.id, scim_id)
        if record is None:
            raise scim.NotFoundException(detail=f"no user {scim_id!r:.80} in this organization")
        return record

    def _resource(self, uow: UnitOfWork, record: ScimUserRecord, base: str) -> Any:
        location = f"{base}/Users/{record.id}"
        groups = [
            {
                "value": g.id,
                "$ref": f"{base}/Groups/{g.id}",
                "display": json.loads(g.document).get("displayName"),
            }
            for g in uow.scim.groups_of(record.org_id, record.id)
        ]
        extra: dict[str, Any] = {
            "id": record.id,
            "meta": meta("User", record.created_at, record.updated_at, record.version, location),
        }
        if groups:
            extra["groups"] = groups
        return load(FullUser, record.document, extra)

    def _answer(self, uow: UnitOfWork, record: ScimUserRecord, base: str, status: int = 200) -> ScimAnswer:
        resource = self._resource(uow, record, base)
        body = dump(resource, scim.Context.RESOURCE_QUERY_RESPONSE)
        return ScimAnswer(body, status, etag(record.version), f"{base}/Users/{record.id}")


def _taken(user_name: str) -> scim.SCIMException:
    return scim.UniquenessException(detail=f"a user with userName {user_name!r:.80} exists")


def _display_name(resource: Any) -> str | None:
    if resource.display_name:
        return str(resource.display_name)[:256]
    name = resource.name
    if name is not None:
        if name.formatted:
            return str(name.formatted)[:256]
        parts = [p for p in (name.given_name, name.family_name) if p]
        if parts:
            return " ".join(parts)[:256]
    return None


def _primary_email(resource: Any) -> str | None:
    emails = resource.emails or []
    chosen = next((e for e in emails if e.primary), emails[0] if emails else None)
    value = chosen.value if chosen is not None else None
    return str(value)[:320] if value and "@" in str(value) else None


def _manager_id(resource: Any) -> str | None:
    from tokenwarden.services.scim.models import EnterpriseUser

    try:
        ext = resource[EnterpriseUser]
    except (KeyError, TypeError):
        return None
    manager = ext.manager if ext is not None else None
    return manager.value if manager is not None else None
