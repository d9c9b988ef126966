"""Break-glass requests and the live counts they report."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.repositories._rows import (
    _bg,
    _bg_values,
    _member_of,
)
from tokenwarden.domain.watermarks import CLIENT_REMOVED, ENTRA_MARKS, SubjectType
from tokenwarden.ports.repositories import BreakGlassRequest


class SqlBreakGlassRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, request: BreakGlassRequest) -> None:
        self._c.execute(insert(t.break_glass_requests).values(**_bg_values(request)))

    def get(self, request_id: str) -> BreakGlassRequest | None:
        row = self._c.execute(
            select(t.break_glass_requests).where(t.break_glass_requests.c.id == request_id)
        ).first()
        return _bg(row) if row else None

    def update(self, request: BreakGlassRequest) -> None:
        values = _bg_values(request)
        del values["id"]
        self._c.execute(
            update(t.break_glass_requests).where(t.break_glass_requests.c.id == request.id).values(**values)
        )

    def find(self, org_id: str) -> list[BreakGlassRequest]:
        b = t.break_glass_requests.c
        rows = self._c.execute(
            select(t.break_glass_requests).where(b.org_id == org_id).order_by(b.requested_at)
        )
        return [_bg(r) for r in rows]

    def top_owners(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        return self._top(t.tokens.c.user_id, org_id, now, limit)

    def count_live(
        self, org_id: str, *, now: datetime, issued_before: datetime, org_marks: Mapping[str, datetime]
    ) -> dict[str, int]:
        """One query: the live-token filter, the org marks as bounds, the owner's user and member
        watermarks and the token's OAuth client watermarks as a NOT EXISTS over the watermarks
        primary key."""
        c, w = t.tokens.c, t.watermarks.c
        conds: list[Any] = [
            c.org_id == org_id,
            c.revoked_at.is_(None),
            c.valid_to > now,
            c.valid_from < issued_before,
        ]
        conds += [or_(c.kind != kind, c.valid_from >= at) for kind, at in org_marks.items()]
        entra = [and_(w.kind == m, c.kind.in_([k.value for k in ks])) for m, ks in ENTRA_MARKS.items()]
        applies = or_(w.kind == c.kind, *entra)
        by_owner = and_(
            or_(
                and_(w.subject_type == SubjectType.USER.value, w.subject_id == c.user_id),
                and_(w.subject_type == SubjectType.MEMBER.value, w.subject_id == _member_of(c)),
            ),
            applies,
        )
        by_client = and_(  # its OAuth client disabled (per kind) or removed
            w.subject_type == SubjectType.CLIENT.value,
            w.subject_id == c.client_id,
            or_(w.kind == c.kind, w.kind == CLIENT_REMOVED),
        )
        dead = (
            select(w.subject_id).where(or_(by_owner, by_client)).where(c.valid_from < w.valid_from).exists()
        )
        stmt = select(c.kind, func.count()).where(*conds, ~dead).group_by(c.kind)
        return {row[0]: int(row[1]) for row in self._c.execute(stmt)}

    def top_clients(self, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        return self._top(t.tokens.c.client_id, org_id, now, limit)

    def _top(self, column: Any, org_id: str, now: datetime, limit: int) -> list[tuple[str, int]]:
        c = t.tokens.c
        n = func.count().label("n")
        stmt = (
            select(column, n)
            .where(c.org_id == org_id, c.revoked_at.is_(None), c.valid_to > now, column.is_not(None))
            .group_by(column)
            .order_by(n.desc(), column)
            .limit(limit)
        )
        return [(str(r[0]), int(r[1])) for r in self._c.execute(stmt)]
