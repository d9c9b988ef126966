"""Managed credentials and the rotation journal (issue 13)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from tokenwarden.adapters.sql import tables as t
from tokenwarden.domain.errors import Conflict
from tokenwarden.domain.managed import CredentialStatus, ManagedCredential, SourceKind, StoreKind
from tokenwarden.domain.rotation import Reason, RotationSettings, Step
from tokenwarden.ports.rotation import RotationRecord

_MC = t.managed_credentials.c
_RT = t.rotations.c


def _credential(row: Row[Any]) -> ManagedCredential:
    return ManagedCredential(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        source=SourceKind(row.source),
        authorization_id=row.authorization_id,
        display_base=row.display_base,
        scopes=tuple(row.scopes),
        store=StoreKind(row.store),
        secret_name=row.secret_name,
        store_secret_name=row.store_secret_name,
        rotation=RotationSettings(row.threshold_days, row.valid_days, row.overlap_minutes),
        created_at=row.created_at,
        updated_at=row.updated_at,
        user_id=row.user_id,
        valid_to=row.valid_to,
        ado_url=row.ado_url,
        ado_org=row.ado_org,
        contacts=tuple(row.contacts),
        version=row.version,
        status=CredentialStatus(row.status),
        failures=row.failures,
        last_error=row.last_error,
        last_rotated_at=row.last_rotated_at,
        next_attempt_at=row.next_attempt_at,
        created_by=row.created_by,
    )


def _mutable(c: ManagedCredential) -> dict[str, Any]:
    return {
        "authorization_id": c.authorization_id,
        "display_base": c.display_base,
        "scopes": list(c.scopes),
        "valid_to": c.valid_to,
        "threshold_days": c.rotation.threshold_days,
        "valid_days": c.rotation.valid_days,
        "overlap_minutes": c.rotation.overlap_minutes,
        "contacts": list(c.contacts),
        "version": c.version,
        "status": c.status.value,
        "failures": c.failures,
        "last_error": c.last_error,
        "last_rotated_at": c.last_rotated_at,
        "next_attempt_at": c.next_attempt_at,
        "user_id": c.user_id,
        "updated_at": c.updated_at,
    }


class SqlManagedCredentialRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, credential: ManagedCredential, sealed_ado_credential: str | None = None) -> None:
        c = credential
        if self.by_name(c.org_id, c.name) is not None:
            raise Conflict(f"a managed credential named {c.name!r} exists in this organization")
        values = {
            **_mutable(c),
            "id": c.id,
            "org_id": c.org_id,
            "name": c.name,
            "name_key": c.name.casefold(),
            "source": c.source.value,
            "ado_url": c.ado_url,
            "ado_org": c.ado_org,
            "ado_credential": sealed_ado_credential,
            "store": c.store.value,
            "secret_name": c.secret_name,
            "store_secret_name": c.store_secret_name,
            "created_by": c.created_by,
            "created_at": c.created_at,
        }
        try:
            with self._c.begin_nested():
                self._c.execute(t.managed_credentials.insert().values(**values))
        except IntegrityError as exc:
            raise Conflict(
                f"the {c.store} store already holds a managed secret named {c.store_secret_name!r}: "
                "choose another secret name"
            ) from exc

    def get(self, credential_id: str) -> ManagedCredential | None:
        row = self._c.execute(select(t.managed_credentials).where(_MC.id == credential_id)).first()
        return None if row is None else _credential(row)

    def by_name(self, org_id: str, name: str) -> ManagedCredential | None:
        row = self._c.execute(
            select(t.managed_credentials).where(_MC.org_id == org_id, _MC.name_key == name.casefold())
        ).first()
        return None if row is None else _credential(row)

    def all(self, org_id: str | None = None) -> list[ManagedCredential]:
        stmt = select(t.managed_credentials).order_by(_MC.org_id, _MC.name_key)
        if org_id is not None:
            stmt = stmt.where(_MC.org_id == org_id)
        return [_credential(r) for r in self._c.execute(stmt)]

    def by_authorization(self, authorization_id: str) -> list[ManagedCredential]:
        stmt = select(t.managed_credentials).where(_MC.authorization_id == authorization_id)
        return [_credential(r) for r in self._c.execute(stmt.order_by(_MC.org_id, _MC.name_key))]

    def update(self, credential: ManagedCredential) -> None:
        self._c.execute(
            update(t.managed_credentials).where(_MC.id == credential.id).values(**_mutable(credential))
        )

    def remove(self, credential_id: str) -> bool:
        return bool(self._c.execute(delete(t.managed_credentials).where(_MC.id == credential_id)).rowcount)

    def sealed_ado_credential(self, credential_id: str) -> str | None:
        value = self._c.execute(select(_MC.ado_credential).where(_MC.id == credential_id)).scalar()
        return None if value is None else str(value)

    def try_lease(self, credential_id: str, holder: str, now: datetime, until: datetime) -> bool:
        taken = self._c.execute(
            update(t.managed_credentials)
            .where(
                _MC.id == credential_id,
                or_(_MC.lease_holder.is_(None), _MC.lease_until.is_(None), _MC.lease_until < now),
            )
            .values(lease_holder=holder, lease_until=until)
        ).rowcount
        return bool(taken)

    def renew(self, credential_id: str, holder: str, until: datetime) -> bool:
        kept = self._c.execute(
            update(t.managed_credentials)
            .where(_MC.id == credential_id, _MC.lease_holder == holder)
            .values(lease_until=until)
        ).rowcount
        return bool(kept)

    def release(self, credential_id: str, holder: str) -> None:
        self._c.execute(
            update(t.managed_credentials)
            .where(_MC.id == credential_id, _MC.lease_holder == holder)
            .values(lease_holder=None, lease_until=None)
        )


def _rotation(row: Row[Any]) -> RotationRecord:
    return RotationRecord(
        id=row.id,
        credential_id=row.credential_id,
        org_id=row.org_id,
        trigger=row.trigger,
        reason=Reason(row.reason),
        step=Step(row.step),
        predecessor_id=row.predecessor_id,
        successor_name=row.successor_name,
        started_at=row.started_at,
        updated_at=row.updated_at,
        successor_id=row.successor_id,
        successor_valid_to=row.successor_valid_to,
        successor_fingerprint=None if row.successor_fingerprint is None else bytes(row.successor_fingerprint),
        store_version=row.store_version,
        revoke_after=row.revoke_after,
        attempts=row.attempts,
        error=row.error,
        run_id=row.run_id,
        started_by=row.started_by,
        finished_at=row.finished_at,
    )


def _rotation_values(r: RotationRecord) -> dict[str, Any]:
    return {
        "step": r.step.value,
        "reason": r.reason.value,  # an emergency may take over an unfinished rotation
        "open": True if r.open else None,
        "successor_id": r.successor_id,
        "successor_valid_to": r.successor_valid_to,
        "successor_fingerprint": r.successor_fingerprint,
        "store_version": r.store_version,
        "revoke_after": r.revoke_after,
        "attempts": r.attempts,
        "error": r.error,
        "updated_at": r.updated_at,
        "finished_at": r.finished_at,
    }


class SqlRotationRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def start(self, record: RotationRecord) -> None:
        r = record
        values = {
            **_rotation_values(r),
            "id": r.id,
            "credential_id": r.credential_id,
            "org_id": r.org_id,
            "trigger": r.trigger,
            "reason": r.reason.value,
            "predecessor_id": r.predecessor_id,
            "successor_name": r.successor_name,
            "run_id": r.run_id,
            "started_by": r.started_by,
            "started_at": r.started_at,
        }
        try:
            with self._c.begin_nested():
                self._c.execute(t.rotations.insert().values(**values))
        except IntegrityError as exc:
            raise Conflict("this credential has a rotation in progress") from exc

    def get(self, rotation_id: str) -> RotationRecord | None:
        row = self._c.execute(select(t.rotations).where(_RT.id == rotation_id)).first()
        return None if row is None else _rotation(row)

    def open_for(self, credential_id: str) -> RotationRecord | None:
        row = self._c.execute(
            select(t.rotations).where(_RT.credential_id == credential_id, _RT.open.is_(True))
        ).first()
        return None if row is None else _rotation(row)

    def open_all(self, limit: int = 1000) -> list[RotationRecord]:
        stmt = select(t.rotations).where(_RT.open.is_(True)).order_by(_RT.started_at, _RT.id).limit(limit)
        return [_rotation(r) for r in self._c.execute(stmt)]

    def save(self, record: RotationRecord) -> None:
        self._c.execute(update(t.rotations).where(_RT.id == record.id).values(**_rotation_values(record)))

    def history(
        self, *, credential_id: str | None = None, org_id: str | None = None, limit: int = 20
    ) -> list[RotationRecord]:
        stmt = select(t.rotations)
        if credential_id is not None:
            stmt = stmt.where(_RT.credential_id == credential_id)
        if org_id is not None:
            stmt = stmt.where(_RT.org_id == org_id)
        stmt = stmt.order_by(_RT.started_at.desc(), _RT.id.desc()).limit(limit)
        return [_rotation(r) for r in self._c.execute(stmt)]

    def count_open(self) -> int:
        return int(self._c.execute(select(func.count()).where(_RT.open.is_(True))).scalar_one())
