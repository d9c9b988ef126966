"""The state a listing shows: a token killed by a watermark, a rule or its owner's membership is
*revoked*, with the moment and the cause — derived on read, never stored twice.

A token answers each organization by that organization's state (the tenancy rule), so the view
is taken *for* an organization: the one given, else each token's own. A direct revocation
(``revoked_at`` on the record) is the first one and is never overwritten by a later cause.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from tokenwarden.domain.principals import Membership, member_subject
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import RevokedBy, TokenRecord
from tokenwarden.domain.watermarks import CLIENT_REMOVED, SubjectType, effective_cutoffs
from tokenwarden.ports.repositories import UnitOfWork

# Causes a listing can show for a revoked token.
DIRECT = "direct"
USER = "user"
RULE = "rule"
BREAK_GLASS = "break-glass"
MEMBERSHIP = "membership"
CLIENT = "client"  # its OAuth client was disabled or removed


class EffectiveView:
    """Loads memberships, watermarks and rules lazily, once per listing."""

    def __init__(self, uow: UnitOfWork, catalog: ScopeCatalog, org_id: str | None = None) -> None:
        self._uow = uow
        self._catalog = catalog
        self._org_id = org_id
        self._marks: dict[tuple[str, str], dict[str, datetime]] = {}
        self._members: dict[tuple[str, str], Membership | None] = {}
        self._org_marks: dict[str, dict[str, datetime]] | None = None
        self._rules: dict[str, list[RevocationRule]] = {}
        self._client_marks: dict[str, dict[str, datetime]] = {}

    def apply(self, records: Iterable[TokenRecord]) -> list[TokenRecord]:
        return [self.one(r) for r in records]

    def one(self, record: TokenRecord) -> TokenRecord:
        """The record as this organization sees it; the *first* revocation's time and reason
        stand (a later direct revocation does not overwrite an earlier cut-off, nor the reverse)."""
        when, why = self._cause(record)
        if when is None or (record.revoked_at is not None and record.revoked_at <= when):
            return record
        return record.with_changes(revoked_at=when, revoked_by=RevokedBy.SYSTEM.value, revoke_reason=why)

    def cause(self, record: TokenRecord) -> str | None:
        """Why the token is revoked here (direct, user, membership, break-glass, client, rule), or
        None."""
        return cause_of(self.one(record))

    def _cause(self, record: TokenRecord) -> tuple[datetime | None, str | None]:
        org = self._org_id or record.org_id
        issued = record.valid_from
        member = self._member(org, record.user_id)
        if member is None:
            return record.valid_from, _REASONS[MEMBERSHIP] + " (its owner is not a member here)"
        marks = self._marks_of(org, record.user_id)
        cutoff = effective_cutoffs({k: v.timestamp() for k, v in marks.items()}).get(record.kind)
        if cutoff is not None and issued.timestamp() < cutoff:
            return _latest(marks, cutoff), _REASONS[USER]
        if not member.is_active:
            return issued, _REASONS[MEMBERSHIP] + f" (its owner is {member.status.value} here)"
        mark = self._orgs().get(org, {}).get(record.kind.value)
        if mark is not None and issued < mark:
            return mark, _REASONS[BREAK_GLASS]
        if record.client_id is not None:
            when = self._client_cut(record.client_id, record)
            if when is not None:
                return when, _REASONS[CLIENT]
        for rule in self._rules_of(org):
            if rule.catches(record.scopes, record.kind, record.user_id, issued, self._catalog):
                return rule.created_at, f"{_REASONS[RULE]} {rule.id}"
        return None, None

    def _member(self, org_id: str, user_id: str) -> Membership | None:
        key = (org_id, user_id)
        if key not in self._members:
            self._members[key] = self._uow.users.membership(org_id, user_id)
        return self._members[key]

    def _marks_of(self, org_id: str, user_id: str) -> dict[str, datetime]:
        key = (org_id, user_id)
        if key not in self._marks:
            marks = dict(self._uow.watermarks.for_subject(SubjectType.USER, user_id))
            member = self._uow.watermarks.for_subject(SubjectType.MEMBER, member_subject(org_id, user_id))
            for name, at in member.items():
                if name not in marks or at > marks[name]:
                    marks[name] = at
            self._marks[key] = marks
        return self._marks[key]

    def _orgs(self) -> dict[str, dict[str, datetime]]:
        if self._org_marks is None:
            self._org_marks = self._uow.watermarks.for_type(SubjectType.ORG)
        return self._org_marks

    def _client_cut(self, client_id: str, record: TokenRecord) -> datetime | None:
        """When the token's OAuth client cut it (disabled or removed), or None."""
        if client_id not in self._client_marks:
            self._client_marks[client_id] = self._uow.watermarks.for_subject(SubjectType.CLIENT, client_id)
        marks = self._client_marks[client_id]
        mark = marks.get(record.kind.value)
        if mark is not None and record.valid_from < mark:
            return mark
        if CLIENT_REMOVED in marks:  # removed: every token of it, even one issued as it went
            return record.valid_from
        return None

    def _rules_of(self, org_id: str) -> list[RevocationRule]:
        if org_id not in self._rules:
            self._rules[org_id] = self._uow.rules.find(org_id)
        return self._rules[org_id]


_REASONS = {
    USER: "revoked with all of the owner's tokens",
    MEMBERSHIP: "revoked with the owner's membership",
    BREAK_GLASS: "revoked with all of the organization's tokens (break-glass)",
    RULE: "revoked by revocation rule",
    CLIENT: "revoked with its OAuth client (disabled or removed)",
}


def cause_of(record: TokenRecord) -> str | None:
    """The cause of a revocation as a listing shows it, from a record :class:`EffectiveView`
    returned: ``direct`` (by id, by value, by its owner), or the cut-off that killed it."""
    if record.revoked_at is None:
        return None
    if record.revoked_by != RevokedBy.SYSTEM.value or not record.revoke_reason:
        return DIRECT
    reason = record.revoke_reason
    return next(
        (c for c in (MEMBERSHIP, BREAK_GLASS, RULE, USER, CLIENT) if reason.startswith(_REASONS[c])), DIRECT
    )


def _latest(marks: dict[str, datetime], cutoff: float) -> datetime:
    return next((v for v in marks.values() if v.timestamp() == cutoff), max(marks.values()))
