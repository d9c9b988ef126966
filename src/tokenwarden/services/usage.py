"""Usage records (issue 14): every authenticated request counted per token, off the hot path.

The HTTP layer calls :meth:`UsageRecorder.record` once per request — an append to a bounded
deque, nothing else. The node's background loop calls :meth:`UsageService.flush`, which
resolves token hashes to ids, folds the requests into per-minute counts and adds them to the
``token_usage`` table in one statement. A full buffer drops (and counts) new records rather
than slow requests down; a failed flush keeps its counts for the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from tokenwarden.domain.clock import Clock, iso_z
from tokenwarden.domain.errors import NotFound
from tokenwarden.domain.usage import (
    MAX_USER_AGENT,
    UsageCount,
    UsageTotals,
    minute_of,
    network_of,
    status_class,
)
from tokenwarden.ports.repositories import UnitOfWorkFactory
from tokenwarden.services.common import Actor, get_org, parse_uuid, reading, require_admin

log = logging.getLogger(__name__)
RECENT: Final = timedelta(hours=24)
_now = time.time
MAX_CARRY: Final = 200_000  # counts kept across failed flushes
MAX_RESOLVED: Final = 200_000  # remembered hash -> token id mappings
# (secret hash, time, ip, user agent, area, status)
Pending = tuple[bytes, float, str | None, str | None, str, int]


class UsageRecorder:
    """The in-memory buffer of one process. ``record`` is safe from any thread."""

    def __init__(self, max_pending: int = 100_000, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._max = max_pending if enabled else 0
        self._pending: deque[Pending] = deque()
        self.dropped = 0
        self.recorded = 0

    def record(self, key: bytes, ip: str | None, user_agent: str | None, area: str, status: int) -> None:
        """Count one request of the token whose secret hashes to ``key`` (the hot path: an
        append; callers skip it when recording is off)."""
        pending = self._pending
        if len(pending) < self._max:
            if user_agent is not None and len(user_agent) > MAX_USER_AGENT:
                user_agent = user_agent[:MAX_USER_AGENT]
            pending.append((key, _now(), ip, user_agent, area, status))
        elif self.enabled:
            self.dropped += 1

    def drain(self) -> list[Pending]:
        """Take what was recorded so far (thread-safe against concurrent ``record``)."""
        out = []
        pop = self._pending.popleft
        for _ in range(len(self._pending)):
            out.append(pop())
        self.recorded += len(out)
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)


@dataclass(frozen=True, slots=True)
class FlushResult:
    requests: int
    rows: int
    unresolved: int


class UsageService:
    """Flushing, reading and pruning usage records."""

    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, recorder: UsageRecorder, retention_days: int = 90
    ) -> None:
        self._uow = uow
        self._clock = clock
        self.recorder = recorder
        self.retention_days = retention_days
        self._resolved: dict[bytes, tuple[str, str]] = {}
        self._carry: list[UsageCount] = []
        self._lock = threading.Lock()  # one flush at a time per process
        self.flushed_rows = 0
        # called with each flush's counts once they are committed (compromise detection)
        self.detector: Callable[[list[UsageCount]], object] | None = None

    def flush(self) -> FlushResult:
        """Write what the recorder holds (and any counts a failed flush kept)."""
        with self._lock:
            pending = self.recorder.drain()
            if not pending and not self._carry:
                return FlushResult(0, 0, 0)
            unknown = [k for k in {p[0] for p in pending} if k not in self._resolved]
            if unknown:
                with reading(self._uow) as uow:
                    found = uow.usage.resolve(unknown)
                if len(self._resolved) + len(found) > MAX_RESOLVED:
                    self._resolved.clear()
                self._resolved.update(found)
            folded: Counter[tuple[str, str, datetime, str, str, str, str]] = Counter()
            unresolved = 0
            for key, ts, ip, agent, area, status in pending:
                ids = self._resolved.get(key)
                if ids is None:  # a token deleted since (or never stored): nothing to count
                    unresolved += 1
                    continue
                folded[
                    (ids[0], ids[1], minute_of(ts), ip or "", agent or "", area, status_class(status))
                ] += 1
            counts = [
                UsageCount(tid, oid, bucket, ip, network_of(ip), agent, area, status, n)
                for (tid, oid, bucket, ip, agent, area, status), n in folded.items()
            ]
            batch = self._carry + counts
            self._carry = []
            try:
                with self._uow() as uow:
                    uow.usage.add_counts(batch)
                    uow.commit()
            except Exception:
                self._carry = batch[-MAX_CARRY:]
                raise
            self.flushed_rows += len(batch)
            if self.detector is not None and batch:
                try:
                    self.detector(batch)
                except Exception:  # detection never loses counts; it is logged and runs next time
                    log.exception("compromise detection failed for a usage flush")
            return FlushResult(len(pending), len(batch), unresolved)

    def totals(self, actor: Actor, org: str, token_id: str) -> tuple[UsageTotals, dict[str, Any]]:
        """Usage of one token of ``org``: its owner or an administrator of the organization may
        read it. Also returns the token's identity (id, kind, owner, name) for display."""
        tid = parse_uuid(token_id, "token id", "invalidTokenId")
        now = self._clock.now()
        with reading(self._uow) as uow:
            the_org = get_org(uow, org)
            record = uow.tokens.get(tid)
            missing = NotFound(f"token {tid} not found in this organization", code="tokenNotFound")
            if record is None or record.org_id != the_org.id:
                raise missing
            if actor.user_id != record.user_id:
                require_admin(uow, actor, the_org.id)
            owner = uow.users.get(record.user_id)
            totals = uow.usage.totals(
                tid, since=now - timedelta(days=self.retention_days), recent_since=now - RECENT
            )
        about = {
            "tokenId": tid,
            "kind": record.kind.value,
            "displayName": record.display_name,
            "owner": owner.upn if owner else None,
            "lastUsedAt": iso_z(record.last_used_at),
            "lastUsedIp": record.last_used_ip,
        }
        return totals, about

    def requests_since(self, token_ids: list[str], days: int = 30) -> dict[str, int]:
        """Requests per token over the last ``days`` (for listings); ids are the caller's."""
        if not token_ids:
            return {}
        with reading(self._uow) as uow:
            return uow.usage.requests_since(token_ids, self._clock.now() - timedelta(days=days))

    def prune(self) -> int:
        """Delete usage records older than the retention period (the usage-retention job)."""
        before = self._clock.now() - timedelta(days=self.retention_days)
        with self._uow() as uow:
            removed = uow.usage.prune(before)
            uow.commit()
        return removed


def totals_json(totals: UsageTotals, about: dict[str, Any], retention_days: int) -> dict[str, Any]:
    """The wire and ``--json`` shape of a token's usage."""
    return {
        **about,
        "retentionDays": retention_days,
        "firstUsedAt": iso_z(totals.first_used),
        "lastRecordedAt": iso_z(totals.last_used),
        "requests": totals.requests,
        "distinctNetworks": len(totals.networks),
        "networks": [
            {"network": n, "requests": k, "firstSeen": iso_z(f), "lastSeen": iso_z(la)}
            for n, k, f, la in totals.networks
        ],
        "perDay": [{"day": d, "requests": n} for d, n in totals.per_day],
        "recent": {
            "since": iso_z(totals.recent_since),
            "status401": totals.statuses.get("401", 0),
            "status403": totals.statuses.get("403", 0),
            "byStatus": dict(sorted(totals.statuses.items())),
        },
        "userAgents": [{"userAgent": a, "requests": n} for a, n in totals.user_agents],
        "areas": [{"area": a, "requests": n} for a, n in totals.areas],
    }
