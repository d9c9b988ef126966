"""Revocation rules: revoke by date and scope without touching each token."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class RevocationRule:
    """Every token of ``org_id`` issued before ``created_before`` that literally carries one of
    ``scopes`` is dead (Azure DevOps semantics: ``app_token`` is not caught by ``vso.code``)."""

    id: str
    org_id: str
    scopes: tuple[str, ...]
    created_before: datetime
    created_at: datetime
    created_by: str | None = None


def compile_cutoffs(rules: Iterable[RevocationRule]) -> dict[tuple[str, str], float]:
    """Index rules as (org, scope) -> latest cut-off (epoch seconds).

    A token dies when it was issued before the cut-off of any (org, scope) pair it carries, so
    rules superseded by a later cut-off on the same pair compact away: 10,000 rules over a
    scope catalog of 60 cost at most 60 entries per org.
    """
    cutoffs: dict[tuple[str, str], float] = {}
    for rule in rules:
        ts = rule.created_before.timestamp()
        for scope in rule.scopes:
            key = (rule.org_id, scope)
            if ts > cutoffs.get(key, float("-inf")):
                cutoffs[key] = ts
    return cutoffs
