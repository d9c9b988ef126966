"""Organizations, users, memberships and invitations."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    Connection,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories._rows import (
    _insert_unique,
    _invitation,
    _invitation_values,
    _membership,
    _membership_values,
    _org,
    _user,
    _user_values,
)
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.principals import (
    Invitation,
    Membership,
    Organization,
    User,
    UserStatus,
    normalize_upn,
)


class SqlOrgRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, org: Organization) -> None:
        values = {
            "id": org.id,
            "name": org.name,
            "name_key": org.name.casefold(),
            "created_at": org.created_at,
        }
        _insert_unique(self._c, t.orgs, values, f"organization {org.name!r} exists")

    def get(self, org_id: str) -> Organization | None:
        row = self._c.execute(select(t.orgs).where(t.orgs.c.id == org_id)).first()
        return _org(row) if row else None

    def by_name(self, name: str) -> Organization | None:
        row = self._c.execute(select(t.orgs).where(t.orgs.c.name_key == name.casefold())).first()
        return _org(row) if row else None

    def all(self) -> list[Organization]:
        return [_org(r) for r in self._c.execute(select(t.orgs).order_by(t.orgs.c.name_key))]


class SqlUserRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, user: User) -> None:
        _insert_unique(self._c, t.users, _user_values(user), f"user {user.upn!r} exists")

    def get(self, user_id: str) -> User | None:
        row = self._c.execute(select(t.users).where(t.users.c.id == user_id)).first()
        return _user(row) if row else None

    def by_upn(self, upn: str) -> User | None:
        row = self._c.execute(select(t.users).where(t.users.c.upn_key == normalize_upn(upn))).first()
        return _user(row) if row else None

    def update(self, user: User) -> None:
        values = _user_values(user)
        del values["id"]
        try:
            with self._c.begin_nested():
                self._c.execute(update(t.users).where(t.users.c.id == user.id).values(**values))
        except IntegrityError as exc:
            raise Conflict(f"user {user.upn!r} exists") from exc

    def find(self, org_id: str | None = None, status: UserStatus | None = None) -> list[User]:
        """Users (of ``org_id``: by their membership status there; else by their own status)."""
        stmt = select(t.users)
        if org_id is not None:
            stmt = stmt.join(t.memberships, t.memberships.c.user_id == t.users.c.id).where(
                t.memberships.c.org_id == org_id
            )
            if status is not None:
                stmt = stmt.where(t.memberships.c.status == status.value)
        elif status is not None:
            stmt = stmt.where(t.users.c.status == status.value)
        return [_user(r) for r in self._c.execute(stmt.order_by(t.users.c.upn_key))]

    def set_membership(self, membership: Membership) -> None:
        m = t.memberships.c
        values = _membership_values(membership)
        changed = self._c.execute(
            update(t.memberships)
            .where(and_(m.org_id == membership.org_id, m.user_id == membership.user_id))
            .values(**values)
        ).rowcount
        if not changed:
            self._c.execute(insert(t.memberships).values(**values))

    def remove_membership(self, org_id: str, user_id: str) -> bool:
        m = t.memberships.c
        result = self._c.execute(delete(t.memberships).where(and_(m.org_id == org_id, m.user_id == user_id)))
        return bool(result.rowcount)

    def membership(self, org_id: str, user_id: str) -> Membership | None:
        m = t.memberships.c
        row = self._c.execute(
            select(t.memberships).where(and_(m.org_id == org_id, m.user_id == user_id))
        ).first()
        return _membership(row) if row else None

    def memberships_of(self, user_id: str) -> list[Membership]:
        rows = self._c.execute(select(t.memberships).where(t.memberships.c.user_id == user_id))
        return [_membership(r) for r in rows]

    def count(self) -> int:
        return int(self._c.execute(select(func.count()).select_from(t.users)).scalar_one())

    def ids_at_risk(self, org_id: str, min_rank_levels: Sequence[str]) -> list[str]:
        stmt = (
            select(t.users.c.id)
            .join(t.memberships, t.memberships.c.user_id == t.users.c.id)
            .where(t.memberships.c.org_id == org_id, t.memberships.c.risk_level.in_(list(min_rank_levels)))
            .order_by(t.users.c.upn_key)
        )
        return [r.id for r in self._c.execute(stmt)]


class SqlInvitationRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, invitation: Invitation) -> None:
        _insert_unique(
            self._c, t.invitations, _invitation_values(invitation), f"invitation {invitation.id} exists"
        )

    def get(self, invitation_id: str) -> Invitation | None:
        row = self._c.execute(select(t.invitations).where(t.invitations.c.id == invitation_id)).first()
        return _invitation(row) if row else None

    def update(self, invitation: Invitation) -> None:
        values = _invitation_values(invitation)
        del values["id"]
        self._c.execute(update(t.invitations).where(t.invitations.c.id == invitation.id).values(**values))

    def find(self, *, org_id: str | None = None, user_id: str | None = None) -> list[Invitation]:
        i = t.invitations.c
        stmt = select(t.invitations)
        if org_id is not None:
            stmt = stmt.where(i.org_id == org_id)
        if user_id is not None:
            stmt = stmt.where(i.user_id == user_id)
        return [_invitation(r) for r in self._c.execute(stmt.order_by(i.created_at, i.id))]
