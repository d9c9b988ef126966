"""SCIM provisioning state in SQL (issue 17)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, Table, delete, func, insert, select, update

from tokenwarden.adapters.sql import tables as t
from tokenwarden.ports.scim import (
    GROUP_COLUMNS,
    USER_COLUMNS,
    ScimConfig,
    ScimGroupRecord,
    ScimUserRecord,
)


def _user(r: Row[Any]) -> ScimUserRecord:
    return ScimUserRecord(
        id=r.id,
        org_id=r.org_id,
        user_id=r.user_id,
        user_name_key=r.user_name_key,
        external_id=r.external_id,
        display_name_key=r.display_name_key,
        active=bool(r.active),
        document=r.document,
        version=int(r.version),
        created_at=r.created_at,
        updated_at=r.updated_at,
        owns_identity=bool(r.owns_identity),
        admin_by_group=bool(r.admin_by_group),
    )


def _group(r: Row[Any]) -> ScimGroupRecord:
    return ScimGroupRecord(
        id=r.id,
        org_id=r.org_id,
        display_name_key=r.display_name_key,
        external_id=r.external_id,
        document=r.document,
        version=int(r.version),
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _user_values(record: ScimUserRecord) -> dict[str, Any]:
    return {
        "org_id": record.org_id,
        "user_id": record.user_id,
        "user_name_key": record.user_name_key,
        "external_id": record.external_id,
        "display_name_key": record.display_name_key,
        "active": record.active,
        "document": record.document,
        "version": record.version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "owns_identity": record.owns_identity,
        "admin_by_group": record.admin_by_group,
    }


def _group_values(record: ScimGroupRecord) -> dict[str, Any]:
    return {
        "org_id": record.org_id,
        "display_name_key": record.display_name_key,
        "external_id": record.external_id,
        "document": record.document,
        "version": record.version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


class SqlScimRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def config(self, org_id: str) -> ScimConfig | None:
        r = self._c.execute(select(t.scim_config).where(t.scim_config.c.org_id == org_id)).first()
        return None if r is None else ScimConfig(r.org_id, r.principal_id, r.admin_group)

    def save_config(self, config: ScimConfig) -> None:
        values = {"principal_id": config.principal_id, "admin_group": config.admin_group}
        done = self._c.execute(
            update(t.scim_config).where(t.scim_config.c.org_id == config.org_id).values(**values)
        )
        if not done.rowcount:
            self._c.execute(insert(t.scim_config).values(org_id=config.org_id, **values))

    # ------------------------------------------------------------------ users
    def user(self, org_id: str, scim_id: str) -> ScimUserRecord | None:
        c = t.scim_users.c
        r = self._c.execute(select(t.scim_users).where(c.org_id == org_id, c.id == scim_id)).first()
        return None if r is None else _user(r)

    def user_of(self, org_id: str, user_id: str) -> ScimUserRecord | None:
        c = t.scim_users.c
        r = self._c.execute(select(t.scim_users).where(c.org_id == org_id, c.user_id == user_id)).first()
        return None if r is None else _user(r)

    def users(
        self, org_id: str, where: Mapping[str, str], offset: int, limit: int
    ) -> tuple[list[ScimUserRecord], int]:
        rows, total = self._page(t.scim_users, USER_COLUMNS, org_id, where, offset, limit)
        return [_user(r) for r in rows], total

    def add_user(self, record: ScimUserRecord) -> None:
        self._c.execute(insert(t.scim_users).values(id=record.id, **_user_values(record)))

    def update_user(self, record: ScimUserRecord) -> None:
        c = t.scim_users.c
        self._c.execute(
            update(t.scim_users)
            .where(c.org_id == record.org_id, c.id == record.id)
            .values(**_user_values(record))
        )

    def delete_user(self, org_id: str, scim_id: str) -> bool:
        m = t.scim_group_members.c
        self._c.execute(delete(t.scim_group_members).where(m.org_id == org_id, m.member_id == scim_id))
        c = t.scim_users.c
        return bool(self._c.execute(delete(t.scim_users).where(c.org_id == org_id, c.id == scim_id)).rowcount)

    # ------------------------------------------------------------------ groups
    def group(self, org_id: str, scim_id: str) -> ScimGroupRecord | None:
        c = t.scim_groups.c
        r = self._c.execute(select(t.scim_groups).where(c.org_id == org_id, c.id == scim_id)).first()
        return None if r is None else _group(r)

    def groups(
        self, org_id: str, where: Mapping[str, str], offset: int, limit: int
    ) -> tuple[list[ScimGroupRecord], int]:
        rows, total = self._page(t.scim_groups, GROUP_COLUMNS, org_id, where, offset, limit)
        return [_group(r) for r in rows], total

    def add_group(self, record: ScimGroupRecord) -> None:
        self._c.execute(insert(t.scim_groups).values(id=record.id, **_group_values(record)))

    def update_group(self, record: ScimGroupRecord) -> None:
        c = t.scim_groups.c
        self._c.execute(
            update(t.scim_groups)
            .where(c.org_id == record.org_id, c.id == record.id)
            .values(**_group_values(record))
        )

    def delete_group(self, org_id: str, scim_id: str) -> bool:
        m = t.scim_group_members.c
        self._c.execute(delete(t.scim_group_members).where(m.org_id == org_id, m.group_id == scim_id))
        c = t.scim_groups.c
        return bool(
            self._c.execute(delete(t.scim_groups).where(c.org_id == org_id, c.id == scim_id)).rowcount
        )

    def members(self, group_id: str) -> list[str]:
        m = t.scim_group_members.c
        q = select(m.member_id).where(m.group_id == group_id).order_by(m.position)
        return [r.member_id for r in self._c.execute(q)]

    def set_members(self, org_id: str, group_id: str, member_ids: Sequence[str]) -> None:
        m = t.scim_group_members.c
        self._c.execute(delete(t.scim_group_members).where(m.group_id == group_id))
        if member_ids:
            self._c.execute(
                insert(t.scim_group_members),
                [
                    {"group_id": group_id, "member_id": mid, "org_id": org_id, "position": i}
                    for i, mid in enumerate(dict.fromkeys(member_ids))
                ],
            )

    def groups_of(self, org_id: str, member_id: str) -> list[ScimGroupRecord]:
        m, g = t.scim_group_members.c, t.scim_groups.c
        q = (
            select(t.scim_groups)
            .join(t.scim_group_members, m.group_id == g.id)
            .where(m.org_id == org_id, m.member_id == member_id, g.org_id == org_id)
            .order_by(g.created_at, g.id)
        )
        return [_group(r) for r in self._c.execute(q)]

    def _page(
        self,
        table: Table,
        allowed: frozenset[str],
        org_id: str,
        where: Mapping[str, str],
        offset: int,
        limit: int,
    ) -> tuple[list[Row[Any]], int]:
        unknown = set(where) - allowed
        if unknown:
            raise ValueError(f"not a filterable column: {sorted(unknown)}")
        conditions = [table.c.org_id == org_id, *(table.c[k] == v for k, v in where.items())]
        total = int(self._c.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one())
        if limit <= 0 or offset >= total:
            return [], total
        q = (
            select(table)
            .where(*conditions)
            .order_by(table.c.created_at, table.c.id)
            .offset(offset)
            .limit(limit)
        )
        return list(self._c.execute(q)), total
