"""Revocation rules in memory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tokenwarden.adapters.memory._base import _Repo
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.tokens import TokenRecord


class MemoryRuleRepository(_Repo):
    def add(self, rule: RevocationRule) -> None:
        self.s.rules.append(rule)
        self.j.append(lambda: self._pop(self.s.rules))

    def find(self, org_id: str | None = None) -> list[RevocationRule]:
        return [r for r in self.s.rules if org_id is None or r.org_id == org_id]

    def delete(self, rule_id: str) -> bool:
        at = next((i for i, r in enumerate(self.s.rules) if r.id == rule_id), None)
        if at is None:
            return False
        rule = self.s.rules.pop(at)
        self.j.append(lambda: self.s.rules.insert(at, rule))
        return True

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
        found = [
            t
            for t in self.s.tokens.values()
            if t.org_id == org_id
            and t.revoked_at is None
            and t.valid_to > now
            and t.valid_from < issued_before
            and (issued_after is None or t.valid_from >= issued_after)
            and (kinds is None or t.kind.value in kinds)
            and (user_ids is None or t.user_id in user_ids)
        ]
        return found if limit is None else found[:limit]
