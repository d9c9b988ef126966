"""Storage ports of the lifecycle side (issue 12): job leases and runs, token notices and
watchers, the notification outbox, webhooks and policy enforcements.

Exactly-once warnings rest on two unique keys, both written in the transaction that decides:
``token_notices`` (token id, notice) says a notice was decided for a token, and the outbox's
``dedupe_key`` says a message for a recipient exists. Delivery happens after commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tokenwarden.domain.principals import User
from tokenwarden.domain.tokens import TokenKind, TokenRecord

# ---------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class JobRun:
    """One run of a scheduled job (its history row)."""

    id: str
    name: str
    trigger: str  # schedule | startup | manual
    node: str
    started_at: datetime
    status: str = "running"  # running | completed | failed | interrupted
    finished_at: datetime | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    slot: datetime | None = None  # the scheduled instant this run is for (schedule trigger)
    org_id: str | None = None  # a run limited to one organization (None: all)


@dataclass(frozen=True, slots=True)
class JobLease:
    name: str
    holder: str | None
    lease_until: datetime | None
    run_id: str | None
    last_slot: datetime | None


class JobRepository(Protocol):
    def try_lease(self, name: str, holder: str, run_id: str, now: datetime, until: datetime) -> bool:
        """Take the job's lease if it is free or expired (compare-and-set; creates the row)."""
        ...

    def renew(self, name: str, holder: str, until: datetime) -> bool:
        """Extend a lease this holder still has; False if it was lost."""
        ...

    def release(self, name: str, holder: str, *, slot: datetime | None = None) -> None:
        """Give the lease up (only if still held); with ``slot``, record it as done."""
        ...

    def lease(self, name: str) -> JobLease | None: ...

    def start_run(self, run: JobRun) -> None: ...

    def finish_run(
        self, run_id: str, *, status: str, at: datetime, counts: dict[str, Any], error: str | None
    ) -> None: ...

    def runs(self, name: str | None = None, limit: int = 20) -> list[JobRun]:
        """Newest first."""
        ...

    def interrupt(self, name: str, except_run: str, at: datetime) -> int:
        """Mark runs of ``name`` still ``running`` (their holder died) ``interrupted``."""
        ...


# ---------------------------------------------------------------- outbox


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to deliver: rendered from ``template`` and ``payload`` when it is sent.

    ``payload`` is JSON data for the template and never holds a secret."""

    dedupe_key: str
    channel: str  # email | webhook
    destination: str  # an email address, or a webhook id
    template: str
    payload: dict[str, Any]
    created_at: datetime
    next_attempt_at: datetime
    org_id: str | None = None
    status: str = "pending"  # pending | sending | sent | dead
    attempts: int = 0
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = None
    run_id: str | None = None
    id: int | None = None


class OutboxRepository(Protocol):
    def enqueue(self, messages: Sequence[OutboxMessage]) -> int:
        """Insert the messages whose dedupe key is new (set-based); return how many were."""
        ...

    def claim_due(
        self,
        now: datetime,
        until: datetime,
        claimer: str,
        limit: int,
        channels: Sequence[str] | None = None,
    ) -> list[OutboxMessage]:
        """Up to ``limit`` messages due at ``now`` (pending with next_attempt_at reached, or
        ``sending`` with an expired claim) of ``channels`` (None: all), marked ``sending`` by
        ``claimer`` until ``until``, oldest first. Two claimers never get the same message."""
        ...

    def mark_sent(self, message_id: int, claimer: str, at: datetime) -> bool:
        """Only if ``claimer`` still holds it."""
        ...

    def mark_failed(
        self, message_id: int, claimer: str, error: str, *, retry_at: datetime | None, at: datetime
    ) -> bool:
        """Back to pending for ``retry_at``, or dead when ``retry_at`` is None."""
        ...

    def get(self, message_id: int) -> OutboxMessage | None: ...

    def find(
        self,
        *,
        org_id: str | None = None,
        status: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[OutboxMessage]:
        """Newest first."""
        ...

    def recent_errors(self, *, org_id: str | None = None, limit: int = 5) -> list[str]:
        """A few distinct errors of messages still waiting or given up (no order: a hint for the
        operator that must stay cheap over a large backlog)."""
        ...

    def replay(self, message_id: int, at: datetime) -> bool:
        """A dead message becomes pending again, due at once, with its attempts reset."""
        ...

    def counts(
        self, *, org_id: str | None = None, run_id: str | None = None, channel: str | None = None
    ) -> dict[str, int]:
        """status -> number of messages."""
        ...


# ---------------------------------------------------------------- webhooks


@dataclass(frozen=True, slots=True)
class Webhook:
    """An organization's webhook endpoint; ``secret`` is sealed (SecretBox), never plain."""

    id: str
    org_id: str
    url: str
    secret: bytes
    events: tuple[str, ...]
    created_at: datetime
    created_by: str | None = None
    description: str | None = None
    disabled_at: datetime | None = None


