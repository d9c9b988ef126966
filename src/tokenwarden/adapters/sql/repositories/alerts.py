"""Security alerts and detection policies in SQL (issue 14)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tokenwarden.adapters.sql import tables as t
from tokenwarden.ports.alerts import Alert, AlertQuery, OpenCount, StoredPolicy


def _values(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "org_id": a.org_id,
        "token_id": a.token_id,
        "user_id": a.user_id,
        "rule": a.rule,
        "level": a.level,
        "status": a.status,
        "open_key": a.open_key,
        "message": a.message[:512],
        "evidence": a.evidence,
        "occurrences": a.occurrences,
        "responses": list(a.responses),
        "closed_by": a.closed_by,
        "note": a.note,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
    }


def _alert(r: Row[Any]) -> Alert:
    return Alert(
        id=r.id,
        org_id=r.org_id,
        token_id=r.token_id,
        user_id=r.user_id,
        rule=r.rule,
        level=r.level,
        message=r.message,
        evidence=dict(r.evidence or {}),
        created_at=r.created_at,
        updated_at=r.updated_at,
        status=r.status,
        occurrences=int(r.occurrences),
        responses=tuple(r.responses or ()),
        closed_by=r.closed_by,
        note=r.note,
    )


class SqlAlertRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def raise_alert(self, alert: Alert) -> Alert | None:
        dialect = postgresql if self._c.dialect.name == "postgresql" else sqlite
        stmt = (
            dialect.insert(t.alerts)
            .values(**_values(alert))
            .on_conflict_do_nothing(index_elements=["open_key"])
            .returning(t.alerts.c.id)
        )
        if self._c.execute(stmt).first() is not None:  # (rowcount is not reliable with DO NOTHING)
            return alert
        c = t.alerts.c
        self._c.execute(
            update(t.alerts)
            .where(c.open_key == alert.open_key)
            .values(occurrences=c.occurrences + 1, updated_at=alert.updated_at)
        )
        return None

    def get(self, alert_id: str) -> Alert | None:
        row = self._c.execute(select(t.alerts).where(t.alerts.c.id == alert_id)).first()
        return _alert(row) if row else None

    def update(self, alert: Alert) -> None:
        self._c.execute(update(t.alerts).where(t.alerts.c.id == alert.id).values(**_values(alert)))

    def find(self, query: AlertQuery) -> list[Alert]:
        c = t.alerts.c
        stmt = select(t.alerts).where(c.org_id == query.org_id)
        if query.statuses:
            stmt = stmt.where(c.status.in_(query.statuses))
        if query.token_id is not None:
            stmt = stmt.where(c.token_id == query.token_id)
        if query.rule is not None:
            stmt = stmt.where(c.rule == query.rule)
        if query.level is not None:
            stmt = stmt.where(c.level == query.level)
        if query.before is not None:
            stmt = stmt.where(c.created_at < query.before)
        stmt = stmt.order_by(c.created_at.desc(), c.id).limit(query.limit)
        return [_alert(r) for r in self._c.execute(stmt)]

    def counts(self) -> list[OpenCount]:
        c = t.alerts.c
        stmt = select(c.org_id, c.rule, c.level, c.status, func.count()).group_by(
            c.org_id, c.rule, c.level, c.status
        )
        return [OpenCount(o, r, lv, s, int(n)) for o, r, lv, s, n in self._c.execute(stmt)]

    def policy(self, org_id: str) -> StoredPolicy | None:
        row = self._c.execute(
            select(t.detection_policies).where(t.detection_policies.c.org_id == org_id)
        ).first()
        return StoredPolicy(row.org_id, dict(row.data or {}), row.updated_at) if row else None

    def set_policy(self, policy: StoredPolicy) -> None:
        dialect = postgresql if self._c.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(t.detection_policies).values(
            org_id=policy.org_id, data=policy.data, updated_at=policy.updated_at
        )
        self._c.execute(
            stmt.on_conflict_do_update(
                index_elements=["org_id"],
                set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at},
            )
        )
