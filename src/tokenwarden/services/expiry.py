"""Job ``expiry-notifications``: warnings before validTo, and the notice once it has passed.

Each organization sets its thresholds (default 30, 14, 7 and 1 days). A token gets the warning
of the most urgent threshold it is inside — a token first seen 10 days out gets the 14-day one,
not a burst of 30 and 14 — and each warning exactly once (claimed notices, keyed by the token's
validTo, so an extended token is warned again about its new date). Once validTo has passed,
``Token.PatExpiredEvent`` is recorded and the owner told, once; only tokens that expired within
``expired_lookback`` are considered, so a first run over an old database does not mail the past.
The scan reads the index on ``tokens.valid_to`` in pages: never the whole table.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.errors import PolicyViolation
from tokenwarden.domain.notices import EXPIRY_WARNING, TOKEN_EXPIRED
from tokenwarden.domain.policies import HARD_MAX_LIFETIME_DAYS, GlobalPolicy, OrgPolicy, check_may_create
from tokenwarden.domain.principals import User
from tokenwarden.domain.scopes import FULL_ACCESS, ScopeCatalog
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import SYSTEM, audit
from tokenwarden.services.effective import EffectiveView
from tokenwarden.services.job_runner import JobContext
from tokenwarden.services.notices import Notice, NoticeWriter, token_entry

WARNED_KINDS = (TokenKind.PAT, TokenKind.SERVICE)
DAY = 86400.0


def warning_threshold(days_left: float, thresholds: tuple[int, ...]) -> int | None:
    """The most urgent threshold a token with ``days_left`` is inside (None: none yet)."""
    inside = [t for t in thresholds if days_left <= t]
    return min(inside) if inside else None


def renewal_blocked(
    policy: OrgPolicy, glob: GlobalPolicy, owner: User | None, record: TokenRecord
) -> str | None:
    """Why the owner could not simply extend or renew this token under today's policy."""
    if owner is not None:
        try:
            check_may_create(policy, glob, owner)
        except PolicyViolation as exc:
            return exc.message
    if policy.restrict_full_scope and FULL_ACCESS in record.scopes:
        return (
            "the organization no longer allows full-scope (app_token) tokens: create one with narrower scopes"
        )
    if record.valid_to - record.valid_from >= timedelta(days=policy.max_lifetime_days):
        return (
            f"the token already has the organization's maximum lifetime of {policy.max_lifetime_days} days, "
            "so it cannot be extended: create a new token before it expires"
        )
    return None


class ExpiryNotifier:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        catalog: ScopeCatalog,
        global_policy: GlobalPolicy,
        *,
        expired_lookback: timedelta = timedelta(days=7),
        base_url: str | None = None,
        chunk: int = 1000,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._catalog = catalog
        self._global = global_policy
        self._lookback = expired_lookback
        self._base_url = base_url
        self._chunk = chunk

    def run(self, ctx: JobContext) -> dict[str, Any]:
        now = self._clock.now()
        counts = {"scanned": 0, "warned": 0, "expired": 0, "enqueued": 0}
        horizon = self._horizon()
        for window, template in (
            ((now, now + timedelta(days=horizon)), EXPIRY_WARNING),
            ((now - self._lookback, now), TOKEN_EXPIRED),
        ):
            for chunk_counts in self._pages(ctx, now, window, template):
                for key, value in chunk_counts.items():
                    counts[key] += value
        return counts

    def _horizon(self) -> int:
        """The largest threshold of any organization: the warning window to scan."""
        with self._uow() as uow:
            orgs = uow.orgs.all()
            largest = max(
                (max((uow.policies.get(o.id) or OrgPolicy(o.id)).expiry_warning_days) for o in orgs),
                default=30,
            )
        return min(largest, HARD_MAX_LIFETIME_DAYS)

    def _pages(
        self, ctx: JobContext, now: datetime, window: tuple[datetime, datetime], template: str
    ) -> Iterator[dict[str, int]]:
        after: tuple[datetime, str] | None = None
        while True:
            ctx.check()
            with self._uow() as uow:
                page = uow.lifecycle.expiring(
                    WARNED_KINDS, start=window[0], end=window[1], after=after, limit=self._chunk
                )
                if not page:
                    return
                last, full = page[-1], len(page) == self._chunk
                after = (last.valid_to, last.authorization_id)
                if ctx.org_id is not None:
                    page = [r for r in page if r.org_id == ctx.org_id]
                counts = self._handle(uow, ctx, now, page, template)
                uow.commit()
            counts["scanned"] = counts.get("scanned", 0) + len(page)
            yield counts
            if not full:
                return

    def _handle(
        self, uow: UnitOfWork, ctx: JobContext, now: datetime, page: list[TokenRecord], template: str
    ) -> dict[str, int]:
        view = EffectiveView(uow, self._catalog)
        writer = NoticeWriter(uow, now, run_id=ctx.run_id, base_url=self._base_url)
        notices: list[Notice] = []
        for record in page:
            if view.one(record).revoked_at is not None:
                continue  # dead by a watermark, a rule or its owner's membership: nothing to warn about
            owner = writer.user(record.user_id)
            if template == EXPIRY_WARNING:
                policy = writer.policy(record.org_id)
                days_left = (record.valid_to - now).total_seconds() / DAY
                threshold = warning_threshold(days_left, policy.expiry_warning_days)
                if threshold is None:
                    continue
                entry = token_entry(
                    record,
                    owner,
                    now,
                    threshold=threshold,
                    renewalBlocked=renewal_blocked(policy, self._global, owner, record),
                )
                notices.append(Notice(record, f"expiry:{threshold}:{iso_z(record.valid_to)}", entry))
            else:
                notices.append(
                    Notice(record, f"expired:{iso_z(record.valid_to)}", token_entry(record, owner, now))
                )
        result = writer.write(template, notices)
        if template == TOKEN_EXPIRED:
            for n in result.fresh:
                audit(
                    uow,
                    self._clock,
                    SYSTEM,
                    AuditEventType.PAT_EXPIRED,
                    org_id=n.token.org_id,
                    target_type=n.token.kind.value,
                    target_id=n.token.authorization_id,
                    details={"displayName": n.token.display_name, "validTo": iso_z(n.token.valid_to)},
                )
        key = "warned" if template == EXPIRY_WARNING else "expired"
        return {key: result.notices, "enqueued": result.messages}
