"""Notice templates and the webhook event type each one is sent as (issue 12)."""

from __future__ import annotations

from typing import Final

EXPIRY_WARNING: Final = "expiry-warning"
TOKEN_EXPIRED: Final = "token-expired"
DORMANT_WARNING: Final = "dormant-warning"
DORMANT_REVOKED: Final = "dormant-revoked"
POLICY_VIOLATION: Final = "policy-violation"
POLICY_ENFORCED: Final = "policy-enforced"
WEEKLY_REPORT: Final = "weekly-report"
ROTATION_COMPLETED: Final = "rotation-completed"  # issue 13: a managed credential was rotated
ROTATION_FAILED: Final = "rotation-failed"  # issue 13: a rotation failed or is stuck
SECURITY_ALERT: Final = "security-alert"  # issue 14: a detection rule fired

EVENT_TYPES: Final[dict[str, str]] = {
    EXPIRY_WARNING: "token.expiring",
    TOKEN_EXPIRED: "token.expired",
    DORMANT_WARNING: "token.dormant",
    DORMANT_REVOKED: "token.dormant_revoked",
    POLICY_VIOLATION: "token.policy_violation",
    POLICY_ENFORCED: "token.policy_enforced",
    WEEKLY_REPORT: "report.weekly",
    ROTATION_COMPLETED: "credential.rotated",
    ROTATION_FAILED: "credential.rotation_failed",
    SECURITY_ALERT: "security.alert",
}
