"""Policy violations of existing tokens: which live PATs of an organization break its current
policy, and what enforcing the policy would do to each (read-only: nothing is changed).

Tokens are the organization's when they were *issued in* it (``org_id``) — the same notion as
the administrators' PAT listing (``PatService.list_for_admin``) and break-glass. An all-orgs PAT
issued elsewhere is judged by the policy of the organization that issued it, not here, even
where it is also valid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.policy_violations import Violation, violations
from tokenwarden.domain.scopes import FULL_ACCESS, ScopeCatalog
from tokenwarden.domain.tokens import TokenKind, TokenRecord, TokenState
from tokenwarden.ports.reports import LiveFilter, ReportScope
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, get_org, reading, require_admin
from tokenwarden.services.effective import EffectiveView


@dataclass(frozen=True, slots=True)
class TokenViolation:
    """A live PAT and the policies it breaks."""

    token: TokenRecord
    owner: str | None  # the owner's UPN
    violations: tuple[Violation, ...]


def report_scope(
    uow: UnitOfWork, catalog: ScopeCatalog, org_id: str, kinds: tuple[TokenKind, ...]
) -> ReportScope:
    """The organization's tokens of ``kinds`` and its revocation rules, with implied scopes
    expanded here (the store matches scopes literally)."""
    rules = []
    for rule in uow.rules.find(org_id):
        if rule.match_implied:
            wanted: set[str] = set(rule.scopes)
            for scope in rule.scopes:
                wanted |= catalog.implying(scope)
            rule = replace(rule, scopes=tuple(sorted(wanted)), match_implied=False)
        rules.append(rule)
    return ReportScope(org_id=org_id, kinds=kinds, rules=tuple(rules))


def violation_filter(policy: OrgPolicy) -> LiveFilter:
    """Live tokens that may breach ``policy`` (the domain function decides): too long, or full
    scope where that is restricted."""
    return LiveFilter(
        lifetime_over=timedelta(days=policy.max_lifetime_days),
        scope=FULL_ACCESS if policy.restrict_full_scope else None,
        match_any=True,
    )


def find_violations(
    uow: UnitOfWork,
    catalog: ScopeCatalog,
    org_id: str,
    policy: OrgPolicy,
    at: datetime,
    limit: int | None = None,
) -> list[TokenViolation]:
    """Live PATs of ``org_id`` breaking ``policy`` at ``at``: candidates from one set-based
    query, each confirmed by :class:`EffectiveView` (really live here) and judged by
    :func:`domain.policy_violations.violations`; by validTo, then id."""
    scope = report_scope(uow, catalog, org_id, (TokenKind.PAT,))
    candidates = uow.reports.find_live(scope, at, violation_filter(policy), limit)
    view = EffectiveView(uow, catalog, org_id)
    owners: dict[str, str | None] = {}
    found: list[TokenViolation] = []
    for candidate in candidates:
        record = as_of(view, candidate, at)
        if record is None:
            continue
        breaches = violations(policy, record, now=at)
        if not breaches:
            continue
        if record.user_id not in owners:
            user = uow.users.get(record.user_id)
            owners[record.user_id] = user.upn if user else None
        found.append(TokenViolation(record, owners[record.user_id], tuple(breaches)))
    return found


def as_of(view: EffectiveView, record: TokenRecord, at: datetime) -> TokenRecord | None:
    """``record`` as it stood at ``at`` by :class:`EffectiveView` (a revocation after ``at``
    not yet happened), or None if it was not active then — the check a listing makes of the
    candidates the set-based query found."""
    seen = view.one(record)
    if seen.revoked_at is not None and seen.revoked_at > at:
        seen = seen.with_changes(revoked_at=None, revoked_by=None, revoke_reason=None)
    return seen if seen.state(at) is TokenState.ACTIVE else None


def violation_json(found: TokenViolation) -> dict[str, Any]:
    """The wire shape of one token in violation (API, CLI ``--json``, weekly report)."""
    r = found.token
    return {
        "authorizationId": r.authorization_id,
        "displayName": r.display_name,
        "owner": found.owner,
        "scope": r.scope_string,
        "validFrom": iso_z(r.valid_from),
        "validTo": iso_z(r.valid_to),
        "violations": [{"code": v.code, "message": v.message, "fix": v.fix} for v in found.violations],
    }


class PolicyCheckService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, catalog: ScopeCatalog) -> None:
        self._uow = uow
        self._clock = clock
        self._catalog = catalog

    def violations(self, actor: Actor, org: str) -> list[TokenViolation]:
        """Every live PAT issued in ``org`` that breaks its current policy (administrators of
        the organization and the operator)."""
        now = self._clock.now()
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            policy = uow.policies.get(the_org.id) or OrgPolicy(org_id=the_org.id)
            return find_violations(uow, self._catalog, the_org.id, policy, now)

    def violations_if(self, actor: Actor, org: str, **changes: Any) -> list[TokenViolation]:
        """The live PATs that would break the policy with ``changes`` applied (nothing is
        written): what a policy change would create, before it is made."""
        unknown = set(changes) - set(PREVIEWABLE)
        if unknown:
            raise InvalidInput(f"unknown policy field(s): {', '.join(sorted(unknown))}", code="invalidPolicy")
        now = self._clock.now()
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            current = uow.policies.get(the_org.id) or OrgPolicy(org_id=the_org.id)
            proposed = current.with_changes(**changes)
            return find_violations(uow, self._catalog, the_org.id, proposed, now)


PREVIEWABLE = (
    "max_lifetime_days",
    "restrict_full_scope",
    "restrict_creation",
    "require_external_identity",
    "disable_pat_creation",
    "break_glass_two_person",
    "dormant_revoke_days",
    "admins_require_mfa",
    "security_contact",
)
