"""Watermarks: (subject, kind) -> instant, raised set-based, never lowered."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, text

from tokenwarden.adapters.sql import tables as t
from tokenwarden.adapters.sql.tables import UTCDateTime

# SQLite's parser needs the WHERE before ON CONFLICT after a SELECT.
_RAISE_SQLITE = text(
    "INSERT INTO watermarks (subject_type, subject_id, kind, valid_from)"
    " SELECT :subject_type, s.value, k.value, :at FROM json_each(:subjects) AS s, json_each(:kinds) AS k"
    " WHERE true"
    " ON CONFLICT (subject_type, subject_id, kind) DO UPDATE SET valid_from = excluded.valid_from"
    " WHERE watermarks.valid_from < excluded.valid_from"
).bindparams(bindparam("at", type_=UTCDateTime()))
_RAISE_PG = text(
    "INSERT INTO watermarks (subject_type, subject_id, kind, valid_from)"
    " SELECT :subject_type, s.v, k.v, :at"
    " FROM unnest(CAST(:subjects AS text[])) AS s(v), unnest(CAST(:kinds AS text[])) AS k(v)"
    " ON CONFLICT (subject_type, subject_id, kind) DO UPDATE SET valid_from = excluded.valid_from"
    " WHERE watermarks.valid_from < excluded.valid_from"
).bindparams(bindparam("at", type_=UTCDateTime()))


class SqlWatermarkRepository:
    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def raise_to(
        self, subject_type: str, subject_ids: Sequence[str], kinds: Sequence[str], at: datetime
    ) -> None:
        """One statement however many subjects: every (subject, kind) pair is inserted at ``at``
        or raised to it, never lowered. The pairs are built by the database from two array
        parameters (SQLite ``json_each``, PostgreSQL ``unnest``), so a CSV job's 2,500 pairs per
        chunk cost two bound values, not 2,500 rows of Python-side parameter processing."""
        subject_ids, kinds = list(dict.fromkeys(subject_ids)), list(dict.fromkeys(kinds))  # once each
        if not subject_ids or not kinds:
            return
        params: dict[str, object] = {"subject_type": subject_type, "at": at}
        if self._c.dialect.name == "postgresql":
            statement, params["subjects"], params["kinds"] = _RAISE_PG, subject_ids, kinds
        else:
            statement, params["subjects"], params["kinds"] = (
                _RAISE_SQLITE,
                json.dumps(subject_ids),
                json.dumps(kinds),
            )
        self._c.execute(statement, params)

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
