"""SCIM 2.0 provisioning state (issue 17): each organization's provisioned users and groups, kept
as the SCIM documents the identity provider wrote, and the organization's SCIM settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Protocol, Self

# The columns a list may be filtered on with equality (``key`` columns hold the casefolded form:
# userName and displayName compare case-insensitively in SCIM, externalId and id exactly).
USER_COLUMNS: Final = frozenset({"id", "user_name_key", "external_id", "display_name_key"})
GROUP_COLUMNS: Final = frozenset({"id", "display_name_key", "external_id"})


@dataclass(frozen=True, slots=True)
class ScimConfig:
    """An organization's SCIM settings: the service principal its provisioning tokens belong to,
    and the group (display name or externalId) whose members are the organization's admins."""

    org_id: str
    principal_id: str | None = None
    admin_group: str | None = None

    def with_changes(self, **changes: object) -> Self:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ScimUserRecord:
    """A provisioned user: the SCIM document (JSON, without ``meta``) and the columns lists are
    filtered on. ``user_id`` is the tokenwarden identity; ``owns_identity`` says this resource
    created it (only then does SCIM rename it); ``admin_by_group`` says the admin group made the
    member an admin (only then does leaving the group demote them)."""

    id: str
    org_id: str
    user_id: str
    user_name_key: str
    external_id: str | None
    display_name_key: str | None
    active: bool
    document: str
    version: int
    created_at: datetime
    updated_at: datetime
    owns_identity: bool = False
    admin_by_group: bool = False

    def with_changes(self, **changes: object) -> Self:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ScimGroupRecord:
    """A provisioned group; its members are kept apart (:meth:`ScimRepository.members`)."""

    id: str
    org_id: str
    display_name_key: str
    external_id: str | None
    document: str
    version: int
    created_at: datetime
    updated_at: datetime

    def with_changes(self, **changes: object) -> Self:
        return replace(self, **changes)  # type: ignore[arg-type]


class ScimRepository(Protocol):
    def config(self, org_id: str) -> ScimConfig | None: ...
    def save_config(self, config: ScimConfig) -> None: ...

    def user(self, org_id: str, scim_id: str) -> ScimUserRecord | None: ...
    def user_of(self, org_id: str, user_id: str) -> ScimUserRecord | None:
        """The resource provisioned for a tokenwarden identity in this organization."""
        ...

    def users(
        self, org_id: str, where: Mapping[str, str], offset: int, limit: int
    ) -> tuple[list[ScimUserRecord], int]:
        """One page of the organization's users matching every ``column == value`` of ``where``
        (columns of :data:`USER_COLUMNS`), oldest first, and the total that match."""
        ...

    def add_user(self, record: ScimUserRecord) -> None: ...
    def update_user(self, record: ScimUserRecord) -> None: ...
    def delete_user(self, org_id: str, scim_id: str) -> bool:
        """Remove the user and their group memberships; True if there was one."""
        ...

    def group(self, org_id: str, scim_id: str) -> ScimGroupRecord | None: ...
    def groups(
        self, org_id: str, where: Mapping[str, str], offset: int, limit: int
    ) -> tuple[list[ScimGroupRecord], int]:
        """Like :meth:`users`, over :data:`GROUP_COLUMNS`."""
        ...

    def add_group(self, record: ScimGroupRecord) -> None: ...
    def update_group(self, record: ScimGroupRecord) -> None: ...
    def delete_group(self, org_id: str, scim_id: str) -> bool: ...

    def members(self, group_id: str) -> list[str]:
        """The group's member user ids (SCIM ids), in the order they were added."""
        ...

    def set_members(self, org_id: str, group_id: str, member_ids: Sequence[str]) -> None:
        """Replace the group's members (SCIM user ids of the same organization)."""
        ...

    def groups_of(self, org_id: str, member_id: str) -> list[ScimGroupRecord]:
        """The groups a user (SCIM id) belongs to."""
        ...
