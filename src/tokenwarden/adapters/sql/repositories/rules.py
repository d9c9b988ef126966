"""Revocation rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    Connection,
    delete,
    insert,
    select,
)

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories._rows import (
    _token,
)
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenKind, TokenRecord


class SqlRuleRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, rule: RevocationRule) -> None:
        self._c.execute(
            insert(t.revocation_rules).values(
                id=rule.id,
                org_id=rule.org_id,
                scopes=" ".join(rule.scopes),
                created_before=rule.created_before,
                created_at=rule.created_at,
                created_by=rule.created_by,
                created_after=rule.created_after,
                kinds=" ".join(rule.kinds) if rule.kinds else None,
                user_ids=" ".join(rule.user_ids) if rule.user_ids else None,
                match_implied=rule.match_implied,
            )
        )

    def find(self, org_id: str | None = None) -> list[RevocationRule]:
        stmt = select(t.revocation_rules)
        if org_id is not None:
            stmt = stmt.where(t.revocation_rules.c.org_id == org_id)
        return [
            RevocationRule(
                id=r.id,
                org_id=r.org_id,
                scopes=tuple(r.scopes.split()),
                created_before=r.created_before,
                created_at=r.created_at,
                created_by=r.created_by,
                created_after=r.created_after,
                kinds=tuple(TokenKind(k) for k in r.kinds.split()) if r.kinds else None,
                user_ids=tuple(r.user_ids.split()) if r.user_ids else None,
                match_implied=r.match_implied,
            )
            for r in self._c.execute(stmt.order_by(t.revocation_rules.c.created_at))
        ]

    def delete(self, rule_id: str) -> bool:
        result = self._c.execute(delete(t.revocation_rules).where(t.revocation_rules.c.id == rule_id))
        return bool(result.rowcount)

    def live_tokens(
        self,
        org_id: str,
        *,
        issued_before: datetime,
        now: datetime,
        issued_after: datetime | None = None,
        kinds: Sequence[str] | None = None,
        user_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[TokenRecord]:
        c = t.tokens.c
        stmt = select(t.tokens).where(
            c.org_id == org_id, c.revoked_at.is_(None), c.valid_to > now, c.valid_from < issued_before
        )
        if issued_after is not None:
            stmt = stmt.where(c.valid_from >= issued_after)
        if kinds is not None:
            stmt = stmt.where(c.kind.in_(list(kinds)))
        if user_ids is not None:
            stmt = stmt.where(c.user_id.in_(list(user_ids)))
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_token(r) for r in self._c.execute(stmt)]
