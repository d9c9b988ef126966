"""Storage port of the Shared Signals transmitter: the security-event outbox, signing keys,
streams with their subjects, and the per-stream delivery queue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

# Delivery states. Push: pending -> delivered (202) | failed (gave up). Poll and SSE:
# pending -> delivered (handed out, awaiting an ack) -> acked | failed (setErrs).
PENDING = "pending"
DELIVERED = "delivered"
ACKED = "acked"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One outbox row, written in the transaction of the change it reports. ``stream_id`` is
    set only for events meant for one stream (verification)."""

    event_type: str
    subject: dict[str, Any]
    event: dict[str, Any]
    org_id: str | None
    txn: str
    created_at: datetime
    stream_id: str | None = None
    id: int = 0


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A signing key pair; the private half is encrypted (AES-GCM) under a key derived from the
    pepper ``pepper_id``. ``public_jwk`` is what JWKS publishes."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    private_key: bytes
    pepper_id: str
    created_at: datetime
    status: str = "active"  # active (signs) | retiring (verifies until retire_after)
    retire_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """An SSF event stream, owned by one organization. ``cursor`` is the id of the last outbox
    row this stream has taken (fanned out, or skipped while disabled)."""

    stream_id: str
    org_id: str
    iss: str
    aud: tuple[str, ...]
    events_requested: tuple[str, ...]
    delivery_method: str
    created_at: datetime
    updated_at: datetime
    endpoint_url: str | None = None
    authorization_header: str | None = None  # encrypted, never returned
    description: str | None = None
    status: str = "enabled"  # enabled | paused | disabled
    status_reason: str | None = None
    min_verification_interval: int | None = None
    inactivity_timeout: int | None = None
    cursor: int = 0
    created_by: str | None = None


@dataclass(frozen=True, slots=True)
class StreamSubject:
    """A subject a receiver added (``status`` added) or removed (``status`` removed)."""

    stream_id: str
    subject_key: str
    subject: dict[str, Any]
    status: str
    updated_at: datetime
    verified: bool | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One signed SET queued for one stream."""

    stream_id: str
    event_id: int
    jti: str
    set_jws: str
    status: str
    created_at: datetime
    next_attempt_at: datetime | None
    attempts: int = 0
    last_error: str | None = None
    delivered_at: datetime | None = None
    id: int = 0


@dataclass(frozen=True, slots=True)
class DueQuery:
    """Which deliveries are due: of one stream or, for push, of every enabled push stream."""

    now: datetime
    limit: int
    statuses: tuple[str, ...] = (PENDING,)
    stream_id: str | None = None
    method: str | None = None
    enabled_only: bool = True


class SignalRepository(Protocol):
    # ------------------------------------------------------------------ outbox
    def append_event(self, event: SecurityEvent) -> None:
        """Append to the outbox inside the current transaction; ids grow in commit order."""
        ...

    def append_events(self, events: Sequence[SecurityEvent]) -> None:
        """Append many events in one set-based write, ids in the given order (bulk jobs)."""
        ...

    def events_after(self, org_id: str, stream_id: str, after_id: int, limit: int) -> list[SecurityEvent]:
        """Outbox rows above ``after_id`` of the organization that are for every stream or for
        ``stream_id``, in id order."""
        ...

    def latest_event_id(self) -> int: ...

    # ------------------------------------------------------------------ keys
    def add_key(self, key: SigningKey) -> None: ...
    def signing_keys(self, alg: str | None = None) -> list[SigningKey]:
        """Active keys (of ``alg``), oldest first (ties broken by kid)."""
        ...

    def published_keys(self, now: datetime) -> list[SigningKey]:
        """Active keys and retiring keys whose ``retire_after`` is still ahead, oldest first."""
        ...

    def retire_key(self, kid: str, retire_after: datetime) -> bool:
        """Stop signing with ``kid``; keep publishing it until ``retire_after``."""
        ...

    # ------------------------------------------------------------------ streams
    def add_stream(self, stream: Stream) -> None: ...
    def get_stream(self, stream_id: str) -> Stream | None: ...
    def streams(self, org_id: str | None = None) -> list[Stream]: ...
    def update_stream(self, stream: Stream) -> None:
        """Store every field but ``cursor`` (only :meth:`advance_cursor` moves it)."""
        ...

    def delete_stream(self, stream_id: str) -> bool:
        """Delete the stream, its subjects and its queue."""
        ...

    def advance_cursor(self, stream_id: str, old: int, new: int) -> bool:
        """Compare-and-set the cursor: False when another node moved it first."""
        ...

    def set_subject(self, subject: StreamSubject) -> None: ...
    def subjects(self, stream_id: str) -> list[StreamSubject]: ...

    # ------------------------------------------------------------------ delivery queue
    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None: ...
    def due(self, query: DueQuery) -> list[Delivery]:
        """Deliveries whose status is one of ``statuses`` and whose ``next_attempt_at`` has come,
        oldest first; with ``method``, only of streams with that delivery method; with
        ``enabled_only``, only of enabled streams."""
        ...

    def claim(
        self,
        delivery_id: int,
        now: datetime,
        *,
        from_statuses: Sequence[str],
        status: str,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Take a due delivery (one conditional UPDATE): only if its status is one of
        ``from_statuses`` and ``next_attempt_at <= now``; counts one attempt. Of two nodes
        claiming one row, exactly one gets True."""
        ...

    def finish(
        self,
        delivery_id: int,
        *,
        status: str,
        next_attempt_at: datetime | None,
        last_error: str | None = None,
        delivered_at: datetime | None = None,
    ) -> None:
        """Record the outcome of a claimed delivery."""
        ...

    def ack(self, stream_id: str, jtis: Sequence[str], at: datetime) -> int:
        """Mark pending/delivered SETs of the stream acknowledged; returns how many changed."""
        ...

    def fail(self, stream_id: str, errors: Mapping[str, str], at: datetime) -> int:
        """Mark pending/delivered SETs failed with the receiver's error (RFC 8936 setErrs)."""
        ...

    def drop_pending(self, stream_id: str, reason: str) -> int:
        """Fail every pending delivery of the stream (it was disabled: nothing is held)."""
        ...

    def deliveries(self, stream_id: str) -> list[Delivery]:
        """Every delivery of the stream, oldest first (diagnostics and tests)."""
        ...
