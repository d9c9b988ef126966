"""The scheduled jobs' names, default schedules, and the wrapper that delivers what a run enqueued.

A run enqueues its messages in the transactions that decide them, then delivers everything due
(its own messages and any still waiting from earlier runs) before it ends, so ``tokenwarden jobs
run NAME`` needs no server. Its counts say how its own messages stand: sent, waiting for a
retry (``pending``) or given up (``dead``), with a few of the errors.
"""

from __future__ import annotations

from typing import Any, Final

from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import reading
from tokenwarden.services.job_runner import DEFAULT_SCHEDULE, JobBody, JobContext
from tokenwarden.services.outbox_delivery import OutboxDelivery

EXPIRY_NOTIFICATIONS: Final = "expiry-notifications"
WEEKLY_REPORT: Final = "weekly-report"
DORMANT_TOKENS: Final = "dormant-tokens"
POLICY_ENFORCEMENT: Final = "policy-enforcement"
ROTATION_JOB: Final = "rotation"  # issue 13
AUDIT_CHECKPOINT_JOB: Final = "audit-checkpoint"  # issue 14
USAGE_RETENTION_JOB: Final = "usage-retention"  # issue 14

DEFAULT_SCHEDULES: Final[dict[str, str]] = {
    EXPIRY_NOTIFICATIONS: DEFAULT_SCHEDULE,
    DORMANT_TOKENS: DEFAULT_SCHEDULE,
    POLICY_ENFORCEMENT: DEFAULT_SCHEDULE,
    WEEKLY_REPORT: "0 8 * * 1",  # Mondays at 08:00 UTC
    # hourly: a credential is rotated days before it expires (its threshold), so the hour only
    # bounds how late an overlap window's end or a retry after a failure is acted on
    ROTATION_JOB: "20 * * * *",
    # the job signs what is due (CheckpointPolicy: N entries, or any after M minutes)
    AUDIT_CHECKPOINT_JOB: "*/5 * * * *",
    USAGE_RETENTION_JOB: "40 3 * * *",
}

WEBHOOK_SECRET_INFO: Final = b"tokenwarden webhook secrets"


def delivering(body: JobBody, delivery: OutboxDelivery, uow: UnitOfWorkFactory) -> JobBody:
    """``body``, then deliver what is due; the run's counts gain ``messages`` (its own, by
    status), ``outboxWaiting`` / ``outboxDead`` (every message of the scope that still waits
    or was given up, earlier runs' included) and ``deliveryErrors`` (a few distinct errors)."""

    def run(ctx: JobContext) -> dict[str, Any]:
        counts = dict(body(ctx))
        ctx.check()
        delivery.deliver_due(stop=lambda: ctx._lost.is_set())
        with reading(uow) as u:
            counts["messages"] = u.outbox.counts(run_id=ctx.run_id)
            backlog = u.outbox.counts(org_id=ctx.org_id)  # older runs' messages too
            counts["outboxWaiting"] = backlog.get("pending", 0) + backlog.get("sending", 0)
            counts["outboxDead"] = backlog.get("dead", 0)
            errors = u.outbox.recent_errors(org_id=ctx.org_id)
            waiting_email = "email" not in delivery.channels and bool(
                u.outbox.counts(org_id=ctx.org_id, channel="email").get("pending")
            )
        if waiting_email:
            errors.insert(
                0, "email is not configured (TOKENWARDEN_SMTP_HOST): email messages wait in the outbox"
            )
        counts["deliveryErrors"] = errors
        return counts

    return run
