"""Security alerts and detection policies (issue 14)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, Self

OPEN, ACKNOWLEDGED, CLOSED = "open", "acknowledged", "closed"
STATUSES = (OPEN, ACKNOWLEDGED, CLOSED)


@dataclass(frozen=True, slots=True)
class Alert:
    """One detection: a token, the rule that fired, its level and evidence; at most one alert
    per token and rule is not closed (the alerts table enforces it)."""

    id: str
    org_id: str
    token_id: str
    user_id: str
    rule: str
    level: str
    message: str
    evidence: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    status: str = OPEN
    occurrences: int = 1
    responses: tuple[str, ...] = ()  # what was done automatically (revoke, rotate, ...)
    closed_by: str | None = None
    note: str | None = None

    def with_changes(self, **changes: Any) -> Self:
        return replace(self, **changes)

    @property
    def open_key(self) -> str | None:
        return None if self.status == CLOSED else f"{self.token_id}:{self.rule}"


@dataclass(frozen=True, slots=True)
class AlertQuery:
    org_id: str
    statuses: tuple[str, ...] = ()
    token_id: str | None = None
    rule: str | None = None
    level: str | None = None
    limit: int = 100
    before: datetime | None = None  # paging: alerts created before this


@dataclass(frozen=True, slots=True)
class OpenCount:
    org_id: str
    rule: str
    level: str
    status: str
    count: int


@dataclass
class StoredPolicy:
    org_id: str
    data: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None


class AlertRepository(Protocol):
    def raise_alert(self, alert: Alert) -> Alert | None:
        """Insert ``alert`` unless the token has an alert for the rule that is not closed; then
        that one's ``occurrences`` grows and ``None`` is returned (no second alert)."""
        ...

    def get(self, alert_id: str) -> Alert | None: ...
    def update(self, alert: Alert) -> None: ...
    def find(self, query: AlertQuery) -> list[Alert]: ...
    def counts(self) -> list[OpenCount]:
        """Alerts per organization, rule, level and status (for /metrics)."""
        ...

    def policy(self, org_id: str) -> StoredPolicy | None: ...
    def set_policy(self, policy: StoredPolicy) -> None: ...
