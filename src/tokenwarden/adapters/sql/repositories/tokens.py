"""Token records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories._rows import (
    _cut_by_watermark,
    _insert_unique,
    _token,
    _token_values,
)
from tokenwarden.domain.tokens import ROTATED, TokenKind, TokenRecord


class SqlTokenRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, token: TokenRecord) -> None:
        _insert_unique(self._c, t.tokens, _token_values(token), "duplicate token")

    def get(self, authorization_id: str) -> TokenRecord | None:
        row = self._c.execute(select(t.tokens).where(t.tokens.c.id == authorization_id)).first()
        return _token(row) if row else None

    def by_hash(self, secret_hash: bytes) -> TokenRecord | None:
        row = self._c.execute(select(t.tokens).where(t.tokens.c.secret_hash == secret_hash)).first()
        return _token(row) if row else None

    def update(self, token: TokenRecord) -> None:
        values = _token_values(token)
        del values["id"]
        self._c.execute(update(t.tokens).where(t.tokens.c.id == token.authorization_id).values(**values))

    def list_for_user(self, user_id: str, kind: TokenKind | None = None) -> list[TokenRecord]:
        stmt = select(t.tokens).where(t.tokens.c.user_id == user_id)
        if kind is not None:
            stmt = stmt.where(t.tokens.c.kind == kind.value)
        return [_token(r) for r in self._c.execute(stmt.order_by(t.tokens.c.created_at, t.tokens.c.id))]

    def count_live(
        self,
        *,
        user_ids: Sequence[str] | None = None,
        org_id: str | None = None,
        kinds: Sequence[str] | None = None,
        issued_before: datetime,
        now: datetime,
    ) -> dict[str, int]:
        c = t.tokens.c
        stmt = (
            select(c.kind, func.count())
            .where(c.revoked_at.is_(None), c.valid_to > now, c.valid_from < issued_before)
            .where(~_cut_by_watermark(c))
            .group_by(c.kind)
        )
        if user_ids is not None:
            stmt = stmt.where(c.user_id.in_(list(user_ids)))
        if org_id is not None:
            stmt = stmt.where(c.org_id == org_id)
        if kinds is not None:
            stmt = stmt.where(c.kind.in_(list(kinds)))
        return {row[0]: int(row[1]) for row in self._c.execute(stmt)}

    def rehash(self, authorization_id: str, old_hash: bytes, new_hash: bytes, pepper_id: str) -> bool:
        c = t.tokens.c
        result = self._c.execute(
            update(t.tokens)
            .where(and_(c.id == authorization_id, c.secret_hash == old_hash))
            .values(secret_hash=new_hash, pepper_id=pepper_id)
        )
        return bool(result.rowcount)

    def record_usage(self, uses: Sequence[tuple[bytes, datetime, str | None]]) -> None:
        if not uses:
            return
        c = t.tokens.c

        stmt = (
            update(t.tokens)
            .where(c.secret_hash == bindparam("b_hash"))
            .where(or_(c.last_used_at.is_(None), c.last_used_at < bindparam("b_at")))
            .values(last_used_at=bindparam("b_at"), last_used_ip=bindparam("b_ip"))
        )
        self._c.execute(stmt, [{"b_hash": h, "b_at": at, "b_ip": ip} for h, at, ip in uses])

    def family(self, family_id: str) -> list[TokenRecord]:
        c = t.tokens.c
        stmt = select(t.tokens).where(c.family_id == family_id).order_by(c.created_at, c.id)
        return [_token(r) for r in self._c.execute(stmt)]

    def children(self, parent_id: str) -> list[TokenRecord]:
        c = t.tokens.c
        stmt = select(t.tokens).where(c.parent_id == parent_id).order_by(c.created_at, c.id)
        return [_token(r) for r in self._c.execute(stmt)]

    def mark_rotated(self, authorization_id: str, at: datetime) -> bool:
        c = t.tokens.c
        result = self._c.execute(
            update(t.tokens)
            .where(c.id == authorization_id, c.rotated_at.is_(None), c.revoked_at.is_(None))
            .values(rotated_at=at, revoked_at=at, revoked_by=None, revoke_reason=ROTATED)
        )
        return bool(result.rowcount)

    def revoke_family(self, family_id: str, at: datetime, by: str | None, reason: str) -> list[TokenRecord]:
        c = t.tokens.c
        live = [
            _token(r)
            for r in self._c.execute(select(t.tokens).where(c.family_id == family_id, c.revoked_at.is_(None)))
        ]
        if live:
            self._c.execute(
                update(t.tokens)
                .where(c.family_id == family_id, c.revoked_at.is_(None))
                .values(revoked_at=at, revoked_by=by, revoke_reason=reason[:512])
            )
        return live

    def extend_session(self, secret_hash: bytes, valid_to: datetime, *, before: datetime) -> bool:
        c = t.tokens.c
        result = self._c.execute(
            update(t.tokens)
            .where(
                c.secret_hash == secret_hash,
                c.kind == TokenKind.SESSION.value,
                c.revoked_at.is_(None),
                c.valid_to < before,
            )
            .values(valid_to=valid_to)
        )
        return bool(result.rowcount)
