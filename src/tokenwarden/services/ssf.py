"""The Shared Signals Framework 1.0 transmitter: streams, fan-out, poll, SSE and push.

Flow: revocation paths append to the outbox (services.signals) -> ``fan_out`` takes each
stream's new outbox rows (a per-stream cursor moved by compare-and-set, so two nodes never fan
out the same rows twice), signs one SET per (stream, event) and queues it in ``ssf_deliveries``
-> push workers (jobs.ssf_delivery), poll and SSE take due rows with a conditional UPDATE, so a
SET is handed to one node only.

Stream status: ``enabled`` delivers; ``paused`` holds (the cursor stays, nothing is taken);
``disabled`` drops (the cursor moves on without queueing, pending SETs fail).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from tokenwarden.domain import netpolicy, secevent
from tokenwarden.domain.clock import Clock
from tokenwarden.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.ports.signals import (
    DELIVERED,
    FAILED,
    PENDING,
    Delivery,
    DueQuery,
    Stream,
    StreamSubject,
)
from tokenwarden.services.signals import emit_verification
from tokenwarden.services.signing import SecretBox, SigningKeys

STATUSES: Final = ("enabled", "paused", "disabled")
MAX_EVENTS: Final = 1000
MAX_TEXT: Final = 512


@dataclass(frozen=True, slots=True)
class Receiver:
    """Who calls the SSF API: a token's owner, acting in the token's organization."""

    org_id: str
    user_id: str
    is_admin: bool


@dataclass(frozen=True, slots=True)
class PollResult:
    sets: dict[str, str]
    more_available: bool


@dataclass(frozen=True, slots=True)
class PushJob:
    """A claimed push delivery: where to send it and with which Authorization header."""

    delivery: Delivery
    endpoint_url: str
    authorization: str | None


@dataclass(frozen=True, slots=True)
class Timing:
    """Delivery timing; tests shorten it."""

    backoff_first: float = 1.0
    backoff_max: float = 300.0
    give_up_after: float = 24 * 3600.0
    push_lease: float = 60.0  # a claimed push row is not retaken before this (HTTP timeout << it)
    redeliver_after: float = 30.0  # a polled SET that is not acknowledged is offered again
    long_poll: float = 5.0
    long_poll_step: float = 0.25


MAX_SUBJECT_DEPTH = 3


def _depth(value: Any) -> int:
    """How deep JSON objects nest in ``value`` (iteratively: a hostile body cannot recurse)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            if level <= MAX_SUBJECT_DEPTH:
                todo += [(v, level + 1) for v in item.values()]
            else:
                return level
    return deepest


