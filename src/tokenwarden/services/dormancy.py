"""The ``dormant-tokens`` job: tokens nobody uses are warned, then revoked (issue 12).

An organization whose policy sets ``dormant_revoke_days`` = N revokes PATs and service tokens
unused for N days (their last use, or their creation when never used). Seven days before
(``DORMANT_WARNING_DAYS``), the owner, the token's watchers and the security contact are warned
once per period of inactivity: the notice key carries the last activity, so a token used again
and then left idle again is warned again. A token is revoked only when its warning *for that
same activity* was recorded at least seven days earlier — never without the warning — and the
revocation is claimed like a notice, so two runs never revoke (or tell) twice.

The scan reads ``LifecycleRepository.idle`` page by page (by id), one organization at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from tokenwarden.domain.audit import AuditEventType
from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.events import EventType
from tokenwarden.domain.notices import DORMANT_REVOKED, DORMANT_WARNING
from tokenwarden.domain.policies import DORMANT_WARNING_DAYS, OrgPolicy
from tokenwarden.domain.scopes import ScopeCatalog
from tokenwarden.domain.tokens import RevokedBy, TokenKind, TokenRecord
from tokenwarden.ports.repositories import UnitOfWork, UnitOfWorkFactory
from tokenwarden.services.common import SYSTEM, publish, reading
from tokenwarden.services.effective import EffectiveView
from tokenwarden.services.job_runner import JobContext
from tokenwarden.services.notices import Notice, NoticeWriter, token_entry
from tokenwarden.services.pats import revoke_record

JOB_NAME = "dormant-tokens"
DORMANT_KINDS = (TokenKind.PAT, TokenKind.SERVICE)
DORMANT_REASON = "dormant"
WARNING = timedelta(days=DORMANT_WARNING_DAYS)


def last_activity(record: TokenRecord) -> datetime:
    """When the token was last used, or created if it never was."""
    return record.last_used_at or record.created_at


def warning_key(record: TokenRecord) -> str:
    return f"{DORMANT_WARNING}:{iso_z(last_activity(record))}"


def revoked_key(record: TokenRecord) -> str:
    return f"{DORMANT_REVOKED}:{iso_z(last_activity(record))}"


class DormancyJob:
    """Job body of ``dormant-tokens``: ``run(ctx)`` returns counts for the run's history."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        catalog: ScopeCatalog,
        *,
        base_url: str | None = None,
        chunk: int = 1000,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._catalog = catalog
        self._base_url = base_url
        self._chunk = chunk

    def run(self, ctx: JobContext) -> dict[str, Any]:
        now = self._clock.now()
        counts = {"orgs": 0, "scanned": 0, "warned": 0, "revoked": 0, "enqueued": 0}
        for org_id, days in self._orgs(ctx.org_id):
            counts["orgs"] += 1
            for page_counts in self._pages(ctx, now, org_id, days):
                for key, value in page_counts.items():
                    counts[key] += value
        return counts

    def _orgs(self, only: str | None) -> list[tuple[str, int]]:
        """(organization id, N) of every organization with the dormant-token policy on."""
        with reading(self._uow) as uow:
            found = []
            for org in uow.orgs.all():
                if only is not None and org.id != only:
                    continue
                days = (uow.policies.get(org.id) or OrgPolicy(org.id)).dormant_revoke_days
                if days is not None:
                    found.append((org.id, days))
            return found

    def _pages(self, ctx: JobContext, now: datetime, org_id: str, days: int) -> Iterator[dict[str, int]]:
        after: str | None = None
        while True:
            ctx.check()
            with self._uow() as uow:
                page = uow.lifecycle.idle(
                    org_id,
                    DORMANT_KINDS,
                    unused_since=now - timedelta(days=days) + WARNING,
                    now=now,
                    after=after,
                    limit=self._chunk,
                )
                if not page:
                    return
                after = page[-1].authorization_id
                counts = self._handle(uow, ctx, now, days, page)
                uow.commit()
            counts["scanned"] = len(page)
            yield counts
            if len(page) < self._chunk:
                return

    def _handle(
        self, uow: UnitOfWork, ctx: JobContext, now: datetime, days: int, page: list[TokenRecord]
    ) -> dict[str, int]:
        view = EffectiveView(uow, self._catalog)
        writer = NoticeWriter(uow, now, run_id=ctx.run_id, base_url=self._base_url)
        recorded = uow.lifecycle.notices_of([r.authorization_id for r in page])
        warn: list[Notice] = []
        due: list[Notice] = []
        for record in page:
            if view.one(record).revoked_at is not None:
                continue  # dead by a watermark, a rule or its owner's membership already
            activity = last_activity(record)
            owner = writer.user(record.user_id)
            warned_at = recorded.get(record.authorization_id, {}).get(warning_key(record))
            if warned_at is None:
                revoke_at = max(activity + timedelta(days=days), now + WARNING)
                if record.valid_to <= revoke_at:
                    continue  # it expires first: the expiry warnings speak for it
                entry = token_entry(record, owner, now, revokeAt=iso_z(revoke_at), dormantDays=days)
                warn.append(Notice(record, warning_key(record), entry))
            elif now - activity >= timedelta(days=days) and now - warned_at >= WARNING:
                dead = record.with_changes(
                    revoked_at=now, revoked_by=RevokedBy.SYSTEM.value, revoke_reason=DORMANT_REASON
                )
                entry = token_entry(
                    dead, owner, now, reason=DORMANT_REASON, revokeAt=iso_z(now), dormantDays=days
                )
                due.append(Notice(record, revoked_key(record), entry))
        warned = writer.write(DORMANT_WARNING, warn)
        # The revocation notice is claimed first: only a run that wins it revokes the token.
        revoked = writer.write(DORMANT_REVOKED, due)
        hashes: list[str] = []
        for n in revoked.fresh:
            record = n.token
            revoke_record(
                uow,
                self._clock,
                SYSTEM,
                record,
                reason=DORMANT_REASON,
                revoked_by=RevokedBy.SYSTEM.value,
                event_type=AuditEventType.PAT_SYSTEM_REVOKE,
                initiating_entity="policy",
                details={
                    "lastUsedAt": iso_z(record.last_used_at),
                    "lastActivityAt": iso_z(last_activity(record)),
                    "dormantRevokeDays": days,
                    "warnedAt": iso_z(recorded[record.authorization_id][warning_key(record)]),
                },
                publish_event=False,
            )
            hashes.append(record.secret_hash.hex())
        if hashes:  # one invalidation event for the page: every node refuses them at once
            publish(uow, EventType.TOKEN_REVOKED, hashes=hashes)
        return {
            "warned": warned.notices,
            "revoked": revoked.notices,
            "enqueued": warned.messages + revoked.messages,
        }
