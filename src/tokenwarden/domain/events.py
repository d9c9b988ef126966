"""Invalidation events: every change that can make a cached token invalid becomes one."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    TOKEN_REVOKED = "token.revoked"
    TOKEN_CHANGED = "token.changed"
    USER_CHANGED = "user.changed"  # payload user_id, or user_ids for bulk changes
    ORG_CHANGED = "org.changed"  # organization watermarks moved (break-glass)
    MEMBERSHIP_CHANGED = "membership.changed"
    POLICY_CHANGED = "policy.changed"
    RULE_ADDED = "rule.added"
    RULE_DELETED = "rule.deleted"  # tokens the rule cut are valid again: nodes reload rules
    CLIENT_CHANGED = "client.changed"  # OAuth client watermarks moved (disable, remove): reload them


@dataclass(frozen=True, slots=True)
class InvalidationEvent:
    """An ordered event; ``seq`` is assigned by the store when it is committed."""

    type: EventType
    payload: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
