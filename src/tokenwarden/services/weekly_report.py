"""The weekly report of an organization's tokens (PATs and service tokens), and its delivery to
the organization's administrators through the notification outbox.

Everything is one organization's (the tenancy rule): tokens issued in it, its policy, its
administrators. Counts come from set-based queries (``ports.reports``), so they are complete
however many tokens there are; each list shows at most :data:`LIST_LIMIT` tokens (soonest
validTo first) and its count says how many there are in all.

The week is ``[end - 7 days, end)``. State is taken at ``end``; watermarks, rules and
memberships as they stand now.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, Final

from tokenwarden.domain.clock import Clock, ensure_utc, iso_z
from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.policies import OrgPolicy
from tokenwarden.domain.principals import IdentitySource, Organization, Role
from tokenwarden.domain.scopes import FULL_ACCESS, ScopeCatalog
from tokenwarden.domain.spreadsheet import safe_cell
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.lifecycle import OutboxMessage
from tokenwarden.ports.reports import LiveFilter
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import Actor, get_org, reading, require_admin
from tokenwarden.services.effective import EffectiveView
from tokenwarden.services.policy_check import (
    as_of,
    find_violations,
    report_scope,
    violation_filter,
    violation_json,
)

KINDS: Final = (TokenKind.PAT, TokenKind.SERVICE)
WEEK: Final = timedelta(days=7)
EXPIRING_DAYS: Final = 30
LONG_LIVED_DAYS: Final = 90
DEFAULT_DORMANT_DAYS: Final = 60  # when the organization's dormant-token policy is off
TOP_USERS: Final = 10
WEEKS_AHEAD: Final = 12
LIST_LIMIT: Final = 100
TEMPLATE: Final = "weekly-report"


EARLIEST_END = datetime(2000, 1, 1, tzinfo=UTC)  # a week before it, and 12 after, stay representable


class WeeklyReportService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, catalog: ScopeCatalog) -> None:
        self._uow = uow
        self._clock = clock
        self._catalog = catalog

    def build(self, actor: Actor, org: str, *, end: datetime | None = None) -> dict[str, Any]:
        """The report of the 7 days ending at ``end`` (default now; never in the future), for
        the organization's administrators and the operator."""
        now = self._clock.now()
        until = now if end is None else ensure_utc(end)
        if until > now:
            raise InvalidInput("end must not be in the future", code="invalidEnd")
        if until < EARLIEST_END:
            raise InvalidInput("end must be after 2000-01-01", code="invalidEnd")
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            require_admin(uow, actor, the_org.id)
            return build_report(uow, self._catalog, the_org, until)


def build_report(uow: UnitOfWork, catalog: ScopeCatalog, org: Organization, end: datetime) -> dict[str, Any]:
    """The report dict (JSON data, no secret and no hash) of ``org`` for the week ending at ``end``."""
    start = end - WEEK
    policy = uow.policies.get(org.id) or OrgPolicy(org_id=org.id)
    scope = report_scope(uow, catalog, org.id, KINDS)
    dormant_days = policy.dormant_revoke_days or DEFAULT_DORMANT_DAYS
    lists = {
        "expiringSoon": LiveFilter(expires_before=end + timedelta(days=EXPIRING_DAYS)),
        "fullScope": LiveFilter(scope=FULL_ACCESS),
        "longLived": LiveFilter(lifetime_over=timedelta(days=LONG_LIVED_DAYS)),
        "dormant": LiveFilter(unused_since=end - timedelta(days=dormant_days)),
    }
    monday = datetime.combine(end.date() - timedelta(days=end.weekday()), time(), tzinfo=UTC)
    bounds = [monday + i * WEEK for i in range(WEEKS_AHEAD + 1)]
    weeks = {
        f"week{i}": LiveFilter(expires_from=lo, expires_before=hi)
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds))
    }
    # every count in one pass over the organization's tokens
    live = uow.reports.count_live(
        scope,
        end,
        {
            "live": LiveFilter(),
            **lists,
            "violations": replace(violation_filter(policy), kind=TokenKind.PAT),  # PAT policies
            **weeks,
        },
    )
    activity = uow.reports.activity(scope, start, end)
    view = EffectiveView(uow, catalog, org.id)
    upns: dict[str, str | None] = {}

    def owner(user_id: str) -> str | None:
        if user_id not in upns:
            user = uow.users.get(user_id)
            upns[user_id] = user.upn if user else None
        return upns[user_id]

    def rows(name: str) -> list[dict[str, Any]]:
        found = uow.reports.find_live(scope, end, lists[name], LIST_LIMIT)
        out = []
        for r in found:
            if as_of(view, r, end) is None:  # belt and braces: the listings' own view
                continue
            row = _row(r, owner(r.user_id), end)
            if name == "expiringSoon":
                row["daysLeft"] = (r.valid_to - end).days  # whole days left
            out.append(row)
        return out

    return {
        "org": {"id": org.id, "name": org.name},
        "period": {"start": iso_z(start), "end": iso_z(end)},
        "kinds": [k.value for k in KINDS],
        "policy": {
            "maxLifetimeDays": policy.max_lifetime_days,
            "restrictFullScope": policy.restrict_full_scope,
            "dormantDays": dormant_days,
            "dormantPolicy": policy.dormant_revoke_days is not None,
            "longLivedDays": LONG_LIVED_DAYS,
            "expiringDays": EXPIRING_DAYS,
        },
        "counts": {
            "created": activity["created"],
            "revoked": activity["revoked"],
            "expired": activity["expired"],
            "live": live["live"],
            "expiringNext30Days": live["expiringSoon"],
            "fullScope": live["fullScope"],
            "longLived": live["longLived"],
            "dormant": live["dormant"],
            "violations": live["violations"],
        },
        "listLimit": LIST_LIMIT,
        "expiringSoon": rows("expiringSoon"),
        "fullScope": rows("fullScope"),
        "longLived": rows("longLived"),
        "dormant": rows("dormant"),
        "violations": [
            {"id": v.token.authorization_id, **violation_json(v)}
            for v in find_violations(uow, catalog, org.id, policy, end, LIST_LIMIT)
        ],
        "topUsers": [
            {"upn": upn, "tokens": n} for _, upn, n in uow.reports.top_owners(scope, end, TOP_USERS)
        ],
        "expiringPerWeek": [
            {"weekStart": lo.date().isoformat(), "count": live[name]}
            for name, lo in zip(weeks, bounds, strict=False)
        ],
    }