class WebhookRepository(Protocol):
    def add(self, hook: Webhook) -> None: ...
    def get(self, hook_id: str) -> Webhook | None: ...
    def find(self, org_id: str) -> list[Webhook]: ...
    def update(self, hook: Webhook) -> None: ...
    def delete(self, hook_id: str) -> bool: ...


# ---------------------------------------------------------------- token lifecycle


@dataclass(frozen=True, slots=True)
class PolicyEnforcement:
    """``policy enforce --grace DAYS``: owners told now, tokens changed when the grace ends."""

    id: str
    org_id: str
    created_at: datetime
    grace_until: datetime
    status: str = "pending"  # pending | applied | cancelled
    created_by: str | None = None
    applied_at: datetime | None = None
    counts: dict[str, Any] = field(default_factory=dict)


class LifecycleRepository(Protocol):
    def claim_notices(
        self,
        keys: Sequence[tuple[str, str]],
        at: datetime,
        marks: Mapping[tuple[str, str], tuple[datetime, int]] | None = None,
    ) -> set[tuple[str, str]]:
        """Record (token id, notice) pairs not recorded before; return the newly recorded ones
        (the caller's claim: a racing transaction gets the others). ``marks`` gives expiry
        notices their (validTo, threshold; 0 for "expired"), which :meth:`due_expiry` reads."""
        ...

    def due_expiry(
        self,
        kinds: Sequence[TokenKind],
        *,
        now: datetime,
        thresholds: Sequence[int],
        org_ids: Sequence[str] | None = None,
        exclude_org_ids: Sequence[str] = (),
        expired_since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> list[TokenRecord]:
        """Unrevoked tokens that are due an expiry notice nobody recorded yet, by (valid_to, id)
        after ``after``: with ``thresholds`` (days, any order), those expiring within the largest
        and not yet told at their most urgent threshold or a more urgent one for this validTo;
        with ``expired_since``, those that expired in [expired_since, now) without an
        "expired" notice. Limited to ``org_ids`` (None: all) minus ``exclude_org_ids``. Set-based:
        a run where everyone was already told reads no token."""
        ...

    def notices_of(self, token_ids: Sequence[str]) -> dict[str, dict[str, datetime]]:
        """token id -> notice -> when it was recorded."""
        ...

    def expiring(
        self,
        kinds: Sequence[TokenKind],
        *,
        start: datetime,
        end: datetime,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> list[TokenRecord]:
        """Unrevoked tokens of ``kinds`` with ``start <= valid_to < end`` ordered by (valid_to,
        id), after the ``after`` cursor: an index range scan, never the whole table."""
        ...

    def expiring_ids(
        self,
        kinds: Sequence[TokenKind],
        *,
        start: datetime,
        end: datetime,
        after: tuple[datetime, str] | None = None,
        limit: int = 1000,
    ) -> list[tuple[datetime, str, str]]:
        """(valid_to, id, org id) of what :meth:`expiring` would return: the light first pass of
        a scan, so tokens already told cost no record and no owner lookup."""
        ...

    def owners(self, user_ids: Sequence[str]) -> dict[str, User]:
        """The users with these ids, in one query (the owners of a page of tokens)."""
        ...

    def records(self, token_ids: Sequence[str]) -> list[TokenRecord]:
        """The tokens with these ids (any kind), in no particular order."""
        ...

    def idle(
        self,
        org_id: str,
        kinds: Sequence[TokenKind],
        *,
        unused_since: datetime,
        now: datetime,
        after: str | None = None,
        limit: int = 1000,
    ) -> list[TokenRecord]:
        """Unrevoked, unexpired tokens of ``org_id`` whose last use (or creation, if never
        used) is before ``unused_since``, by id after ``after``."""
        ...

    def add_watcher(self, token_id: str, address: str, added_by: str | None, at: datetime) -> bool:
        """False if the address already watches the token (addresses compare case-insensitively)."""
        ...

    def remove_watcher(self, token_id: str, address: str) -> bool: ...

    def watchers(self, token_ids: Sequence[str]) -> dict[str, list[str]]:
        """token id -> watcher addresses, for many tokens in one query."""
        ...

    def watched_by(self, org_id: str, addresses: Sequence[str], now: datetime) -> list[tuple[str, str, str]]:
        """(token id, owner's user id, watcher address as stored) for every live (unrevoked,
        unexpired) PAT of ``org_id`` that one of ``addresses`` watches (case-insensitively),
        by token id then address — one indexed lookup, not a scan of the organization."""
        ...

    def add_enforcement(self, enforcement: PolicyEnforcement) -> None: ...
    def enforcements(
        self, org_id: str | None = None, status: str | None = None
    ) -> list[PolicyEnforcement]: ...
    def update_enforcement(self, enforcement: PolicyEnforcement) -> None: ...
