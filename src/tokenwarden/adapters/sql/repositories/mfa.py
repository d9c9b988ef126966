"""Second factors, recovery codes and step-ups in SQL (issue 16)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select, update

from tokenwarden.adapters.sql import tables as t
from tokenwarden.ports.mfa import MfaFactor


class SqlMfaRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def factor(self, user_id: str, *, lock: bool = False) -> MfaFactor | None:
        query = select(t.mfa_factors).where(t.mfa_factors.c.user_id == user_id)
        # PostgreSQL: a row lock; SQLite: read-write units of work already hold the write lock
        r = self._c.execute(query.with_for_update() if lock else query).first()
        if r is None:
            return None
        return MfaFactor(r.user_id, r.sealed_secret, r.created_at, r.confirmed_at, int(r.last_step))

    def save_factor(self, factor: MfaFactor) -> None:
        values = {
            "sealed_secret": factor.sealed_secret,
            "created_at": factor.created_at,
            "confirmed_at": factor.confirmed_at,
            "last_step": factor.last_step,
        }
        done = self._c.execute(
            update(t.mfa_factors).where(t.mfa_factors.c.user_id == factor.user_id).values(**values)
        )
        if not done.rowcount:
            self._c.execute(insert(t.mfa_factors).values(user_id=factor.user_id, **values))

    def advance_step(self, user_id: str, step: int) -> bool:
        done = self._c.execute(
            update(t.mfa_factors)
            .where(t.mfa_factors.c.user_id == user_id, t.mfa_factors.c.last_step < step)
            .values(last_step=step)
        )
        return bool(done.rowcount)

    def delete(self, user_id: str) -> bool:
        self._c.execute(delete(t.mfa_recovery_codes).where(t.mfa_recovery_codes.c.user_id == user_id))
        self._c.execute(delete(t.mfa_step_ups).where(t.mfa_step_ups.c.user_id == user_id))
        return bool(self._c.execute(delete(t.mfa_factors).where(t.mfa_factors.c.user_id == user_id)).rowcount)

    def replace_codes(self, user_id: str, code_hashes: Sequence[bytes], at: datetime) -> None:
        self._c.execute(delete(t.mfa_recovery_codes).where(t.mfa_recovery_codes.c.user_id == user_id))
        if code_hashes:
            self._c.execute(
                insert(t.mfa_recovery_codes),
                [
                    {"user_id": user_id, "code_hash": h, "created_at": at, "used_at": None}
                    for h in code_hashes
                ],
            )

    def use_code(self, user_id: str, code_hash: bytes, at: datetime) -> bool:
        c = t.mfa_recovery_codes.c
        done = self._c.execute(
            update(t.mfa_recovery_codes)
            .where(c.user_id == user_id, c.code_hash == code_hash, c.used_at.is_(None))
            .values(used_at=at)
        )
        return bool(done.rowcount)

    def unused_codes(self, user_id: str) -> int:
        c = t.mfa_recovery_codes.c
        q = (
            select(func.count())
            .select_from(t.mfa_recovery_codes)
            .where(c.user_id == user_id, c.used_at.is_(None))
        )
        return int(self._c.execute(q).scalar_one())

    def record_step_up(self, credential_hash: bytes, user_id: str, at: datetime) -> None:
        c = t.mfa_step_ups.c
        done = self._c.execute(
            update(t.mfa_step_ups).where(c.credential_hash == credential_hash).values(user_id=user_id, at=at)
        )
        if not done.rowcount:
            self._c.execute(
                insert(t.mfa_step_ups).values(credential_hash=credential_hash, user_id=user_id, at=at)
            )

    def stepped_up_at(self, credential_hash: bytes) -> datetime | None:
        q = select(t.mfa_step_ups.c.at).where(t.mfa_step_ups.c.credential_hash == credential_hash)
        at: datetime | None = self._c.execute(q).scalar_one_or_none()
        return at

    def confirmed_users(self, user_ids: Sequence[str]) -> set[str]:
        if not user_ids:
            return set()
        c = t.mfa_factors.c
        q = select(c.user_id).where(c.user_id.in_(list(user_ids)), c.confirmed_at.is_not(None))
        return {str(u) for u in self._c.execute(q).scalars()}
