"""Managed credentials and the rotation journal in memory (issue 13)."""

from __future__ import annotations

from datetime import datetime

from tokenwarden.adapters.memory._base import RotationTables, _discard, _Repo, _set
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.managed import ManagedCredential
from tokenwarden.ports.rotation import RotationRecord


class _RotationRepo(_Repo):
    @property
    def _t(self) -> RotationTables:
        return self.s.rotation_tables


class MemoryManagedCredentialRepository(_RotationRepo):
    def add(self, credential: ManagedCredential, sealed_ado_credential: str | None = None) -> None:
        for other in self._t.credentials.values():
            if other.org_id == credential.org_id and other.name.casefold() == credential.name.casefold():
                raise Conflict(f"a managed credential named {credential.name!r} exists in this organization")
            if other.store == credential.store and other.store_secret_name == credential.store_secret_name:
                raise Conflict(
                    f"the {credential.store} store already holds a managed secret named "
                    f"{credential.store_secret_name!r}: choose another secret name"
                )
        _set(self._t.credentials, credential.id, credential, self.j)
        if sealed_ado_credential is not None:
            _set(self._t.sealed, credential.id, sealed_ado_credential, self.j)

    def get(self, credential_id: str) -> ManagedCredential | None:
        return self._t.credentials.get(credential_id)

    def by_name(self, org_id: str, name: str) -> ManagedCredential | None:
        key = name.casefold()
        return next(
            (c for c in self._t.credentials.values() if c.org_id == org_id and c.name.casefold() == key),
            None,
        )

    def all(self, org_id: str | None = None) -> list[ManagedCredential]:
        found = [c for c in self._t.credentials.values() if org_id is None or c.org_id == org_id]
        return sorted(found, key=lambda c: (c.org_id, c.name.casefold()))

    def by_authorization(self, authorization_id: str) -> list[ManagedCredential]:
        return [c for c in self.all() if c.authorization_id == authorization_id]

    def update(self, credential: ManagedCredential) -> None:
        if credential.id in self._t.credentials:
            _set(self._t.credentials, credential.id, credential, self.j)

    def remove(self, credential_id: str) -> bool:
        old = self._t.credentials.get(credential_id)
        if old is None:
            return False
        self.j.append(lambda: self._t.credentials.__setitem__(credential_id, old))
        _discard(self._t.credentials, credential_id)
        sealed = self._t.sealed.get(credential_id)
        if sealed is not None:
            self.j.append(lambda: self._t.sealed.__setitem__(credential_id, sealed))
            _discard(self._t.sealed, credential_id)
        lease = self._t.leases.get(credential_id)
        if lease is not None:
            self.j.append(lambda: self._t.leases.__setitem__(credential_id, lease))
            _discard(self._t.leases, credential_id)
        return True

    def sealed_ado_credential(self, credential_id: str) -> str | None:
        return self._t.sealed.get(credential_id)

    def try_lease(self, credential_id: str, holder: str, now: datetime, until: datetime) -> bool:
        if credential_id not in self._t.credentials:
            return False
        cur = self._t.leases.get(credential_id)
        if cur is not None and cur[1] >= now:
            return False
        _set(self._t.leases, credential_id, (holder, until), self.j)
        return True

    def renew(self, credential_id: str, holder: str, until: datetime) -> bool:
        cur = self._t.leases.get(credential_id)
        if cur is None or cur[0] != holder or credential_id not in self._t.credentials:
            return False
        _set(self._t.leases, credential_id, (holder, until), self.j)
        return True

    def release(self, credential_id: str, holder: str) -> None:
        cur = self._t.leases.get(credential_id)
        if cur is not None and cur[0] == holder:
            self.j.append(lambda: self._t.leases.__setitem__(credential_id, cur))
            _discard(self._t.leases, credential_id)


class MemoryRotationRepository(_RotationRepo):
    def start(self, record: RotationRecord) -> None:
        if record.id in self._t.rotations or self.open_for(record.credential_id) is not None:
            raise Conflict("this credential has a rotation in progress")
        _set(self._t.rotations, record.id, record, self.j)

    def get(self, rotation_id: str) -> RotationRecord | None:
        return self._t.rotations.get(rotation_id)

    def open_for(self, credential_id: str) -> RotationRecord | None:
        return next(
            (r for r in self._t.rotations.values() if r.credential_id == credential_id and r.open), None
        )

    def open_all(self, limit: int = 1000) -> list[RotationRecord]:
        found = sorted((r for r in self._t.rotations.values() if r.open), key=lambda r: (r.started_at, r.id))
        return found[:limit]

    def save(self, record: RotationRecord) -> None:
        if record.id in self._t.rotations:
            _set(self._t.rotations, record.id, record, self.j)

    def history(
        self, *, credential_id: str | None = None, org_id: str | None = None, limit: int = 20
    ) -> list[RotationRecord]:
        found = [
            r
            for r in self._t.rotations.values()
            if (credential_id is None or r.credential_id == credential_id)
            and (org_id is None or r.org_id == org_id)
        ]
        found.sort(key=lambda r: (r.started_at, r.id), reverse=True)
        return found[:limit]
