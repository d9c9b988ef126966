"""SCIM provisioning state in memory (issue 17)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from tokenwarden.adapters.memory._base import _Repo, _set
from tokenwarden.domain.errors import Conflict
from tokenwarden.ports.scim import (
    GROUP_COLUMNS,
    USER_COLUMNS,
    ScimConfig,
    ScimGroupRecord,
    ScimUserRecord,
)

R = TypeVar("R", ScimUserRecord, ScimGroupRecord)


def _page(
    records: list[R], allowed: frozenset[str], where: Mapping[str, str], offset: int, limit: int
) -> tuple[list[R], int]:
    unknown = set(where) - allowed
    if unknown:
        raise ValueError(f"not a filterable column: {sorted(unknown)}")
    found = sorted(
        (r for r in records if all(getattr(r, k) == v for k, v in where.items())),
        key=lambda r: (r.created_at, r.id),
    )
    return (found[offset : offset + limit] if limit > 0 else []), len(found)


class MemoryScimRepository(_Repo):
    def config(self, org_id: str) -> ScimConfig | None:
        return self.s.scim_config.get(org_id)

    def save_config(self, config: ScimConfig) -> None:
        _set(self.s.scim_config, config.org_id, config, self.j)

    def user(self, org_id: str, scim_id: str) -> ScimUserRecord | None:
        r = self.s.scim_users.get(scim_id)
        return r if r is not None and r.org_id == org_id else None

    def user_of(self, org_id: str, user_id: str) -> ScimUserRecord | None:
        return next(
            (r for r in self.s.scim_users.values() if r.org_id == org_id and r.user_id == user_id), None
        )

    def users(
        self, org_id: str, where: Mapping[str, str], offset: int, limit: int
    ) -> tuple[list[ScimUserRecord], int]:
        mine = [r for r in self.s.scim_users.values() if r.org_id == org_id]
        return _page(mine, USER_COLUMNS, where, offset, limit)

    def _check_user(self, record: ScimUserRecord) -> None:  # the SQL unique indexes
        for r in self.s.scim_users.values():
            same_org = r.id != record.id and r.org_id == record.org_id
            if same_org and (r.user_name_key == record.user_name_key or r.user_id == record.user_id):
                raise Conflict("a SCIM user with this userName exists", code="duplicate")

    def add_user(self, record: ScimUserRecord) -> None:
        self._check_user(record)
        _set(self.s.scim_users, record.id, record, self.j)

    def update_user(self, record: ScimUserRecord) -> None:
        if self.user(record.org_id, record.id) is not None:
            self._check_user(record)
            _set(self.s.scim_users, record.id, record, self.j)

    def delete_user(self, org_id: str, scim_id: str) -> bool:
        if self.user(org_id, scim_id) is None:
            return False
        for group_id, members in list(self.s.scim_members.items()):
            if scim_id in members:
                _set(self.s.scim_members, group_id, [m for m in members if m != scim_id], self.j)
        _set(self.s.scim_users, scim_id, self.s.scim_users[scim_id], self.j)  # journal the old value
        del self.s.scim_users[scim_id]
        return True

    def group(self, org_id: str, scim_id: str) -> ScimGroupRecord | None:
        r = self.s.scim_groups.get(scim_id)
        return r if r is not None and r.org_id == org_id else None

    def groups(
        self, org_id: str, where: Mapping[str, str], offset: int, limit: int
    ) -> tuple[list[ScimGroupRecord], int]:
        mine = [r for r in self.s.scim_groups.values() if r.org_id == org_id]
        return _page(mine, GROUP_COLUMNS, where, offset, limit)

    def _check_group(self, record: ScimGroupRecord) -> None:
        for r in self.s.scim_groups.values():
            if (
                r.id != record.id
                and r.org_id == record.org_id
                and r.display_name_key == record.display_name_key
            ):
                raise Conflict("a SCIM group with this displayName exists", code="duplicate")

    def add_group(self, record: ScimGroupRecord) -> None:
        self._check_group(record)
        _set(self.s.scim_groups, record.id, record, self.j)

    def update_group(self, record: ScimGroupRecord) -> None:
        if self.group(record.org_id, record.id) is not None:
            self._check_group(record)
            _set(self.s.scim_groups, record.id, record, self.j)

    def delete_group(self, org_id: str, scim_id: str) -> bool:
        if self.group(org_id, scim_id) is None:
            return False
        if scim_id in self.s.scim_members:
            _set(self.s.scim_members, scim_id, self.s.scim_members[scim_id], self.j)
            del self.s.scim_members[scim_id]
        _set(self.s.scim_groups, scim_id, self.s.scim_groups[scim_id], self.j)
        del self.s.scim_groups[scim_id]
        return True

    def members(self, group_id: str) -> list[str]:
        return list(self.s.scim_members.get(group_id, []))

    def set_members(self, org_id: str, group_id: str, member_ids: Sequence[str]) -> None:
        _set(self.s.scim_members, group_id, list(dict.fromkeys(member_ids)), self.j)

    def groups_of(self, org_id: str, member_id: str) -> list[ScimGroupRecord]:
        found = [
            g
            for g in self.s.scim_groups.values()
            if g.org_id == org_id and member_id in self.s.scim_members.get(g.id, [])
        ]
        return sorted(found, key=lambda g: (g.created_at, g.id))