def _row(r: TokenRecord, owner: str | None, end: datetime) -> dict[str, Any]:
    return {
        "id": r.authorization_id,  # the authorizationId
        "kind": r.kind.value,
        "displayName": r.display_name,
        "owner": owner,
        "scope": r.scope_string,
        "validFrom": iso_z(r.valid_from),
        "validTo": iso_z(r.valid_to),
        "lastUsedAt": iso_z(r.last_used_at),
        "idleDays": (end - (r.last_used_at or r.created_at)).days,
    }


# ---------------------------------------------------------------------- delivery


def weekly_report_messages(
    report: dict[str, Any],
    *,
    org_id: str,
    org_name: str,
    admins: Sequence[tuple[str, str]],
    now: datetime,
    base_url: str | None,
    run_id: str | None = None,
) -> list[OutboxMessage]:
    """One email per administrator (``admins``: (address, UPN)); addresses compare
    case-insensitively. The dedupe key names the ISO week of ``now``: a restart or a second
    node enqueueing the same week finds the key taken and sends nothing twice."""
    year, week, _ = now.isocalendar()
    messages: dict[str, OutboxMessage] = {}
    for address, _upn in admins:
        key = f"weekly-report:{org_id}:{year}-W{week:02d}:{address.lower()}"
        if key in messages:
            continue
        messages[key] = OutboxMessage(
            dedupe_key=key,
            channel="email",
            destination=address,
            template=TEMPLATE,
            payload={
                "org": {"id": org_id, "name": org_name},
                "recipient": {"address": address, "role": Role.ADMIN.value},
                "baseUrl": base_url,
                "report": report,
            },
            created_at=now,
            next_attempt_at=now,
            org_id=org_id,
            run_id=run_id,
        )
    return list(messages.values())


def run_weekly_report(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    catalog: ScopeCatalog,
    *,
    org_id: str | None = None,
    base_url: str | None,
    run_id: str | None = None,
    check: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Build each organization's report (all, or ``org_id``) in a read, then enqueue one email
    per active administrator (their ``User.notify_address``) in a short write; return
    ``{"orgs": n, "enqueued": m}`` (messages already enqueued this week are not counted).

    As a job body: ``run_id`` tags the messages (the run's delivery counts find them) and
    ``check`` is called before each organization (``JobContext.check``: stop once the lease is
    lost)."""
    now = clock.now()
    with reading(uow_factory) as uow:
        orgs = [get_org(uow, org_id)] if org_id is not None else uow.orgs.all()
    enqueued = 0
    for org in orgs:
        if check is not None:
            check()
        with reading(uow_factory) as uow:
            report = build_report(uow, catalog, org, now)
            admins = _admins(uow, org.id)
        messages = weekly_report_messages(
            report, org_id=org.id, org_name=org.name, admins=admins, now=now, base_url=base_url, run_id=run_id
        )
        if not messages:
            continue
        with uow_factory() as uow:
            enqueued += uow.outbox.enqueue(messages)
            uow.commit()
    return {"orgs": len(orgs), "enqueued": enqueued}


def _admins(uow: UnitOfWork, org_id: str) -> list[tuple[str, str]]:
    """(address, UPN) of the organization's active administrators (active users, active
    admin memberships; an OAuth client's service principal is no recipient)."""
    found: list[tuple[str, str]] = []
    for user in uow.users.find(org_id):
        m = uow.users.membership(org_id, user.id)
        if m is None or m.role is not Role.ADMIN or not m.is_active or not user.is_active:
            continue
        if user.identity_source is IdentitySource.SERVICE:
            continue
        found.append((user.notify_address, user.upn))
    return found


# ---------------------------------------------------------------------- CSV

SECTIONS: Final = ("expiringSoon", "fullScope", "longLived", "dormant", "violations")
CSV_COLUMNS: Final = (
    "section",
    "id",
    "kind",
    "displayName",
    "owner",
    "scope",
    "validFrom",
    "validTo",
    "lastUsedAt",
    "daysLeft",
    "idleDays",
    "violations",
)


def report_csv(report: dict[str, Any]) -> str:
    """The report's token lists as one CSV, a ``section`` column naming the list each row is
    from (a token can be in several); formula cells are neutralised (``domain.spreadsheet``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for section in SECTIONS:
        for row in report.get(section, []):
            cells = {
                **row,
                "section": section,
                "violations": "; ".join(f"{v['code']}: {v['message']}" for v in row.get("violations", [])),
            }
            writer.writerow([safe_cell(cells.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()
