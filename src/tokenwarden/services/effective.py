"""The state a listing shows: a token killed by a watermark or a rule is *revoked*, with the
moment that revoked it — derived on read, never stored twice."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import RevokedBy, TokenRecord
from tokenwarden.domain.watermarks import SubjectType, effective_cutoffs
from tokenwarden.ports.repositories import UnitOfWork


class EffectiveView:
    """Loads watermarks and rules lazily, once per listing."""

    def __init__(self, uow: UnitOfWork, catalog: ScopeCatalog) -> None:
        self._uow = uow
        self._catalog = catalog
        self._user_marks: dict[str, dict[str, datetime]] = {}
        self._org_marks: dict[str, dict[str, datetime]] | None = None
        self._rules: dict[str, list[RevocationRule]] = {}

    def apply(self, records: Iterable[TokenRecord]) -> list[TokenRecord]:
        return [self.one(r) for r in records]

    def one(self, record: TokenRecord) -> TokenRecord:
        if record.revoked_at is not None:
            return record
        when, why = self._cause(record)
        if when is None:
            return record
        return record.with_changes(revoked_at=when, revoked_by=RevokedBy.SYSTEM.value, revoke_reason=why)

    def _cause(self, record: TokenRecord) -> tuple[datetime | None, str | None]:
        issued = record.valid_from
        marks = self._marks_of_user(record.user_id)
        cutoff = effective_cutoffs({k: v.timestamp() for k, v in marks.items()}).get(record.kind)
        if cutoff is not None and issued.timestamp() < cutoff:
            return _latest(marks, cutoff), "revoked with all of the owner's tokens"
        org_marks = self._orgs().get(record.org_id, {})
        mark = org_marks.get(record.kind.value)
        if mark is not None and issued < mark:
            return mark, "revoked with all of the organization's tokens (break-glass)"
        for rule in self._rules_of(record.org_id):
            if rule.catches(record.scopes, record.kind, record.user_id, issued, self._catalog):
                return rule.created_at, f"revoked by revocation rule {rule.id}"
        return None, None

    def _marks_of_user(self, user_id: str) -> dict[str, datetime]:
        if user_id not in self._user_marks:
            self._user_marks[user_id] = self._uow.watermarks.for_subject(SubjectType.USER, user_id)
        return self._user_marks[user_id]

    def _orgs(self) -> dict[str, dict[str, datetime]]:
        if self._org_marks is None:
            self._org_marks = self._uow.watermarks.for_type(SubjectType.ORG)
        return self._org_marks

    def _rules_of(self, org_id: str) -> list[RevocationRule]:
        if org_id not in self._rules:
            self._rules[org_id] = self._uow.rules.find(org_id)
        return self._rules[org_id]


def _latest(marks: dict[str, datetime], cutoff: float) -> datetime:
    return next((v for v in marks.values() if v.timestamp() == cutoff), max(marks.values()))
