"""Organizations, users, memberships and invitations in memory."""

from __future__ import annotations

from collections.abc import Sequence

from tokenwarden.adapters.memory._base import _Repo, _set
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.principals import (
    Invitation,
    Membership,
    Organization,
    User,
    UserStatus,
    normalize_upn,
)


class MemoryOrgRepository(_Repo):
    def add(self, org: Organization) -> None:
        if org.id in self.s.orgs or self.by_name(org.name) is not None:
            raise Conflict(f"organization {org.name!r} exists")
        _set(self.s.orgs, org.id, org, self.j)

    def get(self, org_id: str) -> Organization | None:
        return self.s.orgs.get(org_id)

    def by_name(self, name: str) -> Organization | None:
        key = name.casefold()
        return next((o for o in self.s.orgs.values() if o.name.casefold() == key), None)

    def all(self) -> list[Organization]:
        return sorted(self.s.orgs.values(), key=lambda o: o.name.casefold())


class MemoryUserRepository(_Repo):
    def add(self, user: User) -> None:
        if user.id in self.s.users or self.by_upn(user.upn) is not None:
            raise Conflict(f"user {user.upn!r} exists")
        _set(self.s.users, user.id, user, self.j)

    def get(self, user_id: str) -> User | None:
        return self.s.users.get(user_id)

    def by_upn(self, upn: str) -> User | None:
        key = normalize_upn(upn)
        return next((u for u in self.s.users.values() if normalize_upn(u.upn) == key), None)

    def update(self, user: User) -> None:
        clash = self.by_upn(user.upn)
        if clash is not None and clash.id != user.id:
            raise Conflict(f"user {user.upn!r} exists")
        if user.id in self.s.users:
            _set(self.s.users, user.id, user, self.j)

    def find(self, org_id: str | None = None, status: UserStatus | None = None) -> list[User]:
        found = []
        for u in self.s.users.values():
            if org_id is None:
                if status is None or u.status is status:
                    found.append(u)
                continue
            m = self.s.memberships.get((org_id, u.id))
            if m is not None and (status is None or m.status is status):
                found.append(u)
        return sorted(found, key=lambda u: normalize_upn(u.upn))

    def set_membership(self, membership: Membership) -> None:
        _set(self.s.memberships, (membership.org_id, membership.user_id), membership, self.j)

    def remove_membership(self, org_id: str, user_id: str) -> bool:
        old = self.s.memberships.pop((org_id, user_id), None)
        if old is None:
            return False
        self.j.append(lambda: self.s.memberships.__setitem__((org_id, user_id), old))
        return True

    def membership(self, org_id: str, user_id: str) -> Membership | None:
        return self.s.memberships.get((org_id, user_id))

    def memberships_of(self, user_id: str) -> list[Membership]:
        return [m for (_, uid), m in self.s.memberships.items() if uid == user_id]

    def count(self) -> int:
        return len(self.s.users)

    def ids_at_risk(self, org_id: str, min_rank_levels: Sequence[str]) -> list[str]:
        return [
            u.id
            for u in self.find(org_id=org_id)
            if self.s.memberships[(org_id, u.id)].risk_level.value in min_rank_levels
        ]


class MemoryInvitationRepository(_Repo):
    def add(self, invitation: Invitation) -> None:
        if invitation.id in self.s.invitations:
            raise Conflict(f"invitation {invitation.id} exists")
        _set(self.s.invitations, invitation.id, invitation, self.j)

    def get(self, invitation_id: str) -> Invitation | None:
        return self.s.invitations.get(invitation_id)

    def update(self, invitation: Invitation) -> None:
        if invitation.id in self.s.invitations:
            _set(self.s.invitations, invitation.id, invitation, self.j)

    def find(self, *, org_id: str | None = None, user_id: str | None = None) -> list[Invitation]:
        found = [
            i
            for i in self.s.invitations.values()
            if (org_id is None or i.org_id == org_id) and (user_id is None or i.user_id == user_id)
        ]
        return sorted(found, key=lambda i: (i.created_at, i.id))