class SsfService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        keys: SigningKeys,
        box: SecretBox,
        clock: Clock,
        *,
        reader: UnitOfWorkFactory | None = None,
        timing: Timing | None = None,
        batch: int = 200,
        sleep: Callable[[float], None] = time.sleep,
        push_allow: netpolicy.PushAllowList | None = None,
        resolve: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        self._uow = uow
        self._reader = reader or uow
        self.keys = keys
        self._box = box
        self._clock = clock
        self.timing = timing or Timing()
        self._batch = batch
        self._sleep = sleep
        self.push_allow = push_allow or netpolicy.PushAllowList()
        self.resolve = resolve or resolve_host

    # ------------------------------------------------------------------ streams
    @staticmethod
    def events_delivered(stream: Stream) -> list[str]:
        return [e for e in stream.events_requested if e in secevent.EVENTS_SUPPORTED]

    def create(self, who: Receiver, body: Mapping[str, Any], iss: str) -> Stream:
        _require_admin(who)
        now = self._clock.now()
        stream_id = str(uuid.uuid4())
        aud = _audience(body.get("aud"), stream_id)
        stream = Stream(
            stream_id=stream_id,
            org_id=who.org_id,
            iss=iss,
            aud=aud,
            events_requested=_events(body.get("events_requested")),
            delivery_method=secevent.POLL,
            created_at=now,
            updated_at=now,
            description=_text(body.get("description"), "description"),
            created_by=who.user_id,
        )
        stream = self._with_delivery(stream, body.get("delivery"))
        with self._uow() as uow:
            stream = replace(stream, cursor=uow.signals.latest_event_id())
            uow.signals.add_stream(stream)
            uow.commit()
        return stream

    def get(self, who: Receiver, stream_id: str) -> Stream:
        with self._reader() as uow:
            return _visible(uow.signals.get_stream(_stream_id(stream_id)), who)

    def streams(self, who: Receiver) -> list[Stream]:
        with self._reader() as uow:
            return uow.signals.streams(who.org_id)

    def update(self, who: Receiver, body: Mapping[str, Any], *, replace_all: bool) -> Stream:
        """PATCH (only the fields sent change) or PUT (every receiver-supplied field replaced)."""
        _require_admin(who)
        stream_id = _stream_id(body.get("stream_id"))
        with self._uow() as uow:
            current = _visible(uow.signals.get_stream(stream_id), who)
            updated = replace(current, updated_at=self._clock.now())
            if replace_all or "events_requested" in body:
                updated = replace(updated, events_requested=_events(body.get("events_requested")))
            if replace_all or "description" in body:
                updated = replace(updated, description=_text(body.get("description"), "description"))
            if replace_all or "delivery" in body:
                updated = self._with_delivery(updated, body.get("delivery"), keep=current)
            uow.signals.update_stream(updated)
            uow.commit()
        return updated

    def delete(self, who: Receiver, stream_id: str) -> None:
        _require_admin(who)
        with self._uow() as uow:
            stream = _visible(uow.signals.get_stream(_stream_id(stream_id)), who)
            uow.signals.delete_stream(stream.stream_id)
            uow.commit()

    def set_status(self, who: Receiver, stream_id: str, status: str, reason: str | None) -> Stream:
        if status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", code="invalidStatus")
        _require_admin(who)
        with self._uow() as uow:
            current = _visible(uow.signals.get_stream(_stream_id(stream_id)), who)
            updated = replace(
                current,
                status=status,
                status_reason=_text(reason, "reason"),
                updated_at=self._clock.now(),
            )
            uow.signals.update_stream(updated)
            if status == "disabled":
                uow.signals.drop_pending(current.stream_id, "stream disabled")
            uow.commit()
        return updated

    def add_subject(self, who: Receiver, stream_id: str, subject: Any, verified: Any = None) -> None:
        self._set_subject(who, stream_id, subject, "added", verified)

    def remove_subject(self, who: Receiver, stream_id: str, subject: Any) -> None:
        self._set_subject(who, stream_id, subject, "removed", None)

    def _set_subject(self, who: Receiver, stream_id: str, subject: Any, status: str, verified: Any) -> None:
        _require_admin(who)
        if not isinstance(subject, dict) or not isinstance(subject.get("format"), str):
            raise InvalidInput("subject must be an object with a format", code="invalidSubject")
        if _depth(subject) > MAX_SUBJECT_DEPTH:
            raise InvalidInput(
                f"subject is nested deeper than {MAX_SUBJECT_DEPTH} levels (RFC 9493 complex subjects "
                "hold simple ones)",
                code="invalidSubject",
            )
        if verified is not None and not isinstance(verified, bool):
            raise InvalidInput("verified must be a boolean", code="invalidSubject")
        with self._uow() as uow:
            stream = _visible(uow.signals.get_stream(_stream_id(stream_id)), who)
            resolved = secevent.resolve_subject(subject, stream.iss)
            key = secevent.subject_key(resolved)
            if len(key) > MAX_TEXT:
                raise InvalidInput("subject is too large", code="invalidSubject")
            uow.signals.set_subject(
                StreamSubject(stream.stream_id, key, resolved, status, self._clock.now(), verified)
            )
            uow.commit()

    def verify(self, who: Receiver, stream_id: str, state: Any) -> None:
        """Queue a verification SET for the stream (delivered like any other SET)."""
        if state is not None and not isinstance(state, str):
            raise InvalidInput("state must be a string", code="invalidState")
        _require_admin(who)
        with self._uow() as uow:
            stream = _visible(uow.signals.get_stream(_stream_id(stream_id)), who)
            emit_verification(
                uow,
                self._clock,
                org_id=stream.org_id,
                stream_id=stream.stream_id,
                state=_text(state, "state"),
            )
            uow.commit()

    def authorization_header(self, stream: Stream) -> str | None:
        if stream.authorization_header is None:
            return None
        return self._box.open_text(stream.authorization_header, stream.stream_id)

    def _with_delivery(self, stream: Stream, delivery: Any, keep: Stream | None = None) -> Stream:
        if delivery is None:
            delivery = {"method": secevent.POLL}
        if not isinstance(delivery, dict):
            raise InvalidInput("delivery must be an object", code="invalidDelivery")
        method = delivery.get("method", secevent.POLL)
        if method not in secevent.DELIVERY_METHODS:
            raise InvalidInput(
                f"delivery method must be one of {', '.join(secevent.DELIVERY_METHODS)}",
                code="invalidDelivery",
            )
        if method == secevent.POLL:
            return replace(stream, delivery_method=method, endpoint_url=None, authorization_header=None)
        url = delivery.get("endpoint_url")
        if not isinstance(url, str) or not _is_http_url(url):
            raise InvalidInput("push delivery needs an http(s) endpoint_url", code="invalidDelivery")
        refused = self.push_refusal(url, at_delivery=False)
        if refused is not None:
            raise InvalidInput(refused, code="pushTargetRefused")
        header = delivery.get("authorization_header")
        sealed: str | None
        if header is None:
            # PATCH/PUT of a config read back (where the header is never shown) keeps it.
            same = keep is not None and keep.endpoint_url == url
            sealed = keep.authorization_header if same and keep is not None else None
        elif (
            isinstance(header, str) and 0 < len(header) <= 4096 and "\n" not in header and "\r" not in header
        ):
            sealed = self._box.seal_text(header, stream.stream_id)
        else:
            raise InvalidInput("authorization_header must be a one-line string", code="invalidDelivery")
        return replace(stream, delivery_method=method, endpoint_url=url, authorization_header=sealed)

    def push_refusal(self, url: str, *, at_delivery: bool = True) -> str | None:
        """Why ``url`` may not receive pushes (checked at stream creation/update and again
        before every POST, so a name that later resolves inward is caught), or None. A name
        that does not resolve (yet) is accepted at creation and refused at delivery."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "push endpoint_url is not a valid URL"
        if not host:
            return "push endpoint_url has no host"
        if self.push_allow.allows_host(host):
            return None
        literal = netpolicy.parse_ip(host)
        try:
            addresses = [str(literal)] if literal is not None else self.resolve(host, port)
        except (OSError, UnicodeError):
            addresses = []
        if not addresses and not at_delivery:
            return None
        return netpolicy.refusal(host, addresses, self.push_allow)

    # ------------------------------------------------------------------ fan-out
    def fan_out(self, stream_id: str | None = None) -> int:
        """Queue signed SETs for new outbox rows, for one stream or all; returns how many."""
        with self._reader() as uow:
            if stream_id is not None:
                found = uow.signals.get_stream(stream_id)
                streams = [found] if found is not None else []
            else:
                streams = uow.signals.streams()
        total = 0
        for stream in streams:
            if stream.status == "paused":
                continue
            while True:
                queued, taken = self._fan_out_one(stream)
                total += queued
                if taken < self._batch:
                    break
                with self._reader() as uow:
                    fresh = uow.signals.get_stream(stream.stream_id)
                if fresh is None or fresh.cursor == stream.cursor:
                    break
                stream = fresh
        return total

    def _fan_out_one(self, stream: Stream) -> tuple[int, int]:
        with self._reader() as uow:
            events = uow.signals.events_after(stream.org_id, stream.stream_id, stream.cursor, self._batch)
            removed = (
                {s.subject_key for s in uow.signals.subjects(stream.stream_id) if s.status == "removed"}
                if events
                else set()
            )
        if not events:
            return 0, 0
        now = self._clock.now()
        wanted = set(self.events_delivered(stream))
        deliveries = []
        for e in events if stream.status == "enabled" else ():
            if e.event_type != secevent.VERIFICATION:
                if e.event_type not in wanted:
                    continue
                if secevent.subject_keys(secevent.resolve_subject(e.subject, stream.iss)) & removed:
                    continue
            jti = uuid.uuid4().hex
            claims = secevent.set_claims(
                iss=stream.iss,
                aud=stream.aud,
                jti=jti,
                iat=now,
                txn=e.txn,
                sub_id=e.subject,
                event_type=e.event_type,
                event=e.event,
            )
            signed = self.keys.sign(claims, typ=secevent.SET_TYP)
            deliveries.append(
                Delivery(stream.stream_id, e.id, jti, signed, PENDING, now, next_attempt_at=now)
            )
        with self._uow() as uow:
            current = uow.signals.get_stream(stream.stream_id)
            if current is None or (current.status, current.events_requested) != (
                stream.status,
                stream.events_requested,
            ):
                return 0, 0  # changed meanwhile: the next round sees the new configuration
            if not uow.signals.advance_cursor(stream.stream_id, stream.cursor, events[-1].id):
                return 0, 0  # another node took these rows
            try:
                uow.signals.add_deliveries(deliveries)
            except Conflict:
                return 0, 0
            uow.commit()
        return len(deliveries), len(events)

    # ------------------------------------------------------------------ poll and SSE
    def poll(
        self,
        who: Receiver,
        stream_id: str,
        *,
        max_events: int | None,
        return_immediately: bool,
        acks: Sequence[str] = (),
        errors: Mapping[str, str] | None = None,
    ) -> PollResult:
        """RFC 8936: acknowledge, report errors, then hand out up to ``max_events`` SETs (long
        polling up to ``timing.long_poll`` seconds unless ``return_immediately``)."""
        limit = MAX_EVENTS if max_events is None else max_events
        if not 0 <= limit <= MAX_EVENTS:
            raise InvalidInput(f"maxEvents must be between 0 and {MAX_EVENTS}", code="invalidRequest")
        stream = self._poll_stream(who, stream_id)
        if acks or errors:
            with self._uow() as uow:
                uow.signals.ack(stream.stream_id, list(acks), self._clock.now())
                uow.signals.fail(stream.stream_id, dict(errors or {}), self._clock.now())
                uow.commit()
        if limit == 0:
            return PollResult({}, False)
        deadline = time.monotonic() + (0.0 if return_immediately else self.timing.long_poll)
        while True:
            self.fan_out(stream.stream_id)
            claimed, more = self._claim(stream.stream_id, limit, self.timing.redeliver_after)
            if claimed or time.monotonic() >= deadline:
                return PollResult({d.jti: d.set_jws for d in claimed}, more)
            self._sleep(self.timing.long_poll_step)

    def sse_batch(self, who: Receiver, stream_id: str, limit: int = 50) -> list[Delivery]:
        """The next SETs of a poll stream for an SSE connection. Same lease as poll: a SET sent
        on SSE and not acknowledged (poll ``ack``) within ``redeliver_after`` is offered again,
        on SSE or poll, whichever asks first; SSE never takes a SET away from poll for good."""
        stream = self._poll_stream(who, stream_id)
        self.fan_out(stream.stream_id)
        claimed, _ = self._claim(stream.stream_id, limit, self.timing.redeliver_after)
        return claimed

    def check_sse(self, who: Receiver, stream_id: str) -> Stream:
        return self._poll_stream(who, stream_id)

    def _poll_stream(self, who: Receiver, stream_id: str) -> Stream:
        """A poll stream the caller may consume: taking SETs leases them and an ack removes them,
        so only the stream's receiver (whoever created it) or an admin of its organization may —
        a member with ``ssf.read`` can read the configuration, not drain the stream."""
        stream = self.get(who, stream_id)
        if not who.is_admin and stream.created_by != who.user_id:
            raise Forbidden(
                "only the stream's receiver or an organization administrator may consume it",
                code="accessDenied",
            )
        if stream.delivery_method != secevent.POLL:
            raise InvalidInput("this stream is delivered by push, not poll", code="invalidDelivery")
        return stream

    def _claim(self, stream_id: str, limit: int, redeliver: float | None) -> tuple[list[Delivery], bool]:
        now = self._clock.now()
        again = now + timedelta(seconds=redeliver) if redeliver is not None else None
        query = DueQuery(now=now, limit=limit + 1, statuses=(PENDING, DELIVERED), stream_id=stream_id)
        with self._reader() as uow:  # the common case, nothing due, takes no write lock
            if not uow.signals.due(query):
                return [], False
        with self._uow() as uow:
            due = uow.signals.due(query)
            claimed = [
                d
                for d in due[:limit]
                if uow.signals.claim(
                    d.id, now, from_statuses=(PENDING, DELIVERED), status=DELIVERED, next_attempt_at=again
                )
            ]
            uow.commit()
        return claimed, len(due) > limit

    # ------------------------------------------------------------------ push
    def claim_push(self, limit: int = 20) -> list[PushJob]:
        """Take due push deliveries of enabled streams (each row goes to one node only)."""
        now = self._clock.now()
        lease = now + timedelta(seconds=self.timing.push_lease)
        jobs: list[PushJob] = []
        query = DueQuery(now=now, limit=limit, method=secevent.PUSH)
        with self._reader() as uow:  # every node asks 4 times a second: read before locking
            if not uow.signals.due(query):
                return []
        with self._uow() as uow:
            due = uow.signals.due(query)
            streams: dict[str, Stream | None] = {}
            for d in due:
                if d.stream_id not in streams:
                    streams[d.stream_id] = uow.signals.get_stream(d.stream_id)
                stream = streams[d.stream_id]
                if stream is None or stream.endpoint_url is None:
                    continue
                if uow.signals.claim(
                    d.id, now, from_statuses=(PENDING,), status=PENDING, next_attempt_at=lease
                ):
                    jobs.append(PushJob(d, stream.endpoint_url, self.authorization_header(stream)))
            uow.commit()
        return jobs

    def push_result(self, job: PushJob, error: str | None) -> str:
        """Record a push attempt (``error`` None: the receiver answered 202); returns the status."""
        now = self._clock.now()
        d = job.delivery
        with self._uow() as uow:
            if error is None:
                uow.signals.finish(d.id, status=DELIVERED, next_attempt_at=None, delivered_at=now)
                status = DELIVERED
            elif (now - d.created_at).total_seconds() >= self.timing.give_up_after:
                uow.signals.finish(d.id, status=FAILED, next_attempt_at=None, last_error=error)
                status = FAILED
            else:
                attempts = d.attempts + 1
                delay = min(self.timing.backoff_first * 2 ** (attempts - 1), self.timing.backoff_max)
                uow.signals.finish(
                    d.id, status=PENDING, next_attempt_at=now + timedelta(seconds=delay), last_error=error
                )
                status = PENDING
            uow.commit()
        return status

    def deliveries(self, stream_id: str) -> list[Delivery]:
        with self._reader() as uow:
            return uow.signals.deliveries(stream_id)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def _require_admin(who: Receiver) -> None:
    if not who.is_admin:
        raise Forbidden("organization administrators only", code="accessDenied")


def _visible(stream: Stream | None, who: Receiver) -> Stream:
    if stream is None or stream.org_id != who.org_id:
        raise NotFound("no such stream", code="streamNotFound")
    return stream


def _stream_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("stream_id is required", code="invalidRequest")
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise NotFound("no such stream", code="streamNotFound") from exc


def _events(value: Any) -> tuple[str, ...]:
    """events_requested: a list of URIs; omitted means every supported event."""
    if value is None:
        return secevent.EVENTS_SUPPORTED
    if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= MAX_TEXT for v in value):
        raise InvalidInput("events_requested must be a list of event type URIs", code="invalidRequest")
    return tuple(dict.fromkeys(value))


def _audience(value: Any, stream_id: str) -> tuple[str, ...]:
    if value is None:
        return (f"urn:tokenwarden:ssf:stream:{stream_id}",)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise InvalidInput("aud must be a string or a list of strings", code="invalidRequest")
    return tuple(items)


def _text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidInput(f"{what} must be a string of at most {MAX_TEXT} characters", code="invalidRequest")
    return value


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and len(url) <= 2048
