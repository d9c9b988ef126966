"""The usage table's port (usage records, issue 14)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from tokenwarden.domain.usage import UsageCount, UsageStats, UsageTotals


class UsageRepository(Protocol):
    def add_counts(self, counts: Sequence[UsageCount]) -> None:
        """Add ``counts`` to the table: a row that exists for the same token, minute, client,
        area and status gains the count (nodes flush concurrently)."""
        ...

    def resolve(self, hashes: Sequence[bytes]) -> dict[bytes, tuple[str, str]]:
        """The (token id, organization id) of each stored token's secret hash."""
        ...

    def totals(self, token_id: str, *, since: datetime, recent_since: datetime) -> UsageTotals:
        """Aggregates for one token from ``since`` on; status classes from ``recent_since`` on."""
        ...

    def requests_since(self, token_ids: Sequence[str], since: datetime) -> dict[str, int]:
        """Requests per token from ``since`` on (tokens without use are absent)."""
        ...

    def prune(self, before: datetime) -> int:
        """Delete rows of minutes before ``before``; returns how many."""
        ...

    def stats(
        self, token_id: str, minutes: Sequence[datetime], *, baseline_since: datetime, burst_since: datetime
    ) -> UsageStats:
        """Detection's view of one token around a flush that counted ``minutes``."""
        ...
