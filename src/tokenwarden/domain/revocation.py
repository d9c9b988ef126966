"""Revocation rules: revoke by scope and issue date (and optionally kind, user, date range)
without touching each token."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import TokenKind


@dataclass(frozen=True, slots=True)
class RevocationRule:
    """Tokens of ``org_id`` issued in [``created_after``, ``created_before``) that carry one of
    ``scopes`` are dead, optionally only of some ``kinds`` or ``user_ids``. A rule without scopes
    (native API and CLI only) catches tokens of every scope: "every token created before a date".

    Scopes match literally (Azure DevOps semantics: ``app_token`` is not caught by a rule on
    ``vso.code``) unless ``match_implied`` is set: then any scope that implies one of the rule's
    scopes matches too.
    """

    id: str
    org_id: str
    scopes: tuple[str, ...]
    created_before: datetime
    created_at: datetime
    created_by: str | None = None
    created_after: datetime | None = None
    kinds: tuple[TokenKind, ...] | None = None
    user_ids: tuple[str, ...] | None = None
    match_implied: bool = False

    @property
    def all_scopes(self) -> bool:
        return not self.scopes

    def __post_init__(self) -> None:
        if self.created_after is not None and self.created_after >= self.created_before:
            raise InvalidInput("createdAfter must be before createdBefore", code="invalidDateRange")

    def catches(
        self, scopes: tuple[str, ...], kind: TokenKind, user_id: str, issued: datetime, catalog: ScopeCatalog
    ) -> bool:
        """Does this rule kill a token of this organization with these properties?
        (The same semantics as :class:`RuleIndex`, one rule at a time, for listings.)"""
        if issued >= self.created_before or (self.created_after is not None and issued < self.created_after):
            return False
        if self.kinds and kind not in self.kinds:
            return False
        if self.user_ids and user_id not in self.user_ids:
            return False
        if not self.scopes:
            return True
        wanted: set[str] = set(self.scopes)
        if self.match_implied:
            for scope in self.scopes:
                wanted |= catalog.implying(scope)
        return any(s in wanted for s in scopes)


_ANY_SCOPE = "\0any"  # the index key of rules without scopes (no real scope has a NUL byte)


@dataclass(frozen=True, slots=True)
class Condition:
    """Extra conditions of a rule beyond (org, scope, cut-off)."""

    kinds: frozenset[TokenKind] | None
    users: frozenset[str] | None
    after: float | None
    before: float

    def matches(self, kind: TokenKind, user_id: str, issued: float) -> bool:
        return (
            issued < self.before
            and (self.after is None or issued >= self.after)
            and (self.kinds is None or kind in self.kinds)
            and (self.users is None or user_id in self.users)
        )


class RuleIndex:
    """Rules indexed by (org, scope), with superseded rules compacted away.

    Plain rules (scope + cut-off) collapse to the latest cut-off per (org, scope); rules with
    extra conditions collapse per identical condition set. 10,000 plain rules over a catalog of
    60 scopes therefore cost at most 60 dictionary entries per organization. Rules without
    scopes (every scope) are indexed by org alone: a plain one is one cut-off per organization,
    checked once per org before the per-scope lookups.
    """

    __slots__ = ("any_conditional", "any_plain", "conditional", "plain", "size")

    def __init__(self) -> None:
        self.plain: dict[tuple[str, str], float] = {}
        self.conditional: dict[tuple[str, str], list[Condition]] = {}
        self.any_plain: dict[str, float] = {}
        self.any_conditional: dict[str, list[Condition]] = {}
        self.size = 0

    def __bool__(self) -> bool:
        return self.size > 0

    @classmethod
    def build(cls, rules: Iterable[RevocationRule], catalog: ScopeCatalog) -> RuleIndex:
        index = cls()
        merged: dict[
            tuple[str, str, frozenset[TokenKind] | None, frozenset[str] | None, float | None], float
        ] = {}
        for rule in rules:
            before = rule.created_before.timestamp()
            scopes: set[str] = set(rule.scopes)
            if rule.match_implied:
                for scope in rule.scopes:
                    scopes |= catalog.implying(scope)
            kinds = frozenset(rule.kinds) if rule.kinds else None
            users = frozenset(rule.user_ids) if rule.user_ids else None
            after = rule.created_after.timestamp() if rule.created_after else None
            if not rule.scopes:  # every scope: keyed by org alone
                if kinds is None and users is None and after is None:
                    index.any_plain[rule.org_id] = max(before, index.any_plain.get(rule.org_id, before))
                else:
                    akey = (rule.org_id, _ANY_SCOPE, kinds, users, after)
                    merged[akey] = max(before, merged.get(akey, before))
                continue
            for scope in scopes:
                if kinds is None and users is None and after is None:
                    key = (rule.org_id, scope)
                    index.plain[key] = max(before, index.plain.get(key, before))
                else:
                    mkey = (rule.org_id, scope, kinds, users, after)
                    merged[mkey] = max(before, merged.get(mkey, before))
        for (org, scope, kinds, users, after), before in merged.items():
            cond = Condition(kinds, users, after, before)
            if scope == _ANY_SCOPE:
                index.any_conditional.setdefault(org, []).append(cond)
            else:
                index.conditional.setdefault((org, scope), []).append(cond)
        index.size = len(index.plain) + len(index.any_plain) + len(merged)
        return index

    def revokes(
        self, orgs: Iterable[str], scopes: tuple[str, ...], kind: TokenKind, user_id: str, issued: float
    ) -> bool:
        """Does any rule of ``orgs`` catch a token with these literal ``scopes``?"""
        plain, conditional, any_plain, any_conditional = (
            self.plain,
            self.conditional,
            self.any_plain,
            self.any_conditional,
        )
        for org in orgs:
            if any_plain:
                cutoff = any_plain.get(org)
                if cutoff is not None and issued < cutoff:
                    return True
            if any_conditional:
                for cond in any_conditional.get(org, ()):
                    if cond.matches(kind, user_id, issued):
                        return True
            for scope in scopes:
                cutoff = plain.get((org, scope))
                if cutoff is not None and issued < cutoff:
                    return True
                if conditional:
                    for cond in conditional.get((org, scope), ()):
                        if cond.matches(kind, user_id, issued):
                            return True
        return False
