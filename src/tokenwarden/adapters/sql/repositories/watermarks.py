"""Watermarks: (subject, kind) -> instant, raised set-based, never lowered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from tokenwarden.adapters.sql import tables as t


class SqlWatermarkRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def raise_to(
        self, subject_type: str, subject_ids: Sequence[str], kinds: Sequence[str], at: datetime
    ) -> None:
        subject_ids, kinds = list(dict.fromkeys(subject_ids)), list(dict.fromkeys(kinds))  # once each
        if not subject_ids or not kinds:
            return
        w = t.watermarks.c
        for start in range(0, len(subject_ids), 500):
            chunk = list(subject_ids[start : start + 500])
            # Raise existing marks (set-based), then insert the missing ones.
            self._c.execute(
                update(t.watermarks)
                .where(w.subject_type == subject_type, w.subject_id.in_(chunk), w.kind.in_(list(kinds)))
                .where(w.valid_from < at)
                .values(valid_from=at)
            )
            existing = {
                (r.subject_id, r.kind)
                for r in self._c.execute(
                    select(w.subject_id, w.kind).where(
                        w.subject_type == subject_type, w.subject_id.in_(chunk), w.kind.in_(list(kinds))
                    )
                )
            }
            missing = [
                {"subject_type": subject_type, "subject_id": s, "kind": k, "valid_from": at}
                for s in chunk
                for k in kinds
                if (s, k) not in existing
            ]
            if missing:
                self._c.execute(insert(t.watermarks), missing)

    def for_subject(self, subject_type: str, subject_id: str) -> dict[str, datetime]:
        w = t.watermarks.c
        rows = self._c.execute(
            select(w.kind, w.valid_from).where(w.subject_type == subject_type, w.subject_id == subject_id)
        )
        return {r.kind: r.valid_from for r in rows}

    def for_type(self, subject_type: str) -> dict[str, dict[str, datetime]]:
        w = t.watermarks.c
        result: dict[str, dict[str, datetime]] = {}
        for r in self._c.execute(select(t.watermarks).where(w.subject_type == subject_type)):
            result.setdefault(r.subject_id, {})[r.kind] = r.valid_from
        return result
