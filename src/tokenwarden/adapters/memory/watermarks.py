"""Watermarks in memory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tokenwarden.adapters.memory._base import _Repo, _set


class MemoryWatermarkRepository(_Repo):
    def raise_to(
        self, subject_type: str, subject_ids: Sequence[str], kinds: Sequence[str], at: datetime
    ) -> None:
        for subject in subject_ids:
            for kind in kinds:
                key = (subject_type, subject, kind)
                current = self.s.watermarks.get(key)
                if current is None or current < at:
                    _set(self.s.watermarks, key, at, self.j)

    def for_subject(self, subject_type: str, subject_id: str) -> dict[str, datetime]:
        return {k: v for (st, s, k), v in self.s.watermarks.items() if st == subject_type and s == subject_id}

    def for_type(self, subject_type: str) -> dict[str, dict[str, datetime]]:
        result: dict[str, dict[str, datetime]] = {}
        for (st, s, k), v in self.s.watermarks.items():
            if st == subject_type:
                result.setdefault(s, {})[k] = v
        return result
