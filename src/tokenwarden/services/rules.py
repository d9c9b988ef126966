"""Revocation rules: revoke by scope and issue date without a loop over tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, ensure_utc
from tokenwarden.domain.errors import InvalidInput, NotFound
from tokenwarden.domain.events import EventType
from tokenwarden.domain.revocation import RevocationRule
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import (
    Actor,
    StepUpCheck,
    audit,
    get_org,
    new_id,
    no_step_up,
    publish,
    reading,
    require_admin,
)
from tokenwarden.services.effective import EffectiveView
from tokenwarden.services.signals import emit_org_credential_change


@dataclass(frozen=True, slots=True)
class RulePreview:
    rule: RevocationRule  # not stored
    live_tokens: int  # live tokens it would cut
    by_kind: dict[str, int]


@dataclass(frozen=True, slots=True)
class RuleDeletion:
    rule: RevocationRule
    restored_tokens: int  # tokens it had cut that are valid again
    by_kind: dict[str, int]


def rule_details(rule: RevocationRule) -> dict[str, Any]:
    """The audit (and JSON) description of a rule; ``scopes`` null means every scope."""
    return {
        "scopes": " ".join(rule.scopes) or None,
        "allScopes": rule.all_scopes,
        "createdBefore": rule.created_before.isoformat(),
        "createdAfter": rule.created_after.isoformat() if rule.created_after else None,
        "kinds": [k.value for k in rule.kinds] if rule.kinds else None,
        "users": list(rule.user_ids) if rule.user_ids else None,
        "matchImplied": rule.match_implied,
    }


def _per_kind(records: Sequence[TokenRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.kind.value] = counts.get(r.kind.value, 0) + 1
    return counts


class RuleService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        catalog: ScopeCatalog,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._catalog = catalog
        self._clock = clock
        self.step_up: StepUpCheck = no_step_up  # a rule is a bulk revocation: a fresh second factor

    def create(
        self,
        actor: Actor,
        org: str,
        scopes: str | None,
        created_before: datetime | None = None,
        *,
        created_after: datetime | None = None,
        kinds: Sequence[TokenKind] | None = None,
        users: Sequence[str] | None = None,
        match_implied: bool = False,
    ) -> RevocationRule:
        """Every token of ``org`` issued before ``created_before`` (default now) — and at or after
        ``created_after`` — that carries one of ``scopes`` stops working; optionally only tokens
        of some ``kinds`` or some ``users`` (UPNs or ids, members of ``org``).

        Without ``scopes`` the rule catches tokens of every scope ("every token created before a
        date"); such a rule needs an explicit ``created_before``. (The Azure DevOps route keeps
        its contract and requires scopes before it gets here.)"""
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            self.step_up(uow, actor, the_org.id)
            rule = self._rule(
                uow,
                the_org.id,
                actor,
                now,
                scopes,
                created_before,
                created_after,
                kinds,
                users,
                match_implied,
            )
            parsed, cutoff = rule.scopes, rule.created_before
            uow.rules.add(rule)
            publish(uow, EventType.RULE_ADDED, rule_id=rule.id, org_id=the_org.id)
            emit_org_credential_change(
                uow,
                self._clock,
                org_id=the_org.id,
                change_type="revoke",
                initiating_entity="admin",
                reason_admin=f"revocation rule {rule.id}: tokens with "
                + (f"scopes {' '.join(parsed)}" if parsed else "any scope")
                + f" issued before {cutoff.isoformat()} are revoked",
            )
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.REVOCATION_RULE_CREATE,
                org_id=the_org.id,
                target_type="revocationRule",
                target_id=rule.id,
                details=rule_details(rule),
            )
            uow.commit()
        return rule

    def preview(
        self,
        actor: Actor,
        org: str,
        scopes: str | None,
        created_before: datetime | None = None,
        *,
        created_after: datetime | None = None,
        kinds: Sequence[TokenKind] | None = None,
        users: Sequence[str] | None = None,
        match_implied: bool = False,
    ) -> RulePreview:
        """Dry run of :meth:`create`: the rule as it would be, and how many live tokens (not
        already revoked, expired or cut by a watermark or another rule) it would cut. Nothing
        is written."""
        now = self._clock.now()
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            rule = self._rule(
                uow,
                the_org.id,
                actor,
                now,
                scopes,
                created_before,
                created_after,
                kinds,
                users,
                match_implied,
            )
            view = EffectiveView(uow, self._catalog)
            caught = [r for r in self._candidates(uow, rule, now) if view.one(r).revoked_at is None]
            return RulePreview(rule, len(caught), _per_kind(caught))

    def delete(self, actor: Actor, org: str, rule_id: str, *, dry_run: bool = False) -> RuleDeletion:
        """Delete a rule: the tokens it cut (and nothing else cuts) are valid again, on every
        node (a ``rule.deleted`` event makes each validator reload its rules). Audited with the
        whole rule and the number of tokens restored. ``dry_run`` counts and changes nothing."""
        now = self._clock.now()
        with self._uow() as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            rule = next((r for r in uow.rules.find(the_org.id) if r.id == rule_id), None)
            if rule is None:
                raise NotFound(f"revocation rule {rule_id!r:.40} not found", code="ruleNotFound")
            cut = self._candidates(uow, rule, now)
            uow.rules.delete(rule.id)
            view = EffectiveView(uow, self._catalog)  # reads the rules as they are without it
            restored = [r for r in cut if view.one(r).revoked_at is None]
            result = RuleDeletion(rule, len(restored), _per_kind(restored))
            if dry_run:
                return result  # leaving without commit rolls the deletion back
            publish(uow, EventType.RULE_DELETED, rule_id=rule.id, org_id=the_org.id)
            audit(
                uow,
                self._clock,
                actor,
                AuditEventType.REVOCATION_RULE_DELETE,
                org_id=the_org.id,
                target_type="revocationRule",
                target_id=rule.id,
                details={
                    **rule_details(rule),
                    "createdAt": rule.created_at.isoformat(),
                    "createdBy": rule.created_by,
                    "restoredTokens": len(restored),
                    "restoredByKind": result.by_kind,
                    "warning": "tokens this rule had revoked are valid again",
                },
            )
            uow.commit()
        return result

    def _rule(
        self,
        uow: UnitOfWork,
        org_id: str,
        actor: Actor,
        now: datetime,
        scopes: str | None,
        created_before: datetime | None,
        created_after: datetime | None,
        kinds: Sequence[TokenKind] | None,
        users: Sequence[str] | None,
        match_implied: bool,
    ) -> RevocationRule:
        parsed = self._catalog.parse(scopes) if scopes and scopes.strip() else ()
        if not parsed and created_before is None:
            raise InvalidInput(
                "a rule without scopes cuts every token: give createdBefore explicitly",
                code="createdBeforeRequired",
            )
        cutoff = ensure_utc(created_before) if created_before is not None else now
        if cutoff > now:
            raise InvalidInput("createdBefore must not be in the future", code="invalidCreatedBefore")
        after = ensure_utc(created_after) if created_after is not None else None
        if after is not None and after >= cutoff:
            raise InvalidInput("createdAfter must be before createdBefore", code="invalidDateRange")
        user_ids = None
        if users:
            user_ids = tuple(dict.fromkeys(self._member_id(uow, org_id, u) for u in users))
        return RevocationRule(
            id=new_id(),
            org_id=org_id,
            scopes=parsed,
            created_before=cutoff,
            created_at=now,
            created_by=actor.user_id,
            created_after=after,
            kinds=tuple(kinds) if kinds else None,
            user_ids=user_ids,
            match_implied=match_implied,
        )

    def _candidates(self, uow: UnitOfWork, rule: RevocationRule, now: datetime) -> list[TokenRecord]:
        found = uow.rules.live_tokens(
            rule.org_id,
            issued_before=rule.created_before,
            now=now,
            issued_after=rule.created_after,
            kinds=[k.value for k in rule.kinds] if rule.kinds else None,
            user_ids=rule.user_ids,
        )
        return [r for r in found if self._caught(rule, r)]

    def _caught(self, rule: RevocationRule, record: TokenRecord) -> bool:
        return rule.catches(record.scopes, record.kind, record.user_id, record.valid_from, self._catalog)

    def find(self, actor: Actor, org: str) -> list[RevocationRule]:
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return uow.rules.find(the_org.id)

    @staticmethod
    def _member_id(uow: UnitOfWork, org_id: str, user: str) -> str:
        found = uow.users.by_upn(user) or uow.users.get(user)
        if found is None or uow.users.membership(org_id, found.id) is None:
            raise InvalidInput(f"user {user!r:.80} is not a member of this organization", code="userNotFound")
        return found.id
