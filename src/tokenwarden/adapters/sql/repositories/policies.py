"""Organization policies."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from tokenwarden.adapters.sql import tables as t
from tokenwarden.domain.policies import DEFAULT_WARNING_DAYS, OrgPolicy


class SqlPolicyRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def get(self, org_id: str) -> OrgPolicy | None:
        row = self._c.execute(select(t.org_policies).where(t.org_policies.c.org_id == org_id)).first()
        if row is None:
            return None
        return OrgPolicy(
            org_id=row.org_id,
            break_glass_two_person=row.break_glass_two_person,
            break_glass_approval_minutes=row.break_glass_approval_minutes,
            max_lifetime_days=row.max_lifetime_days,
            restrict_full_scope=row.restrict_full_scope,
            restrict_creation=row.restrict_creation,
            creation_allowlist=tuple(row.creation_allowlist),
            require_external_identity=row.require_external_identity,
            disable_pat_creation=row.disable_pat_creation,
            expiry_warning_days=(
                tuple(row.expiry_warning_days) if row.expiry_warning_days else DEFAULT_WARNING_DAYS
            ),
            dormant_revoke_days=row.dormant_revoke_days,
            security_contact=row.security_contact,
            admins_require_mfa=bool(row.admins_require_mfa),
        )

    def save(self, policy: OrgPolicy) -> None:
        values: dict[str, Any] = {
            "max_lifetime_days": policy.max_lifetime_days,
            "restrict_full_scope": policy.restrict_full_scope,
            "restrict_creation": policy.restrict_creation,
            "creation_allowlist": list(policy.creation_allowlist),
            "require_external_identity": policy.require_external_identity,
            "disable_pat_creation": policy.disable_pat_creation,
            "break_glass_two_person": policy.break_glass_two_person,
            "break_glass_approval_minutes": policy.break_glass_approval_minutes,
            "expiry_warning_days": list(policy.expiry_warning_days),
            "dormant_revoke_days": policy.dormant_revoke_days,
            "security_contact": policy.security_contact,
            "admins_require_mfa": policy.admins_require_mfa,
        }
        changed = self._c.execute(
            update(t.org_policies).where(t.org_policies.c.org_id == policy.org_id).values(**values)
        ).rowcount
        if not changed:
            self._c.execute(insert(t.org_policies).values(org_id=policy.org_id, **values))
