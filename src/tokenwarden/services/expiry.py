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
from tokenwarden.domain.managed import SourceKind
from tokenwarden.domain.notices import EXPIRY_WARNING, TOKEN_EXPIRED
from tokenwarden.domain.policies import GlobalPolicy, OrgPolicy, check_may_create
from tokenwarden.domain.principals import User
from tokenwarden.domain.scopes import FULL_ACCESS, ScopeCatalog
from tokenwarden.domain.tokens import TokenKind, TokenRecord
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import SYSTEM, audit, reading
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
        with reading(self._uow) as uow:
            orgs = [o.id for o in uow.orgs.all()] if ctx.org_id is None else [ctx.org_id]
            thresholds = {o: (uow.policies.get(o) or OrgPolicy(o)).expiry_warning_days for o in orgs}
        by_set: dict[tuple[int, ...], list[str]] = {}
        for org_id, days in thresholds.items():
            by_set.setdefault(days, []).append(org_id)
        # the most common threshold set is read for "every organization but the others" (no
        # long IN list); each other set for its organizations
        groups = sorted(by_set.items(), key=lambda kv: -len(kv[1]))
        scans: list[dict[str, Any]] = []
        for i, (days, org_ids) in enumerate(groups):
            others = [o for _, ids in groups[:i] + groups[i + 1 :] for o in ids]
            broad = i == 0 and ctx.org_id is None
            scans.append(
                {
                    "thresholds": days,
                    "org_ids": None if broad else org_ids,
                    "exclude_org_ids": others if broad else (),
                }
            )
        expired = {"thresholds": (), "expired_since": now - self._lookback}
        expired.update({"org_ids": None} if ctx.org_id is None else {"org_ids": [ctx.org_id]})
        for template, scan in [*((EXPIRY_WARNING, x) for x in scans), (TOKEN_EXPIRED, expired)]:
            for chunk_counts in self._pages(ctx, now, template, scan):
                for key, value in chunk_counts.items():
                    counts[key] += value
        return counts

    def _pages(
        self, ctx: JobContext, now: datetime, template: str, scan: dict[str, Any]
    ) -> Iterator[dict[str, int]]:
        """Page through the tokens due a notice nobody recorded yet (set-based, by the index on
        valid_to and the notices' primary key): a run where everyone was already told reads no
        token. Tokens dead in effect are skipped (and come back in the next run's scan, cheaply)."""
        after: tuple[datetime, str] | None = None
        while True:
            ctx.check()
            with self._uow() as uow:
                page = uow.lifecycle.due_expiry(WARNED_KINDS, now=now, after=after, limit=self._chunk, **scan)
                if not page:
                    return
                after = (page[-1].valid_to, page[-1].authorization_id)
                counts = {"scanned": len(page), **self._handle(uow, ctx, now, page, template)}
                uow.commit()
            yield counts
            if len(page) < self._chunk:
                return

    def _handle(
        self, uow: UnitOfWork, ctx: JobContext, now: datetime, page: list[TokenRecord], template: str
    ) -> dict[str, int]:
        view = EffectiveView(uow, self._catalog)
        writer = NoticeWriter(uow, now, run_id=ctx.run_id, base_url=self._base_url)
        notices: list[Notice] = []
        dead: dict[tuple[str, str], tuple[datetime, int]] = {}
        writer.preload([r.user_id for r in page])
        # issue 13: a token under rotation is rotated, not renewed by hand (local tokens of its org only:
        # an external source's ids say nothing about this installation's tokens)
        managed = {(c.org_id, c.authorization_id) for c in uow.managed.all() if c.source is SourceKind.LOCAL}
        for record in page:
            if view.one(record).revoked_at is not None:
                # dead by a watermark, a rule or its owner's membership: nothing to warn about,
                # and recorded so (threshold 1 / 0 covers every warning / the expired notice of
                # this validTo) that later scans skip it in SQL instead of judging it again
                mark = 0 if template == TOKEN_EXPIRED else 1
                dead[(record.authorization_id, f"dead:{mark}:{iso_z(record.valid_to)}")] = (
                    record.valid_to,
                    mark,
                )
                continue
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
                    managedByRotation=(record.org_id, record.authorization_id) in managed,
                )
                key = f"expiry:{threshold}:{iso_z(record.valid_to)}"
                notices.append(Notice(record, key, entry, mark=(record.valid_to, threshold)))
            else:
                entry = token_entry(
                    record, owner, now, managedByRotation=(record.org_id, record.authorization_id) in managed
                )
                notices.append(
                    Notice(record, f"expired:{iso_z(record.valid_to)}", entry, mark=(record.valid_to, 0))
                )
        if dead:
            uow.lifecycle.claim_notices(list(dead), now, dead)
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
