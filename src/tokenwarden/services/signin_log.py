"""The sign-in log (issue 14): sign-ins and failed sign-ins of an organization, from the audit
log, in the shape of Microsoft Graph's ``signIn`` resource (``GET /auditLogs/signIns``).

Failed attempts for an account that does not exist belong to no organization and are not
shown to any (they are in the installation's audit chain, for the operator).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from tokenwarden.domain.audit import AuditEntry, AuditEventType
from tokenwarden.domain.clock import iso_z
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.user_agents import browser_and_os
from tokenwarden.ports.repositories import AuditQuery
from tokenwarden.services.audit_log import AuditService
from tokenwarden.services.common import Actor

SIGN_IN_EVENTS: Final = (
    AuditEventType.SIGN_IN.value,
    AuditEventType.SIGN_IN_FAILED.value,
    AuditEventType.SIGN_IN_THROTTLED.value,
)
MAX_TOP: Final = 1000
# the sign-in page is tokenwarden's own application
APP_ID: Final = "6b7f3c1e-0d4a-4e8b-9a51-2f0c7d3e9b14"
APP_NAME: Final = "tokenwarden"
_NAMESPACE: Final = uuid.UUID("0f8e7d6c-5b4a-4938-8271-6a5b4c3d2e1f")
_ONE_US: Final = timedelta(microseconds=1)

# tokenwarden's reason -> (Entra error code, Entra's failure reason)
FAILURES: Final[dict[str, tuple[int, str]]] = {
    "unknown account": (50034, "The user account does not exist in the directory."),
    "wrong password": (50126, "Error validating credentials due to invalid username or password."),
    "no local password": (50126, "Error validating credentials due to invalid username or password."),
    "account disabled": (50057, "The user account is disabled."),
    "no active membership": (50105, "The signed in user is not assigned to a role for the application."),
}
THROTTLED: Final = (
    50053,
    "Account is locked because user tried to sign in too many times with an incorrect user ID or password.",
)
OTHER: Final = (50000, "There was an issue with the sign-in.")


@dataclass(frozen=True, slots=True)
class SignInFilter:
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    upn: str | None = None
    result: str | None = None  # "success", "failure" or None (both)
    top: int = MAX_TOP
    before_id: int | None = None


_TIME = r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2}))"
_CLAUSE: Final = re.compile(
    r"^\s*(?:createdDateTime\s+(ge|gt|le|lt)\s+" + _TIME + r"|userPrincipalName\s+eq\s+'((?:[^']|'')*)'"
    r"|status/errorCode\s+(eq|ne)\s+(\d{1,6}))\s*$",
    re.IGNORECASE,
)
_AND: Final = re.compile(r"\s+and\s+", re.IGNORECASE)


def parse_filter(raw: str | None, base: SignInFilter) -> SignInFilter:
    """Graph's ``$filter`` on ``createdDateTime`` (ge, gt, le, lt), ``userPrincipalName eq``
    and ``status/errorCode eq 0`` / ``ne 0``, joined with ``and``; anything else is a 400."""
    if not raw:
        return base
    since, until, upn, result = base.since, base.until, base.upn, base.result
    for clause in _AND.split(raw.strip()):
        m = _CLAUSE.match(clause)
        if not m:
            raise InvalidInput(
                f"Unsupported $filter clause {clause.strip()!r:.120}: use createdDateTime ge|gt|le|lt "
                "<ISO time>, userPrincipalName eq '<upn>' or status/errorCode eq|ne 0, joined with and."
            )
        op, when, name, code_op, code = m.groups()
        if when is not None:
            try:
                at = datetime.fromisoformat(_seven_digits(when).replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(f"Invalid date-time in $filter: {when!r:.40}") from None
            if op.lower() in ("ge", "gt"):
                at = at + _ONE_US if op.lower() == "gt" else at
                since = at if since is None else max(since, at)
            else:
                at = at + _ONE_US if op.lower() == "le" else at
                until = at if until is None else min(until, at)
        elif name is not None:
            upn = name.replace("''", "'")
        else:
            if int(code) != 0:
                raise InvalidInput("status/errorCode can only be compared with 0 (success).")
            result = "success" if code_op.lower() == "eq" else "failure"
    return SignInFilter(since, until, upn, result, base.top, base.before_id)


def _seven_digits(text: str) -> str:
    """Python parses at most 6 fractional digits; Graph sends up to 7."""
    return re.sub(r"\.(\d{6})\d", r".\1", text)


class SignInLog:
    def __init__(self, audit: AuditService) -> None:
        self._audit = audit

    def list(self, actor: Actor, org: str, wanted: SignInFilter) -> list[AuditEntry]:
        """Sign-in entries of ``org`` newest first (administrators; ``before_id`` pages on)."""
        if not 1 <= wanted.top <= MAX_TOP:
            raise InvalidInput(f"$top must be between 1 and {MAX_TOP}.")
        if wanted.since and wanted.until and wanted.since >= wanted.until:
            raise InvalidInput("The createdDateTime range of the $filter is empty.")
        events = {"success": SIGN_IN_EVENTS[:1], "failure": SIGN_IN_EVENTS[1:]}.get(
            wanted.result or "", SIGN_IN_EVENTS
        )
        return self._audit.query(
            actor,
            org,
            AuditQuery(
                since=wanted.since,
                until=wanted.until,
                actor_upn=wanted.upn,
                event_types=events,
                before_id=wanted.before_id,
                limit=wanted.top,
            ),
        )


def sign_in_json(entry: AuditEntry) -> dict[str, Any]:
    """One entry as a Graph ``signIn``."""
    details = entry.details
    if entry.event_type == AuditEventType.SIGN_IN.value:
        code, reason = 0, None
    elif entry.event_type == AuditEventType.SIGN_IN_THROTTLED.value:
        code, reason = THROTTLED
    else:
        code, reason = FAILURES.get(str(details.get("reason")), OTHER)
    agent = entry.user_agent or details.get("userAgent")
    browser, system = browser_and_os(agent if isinstance(agent, str) else None)
    user_id = entry.actor_id or (entry.target_id if entry.target_type == "user" and code != 50034 else None)
    return {
        "id": str(uuid.uuid5(_NAMESPACE, f"{entry.org_id}:{entry.id}")),
        "createdDateTime": iso_z(entry.at),
        "userDisplayName": None,
        "userPrincipalName": details.get("upn") or entry.actor_upn,
        "userId": user_id,
        "appId": APP_ID,
        "appDisplayName": APP_NAME,
        "ipAddress": entry.ip,
        "clientAppUsed": "Browser",
        "userAgent": agent,
        "isInteractive": True,
        "correlationId": str(uuid.uuid5(_NAMESPACE, f"correlation:{entry.id}")),
        "resourceDisplayName": APP_NAME,
        "status": {
            "errorCode": code,
            "failureReason": reason,
            "additionalDetails": None
            if code == 0
            else str(details.get("reason") or details.get("limit") or ""),
        },
        "deviceDetail": {
            "deviceId": "",
            "displayName": "",
            "operatingSystem": system,
            "browser": browser,
            "isCompliant": False,
            "isManaged": False,
            "trustType": "",
        },
    }
